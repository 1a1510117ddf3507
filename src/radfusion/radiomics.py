"""Radiomic feature maps: concentration rate and Rényi entropy (SPEC stage 3).

Both maps are computed per axial slice on the 8-bit FLAIR (``round(255 * x)``), one value per
pixel from the square scanning window centred on it. The image is padded by reflection so every
pixel, borders included, has a full window.

Padding rule (shared by both features and by the tests' reference): ``numpy.pad(image, s,
mode="reflect")``, the mirror about the edge pixel without repeating it (``d c b | a b c d |
c b a``; scipy.ndimage calls this ``"mirror"``). When the image is smaller than the pad, the
reflection repeats (along an axis of length ``L`` the padded index is periodic with period
``2 * (L - 1)``), and an axis of length 1 repeats its single value.

The kernels are numba-compiled, release the GIL and run in time linear in the number of pixels:
CR merges pre-sorted window columns; RE slides the window along each row and updates the pair
counts and an exact integer sum of ``count ** alpha`` incrementally.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

__all__ = [
    "concentration_rate",
    "renyi_entropy",
    "radiomics_volume",
    "glcm_offsets",
]

_LEVELS = 256
# Exact sums of count**alpha are kept in two int64 limbs: S = hi * 2**52 + lo. After a
# normalization 0 <= lo < 2**52, so up to 2**10 unnormalized updates fit in an int64.
_LIMB_BITS = 52
_MAX_UPDATES_BETWEEN_CARRIES = 1 << 10


def _check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"expected a 2D {name} (one axial slice), got {image.ndim}D with shape {image.shape}")
    if image.dtype != np.uint8:
        raise TypeError(f"expected a uint8 {name} (the 8-bit quantized FLAIR, round(255 * x)), got dtype {image.dtype}")
    if image.size == 0:
        raise ValueError(f"expected a non-empty {name}, got shape {image.shape}")
    return np.ascontiguousarray(image)


def _check_window_half_width(s: int, minimum: int) -> int:
    if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < minimum:
        raise ValueError(f"expected an integer window half-width s >= {minimum}, got {s!r}")
    return int(s)


def _reflect_pad(image: np.ndarray, s: int) -> np.ndarray:
    # numpy 'reflect' (edge not repeated); see the module docstring for small images.
    return np.ascontiguousarray(np.pad(image, s, mode="reflect"))


# --------------------------------------------------------------------------------------------
# Concentration rate
# --------------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _concentration_rate_kernel(padded, s, n_low, n_high, out):  # pragma: no cover - compiled
    """CR = window sum - (n_low smallest) - (n_high largest), per pixel of ``out``."""
    n = 2 * s + 1
    height, width = out.shape
    padded_width = width + 2 * s
    # Sorted columns of the current band of n padded rows.
    columns = np.empty((padded_width, n), np.int64)
    column_sums = np.empty(padded_width, np.int64)
    for c in range(padded_width):
        total = 0
        for r in range(n):
            v = np.int64(padded[r, c])
            total += v
            p = r
            while p > 0 and columns[c, p - 1] > v:
                columns[c, p] = columns[c, p - 1]
                p -= 1
            columns[c, p] = v
        column_sums[c] = total
    low_heads = np.empty(n, np.int64)
    high_heads = np.empty(n, np.int64)
    for i in range(height):
        if i > 0:
            # Slide the band down: in each column the top value leaves, a new bottom one enters.
            for c in range(padded_width):
                old = np.int64(padded[i - 1, c])
                new = np.int64(padded[i + n - 1, c])
                if old == new:
                    continue
                column_sums[c] += new - old
                p = 0
                while columns[c, p] != old:
                    p += 1
                columns[c, p] = new
                while p > 0 and columns[c, p - 1] > new:
                    columns[c, p] = columns[c, p - 1]
                    columns[c, p - 1] = new
                    p -= 1
                while p < n - 1 and columns[c, p + 1] < new:
                    columns[c, p] = columns[c, p + 1]
                    columns[c, p + 1] = new
                    p += 1
        window_sum = 0
        for q in range(n):
            window_sum += column_sums[q]
        for j in range(width):
            if j > 0:
                window_sum += column_sums[j + n - 1] - column_sums[j - 1]
            # n-way merge of the sorted columns from the bottom (smallest values) ...
            for q in range(n):
                low_heads[q] = 0
                high_heads[q] = n - 1
            low_sum = 0
            for _ in range(n_low):
                best = np.int64(_LEVELS)
                best_q = 0
                for q in range(n):
                    k = low_heads[q]
                    if k < n and columns[j + q, k] < best:
                        best = columns[j + q, k]
                        best_q = q
                low_sum += best
                low_heads[best_q] += 1
            # ... and from the top (largest values).
            high_sum = 0
            for _ in range(n_high):
                best = np.int64(-1)
                best_q = 0
                for q in range(n):
                    k = high_heads[q]
                    if k >= 0 and columns[j + q, k] > best:
                        best = columns[j + q, k]
                        best_q = q
                high_sum += best
                high_heads[best_q] -= 1
            out[i, j] = window_sum - low_sum - high_sum


def concentration_rate(image: np.ndarray, s: int = 2, num: int = 15, m: int = 5) -> np.ndarray:
    """Concentration rate map of an 8-bit slice (Equations 1-2).

    Parameters
    ----------
    image : (H, W) ndarray of uint8
        One axial slice of the 8-bit quantized FLAIR.
    s : int, optional
        Half-width of the scanning window ``W_s``, which is ``(2s + 1) x (2s + 1)``.
    num : int, optional
        Number of high-intensity window values summed.
    m : int, optional
        Number of highest window values excluded (robustness to outliers).

    Returns
    -------
    cr : (H, W) ndarray of float64
        ``CR(i, j)`` for every pixel (integer values, exact in float64).

    Notes
    -----
    With the window values sorted ascending ``X_(1) <= ... <= X_(N)``, ``N = (2s + 1)^2``
    (Eq. 2), ``CR(i, j) = sum_{k = N - num - m + 1}^{N - m} X_(k)`` (Eq. 1). The defaults
    (s=2, num=15, m=5) give ``X_(6) + ... + X_(20)`` of the 25 values of a 5x5 window.
    Computed as the window sum minus the ``N - num - m`` smallest and the ``m`` largest
    values, found by merging the window's pre-sorted columns. The image is padded with
    ``numpy.pad(mode="reflect")`` (see the module docstring).

    References
    ----------
    .. [1] "Integrating Radiomics with Deep Learning Enhances Multiple Sclerosis Lesion
       Delineation", Materials and Methods, Equations 1-2.
    """
    image = _check_image(image)
    s = _check_window_half_width(s, 0)
    n_window = (2 * s + 1) ** 2
    for name, value, minimum in (("num", num, 1), ("m", m, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise ValueError(f"expected an integer {name} >= {minimum}, got {value!r}")
    if num + m > n_window:
        raise ValueError(f"expected num + m <= N = (2s + 1)^2 = {n_window} window values, got num={num}, m={m}")
    out = np.empty(image.shape, np.float64)
    _concentration_rate_kernel(_reflect_pad(image, s), s, n_window - int(num) - int(m), int(m), out)
    return out


# --------------------------------------------------------------------------------------------
# Rényi entropy
# --------------------------------------------------------------------------------------------


def _round_half_away(x: float) -> int:
    # C's round(), which scikit-image's Cython GLCM loop uses (not Python's half-to-even).
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def glcm_offsets(
    distances: Sequence[float] = (1, 2),
    angles: Sequence[float] = (0, np.pi / 4, np.pi / 2, 3 * np.pi / 4),
    offsets: str = "skimage",
) -> list[tuple[int, int]]:
    """Pixel offsets ``(row, col)`` of the GLCM pairs, one per (distance, angle).

    Parameters
    ----------
    distances : sequence of float, optional
        Pair distances in pixels.
    angles : sequence of float, optional
        Pair angles in radians.
    offsets : {"skimage", "chebyshev"}, optional
        ``"skimage"``: ``(round(sin(angle) * d), round(cos(angle) * d))`` with C rounding (halves
        away from zero), exactly as ``skimage.feature.graycomatrix``; at ``d = 2`` the diagonals
        round to ``(1, +-1)``. ``"chebyshev"``: the point at Chebyshev distance ``d`` in the
        nearest of the 8 principal directions, ``d * (round(sin / c), round(cos / c))`` with
        ``c = max(|sin|, |cos|)``, so the diagonals at ``d = 2`` are ``(2, +-2)``.

    Returns
    -------
    offsets : list of (int, int)
        In the order of the loops ``for angle: for distance``. Duplicates are kept: each counts
        its pairs once more, as in the summed scikit-image GLCMs.

    Notes
    -----
    A pair is ``(image[r, c], image[r + dr, c + dc])`` (ordered, not symmetric). In
    scikit-image's convention the row offset is ``+round(sin(angle) * d)``, i.e. angle pi/2
    pairs a pixel with the one *below* it in array order.
    """
    if offsets not in ("skimage", "chebyshev"):
        raise ValueError(f"expected offsets 'skimage' or 'chebyshev', got {offsets!r}")
    distances = np.asarray(distances, dtype=np.float64)
    angles = np.asarray(angles, dtype=np.float64)
    if distances.ndim != 1 or distances.size == 0 or not np.all(np.isfinite(distances)) or np.any(distances < 0):
        raise ValueError(f"expected a non-empty 1D sequence of finite distances >= 0, got {distances!r}")
    if angles.ndim != 1 or angles.size == 0 or not np.all(np.isfinite(angles)):
        raise ValueError(f"expected a non-empty 1D sequence of finite angles (radians), got {angles!r}")
    result = []
    for angle in angles:
        sin, cos = math.sin(angle), math.cos(angle)
        for d in distances:
            if offsets == "skimage":
                result.append((_round_half_away(sin * d), _round_half_away(cos * d)))
            else:
                if d != round(d):
                    raise ValueError(f"chebyshev offsets need integer distances, got {d}")
                c = max(abs(sin), abs(cos))
                result.append((int(d) * _round_half_away(sin / c), int(d) * _round_half_away(cos / c)))
    return result


@numba.njit(cache=True, nogil=True)
def _renyi_entropy_kernel(
    padded, n, off_r, off_c, off_w, step_hi, step_lo, total_hi, total_lo, total, alpha, counts, out
):  # pragma: no cover
    """Exact-integer sliding-window RE for integer alpha (see ``renyi_entropy`` Notes).

    ``step_hi/lo[w, c]`` hold ``(c + w)^alpha - c^alpha`` in limbs; ``counts`` is a zeroed
    array of 256 * 256 pair counts, left zeroed on return.
    """
    height, width = out.shape
    n_offsets = off_r.shape[0]
    low_mask = (np.int64(1) << _LIMB_BITS) - 1
    limb = float(np.int64(1) << _LIMB_BITS)
    log_norm = alpha * np.log(float(total))
    scale = 1.0 / (1.0 - alpha)
    constant_hi = total_hi
    constant_lo = total_lo
    for i in range(height):
        s_hi = np.int64(0)
        s_lo = np.int64(0)
        for o in range(n_offsets):
            dr = off_r[o]
            dc = off_c[o]
            w = off_w[o]
            for r in range(i + max(0, -dr), i + n - max(0, dr)):
                for c in range(max(0, -dc), n - max(0, dc)):
                    key = np.int64(padded[r, c]) * _LEVELS + padded[r + dr, c + dc]
                    k0 = np.int64(counts[key])
                    counts[key] = k0 + w
                    s_lo += step_lo[w, k0]
                    s_hi += step_hi[w, k0]
                s_hi += s_lo >> _LIMB_BITS  # carry (arithmetic shift: -1 when s_lo < 0)
                s_lo &= low_mask
        for j in range(width):
            if j > 0:
                for o in range(n_offsets):
                    dr = off_r[o]
                    dc = off_c[o]
                    w = off_w[o]
                    # Pairs whose left pixel column leaves, pairs whose right pixel column enters.
                    c_out = j - 1 + max(0, -dc)
                    c_in = j + n - 1 - max(0, dc)
                    for r in range(i + max(0, -dr), i + n - max(0, dr)):
                        key_out = np.int64(padded[r, c_out]) * _LEVELS + padded[r + dr, c_out + dc]
                        key = np.int64(padded[r, c_in]) * _LEVELS + padded[r + dr, c_in + dc]
                        if key == key_out:
                            continue  # same pair leaves and enters: nothing changes
                        k1 = np.int64(counts[key_out]) - w
                        counts[key_out] = k1
                        s_lo -= step_lo[w, k1]
                        s_hi -= step_hi[w, k1]
                        k0 = np.int64(counts[key])
                        counts[key] = k0 + w
                        s_lo += step_lo[w, k0]
                        s_hi += step_hi[w, k0]
                    s_hi += s_lo >> _LIMB_BITS
                    s_lo &= low_mask
            if s_hi == constant_hi and s_lo == constant_lo:
                out[i, j] = 0.0  # one gray-level pair: p = 1, ln 1 = 0 exactly
            else:
                out[i, j] = (np.log(s_hi * limb + s_lo) - log_norm) * scale
        # Reset the counts of the row's last window for the next row.
        j0 = width - 1
        for o in range(n_offsets):
            dr = off_r[o]
            dc = off_c[o]
            for r in range(i + max(0, -dr), i + n - max(0, dr)):
                for c in range(j0 + max(0, -dc), j0 + n - max(0, dc)):
                    counts[np.int64(padded[r, c]) * _LEVELS + padded[r + dr, c + dc]] = 0


@numba.njit(cache=True, nogil=True)
def _renyi_entropy_direct_kernel(
    padded, n, off_r, off_c, off_w, pow_float, total, alpha, counts, out
):  # pragma: no cover
    """RE per window from scratch, float sum of positive terms ``pow_float[c] = (c / T)^alpha``."""
    height, width = out.shape
    touched = np.empty(total, np.int64)
    n_offsets = off_r.shape[0]
    scale = 1.0 / (1.0 - alpha)
    for i in range(height):
        for j in range(width):
            n_touched = 0
            for o in range(n_offsets):
                dr = off_r[o]
                dc = off_c[o]
                for r in range(i + max(0, -dr), i + n - max(0, dr)):
                    for c in range(j + max(0, -dc), j + n - max(0, dc)):
                        key = np.int64(padded[r, c]) * _LEVELS + padded[r + dr, c + dc]
                        if counts[key] == 0:
                            touched[n_touched] = key
                            n_touched += 1
                        counts[key] += off_w[o]
            if n_touched == 1:
                out[i, j] = 0.0
                counts[touched[0]] = 0
                continue
            power_sum = 0.0
            for t in range(n_touched):
                power_sum += pow_float[counts[touched[t]]]
                counts[touched[t]] = 0
            out[i, j] = np.log(power_sum) * scale


def _window_pair_plan(s: int, distances, angles, offsets: str):
    """Distinct in-window offsets with multiplicities, and the pairs per window."""
    n = 2 * s + 1
    merged: dict[tuple[int, int], int] = {}
    for offset in glcm_offsets(distances, angles, offsets):
        merged[offset] = merged.get(offset, 0) + 1
    plan = [(dr, dc, w) for (dr, dc), w in merged.items() if abs(dr) < n and abs(dc) < n]
    total = sum(w * (n - abs(dr)) * (n - abs(dc)) for dr, dc, w in plan)
    off_r = np.array([p[0] for p in plan], np.int64)
    off_c = np.array([p[1] for p in plan], np.int64)
    off_w = np.array([p[2] for p in plan], np.int64)
    return off_r, off_c, off_w, total


def _integer_power_tables(total: int, alpha: int, max_weight: int, updates_between_carries: int):
    """Exact steps ``(c + w)^alpha - c^alpha`` and ``total^alpha`` as (hi, lo) int64 limbs.

    Returns ``(step_hi, step_lo, total_hi, total_lo)`` with ``step[w, c]`` for ``w`` up to
    ``max_weight`` and ``c + w <= total``, or None when the sums would not fit.
    """
    if alpha * math.log2(total) >= _LIMB_BITS + 61 or updates_between_carries > _MAX_UPDATES_BETWEEN_CARRIES:
        return None  # check in floats first: total**alpha of a huge alpha would never finish
    if total**alpha >= 1 << (_LIMB_BITS + 62):
        return None
    low_mask = (1 << _LIMB_BITS) - 1
    powers = [c**alpha for c in range(total + 1)]
    step_hi = np.zeros((max_weight + 1, total + 1), np.int64)
    step_lo = np.zeros((max_weight + 1, total + 1), np.int64)
    for w in range(1, max_weight + 1):
        for c in range(total + 1 - w):
            step = powers[c + w] - powers[c]
            step_hi[w, c] = step >> _LIMB_BITS
            step_lo[w, c] = step & low_mask
    return step_hi, step_lo, powers[total] >> _LIMB_BITS, powers[total] & low_mask


class _RenyiPlan:
    """Validated parameters and lookup tables shared by all slices of one call."""

    def __init__(self, s, alpha, distances, angles, offsets):
        self.s = _check_window_half_width(s, 1)
        try:
            alpha_value = float(alpha) if not isinstance(alpha, (bool, str)) else math.nan
        except (TypeError, ValueError):
            alpha_value = math.nan
        if not math.isfinite(alpha_value) or alpha_value <= 0 or alpha_value == 1:
            raise ValueError(f"expected a finite Rényi order alpha > 0 and != 1, got {alpha!r}")
        alpha = alpha_value
        self.alpha = alpha
        self.off_r, self.off_c, self.off_w, self.total = _window_pair_plan(self.s, distances, angles, offsets)
        if self.total == 0:
            raise ValueError(
                f"no GLCM pair fits in the {2 * self.s + 1}x{2 * self.s + 1} window for distances "
                f"{list(distances)}; use s larger than the distances"
            )
        # The sliding step carries after each offset's 2 * n updates (leaving + entering column).
        updates = 2 * (2 * self.s + 1)
        self.tables = None
        if alpha == round(alpha):
            self.tables = _integer_power_tables(self.total, int(alpha), int(self.off_w.max()), updates)
        # Pair counts never exceed the pairs per window; small counts keep the array in cache.
        self.count_dtype = np.int16 if self.total < 2**15 else np.int32
        if self.tables is None:
            # p^alpha = (count / total)^alpha directly, as the reference, so no overflow for large alpha.
            self.pow_float = (np.arange(self.total + 1, dtype=np.float64) / self.total) ** alpha

    def run(self, image: np.ndarray, out: np.ndarray) -> None:
        padded = _reflect_pad(image, self.s)
        n = 2 * self.s + 1
        counts = np.zeros(_LEVELS * _LEVELS, self.count_dtype)
        if self.tables is not None:
            _renyi_entropy_kernel(
                padded, n, self.off_r, self.off_c, self.off_w, *self.tables, self.total, self.alpha, counts, out
            )
        else:
            _renyi_entropy_direct_kernel(
                padded, n, self.off_r, self.off_c, self.off_w, self.pow_float, self.total, self.alpha, counts, out
            )


def renyi_entropy(
    image: np.ndarray,
    s: int = 5,
    alpha: float = 7,
    distances: Sequence[float] = (1, 2),
    angles: Sequence[float] = (0, np.pi / 4, np.pi / 2, 3 * np.pi / 4),
    offsets: str = "skimage",
) -> np.ndarray:
    """Rényi entropy map of the windowed gray-level co-occurrence matrix (Equation 3).

    Parameters
    ----------
    image : (H, W) ndarray of uint8
        One axial slice of the 8-bit quantized FLAIR.
    s : int, optional
        Half-width of the scanning window, which is ``(2s + 1) x (2s + 1)``.
    alpha : float, optional
        Order of the Rényi entropy, ``alpha > 0``, ``alpha != 1``.
    distances : sequence of float, optional
        GLCM pair distances in pixels.
    angles : sequence of float, optional
        GLCM pair angles in radians.
    offsets : {"skimage", "chebyshev"}, optional
        How (distance, angle) becomes a pixel offset; see :func:`glcm_offsets`.

    Returns
    -------
    re : (H, W) ndarray of float64
        ``H_alpha(i, j)`` in nats for every pixel; 0 where the window has a single gray-level
        pair (e.g. a constant window).

    Notes
    -----
    For each pixel the GLCM ``f`` of its window is the sum over distances and angles of the
    counts of ordered gray-level pairs (not symmetric, 256 levels) whose two pixels both lie in
    the window, exactly ``skimage.feature.graycomatrix(window, distances, angles, levels=256)``
    summed over its last two axes. With ``T`` the total pair count (the same for every pixel
    thanks to the padding), ``p = f / T`` and
    ``H_alpha = ln(sum p^alpha) / (1 - alpha) = (ln(sum f^alpha) - alpha ln T) / (1 - alpha)``
    (Eq. 3, natural log).

    For integer alpha the sum ``S = sum f^alpha`` is kept exactly in integers (two int64
    limbs, ``S = hi * 2^52 + lo``) while the window slides along a row: only the pairs of the leaving and entering
    columns change their counts, and S changes by ``(c')^alpha - c^alpha`` for each. S is
    converted to float only for the logarithm, so the result matches the float64 reference
    to about 1e-14. Non-integer alpha (or an integer one so large that ``T^alpha`` exceeds
    the limbs) uses a per-window float sum of ``p^alpha`` (slower, same accuracy).
    The image is padded with ``numpy.pad(mode="reflect")`` (see the module docstring).

    References
    ----------
    .. [1] "Integrating Radiomics with Deep Learning Enhances Multiple Sclerosis Lesion
       Delineation", Materials and Methods, Equation 3.
    .. [2] A. Rényi, "On measures of entropy and information", Proc. Fourth Berkeley Symp.
       Math. Statist. Prob., 1961.
    """
    image = _check_image(image)
    plan = _RenyiPlan(s, alpha, distances, angles, offsets)
    out = np.empty(image.shape, np.float64)
    plan.run(image, out)
    return out


# --------------------------------------------------------------------------------------------
# Volumes
# --------------------------------------------------------------------------------------------


def radiomics_volume(
    volume_u8: np.ndarray,
    *,
    cr: dict | None = None,
    re: dict | None = None,
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """CR and RE maps of every axial slice ``volume_u8[:, :, k]``.

    Parameters
    ----------
    volume_u8 : (X, Y, Z) ndarray of uint8
        The 8-bit quantized FLAIR volume.
    cr : dict, optional
        Keyword arguments of :func:`concentration_rate` (``s``, ``num``, ``m``).
    re : dict, optional
        Keyword arguments of :func:`renyi_entropy` (``s``, ``alpha``, ``distances``,
        ``angles``, ``offsets``).
    threads : int, optional
        Slices computed in parallel (a thread pool over the GIL-free kernels).

    Returns
    -------
    cr, re : (X, Y, Z) ndarrays of float32
        The two feature volumes.

    Notes
    -----
    SPEC stage 3: features are 2D, per axial slice, each slice padded on its own. A constant
    slice (e.g. empty background) is filled directly: CR = value * num, RE = 0.
    """
    volume_u8 = np.asarray(volume_u8)
    if volume_u8.ndim != 3:
        raise ValueError(f"expected a 3D volume (x, y, z), got {volume_u8.ndim}D with shape {volume_u8.shape}")
    if volume_u8.dtype != np.uint8:
        raise TypeError(f"expected a uint8 volume (round(255 * x)), got dtype {volume_u8.dtype}")
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"expected threads >= 1, got {threads!r}")
    cr_kwargs = dict(cr or {})
    re_kwargs = dict(re or {})
    unknown = set(cr_kwargs) - {"s", "num", "m"}
    if unknown:
        raise ValueError(f"unknown concentration_rate options {sorted(unknown)}; expected s, num, m")
    unknown = set(re_kwargs) - {"s", "alpha", "distances", "angles", "offsets"}
    if unknown:
        raise ValueError(
            f"unknown renyi_entropy options {sorted(unknown)}; expected s, alpha, distances, angles, offsets"
        )
    num = cr_kwargs.get("num", 15)
    # Validate both parameter sets once, on a tiny image, before starting the pool.
    concentration_rate(np.zeros((1, 1), np.uint8), **cr_kwargs)
    re_plan = _RenyiPlan(
        re_kwargs.get("s", 5),
        re_kwargs.get("alpha", 7),
        re_kwargs.get("distances", (1, 2)),
        re_kwargs.get("angles", (0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)),
        re_kwargs.get("offsets", "skimage"),
    )
    cr_out = np.empty(volume_u8.shape, np.float32)
    re_out = np.empty(volume_u8.shape, np.float32)

    def one_slice(k: int) -> None:
        image = np.ascontiguousarray(volume_u8[:, :, k])
        first = image.flat[0]
        if (image == first).all():
            cr_out[:, :, k] = float(first) * num
            re_out[:, :, k] = 0.0
            return
        cr_out[:, :, k] = concentration_rate(image, **cr_kwargs)
        re_slice = np.empty(image.shape, np.float64)
        re_plan.run(image, re_slice)
        re_out[:, :, k] = re_slice

    n_slices = volume_u8.shape[2]
    if threads == 1 or n_slices <= 1:
        for k in range(n_slices):
            one_slice(k)
    else:
        with ThreadPoolExecutor(max_workers=int(threads)) as pool:
            list(pool.map(one_slice, range(n_slices)))  # re-raises a slice's error
    return cr_out, re_out
