"""How much a cohort's FLAIR contrast and lesion burden resemble real MS scans.

Plain functions on arrays, one code path for the synthetic demo subjects and for real patients
(``benchmarks/calibrate_demo.py`` puts them side by side): lesion contrast (:func:`lesion_contrast`,
:func:`lesion_auc`), lesion burden (:func:`lesion_burden`), MNI152 tissue maps on another MNI-space
grid (:func:`mni_tissue_maps`) and the FLAIR-threshold baseline (:func:`lesion_slices`,
:func:`threshold_baseline`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import ndimage

from radfusion.distributions import auc
from radfusion.evaluate import CONNECTIVITY_RANK, _sized_components, best_flair_threshold, score_subject
from radfusion.slices import minmax_scale, select_slices

__all__ = ["lesion_auc", "lesion_contrast", "lesion_burden", "mni_tissue_maps", "lesion_slices", "threshold_baseline"]


def _groups(values: np.ndarray, brain: np.ndarray, lesion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    values, brain, lesion = np.asarray(values), np.asarray(brain, dtype=bool), np.asarray(lesion, dtype=bool)
    if not values.shape == brain.shape == lesion.shape:
        raise ValueError(f"expected arrays of one shape, got {values.shape}, {brain.shape}, {lesion.shape}")
    other = brain & ~lesion
    return values[lesion].astype(np.float64), values[other].astype(np.float64), other


def lesion_auc(values: np.ndarray, brain: np.ndarray, lesion: np.ndarray) -> float:
    """AUC of a voxel map separating lesion voxels from non-lesion brain voxels.

    Parameters
    ----------
    values : ndarray
        A voxel map (normalized FLAIR, CR, RE).
    brain, lesion : ndarray of bool or {0, 1}
        Brain and lesion masks of the same shape.

    Returns
    -------
    auc : float
        :func:`radfusion.distributions.auc` of ``values[lesion]`` vs ``values[brain & ~lesion]``
        (the groups of :func:`radfusion.distributions.group_histograms`: every lesion voxel is
        inside, whatever the brain mask says).
    """
    inside, outside, _ = _groups(values, brain, lesion)
    return auc(inside, outside)


def lesion_contrast(
    flair: np.ndarray,
    brain: np.ndarray,
    lesion: np.ndarray,
    wm: np.ndarray | None = None,
    gm: np.ndarray | None = None,
    *,
    tissue_threshold: float = 0.9,
) -> dict[str, float]:
    """Lesion contrast of a normalized FLAIR against the rest of the brain.

    Parameters
    ----------
    flair : ndarray
        Normalized FLAIR (:func:`radfusion.normalize.normalize_intensity`).
    brain, lesion : ndarray of bool or {0, 1}
        Brain mask (:func:`radfusion.normalize.brain_mask` of the imported FLAIR) and lesion mask.
    wm, gm : ndarray of float, optional
        White- and grey-matter probabilities on the FLAIR's grid; without them the ratios are NaN.
    tissue_threshold : float, optional
        WM (GM) = brain voxels outside lesions with probability ``>= tissue_threshold``.

    Returns
    -------
    contrast : dict
        ``auc`` (:func:`lesion_auc`), ``lesion_median`` (median FLAIR of the lesion voxels),
        ``bright_count`` and ``bright_share`` (the non-lesion brain voxels strictly brighter than
        ``lesion_median``: their number and their percentage of all non-lesion brain voxels),
        ``wm_median``, ``gm_median``, ``lesion_wm_ratio = lesion_median / wm_median``,
        ``gm_wm_ratio = gm_median / wm_median``, ``lesion_voxels``, ``nonlesion_voxels``.
    """
    inside, outside, other = _groups(flair, brain, lesion)
    if inside.size == 0 or outside.size == 0:
        raise ValueError(f"need lesion and non-lesion brain voxels, got {inside.size} and {outside.size}")
    lesion_median = float(np.median(inside))
    bright = int(np.count_nonzero(outside > lesion_median))
    median = {}
    for name, probability in (("wm", wm), ("gm", gm)):
        values = np.zeros(0)
        if probability is not None:
            if np.shape(probability) != other.shape:
                raise ValueError(f"expected {name} of shape {other.shape}, got {np.shape(probability)}")
            values = np.asarray(flair)[other & (np.asarray(probability) >= tissue_threshold)]
        median[name] = float(np.median(values)) if values.size else float("nan")
    nan = float("nan")
    return {
        "auc": auc(inside, outside), "lesion_median": lesion_median,
        "bright_count": bright, "bright_share": 100.0 * bright / outside.size,
        "wm_median": median["wm"], "gm_median": median["gm"],
        "lesion_wm_ratio": lesion_median / median["wm"] if median["wm"] > 0 else nan,
        "gm_wm_ratio": median["gm"] / median["wm"] if median["wm"] > 0 else nan,
        "lesion_voxels": int(inside.size), "nonlesion_voxels": int(outside.size),
    }


def lesion_burden(
    mask: np.ndarray,
    voxel_volume_mm3: float,
    *,
    min_volume_mm3: float = 3.0,
    small_volume_mm3: float = 14.0,
    connectivity: int = 26,
) -> dict[str, float]:
    """Number and sizes of the lesions of a 3D mask.

    Parameters
    ----------
    mask : ndarray, shape (X, Y, Z)
        Binary lesion mask.
    voxel_volume_mm3 : float
        Volume of one voxel (``|det A[:3, :3]|`` of the affine).
    min_volume_mm3 : float, optional
        Lesions are the connected components of at least this volume, in mm^3, so that the rule
        holds across voxel sizes (3 mm^3: three voxels of 1 mm).
    small_volume_mm3 : float, optional
        Lesions below this volume count as small.
    connectivity : {6, 18, 26}
        3D neighbourhood of a lesion's voxels.

    Returns
    -------
    burden : dict
        ``lesions`` (their number), ``total_volume_ml`` (all mask voxels, small components
        included), ``median_lesion_mm3`` (NaN without lesions), ``small_share`` (percentage of
        the lesions below ``small_volume_mm3``; NaN without lesions).
    """
    mask = np.asarray(mask).astype(bool)
    if mask.ndim != 3:
        raise ValueError(f"expected a 3D mask, got shape {mask.shape}")
    if not voxel_volume_mm3 > 0:
        raise ValueError(f"expected a positive voxel volume, got {voxel_volume_mm3}")
    if connectivity not in CONNECTIVITY_RANK:
        raise ValueError(f"connectivity must be one of {sorted(CONNECTIVITY_RANK)}, got {connectivity}")
    structure = ndimage.generate_binary_structure(3, CONNECTIVITY_RANK[connectivity])
    # The tolerance keeps 3 voxels of 1 mm^3 (or of 0.5^3 mm, 24 voxels) at 3 mm^3.
    _, sizes = _sized_components(mask, structure, int(np.ceil(min_volume_mm3 / voxel_volume_mm3 - 1e-9)))
    volumes = sizes * float(voxel_volume_mm3)
    return {
        "lesions": int(volumes.size),
        "total_volume_ml": float(np.count_nonzero(mask) * voxel_volume_mm3 / 1000.0),
        "median_lesion_mm3": float(np.median(volumes)) if volumes.size else float("nan"),
        "small_share": float(100.0 * np.mean(volumes < small_volume_mm3)) if volumes.size else float("nan"),
    }


def mni_tissue_maps(shape, affine: np.ndarray, template=None) -> tuple[np.ndarray, np.ndarray]:
    """The MNI152 template's GM and WM probabilities on another grid in MNI space.

    Parameters
    ----------
    shape : tuple of 3 int
        The target grid's shape.
    affine : ndarray, shape (4, 4)
        The target grid's voxel-to-MNI (mm) affine.
    template : object with ``gm``, ``wm`` and ``affine``, optional
        Default :func:`radfusion.synth.load_template` (nilearn's MNI152 2009 grid).

    Returns
    -------
    gm, wm : ndarray of float32, shape ``shape``
        Trilinear interpolation at each target voxel's world position
        (:func:`radfusion.synth.warp.sample_map`); 0 outside the template.
    """
    if template is None:
        from radfusion.synth import load_template

        template = load_template()
    from radfusion.synth.warp import sample_map, transform_points

    shape = tuple(int(n) for n in shape)
    to_template = np.linalg.inv(np.asarray(template.affine, dtype=np.float64)) @ np.asarray(affine, dtype=np.float64)
    voxels = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij"))
    points = transform_points(voxels, to_template)
    del voxels
    gm, wm = (sample_map(np.asarray(m, dtype=np.float32), points) for m in (template.gm, template.wm))
    return gm, wm


def lesion_slices(
    flair: np.ndarray, mask: np.ndarray, brain: np.ndarray, *, stride: int = 1, min_lesion_voxels: int = 1
) -> dict[str, np.ndarray]:
    """The FLAIR channel of a subject's exported lesion slices, as the slice export makes it.

    Parameters
    ----------
    flair, mask, brain : ndarray, shape (X, Y, Z)
        Normalized FLAIR, lesion mask and brain mask.
    stride, min_lesion_voxels : int, optional
        Config ``slices`` (:func:`radfusion.slices.select_slices`, ``brain_fraction`` 0).

    Returns
    -------
    slices : dict
        ``flair`` (n, X, Y) float32 (each slice :func:`radfusion.slices.minmax_scale`-d), ``masks``
        (n, X, Y) uint8, ``slice_index`` (n,): channel 0, masks and indices of ``export_slices``.
    """
    mask = np.asarray(mask)
    index = select_slices(mask, np.asarray(brain, dtype=bool), min_lesion_voxels=min_lesion_voxels, stride=stride)
    images = np.zeros((index.size, *mask.shape[:2]), np.float32)
    for i, k in enumerate(index):
        images[i] = minmax_scale(np.asarray(flair)[:, :, k])
    masks = np.ascontiguousarray(np.moveaxis(mask[:, :, index], 2, 0)).astype(np.uint8)
    return {"flair": images, "masks": masks, "slice_index": index}


def threshold_baseline(slices: Mapping[str, Mapping[str, np.ndarray]]) -> pd.DataFrame:
    """The FLAIR-threshold baseline, leave one out: ``evaluate_baselines`` with one fold per subject.

    Parameters
    ----------
    slices : mapping of subject to the output of :func:`lesion_slices`

    Returns
    -------
    table : DataFrame
        One row per subject: ``subject``, ``threshold`` (:func:`radfusion.evaluate.best_flair_threshold`
        on the other subjects' slices; NaN alone), ``dice`` (of ``flair >= threshold`` on its slices,
        pooled as :func:`radfusion.evaluate.score_subject` does), ``own_threshold`` and ``own_dice``
        (the best threshold on the subject's own slices).
    """
    rows = []
    for subject, arrays in slices.items():
        others = [s for s in slices if s != subject]
        threshold = dice = float("nan")
        if others:
            threshold, _ = best_flair_threshold([slices[s]["flair"] for s in others],
                                                [slices[s]["masks"] for s in others])
            predicted = (arrays["flair"] >= threshold).astype(np.uint8)
            dice = score_subject(predicted, arrays["masks"], subject=subject, fold=0,
                                 slice_index=arrays["slice_index"])[0]["dice"]
        own = best_flair_threshold([arrays["flair"]], [arrays["masks"]])
        rows.append((subject, threshold, dice, *own))
    return pd.DataFrame(rows, columns=["subject", "threshold", "dice", "own_threshold", "own_dice"])
