"""Paired significance tests and the training-stability score (SPEC stage 9).

- :func:`wilcoxon_signed_rank`: the two-sided Wilcoxon signed-rank test of MRI vs
  MRI+radiomics over paired values; :func:`bonferroni_adjust` for the three metrics.
- :func:`standard_deviation_of_derivatives`: the SDD of a validation-Dice curve (the paper's
  Equations 4-5); :func:`population_sd`: the paper's standard deviation (``ddof=0``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as scipy_stats

ZERO_METHODS = ("wilcox", "pratt", "zsplit")


class SignedRankResult(NamedTuple):
    """Outcome of :func:`wilcoxon_signed_rank`."""

    statistic: float
    """min(R+, R-), the two-sided signed-rank statistic (scipy's convention)."""
    pvalue: float
    """Two-sided p-value, in [0, 1]."""
    n_pairs: int
    """Number of pairs tested."""
    n_nonzero: int
    """Pairs whose difference is not zero."""
    method: str
    """How the p-value was computed: exact, permutation, asymptotic or all-zero."""


def _finite_vector(values: ArrayLike, name: str, *, min_size: int = 1) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {array.shape}")
    if array.size < min_size:
        raise ValueError(f"{name}: expected at least {min_size} value(s), got {array.size}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: expected finite values, got {np.count_nonzero(~np.isfinite(array))} NaN/inf")
    return array


def population_sd(values: ArrayLike) -> float:
    """Population standard deviation (``ddof=0``) of a 1-D sample.

    Parameters
    ----------
    values : array_like, shape (n,)
        Finite values, at least one.

    Returns
    -------
    sd : float
        ``sqrt(mean((x - mean(x))**2))``.

    Notes
    -----
    The paper's "mean ± SD across the six folds" is this population SD: Table 2's MRI row
    (0.67, 0.60, 0.74, 0.68, 0.69, 0.69) gives 0.041 as Table 1 reports; ``ddof=1`` would
    give 0.045. Equation 4 (SDD) uses the same convention.
    """
    return float(np.std(_finite_vector(values, "values"), ddof=0))


def sample_sd(values: ArrayLike) -> float:
    """Sample standard deviation (``ddof=1``) of a 1-D sample; NaN for a single value.

    Parameters
    ----------
    values : array_like, shape (n,)
        Finite values, at least one.

    Returns
    -------
    sd : float
        ``sqrt(sum((x - mean(x))**2) / (n - 1))``; NaN when ``n == 1``.

    Notes
    -----
    Table 5's spread over external subjects: the subjects are a sample of the external
    population, so the unbiased-variance SD describes their spread (the folds of Tables 1 and
    3, a partition of one cohort, use :func:`population_sd` as the paper does).
    """
    array = _finite_vector(values, "values")
    return float("nan") if array.size < 2 else float(np.std(array, ddof=1))


def standard_deviation_of_derivatives(val_scores: ArrayLike) -> float:
    """SDD of a validation curve: the population SD of its epoch-to-epoch changes.

    Parameters
    ----------
    val_scores : array_like, shape (n_epochs,)
        Validation score after each epoch, in epoch order, at least two.

    Returns
    -------
    sdd : float
        ``population_sd(d)`` with ``d_i = v_i - v_(i-1)``, ``i = 1 .. n_epochs - 1``.

    Notes
    -----
    Equations 4-5 of the paper: ``d_i = val_score_i - val_score_(i-1)`` and
    ``SDD = sqrt(1/N sum (d_i - mean(d))**2)``, N being the number of differences. A smooth
    curve (constant slope) has SDD 0; a jagged one a large SDD.

    References
    ----------
    Integrating Radiomics with Deep Learning Enhances Multiple Sclerosis Lesion Delineation,
    Equations 4 and 5.
    """
    scores = _finite_vector(val_scores, "val_scores", min_size=2)
    return float(np.std(np.diff(scores), ddof=0))


def bonferroni_adjust(p_values: ArrayLike, *, n_tests: int | None = None) -> np.ndarray:
    """Bonferroni-adjusted p-values, capped at 1.

    Parameters
    ----------
    p_values : array_like
        Raw p-values in [0, 1].
    n_tests : int, optional
        Number of comparisons in the family; default the number of p-values given (Tables 1
        and 3: the three metrics).

    Returns
    -------
    adjusted : ndarray
        ``min(1, n_tests * p)`` elementwise, same shape as ``p_values``.
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.size == 0:
        raise ValueError("p_values: expected at least one p-value, got none")
    if not np.all((p >= 0) & (p <= 1)):
        raise ValueError(f"p_values: expected values in [0, 1], got {p.tolist()}")
    n = p.size if n_tests is None else int(n_tests)
    if n < 1:
        raise ValueError(f"n_tests: expected a positive integer, got {n_tests}")
    return np.minimum(p * n, 1.0)


def wilcoxon_signed_rank(
    baseline: ArrayLike,
    fusion: ArrayLike,
    *,
    zero_method: str = "wilcox",
    exact_max_n: int = 50,
    permutation_max_n: int = 13,
) -> SignedRankResult:
    """Two-sided Wilcoxon signed-rank test of paired values, with explicit small-sample rules.

    Parameters
    ----------
    baseline, fusion : array_like, shape (n,)
        Paired finite values (MRI and MRI+radiomics), at least one pair.
    zero_method : {"wilcox", "pratt", "zsplit"}
        Treatment of zero differences (scipy's names). "wilcox" (default) drops them before
        ranking, as Wilcoxon's classic test and R's ``wilcox.test`` do.
    exact_max_n : int
        Largest sample (after dropping zeros for "wilcox") tested with the exact null
        distribution when it has no ties and no zeros.
    permutation_max_n : int
        Largest sample with ties or zeros tested by enumerating all ``2**n`` sign flips.

    Returns
    -------
    result : SignedRankResult
        Statistic ``min(R+, R-)``, p-value, pair counts and the method used.

    Notes
    -----
    Differences are ``fusion - baseline``. The p-value method is chosen here, not left to
    scipy's ``method="auto"`` (whose rules changed across releases):

    - every difference zero: no evidence of a difference, ``p = 1`` (method "all-zero");
    - n <= ``exact_max_n`` without ties or zeros: exact null distribution ("exact"). For six
      folds the smallest two-sided p is ``2 / 2**6 = 0.03125`` (the paper's SDD p = 0.03);
    - ties or zeros and n <= ``permutation_max_n``: exact enumeration of all sign flips
      (scipy's ``PermutationMethod``; with ``2**13 < 9999`` resamples it is deterministic);
    - otherwise the normal approximation with the tie-corrected variance and no continuity
      correction ("asymptotic").

    With "wilcox" the zeros are removed first, so "n" counts the non-zero differences; the
    exact enumeration over the remaining pairs equals the classic test. "pratt" ranks the
    zeros and then discards them; "zsplit" splits their ranks between R+ and R-.

    References
    ----------
    Wilcoxon F. Individual comparisons by ranking methods. Biometrics Bulletin 1945; 1:80-83.
    """
    if zero_method not in ZERO_METHODS:
        raise ValueError(f"zero_method: expected one of {ZERO_METHODS}, got {zero_method!r}")
    x = _finite_vector(baseline, "baseline")
    y = _finite_vector(fusion, "fusion")
    if x.shape != y.shape:
        raise ValueError(f"baseline and fusion must pair up: got {x.size} and {y.size} values")
    differences = y - x
    n_pairs = differences.size
    nonzero = differences[differences != 0]
    if nonzero.size == 0:
        return SignedRankResult(0.0, 1.0, n_pairs, 0, "all-zero")
    tested = nonzero if zero_method == "wilcox" else differences
    has_zeros = tested.size > nonzero.size
    has_ties = np.unique(np.abs(nonzero)).size < nonzero.size
    if tested.size <= exact_max_n and not (has_ties or has_zeros):
        method, scipy_method = "exact", "exact"
    elif tested.size <= permutation_max_n:
        method = "permutation"
        scipy_method = scipy_stats.PermutationMethod(n_resamples=2**tested.size)
    else:
        method, scipy_method = "asymptotic", "asymptotic"
    result = scipy_stats.wilcoxon(
        tested,
        zero_method=zero_method,
        correction=False,
        alternative="two-sided",
        method=scipy_method,
    )
    pvalue = float(np.clip(result.pvalue, 0.0, 1.0))
    return SignedRankResult(float(result.statistic), pvalue, n_pairs, int(nonzero.size), method)
