"""Lesion masks, counts and volumes for a new patient from the trained fold models (SPEC stage 12).

A new FLAIR (NIfTI file or DICOM folder) goes through the steps of training: import (canonical
RAS+ orientation, checks), percentile normalization, CR and RE maps (only when the model uses
them), per-slice min-max scaling, bilinear resize to the model's size. Every axial brain slice
(any nonzero FLAIR voxel) is predicted by each fold model of one (model, input) pair; the fold
models' sigmoid probabilities are averaged, thresholded at the model's size and the mask resized
back with nearest neighbour, as the evaluation does (SPEC stage 8). The mask is written on the
input's own grid and affine; lesions are the mask's 3D connected components.

Outputs of :func:`predict_patient` in the output folder (names in ``OUTPUT_FILES``):

- ``lesion_mask.nii.gz``: uint8 {0, 1}, the input's shape, orientation, affine and header;
- ``lesion_summary.csv``: one row: lesion count, total volume (mL), the model used, settings;
- ``lesions.csv``: one row per lesion, largest first: voxels, volume (mL), centroid;
- ``overlay.png``: the axial slices with the most lesion, FLAIR grey, predicted mask outlined.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

from radfusion.io import (
    InputError,
    atomic_output,
    check_id_table,
    dicom_to_nifti,
    import_subject,
    load_volume,
    sidecar_path,
)

log = logging.getLogger(__name__)

OUTPUT_FILES = {
    "mask": "lesion_mask.nii.gz",
    "summary": "lesion_summary.csv",
    "lesions": "lesions.csv",
    "overlay": "overlay.png",
}
SUMMARY_COLUMNS = (
    "patient", "flair", "model", "input", "folds", "cv_dice", "threshold", "lesion_count", "total_volume_ml",
    "lesion_voxels", "voxel_volume_ml", "voxel_size_x_mm", "voxel_size_y_mm", "voxel_size_z_mm",
    "brain_slices",
)
LESION_COLUMNS = ("lesion", "voxels", "volume_ml", "centroid_i", "centroid_j", "centroid_k", "x_mm", "y_mm", "z_mm")
MODEL_ORDER = ("resnext_unet", "attention_unet")
INPUT_ORDER = ("mri", "mri_radiomics")
# The study's images are about 1 mm isotropic (demo cohort 0.8-1.0 mm, the paper's cohort alike).
# Thicker slices or strongly anisotropic axial pixels change how lesions look in a 2D slice.
MAX_SLICE_THICKNESS_MM = 3.0
MAX_INPLANE_ANISOTROPY = 2.0


# --- choosing the fold models ------------------------------------------------------------------


def cross_validated_dice(eval_dir: str | os.PathLike) -> pd.DataFrame:
    """Cross-validated Dice of every (model, input) evaluated under ``eval_dir``.

    Parameters
    ----------
    eval_dir : path-like
        ``results/eval``, holding ``{model}/{input}/fold{fold}/subjects.tsv``.

    Returns
    -------
    runs : DataFrame
        One row per (model, input) with columns ``model``, ``input``, ``folds`` (number of
        folds found), ``subjects`` and ``cv_dice``, sorted by ``cv_dice`` descending (ties:
        the project's model and input order).

    Notes
    -----
    ``cv_dice`` is the mean over folds of each fold's mean test-subject Dice: the "mean" of the
    study's Tables 1 and 3, so the pair chosen is the one those tables rank first.
    """
    eval_dir = Path(eval_dir)
    rows = []
    for run in sorted(p for p in eval_dir.glob("*/*") if p.is_dir()):
        fold_tables = sorted(run.glob("fold*/subjects.tsv"))
        fold_tables = [p for p in fold_tables if re.fullmatch(r"fold\d+", p.parent.name)]
        if not fold_tables:
            continue
        fold_means, n_subjects = [], 0
        for table_path in fold_tables:
            try:
                table = pd.read_csv(table_path, sep="\t")
            except (OSError, ValueError, pd.errors.ParserError) as err:
                raise InputError(f"file '{table_path}': cannot be read as an evaluation table ({err})") from err
            if "dice" not in table.columns:
                raise InputError(f"file '{table_path}': expected a 'dice' column, got columns {list(table.columns)}")
            if len(table):
                fold_means.append(float(table["dice"].mean()))
                n_subjects += len(table)
        if fold_means:
            rows.append(
                {
                    "model": run.parent.name,
                    "input": run.name,
                    "folds": len(fold_means),
                    "subjects": n_subjects,
                    "cv_dice": float(np.mean(fold_means)),
                }
            )
    runs = pd.DataFrame(rows, columns=["model", "input", "folds", "subjects", "cv_dice"])
    order = {name: i for i, name in enumerate(MODEL_ORDER + INPUT_ORDER)}
    runs["_model_order"] = runs["model"].map(lambda m: order.get(m, len(order)))
    runs["_input_order"] = runs["input"].map(lambda i: order.get(i, len(order)))
    runs = runs.sort_values(["cv_dice", "_model_order", "_input_order"], ascending=[False, True, True], kind="stable")
    return runs.drop(columns=["_model_order", "_input_order"]).reset_index(drop=True)


def choose_model_input(
    eval_dir: str | os.PathLike | None,
    *,
    model: str = "best",
    input_name: str = "best",
    candidates: Sequence[tuple[str, str]] | None = None,
) -> tuple[str, str, float]:
    """The (model, input) pair to predict with: named, or the best cross-validated one.

    Parameters
    ----------
    eval_dir : path-like or None
        ``results/eval`` of the training run; read only when ``model`` or ``input_name`` is
        ``"best"`` (and for the reported Dice when it exists).
    model : str
        ``"best"`` or a model name (``resnext_unet``, ``attention_unet``).
    input_name : str
        ``"best"`` or an input name (``mri``, ``mri_radiomics``).
    candidates : sequence of (model, input), optional
        The pairs ``"best"`` may choose from (e.g. the config's models and inputs); default:
        every pair evaluated under ``eval_dir``.

    Returns
    -------
    model, input_name : str
    cv_dice : float
        The pair's cross-validated Dice (:func:`cross_validated_dice`); NaN when not evaluated.

    Notes
    -----
    ``"best"`` picks, among the evaluated pairs that match the named part (a named model with
    ``input_name="best"`` picks that model's best input), the highest cross-validated mean
    subject Dice (config keys ``predict.model`` and ``predict.input``).
    """
    wants_best = model == "best" or input_name == "best"
    runs = None
    if eval_dir is not None and Path(eval_dir).is_dir():
        runs = cross_validated_dice(eval_dir)
    if wants_best:
        if runs is None or runs.empty:
            raise InputError(
                f"folder '{eval_dir}': no evaluation results (*/*/fold*/subjects.tsv) to choose the best "
                f"model and input from; run the evaluation first or name --model and --input"
            )
        allowed = runs
        if candidates is not None:
            pairs = {(str(m), str(i)) for m, i in candidates}
            allowed = allowed[[(m, i) in pairs for m, i in zip(allowed["model"], allowed["input"])]]
        if model != "best":
            allowed = allowed[allowed["model"] == model]
        if input_name != "best":
            allowed = allowed[allowed["input"] == input_name]
        if allowed.empty:
            evaluated = ", ".join(f"{m}/{i}" for m, i in zip(runs["model"], runs["input"]))
            raise InputError(
                f"folder '{eval_dir}': no evaluation results for model '{model}', input '{input_name}'; "
                f"evaluated: {evaluated}"
            )
        best = allowed.iloc[0]
        return str(best["model"]), str(best["input"]), float(best["cv_dice"])
    cv_dice = float("nan")
    if runs is not None:
        match = runs[(runs["model"] == model) & (runs["input"] == input_name)]
        if not match.empty:
            cv_dice = float(match["cv_dice"].iloc[0])
    return model, input_name, cv_dice


def fold_model_paths(models_dir: str | os.PathLike, model: str, input_name: str) -> list[Path]:
    """The ``fold{k}/model.pt`` files of one (model, input) under ``models_dir``, in fold order.

    Raises :class:`InputError` naming the folder when there are none.
    """
    run = Path(models_dir) / model / input_name
    paths = [p for p in run.glob("fold*/model.pt") if re.fullmatch(r"fold\d+", p.parent.name)]
    if not paths:
        raise InputError(
            f"folder '{run}': no trained fold models (fold*/model.pt); train the {model}/{input_name} run first"
        )
    return sorted(paths, key=lambda p: int(p.parent.name[len("fold") :]))


# --- orientation -------------------------------------------------------------------------------


def canonical_to_original(data: np.ndarray, original_affine: np.ndarray) -> np.ndarray:
    """Map a volume from the closest canonical (RAS+) orientation back to an image's own axes.

    Parameters
    ----------
    data : ndarray, shape (X, Y, Z)
        A volume on the grid of ``nibabel.as_closest_canonical(image)`` (as the import makes).
    original_affine : ndarray, shape (4, 4)
        The affine of the image as it was read.

    Returns
    -------
    original : ndarray
        ``data`` with axes permuted and flipped so that it lies on the original image's voxel
        grid (same shape; write it with ``original_affine``).

    Notes
    -----
    The inverse of ``as_closest_canonical``: nibabel's ``io_orientation`` of the original affine,
    ``ornt_transform`` from RAS to it, ``apply_orientation``. Axis flips and permutations only;
    nothing is resampled.
    """
    data = np.asarray(data)
    if data.ndim != 3:
        raise ValueError(f"expected a 3D volume, got shape {data.shape}")
    original = nib.orientations.io_orientation(np.asarray(original_affine, dtype=np.float64))
    canonical = nib.orientations.axcodes2ornt(("R", "A", "S"))
    transform = nib.orientations.ornt_transform(canonical, original)
    return np.ascontiguousarray(nib.orientations.apply_orientation(data, transform))


# --- prediction --------------------------------------------------------------------------------


def brain_slice_indices(flair: np.ndarray) -> np.ndarray:
    """Axial indices ``k`` of the slices ``flair[:, :, k]`` holding at least one nonzero voxel."""
    flair = np.asarray(flair)
    if flair.ndim != 3:
        raise ValueError(f"expected a 3D volume, got shape {flair.shape}")
    return np.flatnonzero(np.any(flair != 0, axis=(0, 1))).astype(int)


def slice_stack(volumes: Sequence[np.ndarray], slice_index: Sequence[int]) -> np.ndarray:
    """Axial slices of several volumes as model channels, each min-max scaled per slice.

    Parameters
    ----------
    volumes : sequence of ndarray, shape (X, Y, Z)
        The channels in the model's order (FLAIR; or FLAIR, CR, RE).
    slice_index : sequence of int
        Axial indices.

    Returns
    -------
    images : ndarray of float32, shape (n, len(volumes), X, Y)

    Notes
    -----
    The same per-slice scaling as the slice export (:func:`radfusion.slices.minmax_scale`).
    """
    from radfusion.slices import minmax_scale

    slice_index = np.asarray(slice_index, dtype=int)
    shape = np.shape(volumes[0])
    images = np.zeros((slice_index.size, len(volumes), shape[0], shape[1]), dtype=np.float32)
    for c, volume in enumerate(volumes):
        if np.shape(volume) != shape:
            raise ValueError(f"expected channel volumes of one shape {shape}, got {np.shape(volume)}")
        for i, k in enumerate(slice_index):
            images[i, c] = minmax_scale(np.asarray(volume)[:, :, k])
    return images


def ensemble_slice_masks(
    models: Sequence,
    images: np.ndarray,
    *,
    image_size: int,
    threshold: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Average several models' probabilities on slices and threshold them at the original size.

    Parameters
    ----------
    models : sequence of torch.nn.Module
        The fold models (logits out), already on their device.
    images : ndarray, shape (n, C, H0, W0)
        The models' input channels, per-slice min-max scaled.
    image_size : int
        The models' input size.
    threshold : float
        On the averaged sigmoid probability (``p > threshold`` is lesion, as in the evaluation).

    Returns
    -------
    masks : ndarray of uint8, shape (n, H0, W0)
    probabilities : ndarray of float32, shape (n, image_size, image_size)
        The fold average at the models' size.

    Notes
    -----
    Bilinear resize to ``image_size``, each model's sigmoid, the mean over models, the threshold
    at the models' size, then nearest-neighbour resize back to (H0, W0): the evaluation's
    pipeline (:func:`radfusion.evaluate.predict_slice_masks`) with the fold average inserted,
    so the cross-validated Dice describes this procedure up to the ensembling.
    """
    import torch

    from radfusion.evaluate import predict_probabilities
    from radfusion.slices import resize_images, resize_masks

    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"expected images (n, C, H, W), got shape {images.shape}")
    if not models:
        raise ValueError("expected at least one model, got none")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"expected a threshold in (0, 1), got {threshold}")
    height, width = images.shape[-2:]
    x = resize_images(torch.from_numpy(np.ascontiguousarray(images)), image_size)
    total = torch.zeros((images.shape[0], 1, image_size, image_size))
    for model in models:
        total += predict_probabilities(model, x)
    mean = total / len(models)
    masks = resize_masks((mean > threshold).float(), (height, width))[:, 0].numpy().astype(np.uint8)
    return masks, mean[:, 0].numpy()


def predict_lesion_mask(
    flair: np.ndarray,
    models: Sequence,
    *,
    channels: Sequence[int] = (0,),
    image_size: int = 256,
    threshold: float = 0.5,
    lower_percentile: float = 0.5,
    upper_percentile: float = 99.5,
    cr: Mapping | None = None,
    re: Mapping | None = None,
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Lesion mask of a canonical FLAIR volume from the averaged predictions of fold models.

    Parameters
    ----------
    flair : ndarray, shape (X, Y, Z)
        Imported FLAIR in the canonical orientation (axial slices ``flair[:, :, k]``).
    models : sequence of torch.nn.Module
        The fold models of one (model, input), evaluation mode, on their device.
    channels : sequence of int
        The models' channels among (FLAIR, CR, RE): ``(0,)`` for ``mri``, ``(0, 1, 2)`` for
        ``mri_radiomics``.
    image_size : int
        The models' input size.
    threshold : float
        On the fold-averaged probability (config ``evaluation.threshold``).
    lower_percentile, upper_percentile : float
        Intensity normalization, as in training (config ``normalize``).
    cr, re : mapping, optional
        Radiomics parameters, as in training (config ``radiomics.cr`` and ``radiomics.re``);
        the maps are computed only when ``channels`` uses them.
    threads : int
        Threads of the radiomics.

    Returns
    -------
    mask : ndarray of uint8, shape (X, Y, Z)
        Predicted lesions on the canonical grid.
    normalized : ndarray of float32, shape (X, Y, Z)
        The normalized FLAIR (for display).

    Notes
    -----
    SPEC stages 2, 3, 5 and 8 applied to every axial brain slice (:func:`brain_slice_indices`),
    not only to lesion slices as in the evaluation. Voxels where the FLAIR is 0 (background of a
    skull-stripped image) are never lesion: the nearest-neighbour upsampling of a mask from the
    model's size can otherwise spill a pixel over the brain's edge.
    """
    from radfusion.normalize import normalize_intensity, quantize_8bit
    from radfusion.radiomics import radiomics_volume

    flair = np.asarray(flair)
    channels = [int(c) for c in channels]
    if not channels or not set(channels) <= {0, 1, 2}:
        raise ValueError(f"expected channels among 0 (FLAIR), 1 (CR), 2 (RE), got {channels}")
    normalized = normalize_intensity(flair, lower_percentile=lower_percentile, upper_percentile=upper_percentile)
    volumes = [normalized, None, None]
    if {1, 2} & set(channels):
        started = time.perf_counter()
        volumes[1], volumes[2] = radiomics_volume(
            quantize_8bit(normalized), cr=dict(cr or {}), re=dict(re or {}), threads=threads
        )
        log.info("CR and RE maps of %d slices in %.1f s", flair.shape[2], time.perf_counter() - started)
    index = brain_slice_indices(flair)
    mask = np.zeros(flair.shape, dtype=np.uint8)
    if index.size:
        images = slice_stack([volumes[c] for c in channels], index)
        started = time.perf_counter()
        slice_masks, _ = ensemble_slice_masks(models, images, image_size=image_size, threshold=threshold)
        seconds = time.perf_counter() - started
        log.info("%d brain slices predicted by %d fold models in %.1f s", index.size, len(models), seconds)
        mask[:, :, index] = np.moveaxis(slice_masks, 0, 2)
    mask[flair == 0] = 0
    return mask, normalized


# --- lesions -----------------------------------------------------------------------------------


def voxel_volume_ml(affine: np.ndarray) -> float:
    """Volume of one voxel in mL: ``|det(A[:3, :3])| / 1000`` (the affine maps voxels to mm)."""
    return float(abs(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3]))) / 1000.0


def lesion_table(mask: np.ndarray, affine: np.ndarray, *, connectivity: int = 26) -> pd.DataFrame:
    """The lesions of a binary mask: 3D connected components with their volumes and centroids.

    Parameters
    ----------
    mask : ndarray, shape (X, Y, Z)
        Binary lesion mask.
    affine : ndarray, shape (4, 4)
        Voxel-to-world (mm) affine of the mask.
    connectivity : {26, 18, 6}
        Neighbours that join two lesion voxels into one lesion: 26 (faces, edges and corners),
        18 (faces and edges) or 6 (faces).

    Returns
    -------
    lesions : DataFrame
        One row per lesion, largest first (ties: the order of their first voxel), columns
        ``LESION_COLUMNS``: ``lesion`` (1, 2, ...), ``voxels``, ``volume_ml`` (voxels times
        :func:`voxel_volume_ml`), ``centroid_i/j/k`` (the centroid's voxel indices, rounded),
        ``x_mm/y_mm/z_mm`` (the centroid in the affine's world coordinates, mm).

    Notes
    -----
    26-connectivity by default: voxels that touch only at an edge or a corner belong to one
    lesion, so a thin oblique lesion is not split into several; lesion counts are the lowest of
    the three choices.
    """
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"expected a 3D mask, got shape {mask.shape}")
    rank = {6: 1, 18: 2, 26: 3}.get(connectivity)
    if rank is None:
        raise ValueError(f"expected connectivity 6, 18 or 26, got {connectivity}")
    affine = np.asarray(affine, dtype=np.float64)
    labels, n = ndimage.label(mask != 0, structure=ndimage.generate_binary_structure(3, rank))
    if n == 0:
        return pd.DataFrame(columns=list(LESION_COLUMNS))
    coords = np.nonzero(labels)
    label_of = labels[coords]
    voxels = np.bincount(label_of, minlength=n + 1)[1:].astype(np.int64)
    centroids = np.stack(
        [np.bincount(label_of, weights=c, minlength=n + 1)[1:] / voxels for c in coords], axis=1
    )
    world = centroids @ affine[:3, :3].T + affine[:3, 3]
    order = np.argsort(-voxels, kind="stable")
    table = pd.DataFrame(
        {
            "lesion": np.arange(1, n + 1),
            "voxels": voxels[order],
            "volume_ml": voxels[order] * voxel_volume_ml(affine),
            "centroid_i": np.rint(centroids[order, 0]).astype(int),
            "centroid_j": np.rint(centroids[order, 1]).astype(int),
            "centroid_k": np.rint(centroids[order, 2]).astype(int),
            "x_mm": world[order, 0],
            "y_mm": world[order, 1],
            "z_mm": world[order, 2],
        }
    )
    return table


# --- overlay -----------------------------------------------------------------------------------


def plot_lesion_overlay(
    flair: np.ndarray,
    mask: np.ndarray,
    *,
    n_slices: int = 4,
    title: str | None = None,
    panel_size: float = 2.6,
):
    """The axial slices with the most predicted lesion: FLAIR grey, lesions tinted and outlined.

    Parameters
    ----------
    flair : ndarray, shape (X, Y, Z)
        FLAIR in the canonical RAS+ orientation (normalized to [0, 1]).
    mask : ndarray, shape (X, Y, Z)
        Predicted lesion mask on the same grid.
    n_slices : int
        Number of slices shown: those with the most lesion voxels, in order
        from inferior to superior. Without any lesion, the slice with the most brain.
    title : str, optional
        Figure title.
    panel_size : float
        Width of one panel in inches.

    Returns
    -------
    fig : matplotlib.figure.Figure

    Notes
    -----
    Radiological convention, as on clinical viewers: anterior up, the patient's right on the
    viewer's left (marked R and L). Each panel is cropped to the brain.
    """
    import matplotlib

    import radfusion.figures  # noqa: F401  (selects matplotlib's Agg backend before pyplot)
    import matplotlib.pyplot as plt

    flair = np.asarray(flair, dtype=np.float64)
    mask = np.asarray(mask) != 0
    if flair.ndim != 3 or mask.shape != flair.shape:
        raise ValueError(f"expected 3D FLAIR and mask of one shape, got {flair.shape} and {mask.shape}")
    if n_slices < 1:
        raise ValueError(f"expected n_slices >= 1, got {n_slices}")
    per_slice = mask.sum(axis=(0, 1))
    if per_slice.any():
        ranked = np.argsort(-per_slice, kind="stable")
        chosen = np.sort([k for k in ranked[:n_slices] if per_slice[k] > 0])
    else:
        chosen = np.array([int(np.argmax((flair > 0).sum(axis=(0, 1))))])
    # at least two panels wide, so that a title of two short lines fits above a single slice
    width = panel_size * max(len(chosen), 2)
    fig, axes = plt.subplots(1, len(chosen), figsize=(width, panel_size * 1.35), squeeze=False, layout="constrained")
    tint = matplotlib.colors.to_rgba("#ff3b30", alpha=0.35)
    for ax, k in zip(axes[0], chosen):
        image, lesion = flair[:, :, k], mask[:, :, k]
        inside = np.nonzero(image > 0.02)
        if inside[0].size:
            x0, x1 = max(inside[0].min() - 3, 0), min(inside[0].max() + 4, image.shape[0])
            y0, y1 = max(inside[1].min() - 3, 0), min(inside[1].max() + 4, image.shape[1])
            image, lesion = image[x0:x1, y0:y1], lesion[x0:x1, y0:y1]
        ax.imshow(image.T, cmap="gray", vmin=0.0, vmax=1.0, origin="lower", interpolation="nearest")
        if lesion.any():
            rgba = np.zeros((*lesion.T.shape, 4))
            rgba[lesion.T] = tint
            ax.imshow(rgba, origin="lower", interpolation="nearest")
            ax.contour(lesion.T.astype(float), levels=[0.5], colors="#ff3b30", linewidths=0.8, origin="lower")
        ax.invert_xaxis()  # RAS+ x grows to the patient's right: show it on the viewer's left
        for text, x in (("R", 0.03), ("L", 0.97)):
            ax.text(x, 0.5, text, transform=ax.transAxes, color="yellow", fontsize="small", ha="center", va="center")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"slice {k}: {int(per_slice[k])} lesion voxels", fontsize="small")
    if title:
        fig.suptitle(title, fontsize="medium")
    return fig


# --- the whole prediction ----------------------------------------------------------------------


def _save_on_original_grid(mask: np.ndarray, original: nib.Nifti1Image, path: Path) -> None:
    """Write a uint8 mask with the original image's affine and header (shape 3D, no scaling)."""
    header = original.header.copy()
    header.set_data_dtype(np.uint8)
    image = nib.Nifti1Image(mask.astype(np.uint8), original.affine, header)
    image.header.set_slope_inter(1.0, 0.0)
    image.header["cal_min"], image.header["cal_max"] = 0, 1
    image.header["descrip"] = b"radfusion predicted lesion mask"
    with atomic_output(path) as tmp:
        nib.save(image, str(tmp))


def acquisition_warnings(voxel_sizes: Sequence[float]) -> list[str]:
    """Warnings for a canonical voxel size unlike the training data's (about 1 mm isotropic).

    Parameters
    ----------
    voxel_sizes : sequence of float
        Voxel size (mm) along the canonical axes x, y (in-plane) and z (between axial slices).

    Returns
    -------
    messages : list of str
        Empty when the slices are at most ``MAX_SLICE_THICKNESS_MM`` apart and the in-plane
        pixels at most ``MAX_INPLANE_ANISOTROPY`` times longer one way than the other.

    Notes
    -----
    Nothing is resampled: the networks are 2D and see every slice min-max scaled and resized to
    a fixed square, so the in-plane voxel size matters little, and the import's canonical
    reorientation makes every acquisition's third axis the axial one. A thick-slice acquisition,
    or a sagittal or coronal one with thick slices (whose axial reformats have stretched pixels),
    shows lesions unlike the training slices, so it is flagged, not refused.
    """
    x, y, z = (float(v) for v in voxel_sizes)
    messages = []
    if z > MAX_SLICE_THICKNESS_MM:
        messages.append(
            f"axial slices are {z:.2g} mm apart (> {MAX_SLICE_THICKNESS_MM:g} mm); the models were trained on "
            f"about 1 mm slices, so thin lesions may be missed or their volume misjudged"
        )
    if max(x, y) > MAX_INPLANE_ANISOTROPY * min(x, y):
        messages.append(
            f"axial pixels are {x:.2g} x {y:.2g} mm (anisotropic, e.g. a sagittal or coronal acquisition with "
            f"thick slices reformatted to axial); lesions look stretched compared with the training slices"
        )
    return messages


def predict_patient(
    flair_source: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    model_paths: Sequence[str | os.PathLike],
    patient: str | None = None,
    cv_dice: float = float("nan"),
    threshold: float = 0.5,
    lower_percentile: float = 0.5,
    upper_percentile: float = 99.5,
    cr: Mapping | None = None,
    re: Mapping | None = None,
    connectivity: int = 26,
    device=None,
    threads: int = 1,
    n_overlay_slices: int = 4,
) -> dict:
    """Predict a new patient's lesions with fold models and write mask, tables and overlay.

    Parameters
    ----------
    flair_source : path-like
        The FLAIR: a NIfTI file or a folder with one DICOM series (checked as in the import).
    out_dir : path-like
        Output folder; the files of ``OUTPUT_FILES`` are written there (a DICOM input also
        gets its conversion ``flair.nii.gz`` with the anonymized ``flair.json`` sidecar, the
        image the mask lies on).
    model_paths : sequence of path-like
        The fold models (``model.pt``) of one (model, input), e.g. :func:`fold_model_paths`.
    patient : str, optional
        Named in errors and the summary (default: the output folder's name).
    cv_dice : float
        The pair's cross-validated Dice, copied into the summary.
    threshold, lower_percentile, upper_percentile, cr, re, threads
        See :func:`predict_lesion_mask`; must match the training run's config.
    connectivity : {26, 18, 6}
        Of the lesion components (:func:`lesion_table`).
    device : optional
        ``None``: CUDA when present, else the CPU.
    n_overlay_slices : int
        Slices in the overlay (:func:`plot_lesion_overlay`).

    Returns
    -------
    summary : dict
        The row of ``lesion_summary.csv`` (keys ``SUMMARY_COLUMNS``).

    Notes
    -----
    SPEC stage 12. The mask is written on the input's own grid: the prediction is made on the
    canonical (RAS+) grid and mapped back with :func:`canonical_to_original`, so its shape,
    affine and header geometry equal the input's (a trailing length-one fourth axis is dropped).
    Lesion volumes are voxel counts times :func:`voxel_volume_ml`. Bad input raises
    :class:`~radfusion.io.InputError` naming the file; outputs are written only after every
    step has succeeded, each atomically.
    """
    from radfusion.figures import save_figure
    from radfusion.train import load_trained_model, resolve_device

    flair_source, out_dir = Path(flair_source), Path(out_dir)
    patient = patient or out_dir.resolve().name
    if not model_paths:
        raise ValueError("expected at least one fold model, got none")
    device = resolve_device(device)
    with tempfile.TemporaryDirectory(prefix="radfusion-predict-") as tmp:
        tmp = Path(tmp)
        input_nifti = flair_source
        if flair_source.is_dir():
            input_nifti = dicom_to_nifti(flair_source, tmp / "flair.nii.gz", subject=patient)
        try:
            import_subject(input_nifti, None, tmp / "canonical.nii.gz", None, subject=patient)
        except InputError as err:
            if input_nifti != flair_source:  # name the DICOM folder, not the temporary conversion
                raise InputError(str(err).replace(str(input_nifti), str(flair_source))) from err
            raise
        flair, canonical_affine = load_volume(tmp / "canonical.nii.gz")
        original = nib.load(str(input_nifti))
        original_shape = tuple(int(s) for s in original.shape[:3])

        models, infos = [], []
        for path in model_paths:
            try:
                model, info = load_trained_model(path, device=device)
            except (OSError, ValueError, KeyError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
                raise InputError(f"file '{path}': cannot be loaded as a trained model ({err})") from err
            models.append(model)
            infos.append(info)
        kinds = {(i["model_name"], i["input_name"], tuple(i["channels"]), i["image_size"]) for i in infos}
        if len(kinds) != 1:
            listing = "; ".join(
                f"{p}: {i['model_name']}/{i['input_name']} at {i['image_size']}" for p, i in zip(model_paths, infos)
            )
            raise InputError(f"fold models differ in model, input or image size ({listing}); give the folds of one run")
        model_name, input_name, channels, image_size = kinds.pop()
        zooms = np.sqrt((canonical_affine[:3, :3] ** 2).sum(axis=0))
        for message in acquisition_warnings(zooms):
            log.warning("file '%s': %s", flair_source, message)
        log.info(
            "%s: %s/%s, %d fold models on %s, FLAIR %s at %s mm",
            patient, model_name, input_name, len(models), device, flair.shape, np.round(zooms, 3).tolist(),
        )
        mask, normalized = predict_lesion_mask(
            flair,
            models,
            channels=channels,
            image_size=image_size,
            threshold=threshold,
            lower_percentile=lower_percentile,
            upper_percentile=upper_percentile,
            cr=cr,
            re=re,
            threads=threads,
        )
        original_mask = canonical_to_original(mask, original.affine)
        if original_mask.shape != original_shape:
            raise RuntimeError(f"mask mapped back has shape {original_mask.shape}, input has {original_shape}")
        lesions = lesion_table(original_mask, original.affine, connectivity=connectivity)
        unit = voxel_volume_ml(original.affine)
        lesion_voxels = int(np.count_nonzero(original_mask))
        summary = {
            "patient": patient,
            "flair": str(flair_source),
            "model": model_name,
            "input": input_name,
            "folds": len(models),
            "cv_dice": cv_dice,
            "threshold": threshold,
            "lesion_count": len(lesions),
            "total_volume_ml": lesion_voxels * unit,
            "lesion_voxels": lesion_voxels,
            "voxel_volume_ml": unit,
            "voxel_size_x_mm": float(zooms[0]),
            "voxel_size_y_mm": float(zooms[1]),
            "voxel_size_z_mm": float(zooms[2]),
            "brain_slices": int(brain_slice_indices(flair).size),
        }
        figure = plot_lesion_overlay(
            normalized,
            mask,
            n_slices=n_overlay_slices,
            title=(
                f"{patient}: {len(lesions)} lesion{'s' if len(lesions) != 1 else ''}, "
                f"{summary['total_volume_ml']:.2f} mL\n{model_name}/{input_name}, mean of {len(models)} fold models"
            ),
        )
        out_dir.mkdir(parents=True, exist_ok=True)
        _save_on_original_grid(original_mask, original, out_dir / OUTPUT_FILES["mask"])
        with atomic_output(out_dir / OUTPUT_FILES["summary"]) as path:
            pd.DataFrame([summary], columns=list(SUMMARY_COLUMNS)).to_csv(path, index=False, float_format="%.10g")
        with atomic_output(out_dir / OUTPUT_FILES["lesions"]) as path:
            lesions.to_csv(path, index=False, float_format="%.10g")
        save_figure(figure, out_dir / OUTPUT_FILES["overlay"], dpi=110)
        if input_nifti != flair_source:
            for source, name in ((input_nifti, "flair.nii.gz"), (sidecar_path(input_nifti), "flair.json")):
                if source.exists():
                    with atomic_output(out_dir / name) as path:
                        shutil.copyfile(source, path)
    log.info("%s: %d lesion(s), %.3f mL, written to %s", patient, len(lesions), summary["total_volume_ml"], out_dir)
    return summary


def read_patient_sheet(path: str | os.PathLike) -> pd.DataFrame:
    """Read the sheet of patients to predict (config ``predict.samples``): columns ``patient``, ``flair``.

    Returns
    -------
    patients : DataFrame
        Indexed by ``patient`` (kept as a column too), whitespace stripped.

    Notes
    -----
    IDs must be unique, start with a letter or digit and use letters, digits, ``_ . -`` (they
    name folders, as the sample sheet's subject IDs do);
    every patient needs a FLAIR (NIfTI file or DICOM folder). Problems raise
    :class:`~radfusion.io.InputError` naming the sheet.
    """
    path = Path(path)
    try:
        sheet = pd.read_csv(path, sep="\t", dtype=str, comment="#").fillna("")
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise InputError(f"file '{path}': cannot be read as a tab-separated patient sheet ({err})") from err
    sheet = check_id_table(sheet, id_column="patient", columns=("patient", "flair"), sheet=f"file '{path}'")
    return sheet.set_index("patient", drop=False)
