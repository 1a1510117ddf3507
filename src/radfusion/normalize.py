"""Brain mask and intensity normalization of FLAIR volumes (SPEC stage 2)."""

from __future__ import annotations

import os
import warnings

import numpy as np


def _check_real(volume: np.ndarray) -> np.ndarray:
    volume = np.asarray(volume)
    if not np.issubdtype(volume.dtype, np.number) or np.iscomplexobj(volume):
        raise TypeError(f"expected a real-valued array, got dtype {volume.dtype}")
    return volume


def brain_mask(flair: np.ndarray) -> np.ndarray:
    """The brain (foreground) of a skull-stripped FLAIR: its nonzero voxels.

    Parameters
    ----------
    flair : ndarray
        The imported FLAIR (before normalization), background exactly 0.

    Returns
    -------
    brain : ndarray of bool
        ``flair != 0``, same shape.

    Notes
    -----
    The one definition of "brain" of every stage: the voxels normalization scales, the
    non-lesion group of the feature distributions (brain minus lesion), the slices the slice
    export may add as lesion-free, the slices and the background of a prediction, the crop of
    the figures. Negative voxels at the brain's edge (left by bias correction and spline
    resampling) are brain. It is taken from the imported FLAIR, never from the normalized one:
    there a brain voxel at or below the lower percentile is 0 as well. A FLAIR that is not
    skull-stripped has no zero background and is brain everywhere (:func:`check_background`).
    """
    return _check_real(flair) != 0


def check_background(brain: np.ndarray, *, subject: str | None = None, path: str | os.PathLike | None = None) -> None:
    """Warn, naming the subject and file, when a FLAIR has no zero background.

    Parameters
    ----------
    brain : ndarray of bool
        The brain mask (:func:`brain_mask`).
    subject : str, optional
        Subject ID, named in the warning.
    path : path-like, optional
        The FLAIR's file, named in the warning.

    Notes
    -----
    The workflow assumes skull-stripped images (background exactly 0). Without any zero voxel
    the brain mask is the whole volume: the feature table's non-lesion group then holds skull
    and air, and every axial slice counts as a brain slice. This is allowed, with a
    ``UserWarning``.
    """
    brain = np.asarray(brain, dtype=bool)
    if brain.size and brain.all():
        where = ", ".join(
            part for part in (f"subject '{subject}'" if subject else "", f"file '{path}'" if path else "") if part
        )
        warnings.warn(
            f"{where or 'FLAIR'}: no voxel is 0, so the FLAIR does not look skull-stripped; every voxel counts "
            f"as brain, and the features' non-lesion group includes skull and air",
            stacklevel=2,
        )


def normalize_intensity(
    volume: np.ndarray,
    lower_percentile: float = 0.5,
    upper_percentile: float = 99.5,
    *,
    brain: np.ndarray | None = None,
) -> np.ndarray:
    """Clip the brain to percentiles of its voxels and scale to [0, 1]; the background stays 0.

    Parameters
    ----------
    volume : ndarray
        FLAIR intensities (any real dtype), background 0.
    lower_percentile, upper_percentile : float
        Percentiles (0-100) of the brain voxels that map to 0 and 1.
    brain : ndarray of bool, optional
        The subject's brain mask (:func:`radfusion.skullstrip.subject_brain_mask`, the
        workflow's ``results/normalized/{subject}/brain.nii.gz``), same shape; ``None``: the
        nonzero voxels (:func:`brain_mask`), the skull-stripped convention.

    Returns
    -------
    normalized : ndarray of float32 in [0, 1]
        Exactly 0 outside the brain.

    Notes
    -----
    ``x' = clip((x - p_lo) / (p_hi - p_lo), 0, 1)`` on the brain voxels, with
    ``p_lo, p_hi`` their percentiles (linear interpolation); every other voxel is 0 whatever
    the sign of ``p_lo`` (a real FLAIR's negative edge voxels can make ``p_lo < 0``, which
    would otherwise lift the background above 0). Brain voxels at or below ``p_lo`` are 0 as
    well, so ``x' > 0`` is not the brain: use :func:`brain_mask` of the input. Clipping the top
    0.5 % keeps single bright outliers (vessels, artefacts) from compressing the lesion contrast.
    """
    volume = _check_real(volume)
    if not 0 <= lower_percentile < upper_percentile <= 100:
        raise ValueError(
            f"expected 0 <= lower_percentile < upper_percentile <= 100, got {lower_percentile}, {upper_percentile}"
        )
    if brain is None:
        brain = brain_mask(volume)
    else:
        brain = np.asarray(brain, dtype=bool)
        if brain.shape != volume.shape:
            raise ValueError(f"expected a brain mask of the volume's shape {volume.shape}, got {brain.shape}")
    values = volume[brain].astype(np.float64)
    if values.size == 0:
        raise ValueError("the brain mask holds no voxel to normalize")
    lo, hi = np.percentile(values, [lower_percentile, upper_percentile])
    if hi <= lo:
        raise ValueError(f"volume is constant between the percentiles ({lo:g} .. {hi:g}); cannot scale")
    normalized = np.zeros(volume.shape, dtype=np.float32)
    normalized[brain] = np.clip((values - lo) / (hi - lo), 0.0, 1.0)
    return normalized


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
