"""Intensity normalization of FLAIR volumes (SPEC stage 2)."""

from __future__ import annotations

import numpy as np


def normalize_intensity(
    volume: np.ndarray, lower_percentile: float = 0.5, upper_percentile: float = 99.5
) -> np.ndarray:
    """Clip to percentiles of the nonzero voxels and scale to [0, 1].

    Parameters
    ----------
    volume : ndarray
        FLAIR intensities (any real dtype), background 0.
    lower_percentile, upper_percentile : float
        Percentiles (0-100) of the nonzero voxels that map to 0 and 1.

    Returns
    -------
    normalized : ndarray of float32 in [0, 1]

    Notes
    -----
    ``x' = clip((x - p_lo) / (p_hi - p_lo), 0, 1)`` with ``p_lo, p_hi`` the percentiles of
    ``x[x != 0]`` (linear interpolation). Background voxels (0) stay 0 whenever ``p_lo >= 0``,
    as in skull-stripped MRI. Clipping the top 0.5 % keeps single bright outliers (vessels,
    artefacts) from compressing the lesion contrast.
    """
    volume = np.asarray(volume)
    if not np.issubdtype(volume.dtype, np.number) or np.iscomplexobj(volume):
        raise TypeError(f"expected a real-valued array, got dtype {volume.dtype}")
    if not 0 <= lower_percentile < upper_percentile <= 100:
        raise ValueError(
            f"expected 0 <= lower_percentile < upper_percentile <= 100, got {lower_percentile}, {upper_percentile}"
        )
    nonzero = volume[volume != 0]
    if nonzero.size == 0:
        raise ValueError("volume has no nonzero voxels to normalize")
    lo, hi = np.percentile(nonzero.astype(np.float64), [lower_percentile, upper_percentile])
    if hi <= lo:
        raise ValueError(f"volume is constant between the percentiles ({lo:g} .. {hi:g}); cannot scale")
    scaled = (volume.astype(np.float64) - lo) / (hi - lo)
    return np.clip(scaled, 0.0, 1.0).astype(np.float32)


def quantize_8bit(normalized: np.ndarray) -> np.ndarray:
    """The 8-bit image the radiomic features use: ``round(255 * x)`` as uint8.

    Parameters
    ----------
    normalized : ndarray
        Values in [0, 1] (from :func:`normalize_intensity`).

    Returns
    -------
    image : ndarray of uint8

    Notes
    -----
    ``np.rint`` rounds halves to even; with float32 inputs exact halves essentially never occur.
    """
    normalized = np.asarray(normalized)
    if normalized.size and (np.nanmin(normalized) < 0 or np.nanmax(normalized) > 1):
        raise ValueError(
            f"expected values in [0, 1], got range [{np.nanmin(normalized):g}, {np.nanmax(normalized):g}]"
        )
    return np.rint(255.0 * normalized.astype(np.float64)).astype(np.uint8)
