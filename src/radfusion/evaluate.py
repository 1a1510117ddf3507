"""Scoring of predicted lesion masks and the cross-validation evaluation (SPEC stage 8).

Metrics are computed at each slice's original resolution on binary masks:

- voxel-wise Dice, precision and sensitivity, per slice and per subject (counts pooled over the
  subject's exported slices);
- lesion-wise detection: 2D connected components (8-connectivity) per slice, a lesion counts as
  detected when any of its pixels is predicted, a predicted component counts as correct when it
  touches any true lesion pixel; lesion precision, sensitivity and their F1 (harmonic mean);
- the lesion-level metrics of the MS lesion challenges (:func:`lesion_metrics`,
  :func:`score_volume`): 3D connected components (26-connectivity), components smaller than
  ``min_lesion_voxels`` removed from both masks, a minimum overlap fraction for a detection,
  lesion-wise true- and false-positive rates (LTPR, LFPR), their F1 and the absolute volume
  difference in percent (AVD). They have their own empty-set conventions (NaN where a rate has
  nothing to count; :func:`lesion_metrics`). In the cross-validation tables their columns carry
  the suffix ``_3d`` where a name would collide with the 2D per-slice ones above.

Empty-mask convention of the voxel and 2D lesion scores: when a ratio's denominator is zero, it
scores 1 if both masks (or both lesion sets) are empty and 0 otherwise. So a slice where nothing is
to be found and nothing is predicted scores Dice = precision = sensitivity = lesion F1 = 1;
predicting nothing where there are lesions gives precision 0 (not undefined); predicting lesions
where there are none gives sensitivity 0.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import ndimage

from radfusion.slices import crop_to_box, network_box, read_slices, resize_images, resize_masks

log = logging.getLogger(__name__)

# Keys of lesion_metrics, in order.
LESION_METRIC_KEYS = (
    "true_lesions", "predicted_lesions", "detected_lesions", "false_lesions", "ltpr", "lfpr", "lesion_f1", "avd",
)
# Keys of score_volume, in order (the external tables' score columns).
VOLUME_SCORE_COLUMNS = (
    "dice", "precision", "sensitivity", "ltpr", "lfpr", "lesion_f1", "avd", "true_voxels", "predicted_voxels",
    "true_lesions", "predicted_lesions", "detected_lesions", "false_lesions",
)
# lesion_metrics key -> its column in the cross-validation tables, which already hold 2D per-slice
# lesion columns of the same names: the component-based keys get the suffix "_3d".
CV_LESION_COLUMNS = {
    "ltpr": "ltpr_3d", "lfpr": "lfpr_3d", "lesion_f1": "lesion_f1_3d", "avd": "avd",
    "true_lesions": "true_lesions_3d", "predicted_lesions": "predicted_lesions_3d",
    "detected_lesions": "detected_lesions_3d", "false_lesions": "false_lesions_3d",
}
SUBJECT_COLUMNS = (
    "subject", "fold", "dice", "precision", "sensitivity", "lesion_f1", "lesion_precision",
    "lesion_sensitivity", "n_slices", "true_voxels", "predicted_voxels", "tp", "fp", "fn",
    "true_lesions", "predicted_lesions", "detected_lesions", "correct_predicted_lesions",
    *CV_LESION_COLUMNS.values(),
)
SLICE_COLUMNS = (
    "subject", "fold", "slice", "dice", "precision", "sensitivity", "lesion_f1", "true_voxels",
    "predicted_voxels", "tp", "fp", "fn", "true_lesions", "predicted_lesions", "detected_lesions",
    "correct_predicted_lesions", *CV_LESION_COLUMNS.values(),
)
# 8-connectivity in 2D: diagonal neighbours belong to the same lesion.
CONNECTIVITY_2D = np.ones((3, 3), dtype=bool)
# 3D neighbourhoods: 6 (faces), 18 (faces and edges), 26 (faces, edges and corners).
CONNECTIVITY_RANK = {6: 1, 18: 2, 26: 3}


def _ratio(numerator: int, denominator: int, *, both_empty: bool) -> float:
    """``numerator / denominator``; an empty denominator scores 1 if both masks are empty, else 0."""
    if denominator == 0:
        return 1.0 if both_empty else 0.0
    return numerator / denominator


def _as_binary_pair(prediction: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    prediction, truth = np.asarray(prediction), np.asarray(truth)
    if prediction.shape != truth.shape:
        raise ValueError(f"prediction and truth differ in shape: {prediction.shape} vs {truth.shape}")
    return prediction.astype(bool), truth.astype(bool)


def confusion_counts(prediction: np.ndarray, truth: np.ndarray) -> tuple[int, int, int]:
    """True positive, false positive and false negative voxel counts of two binary masks."""
    prediction, truth = _as_binary_pair(prediction, truth)
    tp = int(np.count_nonzero(prediction & truth))
    return tp, int(np.count_nonzero(prediction)) - tp, int(np.count_nonzero(truth)) - tp


def overlap_scores(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Dice, precision and sensitivity from voxel counts.

    Parameters
    ----------
    tp, fp, fn : int
        True positives, false positives, false negatives.

    Returns
    -------
    scores : dict
        ``dice = 2 TP / (2 TP + FP + FN)``, ``precision = TP / (TP + FP)``,
        ``sensitivity = TP / (TP + FN)``.

    Notes
    -----
    An empty denominator scores 1 when both masks are empty (``TP = FP = FN = 0``) and 0
    otherwise (module docstring).
    """
    both_empty = tp == 0 and fp == 0 and fn == 0
    return {
        "dice": _ratio(2 * tp, 2 * tp + fp + fn, both_empty=both_empty),
        "precision": _ratio(tp, tp + fp, both_empty=both_empty),
        "sensitivity": _ratio(tp, tp + fn, both_empty=both_empty),
    }


def dice_score(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Dice coefficient ``2|P ∩ T| / (|P| + |T|)`` of two binary masks (1 when both are empty)."""
    return overlap_scores(*confusion_counts(prediction, truth))["dice"]


def precision_score(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Precision ``|P ∩ T| / |P|`` (nothing predicted: 1 if the truth is empty too, else 0)."""
    return overlap_scores(*confusion_counts(prediction, truth))["precision"]


def sensitivity_score(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Sensitivity ``|P ∩ T| / |T|`` (nothing to find: 1 if nothing is predicted, else 0)."""
    return overlap_scores(*confusion_counts(prediction, truth))["sensitivity"]


def lesion_counts(prediction: np.ndarray, truth: np.ndarray) -> dict[str, int]:
    """Lesion-wise detection counts of one 2D slice, or of a stack of slices (n, H, W).

    Parameters
    ----------
    prediction, truth : ndarray, shape (H, W) or (n, H, W)
        Binary masks. A stack is labelled slice by slice (lesions never join across slices,
        which are not adjacent in the export).

    Returns
    -------
    counts : dict
        ``true_lesions`` (connected components of the truth), ``detected_lesions`` (true
        components with at least one predicted pixel), ``predicted_lesions``,
        ``correct_predicted_lesions`` (predicted components with at least one true pixel).

    Notes
    -----
    2D connected components with 8-connectivity (``scipy.ndimage.label`` with a 3x3 block);
    any overlap counts as a hit.
    """
    prediction, truth = _as_binary_pair(prediction, truth)
    if prediction.ndim == 2:
        prediction, truth = prediction[None], truth[None]
    if prediction.ndim != 3:
        raise ValueError(f"expected a 2D slice or a stack of slices (n, H, W), got shape {prediction.shape}")
    counts = dict.fromkeys(("true_lesions", "detected_lesions", "predicted_lesions", "correct_predicted_lesions"), 0)
    for p, t in zip(prediction, truth):
        true_labels, n_true = ndimage.label(t, structure=CONNECTIVITY_2D)
        pred_labels, n_pred = ndimage.label(p, structure=CONNECTIVITY_2D)
        counts["true_lesions"] += n_true
        counts["predicted_lesions"] += n_pred
        counts["detected_lesions"] += int(np.unique(true_labels[p & t]).size)
        counts["correct_predicted_lesions"] += int(np.unique(pred_labels[p & t]).size)
    return counts


def lesion_scores(counts: Mapping[str, int]) -> dict[str, float]:
    """Lesion-wise precision, sensitivity and F1 from :func:`lesion_counts`.

    Notes
    -----
    ``lesion_precision = correct_predicted / predicted``, ``lesion_sensitivity = detected /
    true``, ``lesion_f1 = 2 P S / (P + S)`` (0 when ``P + S = 0``); empty denominators follow
    the module's convention (1 when there are neither true nor predicted lesions, else 0).
    """
    both_empty = counts["true_lesions"] == 0 and counts["predicted_lesions"] == 0
    precision = _ratio(counts["correct_predicted_lesions"], counts["predicted_lesions"], both_empty=both_empty)
    sensitivity = _ratio(counts["detected_lesions"], counts["true_lesions"], both_empty=both_empty)
    f1 = 0.0 if precision + sensitivity == 0 else 2 * precision * sensitivity / (precision + sensitivity)
    return {"lesion_precision": precision, "lesion_sensitivity": sensitivity, "lesion_f1": f1}


def _sized_components(mask: np.ndarray, structure: np.ndarray, min_voxels: int) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of ``mask`` with at least ``min_voxels`` voxels.

    Returns the labels (0 = background or a dropped component, then 1..n consecutively) and the
    size of each kept component (length n).
    """
    labels, n = ndimage.label(mask, structure=structure)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= max(min_voxels, 1)
    keep[0] = False
    relabel = np.zeros(n + 1, dtype=labels.dtype)
    relabel[keep] = np.arange(1, int(keep.sum()) + 1, dtype=labels.dtype)
    return relabel[labels], sizes[keep]


def _hit(labels: np.ndarray, sizes: np.ndarray, other: np.ndarray, min_overlap: float) -> np.ndarray:
    """Per component of ``labels``: is the fraction of its voxels inside ``other`` > ``min_overlap``?"""
    covered = np.bincount(labels[other], minlength=sizes.size + 1)[1:]
    return covered > min_overlap * sizes


def min_lesion_size_voxels(
    affine: np.ndarray, *, min_lesion_voxels: int = 3, min_lesion_mm3: float | None = None
) -> int:
    """The lesion metrics' minimum lesion size in voxels of one grid.

    Parameters
    ----------
    affine : ndarray, shape (4, 4)
        The masks' affine (mm).
    min_lesion_voxels : int
        Config ``evaluation.min_lesion_voxels``, used when ``min_lesion_mm3`` is None.
    min_lesion_mm3 : float, optional
        Config ``evaluation.min_lesion_mm3``: the minimum as a volume.

    Returns
    -------
    int
        ``ceil(min_lesion_mm3 / voxel volume)`` (a component of at least that volume is kept),
        or ``min_lesion_voxels``.

    Notes
    -----
    A size in voxels means a different volume on every grid: 3 voxels are 3 mm^3 at 1 mm
    isotropic but 4.7 mm^3 at 0.72 x 0.72 x 3 mm and 24 mm^3 at 2 mm. ``min_lesion_mm3`` holds
    across grids (MSSEG-2016's minimum is 3 mm^3): 3 mm^3 is 3 voxels at 1 mm, 2 voxels at
    0.72 x 0.72 x 3 mm, 1 voxel at 2 mm.
    """
    if min_lesion_mm3 is None:
        return int(min_lesion_voxels)
    if min_lesion_mm3 < 0:
        raise ValueError(f"min_lesion_mm3 must be >= 0, got {min_lesion_mm3}")
    voxel_mm3 = abs(float(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3])))
    return int(np.ceil(min_lesion_mm3 / voxel_mm3 - 1e-9))


def _for_subject(min_lesion_voxels: int | Mapping[str, int], subject: str) -> int:
    """One subject's minimum lesion size: a mapping is looked up, a number used as is."""
    return int(min_lesion_voxels[subject]) if isinstance(min_lesion_voxels, Mapping) else int(min_lesion_voxels)


def lesion_metrics(
    prediction: np.ndarray,
    truth: np.ndarray,
    *,
    min_lesion_voxels: int = 3,
    min_overlap: float = 0.0,
    connectivity: int = 26,
) -> dict[str, float]:
    """Lesion-level detection metrics of a 3D prediction, as the MS lesion challenges define them.

    Parameters
    ----------
    prediction, truth : ndarray, shape (X, Y, Z)
        Binary masks on the same grid.
    min_lesion_voxels : int
        Connected components with fewer voxels are removed from *both* masks before lesions are
        counted and matched (config ``evaluation.min_lesion_voxels``). 0 or 1 keeps every
        component. Not applied to ``avd``.
    min_overlap : float in [0, 1)
        A reference lesion is detected when the fraction of its voxels covered by the (size
        filtered) prediction is greater than ``min_overlap``; a predicted lesion is a true
        positive when the fraction of its voxels inside the (size filtered) reference is greater
        than ``min_overlap``. 0 (default): any overlap of one voxel.
    connectivity : {6, 18, 26}
        3D neighbourhood of a lesion's voxels: faces, + edges, + corners.

    Returns
    -------
    metrics : dict
        Keys ``LESION_METRIC_KEYS``: ``true_lesions`` and ``predicted_lesions`` (components
        kept), ``detected_lesions`` (reference lesions hit), ``false_lesions`` (predicted lesions
        hitting no reference lesion), ``ltpr = detected / true``, ``lfpr = false / predicted``,
        ``lesion_f1`` (harmonic mean of LTPR and the lesion precision ``1 - LFPR``) and
        ``avd = |V_pred - V_true| / V_true * 100`` on the unfiltered masks' voxel counts.

    Notes
    -----
    Each side is matched independently, so a reference lesion split into two predicted pieces
    counts once as detected and both pieces as true positives (LTPR 1, LFPR 0), and one
    predicted blob over two reference lesions detects both (LTPR 1, LFPR 0).

    Empty sets: ``ltpr`` is NaN when there is no reference lesion and ``lfpr`` NaN when there is
    no predicted lesion (a rate over nothing; table means skip them). ``lesion_f1`` is always
    defined: 1 when both lesion sets are empty, 0 when exactly one is, else the harmonic mean
    (0 when LTPR and the precision are both 0). ``avd`` is 0 when both masks are empty and NaN
    when only the reference is.
    """
    prediction, truth = _as_binary_pair(prediction, truth)
    if prediction.ndim != 3:
        raise ValueError(f"expected 3D masks (X, Y, Z), got shape {prediction.shape}")
    if connectivity not in CONNECTIVITY_RANK:
        raise ValueError(f"connectivity must be one of {sorted(CONNECTIVITY_RANK)}, got {connectivity}")
    if int(min_lesion_voxels) != min_lesion_voxels or min_lesion_voxels < 0:
        raise ValueError(f"min_lesion_voxels must be an integer >= 0, got {min_lesion_voxels}")
    if not 0.0 <= min_overlap < 1.0:
        raise ValueError(f"min_overlap must be in [0, 1), got {min_overlap}")
    structure = ndimage.generate_binary_structure(3, CONNECTIVITY_RANK[connectivity])
    true_labels, true_sizes = _sized_components(truth, structure, int(min_lesion_voxels))
    pred_labels, pred_sizes = _sized_components(prediction, structure, int(min_lesion_voxels))
    n_true, n_pred = true_sizes.size, pred_sizes.size
    detected = int(_hit(true_labels, true_sizes, pred_labels > 0, min_overlap).sum())
    false = n_pred - int(_hit(pred_labels, pred_sizes, true_labels > 0, min_overlap).sum())
    nan = float("nan")
    ltpr = detected / n_true if n_true else nan
    lfpr = false / n_pred if n_pred else nan
    if n_true == 0 or n_pred == 0:
        f1 = 1.0 if n_true == n_pred else 0.0
    else:
        precision = 1.0 - lfpr
        f1 = 0.0 if ltpr + precision == 0 else 2 * ltpr * precision / (ltpr + precision)
    true_voxels, predicted_voxels = int(np.count_nonzero(truth)), int(np.count_nonzero(prediction))
    if true_voxels:
        avd = abs(predicted_voxels - true_voxels) / true_voxels * 100.0
    else:
        avd = 0.0 if predicted_voxels == 0 else nan
    return {
        "true_lesions": n_true, "predicted_lesions": n_pred, "detected_lesions": detected,
        "false_lesions": false, "ltpr": ltpr, "lfpr": lfpr, "lesion_f1": f1, "avd": avd,
    }


def false_positive_voxels(prediction: np.ndarray, truth: np.ndarray, *, axis: int = 2) -> dict[str, int]:
    """Predicted voxels outside the reference, split by whether their slice holds a reference lesion.

    Parameters
    ----------
    prediction, truth : ndarray, shape (X, Y, Z)
        Binary masks on the same grid.
    axis : int
        The slice axis (2: axial slices of a canonical RAS+ volume).

    Returns
    -------
    counts : dict
        ``false_positive_voxels`` (all of them) and ``false_positive_voxels_lesion_free``: those on
        slices without any reference voxel, where a model trained on lesion slices only (the
        paper's ``slices.brain_fraction: 0``) never saw an example. Multiply by the voxel volume
        (:func:`radfusion.predict.voxel_volume_ml`) for millilitres.
    """
    prediction, truth = _as_binary_pair(prediction, truth)
    false_positive = prediction & ~truth
    other_axes = tuple(a for a in range(truth.ndim) if a != axis % truth.ndim)
    lesion_free = ~truth.any(axis=other_axes)
    per_slice = false_positive.sum(axis=other_axes)
    return {
        "false_positive_voxels": int(per_slice.sum()),
        "false_positive_voxels_lesion_free": int(per_slice[lesion_free].sum()),
    }


def score_volume(
    prediction: np.ndarray,
    truth: np.ndarray,
    *,
    min_lesion_voxels: int = 3,
    min_overlap: float = 0.0,
    connectivity: int = 26,
) -> dict[str, float]:
    """Whole-volume scores of a 3D binary prediction against a 3D reference.

    Parameters
    ----------
    prediction, truth : ndarray, shape (X, Y, Z)
        Binary masks on the same grid.
    min_lesion_voxels, min_overlap, connectivity
        As :func:`lesion_metrics`.

    Returns
    -------
    scores : dict
        Keys ``VOLUME_SCORE_COLUMNS``: voxel-wise ``dice``, ``precision``, ``sensitivity``
        (:func:`overlap_scores`, module empty-mask convention, on the unfiltered masks), the
        :func:`lesion_metrics`, ``true_voxels`` and ``predicted_voxels``.
    """
    tp, fp, fn = confusion_counts(prediction, truth)
    scores = {
        **overlap_scores(tp, fp, fn),
        **lesion_metrics(
            prediction, truth, min_lesion_voxels=min_lesion_voxels, min_overlap=min_overlap, connectivity=connectivity
        ),
        "true_voxels": tp + fn,
        "predicted_voxels": tp + fp,
    }
    return {key: scores[key] for key in VOLUME_SCORE_COLUMNS}


def stack_exported_slices(masks: np.ndarray, slice_index: Sequence[int]) -> np.ndarray:
    """Slices (n, H, W) stacked in axial order, an empty slice between non-adjacent indices.

    3D labelling of the result equals labelling the subject's volume with only the exported
    slices filled: slices at consecutive indices touch, slices further apart never do.
    """
    masks = np.asarray(masks)
    index = np.asarray(slice_index, dtype=int)
    if index.size != masks.shape[0]:
        raise ValueError(f"expected one slice index per slice, got {index.size} for {masks.shape[0]} slices")
    if index.size == 0:
        return masks
    order = np.argsort(index, kind="stable")
    index = index[order]
    if np.any(np.diff(index) == 0):
        raise ValueError(f"slice indices repeat: {index.tolist()}")
    gaps = np.concatenate([[0], np.diff(index) > 1]).astype(int)
    position = np.arange(index.size) + np.cumsum(gaps)
    stack = np.zeros((int(position[-1]) + 1, *masks.shape[1:]), dtype=masks.dtype)
    stack[position] = masks[order]
    return stack


def _cv_lesion_columns(metrics: Mapping[str, float]) -> dict[str, float]:
    """:func:`lesion_metrics` keys renamed to their cross-validation table columns."""
    return {column: metrics[key] for key, column in CV_LESION_COLUMNS.items()}


def score_subject(
    predictions: np.ndarray,
    truths: np.ndarray,
    *,
    subject: str,
    fold: int,
    slice_index: Sequence[int],
    min_lesion_voxels: int = 3,
    min_overlap: float = 0.0,
) -> tuple[dict, list[dict]]:
    """Score one subject's predicted slices against the truth: pooled and per slice.

    Parameters
    ----------
    predictions, truths : ndarray, shape (n, H, W)
        Binary masks at the slices' original size.
    subject : str
    fold : int
    slice_index : sequence of int
        Axial index of each slice.
    min_lesion_voxels, min_overlap : optional
        Of :func:`lesion_metrics` (config ``evaluation``), for the ``CV_LESION_COLUMNS``.

    Returns
    -------
    subject_row : dict
        Keys of ``SUBJECT_COLUMNS``: voxel counts pooled over the n slices, scores from the
        pooled counts (not a mean of per-slice scores), 2D lesion counts summed over slices.
        The ``CV_LESION_COLUMNS`` are :func:`lesion_metrics` (26-connectivity) of the slices
        stacked in axial order (:func:`stack_exported_slices`): lesions join across exported
        slices only where their indices are adjacent. Scores are NaN when the subject has no
        exported slice.
    slice_rows : list of dict
        Keys of ``SLICE_COLUMNS``, one per slice; the ``CV_LESION_COLUMNS`` of a slice are
        :func:`lesion_metrics` of the slice alone (a one-slice volume).
    """
    predictions, truths = _as_binary_pair(predictions, truths)
    if predictions.ndim != 3 or predictions.shape[0] != len(slice_index):
        raise ValueError(
            f"expected (n, H, W) masks for {len(slice_index)} slices, got shape {predictions.shape}"
        )
    options = {"min_lesion_voxels": min_lesion_voxels, "min_overlap": min_overlap}
    slice_rows = []
    for k, p, t in zip(slice_index, predictions, truths):
        tp, fp, fn = confusion_counts(p, t)
        counts = lesion_counts(p, t)
        slice_rows.append(
            {
                "subject": subject, "fold": fold, "slice": int(k),
                **overlap_scores(tp, fp, fn),
                "lesion_f1": lesion_scores(counts)["lesion_f1"],
                "true_voxels": tp + fn, "predicted_voxels": tp + fp, "tp": tp, "fp": fp, "fn": fn,
                **counts,
                **_cv_lesion_columns(lesion_metrics(p[None], t[None], **options)),
            }
        )
    tp, fp, fn = (sum(row[key] for row in slice_rows) for key in ("tp", "fp", "fn"))
    counts = {key: sum(row[key] for row in slice_rows) for key in
              ("true_lesions", "detected_lesions", "predicted_lesions", "correct_predicted_lesions")}
    scores = {**overlap_scores(tp, fp, fn), **lesion_scores(counts)}
    if slice_rows:
        lesions = _cv_lesion_columns(
            lesion_metrics(
                stack_exported_slices(predictions, slice_index), stack_exported_slices(truths, slice_index), **options
            )
        )
    else:
        # No exported slice (e.g. an empty mask): nothing was scored, so no score (NaN), rather
        # than the "both empty" 1 that would inflate the fold mean.
        scores = dict.fromkeys(scores, float("nan"))
        lesions = _cv_lesion_columns(
            {key: 0 if key.endswith("_lesions") else float("nan") for key in LESION_METRIC_KEYS}
        )
    subject_row = {
        "subject": subject, "fold": fold, **scores,
        "n_slices": len(slice_rows), "true_voxels": tp + fn, "predicted_voxels": tp + fp,
        "tp": tp, "fp": fp, "fn": fn, **counts, **lesions,
    }
    return subject_row, slice_rows


def predict_probabilities(
    model: torch.nn.Module, images: torch.Tensor, *, precision: str | None = None, batch_size: int | None = None
) -> torch.Tensor:
    """Sigmoid probabilities (N, 1, H, W) of a model on images (N, C, H, W), returned on the CPU.

    Runs on the model's device in evaluation mode, channels-last, under ``torch.inference_mode``,
    in batches of ``batch_size`` (default :func:`radfusion.execution.inference_batch_size`).
    ``precision`` ("float32", "bfloat16", "float16"): the autocast type; ``None``: the machine's
    policy (:func:`radfusion.execution.autocast_precision`: float16 on CUDA; on a CPU bfloat16
    only where measured faster, float32 elsewhere), as in training.
    "int8" (CPU only): an int8 copy of the model (:func:`radfusion.quantize.quantize_int8`),
    calibrated on the :func:`radfusion.quantize.calibration_indices` slices of ``images``; those
    slices keep the probabilities of the calibration pass (the float network's, in the machine's
    training precision), and the int8 copy runs on the others.
    """
    from radfusion.execution import autocast_precision, inference_batch_size, prepare_for_inference

    device = next(model.parameters()).device
    precision = autocast_precision(device) if precision is None else precision
    batch_size = inference_batch_size(*images.shape[-2:], device) if batch_size is None else batch_size
    if precision != "int8":
        return _batched_probabilities(prepare_for_inference(model), images, device, precision, batch_size)
    from radfusion.quantize import calibration_indices, quantize_int8

    if device.type != "cpu":
        raise ValueError(f"int8 inference runs on the CPU; the model is on {device}")
    probabilities = torch.zeros((images.shape[0], 1, *images.shape[-2:]))
    if images.shape[0] == 0:
        return probabilities
    calibrated = calibration_indices(images.shape[0])
    quantized, logits = quantize_int8(model, images[calibrated], return_logits=True)
    probabilities[calibrated] = torch.sigmoid(logits)
    others = torch.ones(images.shape[0], dtype=torch.bool)
    others[calibrated] = False
    probabilities[others] = _batched_probabilities(quantized, images[others], device, "float32", batch_size)
    return probabilities


def _batched_probabilities(
    model: torch.nn.Module, images: torch.Tensor, device: torch.device, precision: str, batch_size: int
) -> torch.Tensor:
    """:func:`predict_probabilities`' pass: batches to ``device``, channels-last, autocast ``precision``."""
    from radfusion.execution import autocast

    parts = []
    with torch.inference_mode():
        for start in range(0, images.shape[0], batch_size):
            x = images[start : start + batch_size].to(device).contiguous(memory_format=torch.channels_last)
            with autocast(device, precision):
                logits = model(x)
            parts.append(torch.sigmoid(logits.float()).cpu())
    if not parts:
        return torch.zeros((0, 1, *images.shape[-2:]))
    return torch.cat(parts)


def predict_slice_masks(
    models: torch.nn.Module | Sequence[torch.nn.Module],
    images: np.ndarray,
    *,
    image_size: int,
    threshold: float = 0.5,
    channels: Sequence[int] | None = None,
    precision: str | None = None,
    box: Sequence[int] | None = None,
) -> np.ndarray:
    """Predict binary lesion masks for slices, at the slices' original size.

    The one inference path of the project: the evaluation calls it with one fold model, and
    ``radfusion predict`` (and the workflow's predict rule) with the fold models of a run, so
    the cross-validated Dice describes the procedure that segments new patients, up to the
    fold average.

    Parameters
    ----------
    models : nn.Module or sequence of nn.Module
        One trained network or several (logits out), on their device.
    images : ndarray, shape (n, C, H0, W0)
        Slices, per-slice min-max scaled: the exported slices (FLAIR, CR, RE) of
        :func:`radfusion.slices.export_slices`, or the models' channels only.
    image_size : int
        The models' input size.
    threshold : float in (0, 1)
        On the sigmoid probability, averaged over the models (``p > threshold`` is lesion).
    channels : sequence of int, optional
        The models' input channels among ``images``' channels; default: all of them.
    precision : str, optional
        Of :func:`predict_probabilities`; ``None``: the machine's policy.
    box : sequence of 4 int, optional
        For models trained with ``crop: brain``: the brain's box ``(x0, x1, y0, y1)``
        (:func:`radfusion.slices.brain_box`); only the box is resized and predicted, the masks
        are put back in place and are 0 outside it.

    Returns
    -------
    masks : ndarray of uint8, shape (n, H0, W0)

    Notes
    -----
    The preprocessing of training (bilinear resize to ``image_size``), then each model's
    sigmoid, their mean (the probabilities, not the logits or the votes, are averaged), the
    threshold at the model's size, and a nearest-neighbour resize back to (H0, W0), as in the
    paper ("predicted masks were resized to original dimensions using nearest-neighbor
    interpolation").
    """
    models = [models] if isinstance(models, torch.nn.Module) else list(models)
    if not models:
        raise ValueError("expected at least one model, got none")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"expected a threshold in (0, 1), got {threshold}")
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"expected images (n, C, H, W), got shape {images.shape}")
    height, width = images.shape[-2:]
    if images.shape[0] == 0:
        return np.zeros((0, height, width), dtype=np.uint8)
    if channels is not None:
        images = images[:, list(channels)]
    if box is not None:
        images = crop_to_box(images, box)
    x = resize_images(torch.from_numpy(np.ascontiguousarray(images)), image_size)
    total = None
    for model in models:
        probabilities = predict_probabilities(model, x, precision=precision)
        total = probabilities if total is None else total + probabilities
    binary = (total / len(models) > threshold).float()
    if box is None:
        return resize_masks(binary, (height, width))[:, 0].numpy().astype(np.uint8)
    masks = np.zeros((images.shape[0], height, width), dtype=np.uint8)
    crop_to_box(masks, box)[...] = resize_masks(binary, tuple(images.shape[-2:]))[:, 0].numpy()
    return masks


def prediction_volume(shape: Sequence[int], slice_index: Sequence[int], masks: np.ndarray) -> np.ndarray:
    """Place predicted slice masks (n, X, Y) at their axial indices of a zero volume of ``shape``.

    Slices that were not exported stay 0: the evaluation predicts only the exported slices.
    """
    volume = np.zeros(tuple(int(s) for s in shape), dtype=np.uint8)
    if len(slice_index):
        volume[:, :, np.asarray(slice_index, dtype=int)] = np.moveaxis(np.asarray(masks, dtype=np.uint8), 0, 2)
    return volume


def evaluate_cross_validation(
    model_paths: Mapping[int, str | os.PathLike],
    slice_paths: Mapping[str, str | os.PathLike],
    folds: Mapping[str, int],
    *,
    threshold: float = 0.5,
    device: str | torch.device | None = None,
    min_lesion_voxels: int | Mapping[str, int] = 3,
    min_overlap: float = 0.0,
    precision: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, np.ndarray]]:
    """Evaluate every fold's final model on its test subjects (SPEC stage 8).

    Parameters
    ----------
    model_paths : mapping
        ``fold -> model.pt`` (from :func:`radfusion.train.save_model`).
    slice_paths : mapping
        ``subject -> results/slices/{subject}.npz``.
    folds : mapping
        ``subject -> fold``; each subject is scored by the model of its own fold only.
    threshold : float
        On the sigmoid probability (config ``evaluation.threshold``).
    device : optional
        ``None``: CUDA when present, else the CPU.
    min_lesion_voxels, min_overlap : optional
        Of the lesion-level metrics (config ``evaluation``; :func:`lesion_metrics`);
        ``min_lesion_voxels`` may map subject -> voxels (:func:`min_lesion_size_voxels`).
    precision : optional
        The networks' arithmetic (:func:`predict_probabilities`); ``None``: the machine's policy,
        as the workflow evaluates (``benchmarks/cv_precision.py`` compares the others).

    Returns
    -------
    subjects : DataFrame
        One row per subject, columns ``SUBJECT_COLUMNS`` (:func:`score_subject`).
    slices : DataFrame
        One row per exported slice, columns ``SLICE_COLUMNS``.
    predictions : dict
        ``subject -> uint8 volume`` on the subject's grid: predictions on the exported slices,
        zeros elsewhere (:func:`prediction_volume`).
    """
    from radfusion.execution import resolve_device
    from radfusion.train import load_trained_model

    device = resolve_device(device)
    missing = sorted(set(folds.values()) - set(model_paths))
    if missing:
        raise ValueError(f"no model given for fold(s) {missing}")
    subject_rows, slice_rows, predictions = [], [], {}
    for fold in sorted(set(folds.values())):
        model, info = load_trained_model(model_paths[fold], device=device)
        for subject in sorted(s for s, f in folds.items() if f == fold):
            arrays = read_slices(slice_paths[subject], subject=subject)
            predicted = predict_slice_masks(
                model, arrays["images"], channels=info["channels"], image_size=info["image_size"], threshold=threshold,
                box=network_box(info["crop"], arrays["box"]), precision=precision,
            )
            row, rows = score_subject(
                predicted, arrays["masks"], subject=subject, fold=fold, slice_index=arrays["slice_index"],
                min_lesion_voxels=_for_subject(min_lesion_voxels, subject), min_overlap=min_overlap,
            )
            subject_rows.append(row)
            slice_rows.extend(rows)
            predictions[subject] = prediction_volume(arrays["shape"], arrays["slice_index"], predicted)
            log.info("fold %d, %s: Dice %.4f over %d slices", fold, subject, row["dice"], row["n_slices"])
    return (
        pd.DataFrame(subject_rows, columns=list(SUBJECT_COLUMNS)),
        pd.DataFrame(slice_rows, columns=list(SLICE_COLUMNS)),
        predictions,
    )


def best_flair_threshold(flair_slices: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> tuple[float, float]:
    """The global FLAIR threshold that maximizes the pooled Dice on the given slices.

    Parameters
    ----------
    flair_slices : sequence of ndarray
        FLAIR slices (per-slice min-max scaled, as exported), any shapes.
    masks : sequence of ndarray
        The matching binary lesion masks.

    Returns
    -------
    threshold : float
        Predicting ``flair >= threshold`` maximizes ``2 TP / (2 TP + FP + FN)`` pooled over
        all pixels (the smallest such threshold on ties).
    dice : float
        That pooled Dice.

    Notes
    -----
    Exhaustive and exact: every distinct lesion intensity is a candidate (a Dice-optimal
    threshold can always be moved up to the smallest lesion value it keeps), and the counts
    for each come from binary search in the sorted intensities.
    """
    flair = np.concatenate([np.asarray(f, dtype=np.float64).ravel() for f in flair_slices]) if flair_slices else np.zeros(0)
    truth = np.concatenate([np.asarray(m).astype(bool).ravel() for m in masks]) if masks else np.zeros(0, bool)
    if flair.shape != truth.shape:
        raise ValueError(f"FLAIR slices and masks hold different pixel counts: {flair.size} vs {truth.size}")
    lesion = np.sort(flair[truth])
    background = np.sort(flair[~truth])
    if lesion.size == 0:
        # Nothing to find: predicting nothing is exact (Dice 1 by the empty-mask convention).
        return float("inf"), 1.0
    candidates = np.unique(lesion)
    tp = lesion.size - np.searchsorted(lesion, candidates, side="left")
    fp = background.size - np.searchsorted(background, candidates, side="left")
    dice = 2 * tp / (lesion.size + tp + fp)
    best = int(np.argmax(dice))
    return float(candidates[best]), float(dice[best])


def evaluate_baselines(
    slice_paths: Mapping[str, str | os.PathLike],
    folds: Mapping[str, int],
    *,
    min_lesion_voxels: int | Mapping[str, int] = 3,
    min_overlap: float = 0.0,
) -> pd.DataFrame:
    """Score two non-learned baselines with the same metrics as the networks.

    Parameters
    ----------
    slice_paths : mapping
        ``subject -> exported slices (.npz)``.
    folds : mapping
        ``subject -> fold``.
    min_lesion_voxels, min_overlap : optional
        Of the lesion-level metrics (config ``evaluation``; :func:`lesion_metrics`);
        ``min_lesion_voxels`` may map subject -> voxels (:func:`min_lesion_size_voxels`).

    Returns
    -------
    baselines : DataFrame
        One row per (baseline, test subject): ``baseline``, ``threshold`` and the columns of
        ``SUBJECT_COLUMNS``. Baselines: ``all_background`` (predicts no lesion) and
        ``flair_threshold`` (``flair >= t`` with ``t`` from :func:`best_flair_threshold` on the
        training folds' slices, applied to the test fold).

    Notes
    -----
    The FLAIR-threshold baseline sees the same exported slices and the same per-slice min-max
    FLAIR channel as the networks, so a network that beats it has learned more than "lesions
    are bright".
    """
    arrays = {s: read_slices(slice_paths[s], subject=s) for s in sorted(folds)}
    rows = []
    for fold in sorted(set(folds.values())):
        train = [s for s in sorted(folds) if folds[s] != fold]
        threshold, train_dice = best_flair_threshold(
            [arrays[s]["images"][:, 0] for s in train], [arrays[s]["masks"] for s in train]
        )
        log.info("fold %d: FLAIR threshold %.4f (training Dice %.4f)", fold, threshold, train_dice)
        for subject in sorted(s for s in folds if folds[s] == fold):
            truth = arrays[subject]["masks"]
            candidates = {
                "all_background": (np.zeros_like(truth), float("nan")),
                "flair_threshold": ((arrays[subject]["images"][:, 0] >= threshold).astype(np.uint8), threshold),
            }
            for name, (predicted, t) in candidates.items():
                row, _ = score_subject(
                    predicted, truth, subject=subject, fold=fold, slice_index=arrays[subject]["slice_index"],
                    min_lesion_voxels=_for_subject(min_lesion_voxels, subject), min_overlap=min_overlap,
                )
                rows.append({"baseline": name, "threshold": t, **row})
    return pd.DataFrame(rows, columns=["baseline", "threshold", *SUBJECT_COLUMNS])


def write_table(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a results table as TSV, atomically."""
    from radfusion.io import atomic_output

    with atomic_output(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.10g")
