"""Scoring of predicted lesion masks and the cross-validation evaluation (SPEC stage 8).

Metrics are computed at each slice's original resolution on binary masks:

- voxel-wise Dice, precision and sensitivity, per slice and per subject (counts pooled over the
  subject's exported slices);
- lesion-wise detection: 2D connected components (8-connectivity) per slice, a lesion counts as
  detected when any of its pixels is predicted, a predicted component counts as correct when it
  touches any true lesion pixel; lesion precision, sensitivity and their F1 (harmonic mean).

Empty-mask convention, the same for every ratio: when a ratio's denominator is zero, it scores 1
if both masks (or both lesion sets) are empty and 0 otherwise. So a slice where nothing is to be
found and nothing is predicted scores Dice = precision = sensitivity = lesion F1 = 1; predicting
nothing where there are lesions gives precision 0 (not undefined); predicting lesions where there
are none gives sensitivity 0.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import ndimage

from radfusion.slices import read_slices, resize_images, resize_masks

log = logging.getLogger(__name__)

SUBJECT_COLUMNS = (
    "subject", "fold", "dice", "precision", "sensitivity", "lesion_f1", "lesion_precision",
    "lesion_sensitivity", "n_slices", "true_voxels", "predicted_voxels", "tp", "fp", "fn",
    "true_lesions", "predicted_lesions", "detected_lesions", "correct_predicted_lesions",
)
SLICE_COLUMNS = (
    "subject", "fold", "slice", "dice", "precision", "sensitivity", "lesion_f1", "true_voxels",
    "predicted_voxels", "tp", "fp", "fn", "true_lesions", "predicted_lesions", "detected_lesions",
    "correct_predicted_lesions",
)
# 8-connectivity in 2D: diagonal neighbours belong to the same lesion.
CONNECTIVITY_2D = np.ones((3, 3), dtype=bool)
INFERENCE_BATCH = 32


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


def score_subject(
    predictions: np.ndarray,
    truths: np.ndarray,
    *,
    subject: str,
    fold: int,
    slice_index: Sequence[int],
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

    Returns
    -------
    subject_row : dict
        Keys of ``SUBJECT_COLUMNS``: voxel counts pooled over the n slices, scores from the
        pooled counts (not a mean of per-slice scores), lesion counts summed over slices.
        Scores are NaN when the subject has no exported slice.
    slice_rows : list of dict
        Keys of ``SLICE_COLUMNS``, one per slice.
    """
    predictions, truths = _as_binary_pair(predictions, truths)
    if predictions.ndim != 3 or predictions.shape[0] != len(slice_index):
        raise ValueError(
            f"expected (n, H, W) masks for {len(slice_index)} slices, got shape {predictions.shape}"
        )
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
            }
        )
    tp, fp, fn = (sum(row[key] for row in slice_rows) for key in ("tp", "fp", "fn"))
    counts = {key: sum(row[key] for row in slice_rows) for key in
              ("true_lesions", "detected_lesions", "predicted_lesions", "correct_predicted_lesions")}
    scores = {**overlap_scores(tp, fp, fn), **lesion_scores(counts)}
    if not slice_rows:
        # No exported slice (e.g. an empty mask): nothing was scored, so no score (NaN), rather
        # than the "both empty" 1 that would inflate the fold mean.
        scores = dict.fromkeys(scores, float("nan"))
    subject_row = {
        "subject": subject, "fold": fold, **scores,
        "n_slices": len(slice_rows), "true_voxels": tp + fn, "predicted_voxels": tp + fp,
        "tp": tp, "fp": fp, "fn": fn, **counts,
    }
    return subject_row, slice_rows


def predict_probabilities(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Sigmoid probabilities (N, 1, H, W) of a model on images (N, C, H, W), returned on the CPU.

    Runs on the model's device in evaluation mode without gradients, in batches of 32,
    under float16 autocast on CUDA.
    """
    device = next(model.parameters()).device
    model.eval()
    parts = []
    with torch.no_grad():
        for start in range(0, images.shape[0], INFERENCE_BATCH):
            x = images[start : start + INFERENCE_BATCH].to(device)
            with torch.autocast(device_type=device.type, enabled=device.type == "cuda"):
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
    x = resize_images(torch.from_numpy(np.ascontiguousarray(images)), image_size)
    total = None
    for model in models:
        probabilities = predict_probabilities(model, x)
        total = probabilities if total is None else total + probabilities
    binary = (total / len(models) > threshold).float()
    return resize_masks(binary, (height, width))[:, 0].numpy().astype(np.uint8)


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
    from radfusion.train import load_trained_model, resolve_device

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
                model, arrays["images"], channels=info["channels"], image_size=info["image_size"], threshold=threshold
            )
            row, rows = score_subject(
                predicted, arrays["masks"], subject=subject, fold=fold, slice_index=arrays["slice_index"]
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
) -> pd.DataFrame:
    """Score two non-learned baselines with the same metrics as the networks.

    Parameters
    ----------
    slice_paths : mapping
        ``subject -> exported slices (.npz)``.
    folds : mapping
        ``subject -> fold``.

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
                    predicted, truth, subject=subject, fold=fold, slice_index=arrays[subject]["slice_index"]
                )
                rows.append({"baseline": name, "threshold": t, **row})
    return pd.DataFrame(rows, columns=["baseline", "threshold", *SUBJECT_COLUMNS])


def write_table(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a results table as TSV, atomically."""
    from radfusion.io import atomic_output

    with atomic_output(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.10g")
