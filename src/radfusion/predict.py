"""Lesion masks, counts and volumes for a new patient from the trained fold models (SPEC stage 12).

A new FLAIR (NIfTI file or DICOM folder) goes through the steps of training: import (canonical
RAS+ orientation, checks), percentile normalization, CR and RE maps (only when the model uses
them), per-slice min-max scaling, bilinear resize to the model's size. Every axial brain slice
(any voxel of the brain mask: :func:`radfusion.skullstrip.subject_brain_mask`, deepbet's on a
whole-head FLAIR, the nonzero voxels of a skull-stripped one) is predicted by each fold model of one
(model, input) pair; the fold models' sigmoid probabilities are averaged, thresholded at the
model's size and the mask resized back with nearest neighbour, as the evaluation does (SPEC
stage 8); voxels outside the brain mask, or within ``SURFACE_MARGIN_MM`` of its outer surface
(:func:`surface_rim`), are never lesion. The mask is written on the
input's own grid and affine; lesions are the mask's 3D connected components.

Outputs of :func:`predict_patient` in the output folder (names in ``OUTPUT_FILES``):

- ``lesion_mask.nii.gz``: uint8 {0, 1}, the input's shape, orientation, affine and header;
- ``brain_mask.nii.gz``: the brain mask (:func:`radfusion.skullstrip.subject_brain_mask`), same grid;
- ``lesion_summary.csv``: one row: lesion count, total volume (mL), the model used, settings;
- ``lesions.csv``: one row per lesion, largest first: voxels, volume (mL), centroid;
- ``overlay.png``: the axial slices with the most lesion, FLAIR grey, predicted mask outlined.
"""

from __future__ import annotations

import json
import logging
import os
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

from radfusion.ensemble import load_fold_models

log = logging.getLogger(__name__)

OUTPUT_FILES = {
    "mask": "lesion_mask.nii.gz",
    "brain": "brain_mask.nii.gz",
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
# The study's images are about 1 mm isotropic (demo cohort 0.8-1.0 mm, the paper's cohort alike).
# Thicker slices or strongly anisotropic axial pixels change how lesions look in a 2D slice.
MAX_SLICE_THICKNESS_MM = 3.0
MAX_INPLANE_ANISOTROPY = 2.0
# No lesion within this distance (mm) of the brain mask's outer surface (surface_rim): the rim of
# a stripping mask (dura, residue, surface CSF) is where bright false positives sit. 2 mm is the
# largest margin that removes no expert lesion voxel of the two test patients (3 mm removes 2);
# measured in docs/decisions.md, "Skull stripping" (predict's surface margin).
SURFACE_MARGIN_MM = 2.0


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


def brain_slice_indices(brain: np.ndarray) -> np.ndarray:
    """Axial indices ``k`` of the slices ``brain[:, :, k]`` holding at least one brain voxel.

    ``brain`` is the brain mask (:func:`radfusion.normalize.brain_mask` of the imported FLAIR).
    """
    brain = np.asarray(brain)
    if brain.ndim != 3:
        raise ValueError(f"expected a 3D volume, got shape {brain.shape}")
    return np.flatnonzero(np.any(brain != 0, axis=(0, 1))).astype(int)


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


def predict_lesion_mask(
    flair: np.ndarray,
    models: Sequence,
    *,
    channels: Sequence[int] = (0,),
    image_size: int = 256,
    crop: str = "none",
    threshold: float = 0.5,
    lower_percentile: float = 0.5,
    upper_percentile: float = 99.5,
    cr: Mapping | None = None,
    re: Mapping | None = None,
    threads: int = 1,
    brain: np.ndarray | None = None,
    voxel_sizes: Sequence[float] | None = None,
    surface_margin_mm: float = SURFACE_MARGIN_MM,
    precision: str | None = None,
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
    crop : {"none", "brain"}
        As the models were trained: "brain" resizes only the brain mask's in-plane bounding box
        (:func:`radfusion.slices.brain_box`).
    threshold : float
        On the fold-averaged probability (config ``evaluation.threshold``).
    lower_percentile, upper_percentile : float
        Intensity normalization, as in training (config ``normalize``).
    cr, re : mapping, optional
        Radiomics parameters, as in training (config ``radiomics.cr`` and ``radiomics.re``);
        the maps are computed only when ``channels`` uses them.
    threads : int
        Threads of the radiomics.
    brain : ndarray of bool, optional
        The brain mask (:func:`radfusion.skullstrip.subject_brain_mask`); ``None``: the FLAIR's
        nonzero voxels (:func:`radfusion.normalize.brain_mask`, a skull-stripped FLAIR).
    voxel_sizes : sequence of float, optional
        Voxel size (mm) along the canonical axes; with it, no voxel within ``surface_margin_mm``
        of the brain mask's outer surface is lesion (:func:`surface_rim`). ``None`` (voxel size
        unknown): no margin, only the brain mask. ``radfusion predict`` and the external
        validation always give it (:func:`segment_with_fold_models`).
    surface_margin_mm : float
        The margin (mm); 0 turns it off.
    precision : str, optional
        The networks' arithmetic (:func:`radfusion.evaluate.predict_probabilities`: "float32",
        "bfloat16", "int8"); ``None``: the machine's policy.

    Returns
    -------
    mask : ndarray of uint8, shape (X, Y, Z)
        Predicted lesions on the canonical grid.
    normalized : ndarray of float32, shape (X, Y, Z)
        The normalized FLAIR (for display).

    Notes
    -----
    SPEC stages 2, 3, 5 and 8 applied to every axial brain slice (:func:`brain_slice_indices`),
    not only to lesion slices as in the evaluation. Normalization takes its percentiles of the
    brain voxels and sets everything else to 0, so the networks and the radiomics see a
    skull-stripped image. Voxels outside the brain mask are never lesion: the nearest-neighbour
    upsampling of a mask from the model's size can otherwise spill a pixel over the brain's
    edge. Nor are the voxels of the mask's outer rim (:func:`surface_rim`), where a stripping
    mask keeps dura and surface CSF that the networks, which saw only stripped slices in
    training, can call lesion. The cross-validated evaluation on exported slices has neither
    rule (its slices are the training data's, stripped).
    """
    from radfusion.evaluate import predict_slice_masks
    from radfusion.normalize import brain_mask, normalize_intensity, quantize_8bit
    from radfusion.radiomics import radiomics_volume
    from radfusion.slices import brain_box, network_box

    flair = np.asarray(flair)
    channels = [int(c) for c in channels]
    if not channels or not set(channels) <= {0, 1, 2}:
        raise ValueError(f"expected channels among 0 (FLAIR), 1 (CR), 2 (RE), got {channels}")
    brain = brain_mask(flair) if brain is None else np.asarray(brain, dtype=bool)
    box = network_box(crop, brain_box(brain))
    normalized = normalize_intensity(
        flair, lower_percentile=lower_percentile, upper_percentile=upper_percentile, brain=brain
    )
    volumes = [normalized, None, None]
    if {1, 2} & set(channels):
        started = time.perf_counter()
        volumes[1], volumes[2] = radiomics_volume(
            quantize_8bit(normalized), cr=dict(cr or {}), re=dict(re or {}), threads=threads
        )
        log.info("CR and RE maps of %d slices in %.1f s", flair.shape[2], time.perf_counter() - started)
    index = brain_slice_indices(brain)
    mask = np.zeros(flair.shape, dtype=np.uint8)
    if index.size:
        images = slice_stack([volumes[c] for c in channels], index)
        started = time.perf_counter()
        slice_masks = predict_slice_masks(
            models, images, image_size=image_size, threshold=threshold, precision=precision,
            box=box,
        )
        seconds = time.perf_counter() - started
        log.info("%d brain slices predicted by %d fold models in %.1f s", index.size, len(models), seconds)
        mask[:, :, index] = np.moveaxis(slice_masks, 0, 2)
    mask[~brain] = 0
    if voxel_sizes is not None and surface_margin_mm > 0:
        mask[surface_rim(brain, voxel_sizes, surface_margin_mm)] = 0
    return mask, normalized


def surface_rim(brain: np.ndarray, voxel_sizes: Sequence[float], margin_mm: float = SURFACE_MARGIN_MM) -> np.ndarray:
    """The brain voxels within ``margin_mm`` of the brain mask's outer surface.

    Parameters
    ----------
    brain : ndarray of bool, shape (X, Y, Z)
        The brain mask.
    voxel_sizes : sequence of float
        Voxel size (mm) along the three axes.
    margin_mm : float
        The distance (mm).

    Returns
    -------
    rim : ndarray of bool, shape (X, Y, Z)
        Brain voxels whose Euclidean distance, in mm, to the nearest voxel outside the brain is
        at most ``margin_mm``.

    Notes
    -----
    The distance is :func:`scipy.ndimage.distance_transform_edt` with ``sampling=voxel_sizes``,
    so it is physical on anisotropic voxels: on a 0.7 x 0.7 x 3 mm scan a 2 mm margin is the
    two outermost rings of each axial slice (0.7 and 1.4 mm) and never a whole top or bottom
    slice (3 mm away from the next one). The outer surface only: the mask's interior holes
    (closed in 3D) are filled first, so ventricles left out of a mask do not make a rim. The
    edges of the array are not surface (a brain cut by the field of view keeps its cut slices).
    """
    brain = np.asarray(brain, dtype=bool)
    if brain.ndim != 3:
        raise ValueError(f"expected a 3D brain mask, got shape {brain.shape}")
    sizes = [float(v) for v in voxel_sizes]
    if len(sizes) != 3 or min(sizes) <= 0:
        raise ValueError(f"expected three positive voxel sizes, got {voxel_sizes}")
    filled = ndimage.binary_fill_holes(brain)
    if filled.all():  # no voxel outside the brain: no surface inside the array
        return np.zeros_like(brain)
    depth = ndimage.distance_transform_edt(filled, sampling=sizes)
    return brain & (depth <= margin_mm)


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


# --- the whole prediction ----------------------------------------------------------------------


def _save_on_original_grid(
    mask: np.ndarray, original: nib.Nifti1Image, path: Path, description: str = "radfusion predicted lesion mask"
) -> None:
    """Write a uint8 mask with the original image's affine and header (shape 3D, no scaling)."""
    header = original.header.copy()
    header.set_data_dtype(np.uint8)
    image = nib.Nifti1Image(mask.astype(np.uint8), original.affine, header)
    image.header.set_slope_inter(1.0, 0.0)
    image.header["cal_min"], image.header["cal_max"] = 0, 1
    image.header["descrip"] = description.encode()[:79]
    with atomic_output(path) as tmp:
        nib.save(image, str(tmp))


def acquisition_warnings(voxel_sizes: Sequence[float], *, slice_thickness: float | None = None) -> list[str]:
    """Warnings for a canonical voxel size unlike the training data's (about 1 mm isotropic).

    Parameters
    ----------
    voxel_sizes : sequence of float
        Voxel size (mm) along the canonical axes x, y (in-plane) and z (between axial slices).
    slice_thickness : float, optional
        The acquisition's slice thickness (mm; DICOM ``SliceThickness`` from the ``dcm2niix``
        sidecar), when known; a NIfTI file records only the spacing ``z``.

    Returns
    -------
    messages : list of str
        Empty when the slices are thinner than ``MAX_SLICE_THICKNESS_MM`` (thickness, else
        spacing) and the in-plane pixels at most ``MAX_INPLANE_ANISOTROPY`` times longer one way
        than the other.

    Notes
    -----
    Nothing is resampled: the networks are 2D and see every slice min-max scaled and resized to
    a fixed square, so the in-plane voxel size matters little, and the import's canonical
    reorientation makes every acquisition's third axis the axial one. A thick-slice acquisition
    (2D axial FLAIR with 3-5 mm slices, as hospitals acquire it), or a sagittal or coronal one
    with thick slices (whose axial reformats have stretched pixels), shows lesions unlike the
    training slices, so it is flagged, not refused.
    """
    x, y, z = (float(v) for v in voxel_sizes)
    thickness = z if slice_thickness is None else float(slice_thickness)
    messages = []
    if max(thickness, z) >= MAX_SLICE_THICKNESS_MM - 0.01:  # headers store 3 mm as 2.99999
        spacing = "" if slice_thickness is None else f", {z:.2g} mm apart"
        messages.append(
            f"slice thickness {thickness:.2g} mm{spacing} (a thick-slice acquisition, >= {MAX_SLICE_THICKNESS_MM:g} mm); "
            "the models were trained on about 1 mm slices, so lesions thinner than a slice may be missed and "
            "lesion volumes are coarse"
        )
    if max(x, y) > MAX_INPLANE_ANISOTROPY * min(x, y):
        messages.append(
            f"axial pixels are {x:.2g} x {y:.2g} mm (anisotropic, e.g. a sagittal or coronal acquisition with "
            f"thick slices reformatted to axial); lesions look stretched compared with the training slices"
        )
    return messages


def segment_with_fold_models(
    flair: np.ndarray,
    models: Sequence,
    settings: Mapping,
    *,
    threshold: float | None = None,
    threads: int = 1,
    brain: np.ndarray | None = None,
    voxel_sizes: Sequence[float] | None,
    precision: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`predict_lesion_mask` with the settings the fold models record.

    ``settings`` is what :func:`load_fold_models` returns (channels, image size, crop and the
    preprocessing); ``threshold`` overrides the recorded one; ``brain`` is the brain mask
    (``None``: the FLAIR's nonzero voxels); ``voxel_sizes`` (mm, canonical axes; required, so
    that no caller forgets it) gives the surface margin (``SURFACE_MARGIN_MM``,
    :func:`surface_rim`); ``None`` only where the voxel size is unknown; ``precision`` is the
    networks' arithmetic (``None``: the machine's policy). ``radfusion predict`` and the external
    validation both segment through here, so their masks agree.
    """
    preprocessing = dict(settings["preprocessing"])
    if threshold is not None:
        preprocessing["threshold"] = float(threshold)
    return predict_lesion_mask(
        flair,
        models,
        channels=settings["channels"],
        image_size=settings["image_size"],
        crop=settings.get("crop", "none"),
        threads=threads,
        brain=brain,
        voxel_sizes=voxel_sizes,
        precision=precision,
        **preprocessing,
    )


def predict_patient(
    flair_source: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    model_paths: Sequence[str | os.PathLike],
    patient: str | None = None,
    cv_dice: float = float("nan"),
    threshold: float | None = None,
    device=None,
    threads: int = 1,
    n_overlay_slices: int = 4,
    skull_strip: str = "auto",
    precision: str | None = None,
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
        Normalization, CR/RE parameters, channels, image size and threshold come from them
        (:func:`load_fold_models`), so prediction repeats the training run's preprocessing.
    patient : str, optional
        Named in errors and the summary (default: the output folder's name).
    cv_dice : float
        The pair's cross-validated Dice, copied into the summary.
    threshold : float, optional
        Overrides the models' threshold on the fold-averaged probability.
    device : optional
        ``None``: CUDA when present, else the CPU.
    threads : int
        Threads of the radiomics.
    n_overlay_slices : int
        Slices in the overlay (:func:`radfusion.figures.plot_lesion_overlay`).
    skull_strip : {'auto', 'always', 'none'}
        The brain mask, as the workflow's ``preprocess.skull_strip``
        (:func:`radfusion.skullstrip.subject_brain_mask`): ``auto`` strips a whole-head FLAIR.
    precision : {None, 'float32', 'bfloat16', 'int8'}
        The networks' arithmetic (:func:`radfusion.evaluate.predict_probabilities`); ``None``:
        the machine's policy. "int8" is the fast CPU path of the README's "Prediction speed".

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
    from radfusion.skullstrip import subject_brain_mask
    from radfusion.execution import resolve_device

    flair_source, out_dir = Path(flair_source), Path(out_dir)
    patient = patient or out_dir.resolve().name
    device = resolve_device(device)
    models, settings = load_fold_models(model_paths, device=device)
    threshold = settings["preprocessing"]["threshold"] if threshold is None else float(threshold)
    with tempfile.TemporaryDirectory(prefix="radfusion-predict-") as tmp:
        input_nifti, flair, canonical_affine = _import_flair(flair_source, Path(tmp), patient)
        stripping = subject_brain_mask(
            flair, canonical_affine, mode=skull_strip, threads=threads, subject=patient, path=flair_source
        )
        brain = stripping.brain
        log.info("%s: %s", patient, stripping.description)
        original = nib.load(str(input_nifti))
        zooms = np.sqrt((canonical_affine[:3, :3] ** 2).sum(axis=0))
        for message in acquisition_warnings(zooms, slice_thickness=_slice_thickness(input_nifti)):
            log.warning("file '%s': %s", flair_source, message)
        log.info(
            "%s: %s/%s, %d fold models on %s, FLAIR %s at %s mm",
            patient, settings["model_name"], settings["input_name"], len(models), device, flair.shape,
            np.round(zooms, 3).tolist(),
        )
        mask, normalized = segment_with_fold_models(
            flair, models, settings, threshold=threshold, threads=threads, brain=brain, voxel_sizes=zooms,
            precision=precision,
        )
        original_mask = canonical_to_original(mask, original.affine)
        original_brain = canonical_to_original(brain.astype(np.uint8), original.affine)
        if original_mask.shape != tuple(int(s) for s in original.shape[:3]):
            raise RuntimeError(f"mask mapped back has shape {original_mask.shape}, input has {original.shape[:3]}")
        lesions = lesion_table(original_mask, original.affine)
        summary = {
            "patient": patient,
            "flair": str(flair_source),
            "model": settings["model_name"],
            "input": settings["input_name"],
            "folds": len(models),
            "cv_dice": cv_dice,
            "threshold": threshold,
            "lesion_count": len(lesions),
            "total_volume_ml": int(np.count_nonzero(original_mask)) * voxel_volume_ml(original.affine),
            "lesion_voxels": int(np.count_nonzero(original_mask)),
            "voxel_volume_ml": voxel_volume_ml(original.affine),
            "voxel_size_x_mm": float(zooms[0]),
            "voxel_size_y_mm": float(zooms[1]),
            "voxel_size_z_mm": float(zooms[2]),
            "brain_slices": int(brain_slice_indices(brain).size),
        }
        _write_outputs(
            out_dir, summary, lesions, original_mask, original_brain, original, normalized, mask, brain,
            n_overlay_slices=n_overlay_slices, converted=input_nifti if input_nifti != flair_source else None,
        )
    log.info("%s: %d lesion(s), %.3f mL, written to %s", patient, len(lesions), summary["total_volume_ml"], out_dir)
    return summary


def _slice_thickness(nifti: Path) -> float | None:
    """``SliceThickness`` (mm) of a dcm2niix conversion's JSON sidecar, when there is one."""
    try:
        value = json.loads(sidecar_path(nifti).read_text()).get("SliceThickness")
    except (OSError, ValueError):
        return None
    return float(value) if isinstance(value, (int, float)) else None


def _import_flair(flair_source: Path, tmp: Path, patient: str) -> tuple[Path, np.ndarray, np.ndarray]:
    """The FLAIR as imported for training: NIfTI (DICOM converted), canonical, checked.

    Returns the NIfTI the mask will lie on, the canonical volume and its affine.
    """
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
    return input_nifti, flair, canonical_affine


def _write_outputs(
    out_dir: Path,
    summary: Mapping,
    lesions: pd.DataFrame,
    original_mask: np.ndarray,
    original_brain: np.ndarray,
    original: nib.Nifti1Image,
    normalized: np.ndarray,
    mask: np.ndarray,
    brain: np.ndarray,
    *,
    n_overlay_slices: int,
    converted: Path | None,
) -> None:
    """Write the files of ``OUTPUT_FILES`` (and a DICOM input's conversion), each atomically."""
    from radfusion.figures import plot_lesion_overlay, save_figure

    count = summary["lesion_count"]
    figure = plot_lesion_overlay(
        normalized,
        mask,
        brain,
        n_slices=n_overlay_slices,
        title=(
            f"{summary['patient']}: {count} lesion{'s' if count != 1 else ''}, {summary['total_volume_ml']:.2f} mL\n"
            f"{summary['model']}/{summary['input']}, mean of {summary['folds']} fold models"
        ),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    _save_on_original_grid(original_mask, original, out_dir / OUTPUT_FILES["mask"])
    _save_on_original_grid(original_brain, original, out_dir / OUTPUT_FILES["brain"], "radfusion brain mask")
    with atomic_output(out_dir / OUTPUT_FILES["summary"]) as path:
        pd.DataFrame([summary], columns=list(SUMMARY_COLUMNS)).to_csv(path, index=False, float_format="%.10g")
    with atomic_output(out_dir / OUTPUT_FILES["lesions"]) as path:
        lesions.to_csv(path, index=False, float_format="%.10g")
    save_figure(figure, out_dir / OUTPUT_FILES["overlay"], dpi=110)
    if converted is not None:
        for source, name in ((converted, "flair.nii.gz"), (sidecar_path(converted), "flair.json")):
            if source.exists():
                with atomic_output(out_dir / name) as path:
                    shutil.copyfile(source, path)


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
