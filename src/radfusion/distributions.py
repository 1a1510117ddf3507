"""Feature values inside vs outside lesions: medians, quartiles, AUC (SPEC stage 4, Figures 2-3).

Memory stays bounded over a cohort because every subject is reduced to two histograms per
feature on fixed bins (lesion voxels, other brain voxels) that add up across subjects; no
voxel values are kept. The bins are chosen so that the statistics are exact or nearly so:

- CR is an integer (a sum of 8-bit grey levels), so its bins are centred on the integers
  ``0 .. 255 * num``: counts, medians, quartiles and the AUC are exact.
- RE is continuous; its bins are ``1e-3`` nats wide on ``[0, 12]`` (RE <= ln(pairs per window),
  ln 818 = 6.7 for the defaults). Quantiles are the bin centres (within 5e-4 nats); the AUC is
  exact for the binned values (values in one bin count as ties).

Groups: *lesion* = voxels of the lesion mask; *non-lesion* = brain voxels (the caller's brain
mask: :func:`radfusion.normalize.brain_mask`, the imported FLAIR's nonzero voxels) outside the
lesion mask.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from os import PathLike
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.stats import rankdata

__all__ = [
    "GroupHistograms",
    "feature_bin_edges",
    "group_histograms",
    "combine_histograms",
    "cohort_histograms",
    "histogram_quantiles",
    "histogram_auc",
    "auc",
    "feature_summary",
    "save_histograms",
    "load_histograms",
]


class GroupHistograms(NamedTuple):
    """Voxel counts of one feature per bin, for lesion and non-lesion voxels."""

    edges: np.ndarray  # (B + 1,) increasing bin edges
    lesion: np.ndarray  # (B,) int64 counts of lesion voxels
    other: np.ndarray  # (B,) int64 counts of non-lesion brain voxels


def feature_bin_edges(feature: str, *, num: int = 15, re_max: float = 12.0, re_bin_width: float = 1e-3) -> np.ndarray:
    """Fixed histogram bin edges for a feature.

    Parameters
    ----------
    feature : {"cr", "re"}
        Concentration rate or Rényi entropy.
    num : int, optional
        CR's ``num`` (values summed); CR lies in ``[0, 255 * num]``.
    re_max : float, optional
        Upper end of the RE range in nats.
    re_bin_width : float, optional
        RE bin width in nats.

    Returns
    -------
    edges : ndarray of float64
        For "cr": ``k - 0.5`` for ``k = 0 .. 255 * num + 1`` (one bin per integer value).
        For "re": ``0, w, 2w, ... , re_max``.

    Notes
    -----
    Fixed, data-independent bins let per-subject histograms be summed over a cohort.
    """
    if feature == "cr":
        if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
            raise ValueError(f"expected an integer num >= 1, got {num!r}")
        return np.arange(255 * int(num) + 2, dtype=np.float64) - 0.5
    if feature == "re":
        if not (re_max > 0 and re_bin_width > 0 and re_bin_width < re_max):
            raise ValueError(f"expected 0 < re_bin_width < re_max, got {re_bin_width}, {re_max}")
        n_bins = int(round(re_max / re_bin_width))
        return np.linspace(0.0, n_bins * re_bin_width, n_bins + 1)
    raise ValueError(f"expected feature 'cr' or 're', got {feature!r}")


def _check_edges(edges: np.ndarray) -> np.ndarray:
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or not np.all(np.diff(edges) > 0):
        raise ValueError(f"expected at least 2 strictly increasing bin edges, got {edges.size} edges")
    return edges


def _bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size and not np.all(np.isfinite(values)):
        raise ValueError("feature values contain NaN or infinite values")
    if values.size and (values.min() < edges[0] or values.max() > edges[-1]):
        raise ValueError(
            f"feature values [{values.min():g}, {values.max():g}] fall outside the histogram "
            f"range [{edges[0]:g}, {edges[-1]:g}]"
        )
    # Bins are [e_k, e_k+1), the last one closed, as numpy.histogram.
    index = np.searchsorted(edges, values, side="right") - 1
    index[index == edges.size - 1] = edges.size - 2
    return np.bincount(index, minlength=edges.size - 1).astype(np.int64)


def group_histograms(
    values: np.ndarray, lesion_mask: np.ndarray, brain_mask: np.ndarray, edges: np.ndarray
) -> GroupHistograms:
    """Histograms of a feature map over lesion voxels and over non-lesion brain voxels.

    Parameters
    ----------
    values : ndarray
        Feature map (e.g. a CR or RE volume).
    lesion_mask : ndarray of bool or {0, 1}
        Lesion voxels, same shape.
    brain_mask : ndarray of bool or {0, 1}
        Brain voxels (:func:`radfusion.normalize.brain_mask` of the imported FLAIR), same shape.
    edges : ndarray
        Bin edges, e.g. from :func:`feature_bin_edges`.

    Returns
    -------
    GroupHistograms
        Counts of ``values[lesion_mask]`` and of ``values[brain_mask & ~lesion_mask]``.

    Notes
    -----
    SPEC stage 4: outside = brain voxels not in a lesion. Every lesion-mask voxel counts as
    inside, whatever the brain mask says there.
    """
    values = np.asarray(values)
    lesion = np.asarray(lesion_mask)
    brain = np.asarray(brain_mask)
    if lesion.shape != values.shape or brain.shape != values.shape:
        raise ValueError(
            f"expected values, lesion mask and brain mask of one shape, got {values.shape}, "
            f"{lesion.shape}, {brain.shape}"
        )
    for name, mask in (("lesion mask", lesion), ("brain mask", brain)):
        if mask.dtype != bool and not np.isin(mask, (0, 1)).all():
            raise ValueError(f"expected a binary {name} (bool or 0/1), got values {np.unique(mask)[:5]}...")
    lesion = lesion.astype(bool)
    other = brain.astype(bool) & ~lesion
    edges = _check_edges(edges)
    return GroupHistograms(edges, _bin_counts(values[lesion], edges), _bin_counts(values[other], edges))


def combine_histograms(histograms: Iterable[GroupHistograms]) -> GroupHistograms:
    """Sum group histograms with identical bins (e.g. over the subjects of a cohort).

    Parameters
    ----------
    histograms : iterable of GroupHistograms
        At least one, all on the same edges.

    Returns
    -------
    GroupHistograms
        Bin-wise sums of the lesion and non-lesion counts.
    """
    total = None
    for h in histograms:
        if total is None:
            total = GroupHistograms(np.asarray(h.edges), np.array(h.lesion, np.int64), np.array(h.other, np.int64))
            continue
        if not np.array_equal(total.edges, h.edges):
            raise ValueError("cannot combine histograms with different bin edges")
        total.lesion[:] += h.lesion
        total.other[:] += h.other
    if total is None:
        raise ValueError("expected at least one histogram to combine, got none")
    return total


def cohort_histograms(
    subjects: Iterable[tuple[Mapping[str, np.ndarray], np.ndarray, np.ndarray]],
    edges: Mapping[str, np.ndarray],
) -> dict[str, GroupHistograms]:
    """Accumulate lesion / non-lesion histograms of several features over a cohort.

    Parameters
    ----------
    subjects : iterable of (features, lesion_mask, brain_mask)
        One item per subject; ``features`` maps a feature name to its volume. A generator that
        loads one subject at a time keeps memory to one subject.
    edges : mapping of str to ndarray
        Bin edges per feature name (e.g. ``{"cr": feature_bin_edges("cr"), ...}``).

    Returns
    -------
    dict of str to GroupHistograms
        Cohort totals per feature.
    """
    totals: dict[str, GroupHistograms] = {}
    for features, lesion_mask, brain_mask in subjects:
        missing = set(edges) - set(features)
        if missing:
            raise ValueError(f"subject lacks features {sorted(missing)}; got {sorted(features)}")
        for name, feature_edges in edges.items():
            h = group_histograms(features[name], lesion_mask, brain_mask, feature_edges)
            totals[name] = h if name not in totals else combine_histograms([totals[name], h])
    if not totals:
        raise ValueError("expected at least one subject, got none")
    return totals


def histogram_quantiles(edges: np.ndarray, counts: np.ndarray, q) -> np.ndarray:
    """Quantiles of the values a histogram counts, each value taken at its bin centre.

    Parameters
    ----------
    edges : (B + 1,) ndarray
        Bin edges.
    counts : (B,) ndarray of int
        Counts per bin.
    q : float or sequence of float
        Probabilities in [0, 1].

    Returns
    -------
    quantiles : ndarray of float64 (NaN where the histogram is empty)

    Notes
    -----
    Same rule as ``numpy.quantile(..., method="linear")`` on the sample that repeats each bin
    centre ``counts`` times: exact for integer-valued features with unit bins (CR).
    """
    edges = _check_edges(edges)
    counts = np.asarray(counts, dtype=np.int64)
    if counts.shape != (edges.size - 1,) or np.any(counts < 0):
        raise ValueError(f"expected {edges.size - 1} non-negative counts, got shape {counts.shape}")
    q = np.atleast_1d(np.asarray(q, dtype=np.float64))
    if np.any((q < 0) | (q > 1)):
        raise ValueError(f"expected probabilities in [0, 1], got {q}")
    n = int(counts.sum())
    if n == 0:
        return np.full(q.shape, np.nan)
    centres = 0.5 * (edges[:-1] + edges[1:])
    cumulative = np.cumsum(counts)
    position = q * (n - 1)
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, n - 1)
    # Order statistic k (0-based) lies in the first bin whose cumulative count exceeds k.
    low = centres[np.searchsorted(cumulative, below, side="right")]
    high = centres[np.searchsorted(cumulative, above, side="right")]
    return low + (position - below) * (high - low)


def histogram_auc(lesion_counts: np.ndarray, other_counts: np.ndarray) -> float:
    """AUC of a feature separating lesion from non-lesion voxels, from binned counts.

    Parameters
    ----------
    lesion_counts, other_counts : (B,) ndarray of int
        Counts per bin of the lesion and non-lesion values (same bins).

    Returns
    -------
    auc : float
        ``P(X_lesion > X_other) + P(X_lesion == X_other) / 2``, values in one bin being equal.

    Notes
    -----
    Equals the Mann-Whitney ``U / (n1 n0)`` of the binned values; exact for unit bins of an
    integer-valued feature.
    """
    lesion_counts = np.asarray(lesion_counts, dtype=np.int64)
    other_counts = np.asarray(other_counts, dtype=np.int64)
    if lesion_counts.shape != other_counts.shape or lesion_counts.ndim != 1:
        raise ValueError(
            f"expected two 1D count arrays on the same bins, got {lesion_counts.shape}, {other_counts.shape}"
        )
    n1, n0 = int(lesion_counts.sum()), int(other_counts.sum())
    if n1 == 0 or n0 == 0:
        raise ValueError(f"AUC needs voxels in both groups, got {n1} lesion and {n0} non-lesion")
    other_below = np.cumsum(other_counts) - other_counts
    # Integer arithmetic up to the final division keeps large cohorts exact.
    twice_u = int(np.sum(lesion_counts.astype(object) * (2 * other_below + other_counts)))
    return twice_u / (2 * n1 * n0)


def auc(lesion: np.ndarray, other: np.ndarray) -> float:
    """AUC of a feature separating lesion from non-lesion values (Mann-Whitney).

    Parameters
    ----------
    lesion, other : ndarray
        Feature values of lesion and of non-lesion voxels.

    Returns
    -------
    auc : float
        ``U / (n1 n0)``: the probability that a random lesion value exceeds a random
        non-lesion value, ties counting 1/2. 0.5 means no separation.

    Notes
    -----
    ``U = R1 - n1 (n1 + 1) / 2`` with ``R1`` the sum of the lesion values' mid-ranks in the
    pooled sample.
    """
    lesion = np.asarray(lesion, dtype=np.float64).ravel()
    other = np.asarray(other, dtype=np.float64).ravel()
    if lesion.size == 0 or other.size == 0:
        raise ValueError(f"AUC needs values in both groups, got {lesion.size} lesion and {other.size} non-lesion")
    if not (np.all(np.isfinite(lesion)) and np.all(np.isfinite(other))):
        raise ValueError("AUC got NaN or infinite values")
    ranks = rankdata(np.concatenate([lesion, other]))
    n1, n0 = lesion.size, other.size
    u = ranks[:n1].sum() - n1 * (n1 + 1) / 2.0
    return float(u / (n1 * n0))


def feature_summary(groups: Mapping[str, GroupHistograms | tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
    """Table of feature distributions inside vs outside lesions.

    Parameters
    ----------
    groups : mapping of feature name to GroupHistograms or (lesion_values, other_values)
        Histograms (cohort totals) or raw values per feature.

    Returns
    -------
    summary : pandas.DataFrame
        One row per feature: ``feature``, ``n_lesion``, ``n_nonlesion``, ``median_lesion``,
        ``q1_lesion``, ``q3_lesion``, ``median_nonlesion``, ``q1_nonlesion``,
        ``q3_nonlesion``, ``auc``.

    Notes
    -----
    Quartiles follow ``numpy.quantile(method="linear")``; from histograms each value is its
    bin centre (see :func:`histogram_quantiles`). AUC as in :func:`auc` /
    :func:`histogram_auc`.
    """
    rows = []
    for name, group in groups.items():
        if isinstance(group, GroupHistograms):
            lesion_q = histogram_quantiles(group.edges, group.lesion, [0.5, 0.25, 0.75])
            other_q = histogram_quantiles(group.edges, group.other, [0.5, 0.25, 0.75])
            n1, n0 = int(group.lesion.sum()), int(group.other.sum())
            value = histogram_auc(group.lesion, group.other)
        else:
            lesion_values, other_values = (np.asarray(v, dtype=np.float64).ravel() for v in group)
            value = auc(lesion_values, other_values)
            lesion_q = np.quantile(lesion_values, [0.5, 0.25, 0.75])
            other_q = np.quantile(other_values, [0.5, 0.25, 0.75])
            n1, n0 = lesion_values.size, other_values.size
        rows.append(
            {
                "feature": name,
                "n_lesion": n1,
                "n_nonlesion": n0,
                "median_lesion": lesion_q[0],
                "q1_lesion": lesion_q[1],
                "q3_lesion": lesion_q[2],
                "median_nonlesion": other_q[0],
                "q1_nonlesion": other_q[1],
                "q3_nonlesion": other_q[2],
                "auc": value,
            }
        )
    return pd.DataFrame(rows)


def save_histograms(path: str | PathLike, histograms: Mapping[str, GroupHistograms]) -> None:
    """Write group histograms per feature to one ``.npz`` file.

    Parameters
    ----------
    path : path-like
        Output file (``.npz``).
    histograms : mapping of feature name to GroupHistograms
        Names must be identifiers (e.g. "cr", "re").
    """
    arrays = {}
    for name, h in histograms.items():
        if not name.isidentifier() or "__" in name:
            raise ValueError(f"expected feature names like 'cr' or 're', got {name!r}")
        arrays[f"{name}__edges"] = h.edges
        arrays[f"{name}__lesion"] = h.lesion
        arrays[f"{name}__other"] = h.other
    with open(path, "wb") as stream:
        np.savez_compressed(stream, **arrays)


def load_histograms(path: str | PathLike) -> dict[str, GroupHistograms]:
    """Read group histograms written by :func:`save_histograms`.

    Parameters
    ----------
    path : path-like
        The ``.npz`` file.

    Returns
    -------
    dict of feature name to GroupHistograms
    """
    with np.load(path) as data:
        names = sorted({key.split("__")[0] for key in data.files})
        return {
            name: GroupHistograms(data[f"{name}__edges"], data[f"{name}__lesion"], data[f"{name}__other"])
            for name in names
        }
