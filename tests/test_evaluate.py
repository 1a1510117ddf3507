"""Scoring of predicted masks (SPEC stage 8): hand-made cases and a brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from radfusion.evaluate import (
    false_positive_voxels,
    CV_LESION_COLUMNS,
    LESION_METRIC_KEYS,
    SLICE_COLUMNS,
    SUBJECT_COLUMNS,
    VOLUME_SCORE_COLUMNS,
    best_flair_threshold,
    dice_score,
    evaluate_baselines,
    lesion_counts,
    lesion_metrics,
    lesion_scores,
    precision_score,
    predict_slice_masks,
    prediction_volume,
    score_subject,
    score_volume,
    sensitivity_score,
    stack_exported_slices,
)
from radfusion.slices import save_slices


# --- independent brute-force reference -------------------------------------------------------
def brute_components(mask: np.ndarray) -> list[set]:
    """8-connected components of a 2D mask by breadth-first search over pixel tuples."""
    height, width = mask.shape
    seen, components = set(), []
    for i in range(height):
        for j in range(width):
            if mask[i, j] and (i, j) not in seen:
                queue, component = [(i, j)], set()
                seen.add((i, j))
                while queue:
                    a, b = queue.pop()
                    component.add((a, b))
                    for da in (-1, 0, 1):
                        for db in (-1, 0, 1):
                            na, nb = a + da, b + db
                            if 0 <= na < height and 0 <= nb < width and mask[na, nb] and (na, nb) not in seen:
                                seen.add((na, nb))
                                queue.append((na, nb))
                components.append(component)
    return components


def brute_scores(prediction: np.ndarray, truth: np.ndarray) -> dict:
    """Dice, precision, sensitivity and lesion F1 of a stack of slices, by loops."""
    tp = fp = fn = 0
    n_true = n_pred = detected = correct = 0
    for p, t in zip(prediction, truth):
        for value_p, value_t in zip(p.ravel().tolist(), t.ravel().tolist()):
            tp += value_p and value_t
            fp += value_p and not value_t
            fn += value_t and not value_p
        true_parts, pred_parts = brute_components(t), brute_components(p)
        predicted_pixels = {(i, j) for i, j in zip(*np.nonzero(p))}
        true_pixels = {(i, j) for i, j in zip(*np.nonzero(t))}
        n_true += len(true_parts)
        n_pred += len(pred_parts)
        detected += sum(bool(c & predicted_pixels) for c in true_parts)
        correct += sum(bool(c & true_pixels) for c in pred_parts)

    def ratio(a, b, empty):
        return (1.0 if empty else 0.0) if b == 0 else a / b

    empty = tp + fp + fn == 0
    lesion_empty = n_true == 0 and n_pred == 0
    lp, ls = ratio(correct, n_pred, lesion_empty), ratio(detected, n_true, lesion_empty)
    return {
        "dice": ratio(2 * tp, 2 * tp + fp + fn, empty),
        "precision": ratio(tp, tp + fp, empty),
        "sensitivity": ratio(tp, tp + fn, empty),
        "lesion_f1": 0.0 if lp + ls == 0 else 2 * lp * ls / (lp + ls),
        "true_lesions": n_true,
        "predicted_lesions": n_pred,
        "detected_lesions": detected,
        "correct_predicted_lesions": correct,
    }


# --- hand-made cases -------------------------------------------------------------------------
def test_hand_made_overlap():
    truth = np.zeros((6, 6), np.uint8)
    truth[1:3, 1:3] = 1  # 4 pixels
    prediction = np.zeros((6, 6), np.uint8)
    prediction[2:4, 1:3] = 1  # 4 pixels, 2 shared
    assert dice_score(prediction, truth) == pytest.approx(2 * 2 / 8)
    assert precision_score(prediction, truth) == pytest.approx(0.5)
    assert sensitivity_score(prediction, truth) == pytest.approx(0.5)


def test_empty_mask_conventions():
    empty = np.zeros((4, 4), np.uint8)
    full = np.ones((4, 4), np.uint8)
    # Nothing to find, nothing predicted: every score is 1.
    assert dice_score(empty, empty) == precision_score(empty, empty) == sensitivity_score(empty, empty) == 1.0
    assert lesion_scores(lesion_counts(empty, empty))["lesion_f1"] == 1.0
    # Lesions missed entirely: precision 0 (not undefined).
    assert (dice_score(empty, full), precision_score(empty, full), sensitivity_score(empty, full)) == (0.0, 0.0, 0.0)
    # Lesions predicted where there are none: sensitivity 0.
    assert (dice_score(full, empty), precision_score(full, empty), sensitivity_score(full, empty)) == (0.0, 0.0, 0.0)
    assert lesion_scores(lesion_counts(full, empty))["lesion_f1"] == 0.0


def test_lesion_detection_any_overlap_counts_and_diagonals_connect():
    truth = np.zeros((8, 8), np.uint8)
    truth[0, 0] = truth[1, 1] = 1  # one lesion (diagonal neighbours, 8-connectivity)
    truth[5:7, 5:7] = 1  # a second lesion, missed
    prediction = np.zeros((8, 8), np.uint8)
    prediction[1, 1] = 1  # touches lesion 1 by one pixel: detected
    prediction[4, 0] = 1  # a false-positive component
    counts = lesion_counts(prediction, truth)
    assert counts == {"true_lesions": 2, "detected_lesions": 1, "predicted_lesions": 2, "correct_predicted_lesions": 1}
    scores = lesion_scores(counts)
    assert scores["lesion_precision"] == scores["lesion_sensitivity"] == 0.5
    assert scores["lesion_f1"] == pytest.approx(0.5)


def test_lesions_do_not_join_across_slices():
    truth = np.zeros((2, 5, 5), np.uint8)
    truth[:, 2, 2] = 1  # same pixel on two slices: two 2D lesions
    assert lesion_counts(truth, truth)["true_lesions"] == 2


def test_subject_scores_pool_counts_not_slice_means():
    truth = np.zeros((2, 4, 4), np.uint8)
    truth[0, :2, :2] = 1  # 4 pixels on slice 0
    truth[1, :, :] = 1  # 16 pixels on slice 1
    prediction = truth.copy()
    prediction[0] = 0  # slice 0 missed: slice Dice 0 and 1, pooled 2*16/(16+20)
    row, rows = score_subject(prediction, truth, subject="s", fold=1, slice_index=[3, 7])
    assert [r["dice"] for r in rows] == [0.0, 1.0]
    assert [r["slice"] for r in rows] == [3, 7]
    assert row["dice"] == pytest.approx(32 / 36)
    assert row["n_slices"] == 2 and row["true_voxels"] == 20
    assert set(row) == set(SUBJECT_COLUMNS) and set(rows[0]) == set(SLICE_COLUMNS)


def test_subject_without_slices_scores_nan_not_one():
    row, rows = score_subject(np.zeros((0, 4, 4)), np.zeros((0, 4, 4)), subject="s", fold=1, slice_index=[])
    assert rows == [] and row["n_slices"] == 0
    assert all(np.isnan(row[key]) for key in ("dice", "precision", "sensitivity", "lesion_f1"))
    assert predict_slice_masks(BrightPixels(), np.zeros((0, 3, 20, 30)), channels=[0], image_size=32).shape == (0, 20, 30)


@pytest.mark.parametrize("seed", range(6))
def test_agrees_with_brute_force_on_random_masks(seed):
    rng = np.random.default_rng(seed)
    density = rng.uniform(0.02, 0.4)
    truth = (rng.random((3, 12, 14)) < density).astype(np.uint8)
    prediction = (rng.random((3, 12, 14)) < density).astype(np.uint8)
    if seed == 0:
        truth[1] = prediction[1] = 0  # an empty slice in the stack
    row, rows = score_subject(prediction, truth, subject="s", fold=1, slice_index=[0, 1, 2])
    expected = brute_scores(prediction, truth)
    for key, value in expected.items():
        assert row[key] == pytest.approx(value), key
    for i, slice_row in enumerate(rows):
        expected_slice = brute_scores(prediction[i : i + 1], truth[i : i + 1])
        for key in ("dice", "precision", "sensitivity", "lesion_f1"):
            assert slice_row[key] == pytest.approx(expected_slice[key]), (i, key)


def test_shape_mismatch_refused():
    with pytest.raises(ValueError, match="shape"):
        dice_score(np.zeros((3, 3)), np.zeros((3, 4)))


# --- lesion-level metrics (MS lesion challenges) ---------------------------------------------
NAN = float("nan")


def assert_metrics(metrics: dict, expected: dict):
    """Each expected key equals the metric (NaN matches NaN)."""
    for key, value in expected.items():
        if isinstance(value, float) and np.isnan(value):
            assert np.isnan(metrics[key]), (key, metrics[key])
        else:
            assert metrics[key] == pytest.approx(value), (key, metrics[key], value)


def line(length: int, *pieces: tuple[int, int]) -> np.ndarray:
    """A (3, length, 3) volume with voxels [start, stop) of its middle row set, per piece."""
    volume = np.zeros((3, length, 3), np.uint8)
    for start, stop in pieces:
        volume[1, start:stop, 1] = 1
    return volume


def test_prediction_splitting_one_lesion_detects_it_once_and_has_no_false_lesion():
    truth = line(14, (1, 13))  # one lesion, 12 voxels
    prediction = line(14, (1, 6), (8, 13))  # two pieces of 5 voxels inside it, a 2-voxel gap
    assert_metrics(
        lesion_metrics(prediction, truth),
        {"true_lesions": 1, "predicted_lesions": 2, "detected_lesions": 1, "false_lesions": 0,
         "ltpr": 1.0, "lfpr": 0.0, "lesion_f1": 1.0, "avd": 2 / 12 * 100},
    )


def test_prediction_merging_two_lesions_detects_both():
    truth = line(12, (1, 5), (6, 10))  # two lesions of 4 voxels, one voxel apart
    prediction = line(12, (1, 10))  # one blob over both and the gap
    assert_metrics(
        lesion_metrics(prediction, truth),
        {"true_lesions": 2, "predicted_lesions": 1, "detected_lesions": 2, "false_lesions": 0,
         "ltpr": 1.0, "lfpr": 0.0, "lesion_f1": 1.0, "avd": 1 / 8 * 100},
    )


def test_lesions_under_the_minimum_size_are_dropped_from_both_masks():
    truth = line(16, (1, 5), (8, 10))  # a 4-voxel lesion and a 2-voxel one
    prediction = line(16, (1, 5), (13, 15))  # finds the first; a 2-voxel false blob
    assert_metrics(
        lesion_metrics(prediction, truth),
        {"true_lesions": 1, "predicted_lesions": 1, "detected_lesions": 1, "false_lesions": 0,
         "ltpr": 1.0, "lfpr": 0.0, "lesion_f1": 1.0, "avd": 0.0},
    )
    # Counting every component: the small lesion is missed and the small blob is false.
    assert_metrics(
        lesion_metrics(prediction, truth, min_lesion_voxels=1),
        {"true_lesions": 2, "predicted_lesions": 2, "detected_lesions": 1, "false_lesions": 1,
         "ltpr": 0.5, "lfpr": 0.5, "lesion_f1": 0.5},
    )
    # A lesion hit only by a blob under the minimum size is not detected (the blob is dropped).
    assert_metrics(
        lesion_metrics(line(16, (1, 3)), line(16, (1, 5))),
        {"true_lesions": 1, "predicted_lesions": 0, "detected_lesions": 0, "ltpr": 0.0, "lesion_f1": 0.0, "avd": 50.0},
    )
    # A 3-voxel lesion is kept at the default (>= 3 voxels).
    assert lesion_metrics(line(8, (1, 4)), line(8, (1, 4)))["true_lesions"] == 1


def test_empty_reference():
    empty = line(10)
    prediction = line(10, (1, 5))
    assert_metrics(
        lesion_metrics(prediction, empty),
        {"true_lesions": 0, "predicted_lesions": 1, "detected_lesions": 0, "false_lesions": 1,
         "ltpr": NAN, "lfpr": 1.0, "lesion_f1": 0.0, "avd": NAN},
    )
    # Both empty: nothing to find, nothing found.
    assert_metrics(
        lesion_metrics(empty, empty),
        {"true_lesions": 0, "predicted_lesions": 0, "ltpr": NAN, "lfpr": NAN, "lesion_f1": 1.0, "avd": 0.0},
    )
    # Only blobs under the minimum size predicted: no lesion on either side (F1 1), but the
    # volumes differ (AVD undefined).
    assert_metrics(lesion_metrics(line(10, (1, 3)), empty), {"predicted_lesions": 0, "lesion_f1": 1.0, "avd": NAN})
    scores = score_volume(empty, empty)
    assert (scores["dice"], scores["precision"], scores["sensitivity"]) == (1.0, 1.0, 1.0)


def test_empty_prediction():
    truth = line(12, (1, 4), (6, 10))
    assert_metrics(
        lesion_metrics(line(12), truth),
        {"true_lesions": 2, "predicted_lesions": 0, "detected_lesions": 0, "false_lesions": 0,
         "ltpr": 0.0, "lfpr": NAN, "lesion_f1": 0.0, "avd": 100.0},
    )


def test_minimum_overlap_fraction():
    truth = line(20, (1, 11))  # 10 voxels
    prediction = line(20, (8, 18))  # 10 voxels, 3 of them inside the lesion
    expected_hit = {"detected_lesions": 1, "false_lesions": 0, "ltpr": 1.0, "lfpr": 0.0, "lesion_f1": 1.0}
    expected_miss = {"detected_lesions": 0, "false_lesions": 1, "ltpr": 0.0, "lfpr": 1.0, "lesion_f1": 0.0}
    assert_metrics(lesion_metrics(prediction, truth), expected_hit)  # any overlap
    assert_metrics(lesion_metrics(prediction, truth, min_overlap=0.25), expected_hit)
    assert_metrics(lesion_metrics(prediction, truth, min_overlap=0.3), expected_miss)  # 3/10 is not > 0.3
    # The two sides are judged separately: a large prediction covering a small lesion detects it,
    # but is itself a false positive when little of it lies inside the reference.
    small, large = line(20, (1, 4)), line(20, (1, 19))
    assert_metrics(
        lesion_metrics(large, small, min_overlap=0.5),
        {"detected_lesions": 1, "false_lesions": 1, "ltpr": 1.0, "lfpr": 1.0, "lesion_f1": 0.0},
    )


@pytest.mark.parametrize(
    "offset, expected",
    [((0, 0, 1), {6: 1, 18: 1, 26: 1}), ((0, 1, 1), {6: 2, 18: 1, 26: 1}), ((1, 1, 1), {6: 2, 18: 2, 26: 1})],
)
def test_connectivity(offset, expected):
    """Two voxels touching by a face, an edge or a corner."""
    volume = np.zeros((5, 5, 5), np.uint8)
    volume[2, 2, 2] = 1
    volume[tuple(2 + np.array(offset))] = 1
    for connectivity, n in expected.items():
        metrics = lesion_metrics(volume, volume, connectivity=connectivity, min_lesion_voxels=1)
        assert metrics["true_lesions"] == metrics["detected_lesions"] == n, connectivity
    # The default is 26: corners join.
    assert lesion_metrics(volume, volume, min_lesion_voxels=1)["true_lesions"] == 1


def test_lesion_metrics_refuses_bad_arguments():
    volume = line(5, (1, 4))
    with pytest.raises(ValueError, match="connectivity"):
        lesion_metrics(volume, volume, connectivity=8)
    with pytest.raises(ValueError, match="min_overlap"):
        lesion_metrics(volume, volume, min_overlap=1.0)
    with pytest.raises(ValueError, match="min_lesion_voxels"):
        lesion_metrics(volume, volume, min_lesion_voxels=-1)
    with pytest.raises(ValueError, match="3D"):
        lesion_metrics(volume[0], volume[0])


def test_false_positive_voxels_split_by_slices_with_and_without_reference_lesions():
    truth = np.zeros((5, 5, 4), dtype=np.uint8)
    truth[1:3, 1:3, 1] = 1  # a lesion on axial slice 1 only
    prediction = np.zeros_like(truth)
    prediction[1:3, 1:3, 1] = 1  # the lesion found: no false positive
    prediction[4, 4, 1] = 1  # 1 false positive on the lesion slice
    prediction[0, 0:3, 3] = 1  # 3 on lesion-free slice 3
    prediction[2, 2, 0] = 1  # 1 on lesion-free slice 0
    assert false_positive_voxels(prediction, truth) == {
        "false_positive_voxels": 5,
        "false_positive_voxels_lesion_free": 4,
    }
    # another slice axis: the lesion's rows x = 1, 2 are "slices with lesion" now
    assert false_positive_voxels(prediction, truth, axis=0) == {
        "false_positive_voxels": 5,
        "false_positive_voxels_lesion_free": 4,  # x = 0 (3 voxels) and x = 4 (1 voxel); x = 2 holds a lesion
    }
    assert false_positive_voxels(np.zeros_like(truth), truth)["false_positive_voxels"] == 0
    assert false_positive_voxels(prediction, np.zeros_like(truth)) == {
        "false_positive_voxels": int(prediction.sum()),
        "false_positive_voxels_lesion_free": int(prediction.sum()),
    }
    with pytest.raises(ValueError, match="differ in shape"):
        false_positive_voxels(prediction, truth[:, :, :3])


def test_score_volume_keys_and_voxel_scores():
    rng = np.random.default_rng(3)
    truth = (rng.random((6, 7, 8)) < 0.3).astype(np.uint8)
    prediction = (rng.random((6, 7, 8)) < 0.3).astype(np.uint8)
    scores = score_volume(prediction, truth)
    assert tuple(scores) == VOLUME_SCORE_COLUMNS
    assert set(LESION_METRIC_KEYS) <= set(VOLUME_SCORE_COLUMNS)
    assert scores["dice"] == pytest.approx(dice_score(prediction, truth))
    assert scores["precision"] == pytest.approx(precision_score(prediction, truth))
    assert scores["sensitivity"] == pytest.approx(sensitivity_score(prediction, truth))
    assert (scores["true_voxels"], scores["predicted_voxels"]) == (truth.sum(), prediction.sum())
    assert_metrics(scores, lesion_metrics(prediction, truth))


# Independent reference: flood fill over voxel tuples, sets for overlaps.
def brute_lesion_components(mask: np.ndarray, connectivity: int) -> list[set]:
    """Connected components of a 3D mask by breadth-first search, neighbours by offset type."""
    max_moved_axes = {6: 1, 18: 2, 26: 3}[connectivity]
    offsets = [
        (a, b, c)
        for a in (-1, 0, 1)
        for b in (-1, 0, 1)
        for c in (-1, 0, 1)
        if 0 < abs(a) + abs(b) + abs(c) <= max_moved_axes
    ]
    voxels = {tuple(int(i) for i in v) for v in zip(*np.nonzero(mask))}
    seen, components = set(), []
    for start in sorted(voxels):
        if start in seen:
            continue
        seen.add(start)
        queue, component = [start], set()
        while queue:
            voxel = queue.pop(0)
            component.add(voxel)
            for offset in offsets:
                neighbour = (voxel[0] + offset[0], voxel[1] + offset[1], voxel[2] + offset[2])
                if neighbour in voxels and neighbour not in seen:
                    seen.add(neighbour)
                    queue.append(neighbour)
        components.append(component)
    return components


def brute_lesion_metrics(prediction, truth, min_lesion_voxels, min_overlap, connectivity) -> dict:
    true_parts = [c for c in brute_lesion_components(truth, connectivity) if len(c) >= min_lesion_voxels]
    pred_parts = [c for c in brute_lesion_components(prediction, connectivity) if len(c) >= min_lesion_voxels]
    true_kept = set().union(*true_parts) if true_parts else set()
    pred_kept = set().union(*pred_parts) if pred_parts else set()
    detected = sum(len(c & pred_kept) / len(c) > min_overlap for c in true_parts)
    false = sum(not len(c & true_kept) / len(c) > min_overlap for c in pred_parts)
    n_true, n_pred = len(true_parts), len(pred_parts)
    ltpr = detected / n_true if n_true else NAN
    lfpr = false / n_pred if n_pred else NAN
    if n_true == 0 or n_pred == 0:
        f1 = 1.0 if n_true == n_pred else 0.0
    else:
        recall, precision = detected / n_true, (n_pred - false) / n_pred
        f1 = 0.0 if recall + precision == 0 else 2 * recall * precision / (recall + precision)
    v_true, v_pred = int(truth.sum()), int(prediction.sum())
    avd = abs(v_pred - v_true) / v_true * 100 if v_true else (0.0 if v_pred == 0 else NAN)
    return {"true_lesions": n_true, "predicted_lesions": n_pred, "detected_lesions": detected,
            "false_lesions": false, "ltpr": ltpr, "lfpr": lfpr, "lesion_f1": f1, "avd": avd}


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("connectivity", [6, 18, 26])
def test_lesion_metrics_agree_with_brute_force_on_random_masks(seed, connectivity):
    rng = np.random.default_rng(seed)
    shape = (5, 7, 6)
    truth = (rng.random(shape) < rng.uniform(0.05, 0.35)).astype(np.uint8)
    prediction = (rng.random(shape) < rng.uniform(0.05, 0.35)).astype(np.uint8)
    if seed == 0:
        prediction[:] = 0
    if seed == 1:
        truth[:] = 0
    for min_lesion_voxels in (1, 3, 5):
        for min_overlap in (0.0, 0.3, 0.5):
            metrics = lesion_metrics(
                prediction, truth, min_lesion_voxels=min_lesion_voxels, min_overlap=min_overlap, connectivity=connectivity
            )
            expected = brute_lesion_metrics(prediction, truth, min_lesion_voxels, min_overlap, connectivity)
            assert tuple(metrics) == LESION_METRIC_KEYS
            assert_metrics(metrics, expected)


# --- lesion-level metrics in the cross-validation tables -------------------------------------
def test_existing_columns_keep_their_place_and_new_ones_follow():
    assert SUBJECT_COLUMNS[:18] == (
        "subject", "fold", "dice", "precision", "sensitivity", "lesion_f1", "lesion_precision",
        "lesion_sensitivity", "n_slices", "true_voxels", "predicted_voxels", "tp", "fp", "fn",
        "true_lesions", "predicted_lesions", "detected_lesions", "correct_predicted_lesions",
    )
    assert SLICE_COLUMNS[:16] == (
        "subject", "fold", "slice", "dice", "precision", "sensitivity", "lesion_f1", "true_voxels",
        "predicted_voxels", "tp", "fp", "fn", "true_lesions", "predicted_lesions", "detected_lesions",
        "correct_predicted_lesions",
    )
    new = tuple(CV_LESION_COLUMNS.values())
    assert SUBJECT_COLUMNS[18:] == new and SLICE_COLUMNS[16:] == new
    assert set(CV_LESION_COLUMNS) == set(LESION_METRIC_KEYS)


def test_stack_exported_slices_keeps_only_adjacent_slices_adjacent():
    masks = np.arange(4)[:, None, None] + np.ones((4, 2, 2), int)  # slice k holds k + 1
    stack = stack_exported_slices(masks, [9, 3, 4, 7])
    assert stack[:, 0, 0].tolist() == [2, 3, 0, 4, 0, 1]
    assert stack_exported_slices(masks[:0], []).shape == (0, 2, 2)
    with pytest.raises(ValueError, match="repeat"):
        stack_exported_slices(masks[:2], [3, 3])


@pytest.mark.parametrize("slice_index, lesions", [([4, 5], 1), ([4, 7], 2)])
def test_subject_lesions_join_across_adjacent_exported_slices_only(slice_index, lesions):
    truth = np.zeros((2, 6, 6), np.uint8)
    truth[:, 2:4, 2:4] = 1  # the same 4 pixels on both slices
    row, rows = score_subject(truth, truth, subject="s", fold=1, slice_index=slice_index)
    assert row["true_lesions_3d"] == row["detected_lesions_3d"] == lesions
    assert row["true_lesions"] == 2  # the 2D per-slice count is unchanged
    assert row["ltpr_3d"] == row["lesion_f1_3d"] == 1.0 and row["lfpr_3d"] == 0.0 and row["avd"] == 0.0
    assert [r["true_lesions_3d"] for r in rows] == [1, 1]


def test_subject_lesion_columns_are_lesion_metrics_of_the_placed_slices():
    rng = np.random.default_rng(5)
    truth = (rng.random((4, 9, 8)) < 0.3).astype(np.uint8)
    prediction = (rng.random((4, 9, 8)) < 0.3).astype(np.uint8)
    slice_index = [2, 3, 6, 10]
    row, rows = score_subject(
        prediction, truth, subject="s", fold=1, slice_index=slice_index, min_lesion_voxels=2, min_overlap=0.2
    )
    volume_truth = prediction_volume((9, 8, 12), slice_index, truth)
    volume_prediction = prediction_volume((9, 8, 12), slice_index, prediction)
    expected = lesion_metrics(volume_prediction, volume_truth, min_lesion_voxels=2, min_overlap=0.2)
    assert_metrics({key: row[column] for key, column in CV_LESION_COLUMNS.items()}, expected)
    for i, slice_row in enumerate(rows):
        expected = lesion_metrics(prediction[i : i + 1], truth[i : i + 1], min_lesion_voxels=2, min_overlap=0.2)
        assert_metrics({key: slice_row[column] for key, column in CV_LESION_COLUMNS.items()}, expected)


def test_subject_without_slices_has_no_lesion_scores():
    row, _ = score_subject(np.zeros((0, 4, 4)), np.zeros((0, 4, 4)), subject="s", fold=1, slice_index=[])
    assert all(np.isnan(row[c]) for c in ("ltpr_3d", "lfpr_3d", "lesion_f1_3d", "avd"))
    assert row["true_lesions_3d"] == row["predicted_lesions_3d"] == 0


# --- prediction and baselines ----------------------------------------------------------------
class BrightPixels(nn.Module):
    """Logit +10 where channel 0 exceeds 0.5, -10 elsewhere (a model whose answer is known)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))

    def forward(self, x):
        return torch.where(x[:, :1] > 0.5, 10.0, -10.0) * self.scale


def test_predict_slice_masks_resizes_back_with_nearest_neighbour():
    images = np.zeros((2, 3, 20, 30), np.float32)
    images[0, 0, :10, :15] = 1.0  # one quadrant bright
    masks = predict_slice_masks(BrightPixels(), images, channels=[0], image_size=32)
    assert masks.shape == (2, 20, 30) and masks.dtype == np.uint8
    assert masks[1].sum() == 0
    # Bilinear down/up-sampling blurs the border by at most a pixel or two.
    assert dice_score(masks[0], images[0, 0] > 0.5) > 0.9
    assert masks[0, 2:8, 2:12].all() and not masks[0, 12:, 17:].any()


def test_predict_slice_masks_in_a_box_puts_the_masks_back_in_place():
    images = np.zeros((1, 3, 40, 60), np.float32)
    images[0, 0, 12:20, 30:45] = 1.0
    images[0, 0, 0:3, 0:3] = 1.0  # bright outside the box: never predicted there
    box = (10, 26, 24, 56)
    masks = predict_slice_masks(BrightPixels(), images, channels=[0], image_size=32, box=box)
    assert masks.shape == (1, 40, 60)
    inside = predict_slice_masks(BrightPixels(), images[:, :, 10:26, 24:56], channels=[0], image_size=32)
    np.testing.assert_array_equal(masks[:, 10:26, 24:56], inside)
    assert masks.sum() == inside.sum() and not masks[0, :3, :3].any()
    assert dice_score(masks[0], images[0, 0, :, :] * (np.arange(40)[:, None] >= 10) > 0.5) > 0.9


def test_prediction_volume_places_slices_and_leaves_zeros():
    masks = np.ones((2, 4, 5), np.uint8)
    volume = prediction_volume((4, 5, 6), [1, 4], masks)
    assert volume.shape == (4, 5, 6)
    assert volume[:, :, [1, 4]].all() and volume.sum() == 40


def test_best_flair_threshold_is_exact():
    flair = [np.array([[0.1, 0.9], [0.8, 0.3]]), np.array([[0.85, 0.2], [0.7, 0.95]])]
    masks = [np.array([[0, 1], [1, 0]]), np.array([[1, 0], [0, 1]])]
    threshold, dice = best_flair_threshold(flair, masks)
    assert threshold == pytest.approx(0.8) and dice == pytest.approx(1.0)
    # Against a dense scan of thresholds on random data.
    rng = np.random.default_rng(0)
    flair = [rng.random((10, 10))]
    masks = [(flair[0] + rng.normal(0, 0.3, (10, 10)) > 0.8).astype(np.uint8)]
    threshold, dice = best_flair_threshold(flair, masks)
    scan = max(dice_score(flair[0] >= t, masks[0]) for t in np.unique(flair[0]))
    assert dice == pytest.approx(scan)
    assert dice_score(flair[0] >= threshold, masks[0]) == pytest.approx(dice)


def test_evaluate_baselines_uses_training_folds_only(tmp_path):
    paths, folds = {}, {}
    for i, level in enumerate([0.9, 0.9, 0.6]):
        images = np.zeros((1, 3, 8, 8), np.float32)
        masks = np.zeros((1, 8, 8), np.uint8)
        masks[0, 2:4, 2:4] = 1
        images[0, 0][masks[0] == 1] = level
        images[0, 0, 6, 6] = 0.7  # a bright non-lesion pixel
        subject = f"s{i}"
        paths[subject] = tmp_path / f"{subject}.npz"
        save_slices({"images": images, "masks": masks, "slice_index": np.array([3]), "shape": np.array([8, 8, 5])}, paths[subject])
        folds[subject] = i + 1
    table = evaluate_baselines(paths, folds)
    flair = table[table["baseline"] == "flair_threshold"].set_index("subject")
    background = table[table["baseline"] == "all_background"].set_index("subject")
    assert (background["dice"] == 0).all()
    # Folds 1 and 2 learn 0.6 or 0.9 from the others; s2's lesion (0.6) is found only when the
    # training folds include it.
    assert flair.loc["s0", "threshold"] == pytest.approx(0.6) and flair.loc["s0", "dice"] == pytest.approx(8 / 9)
    assert flair.loc["s2", "threshold"] == pytest.approx(0.9) and flair.loc["s2", "dice"] == 0.0


class ConstantProbability(torch.nn.Module):
    """A network whose sigmoid output is ``p`` everywhere."""

    def __init__(self, p: float):
        super().__init__()
        self.logit = torch.nn.Parameter(torch.tensor(float(np.log(p / (1 - p)))))

    def forward(self, x):
        return self.logit.expand(x.shape[0], 1, *x.shape[-2:])


@pytest.mark.parametrize(
    "probabilities, lesion",
    [
        ([0.999, 0.2, 0.2], False),  # mean 0.466; a mean of logits would call it lesion
        ([0.6, 0.6, 0.01], False),  # mean 0.403; a majority vote would call it lesion
        ([0.7, 0.4, 0.5], True),  # mean 0.533
        ([0.7], True),  # one model: the evaluation's case
    ],
)
def test_several_models_average_their_probabilities(probabilities, lesion):
    images = np.random.default_rng(0).uniform(size=(2, 3, 20, 12)).astype(np.float32)
    masks = predict_slice_masks(
        [ConstantProbability(p) for p in probabilities], images, channels=[0], image_size=32, threshold=0.5
    )
    assert masks.shape == (2, 20, 12) and masks.dtype == np.uint8
    assert (masks == int(lesion)).all()


def test_one_model_or_a_list_of_it_give_the_same_masks():
    images = np.random.default_rng(1).uniform(size=(3, 3, 20, 30)).astype(np.float32)
    single = predict_slice_masks(BrightPixels(), images, channels=[0], image_size=32)
    assert single.any() and not single.all()
    np.testing.assert_array_equal(single, predict_slice_masks([BrightPixels()], images, channels=[0], image_size=32))
    np.testing.assert_array_equal(
        single, predict_slice_masks([BrightPixels(), BrightPixels()], images[:, :1], image_size=32)
    )


def test_min_lesion_size_in_mm3_holds_across_grids():
    from radfusion.evaluate import min_lesion_size_voxels

    thick = np.diag([0.72, 0.72, 3.0, 1.0])
    assert min_lesion_size_voxels(np.eye(4), min_lesion_mm3=3.0) == 3
    assert min_lesion_size_voxels(thick, min_lesion_mm3=3.0) == 2  # 2 x 1.555 mm^3 >= 3 mm^3
    assert min_lesion_size_voxels(np.diag([2.0, 2.0, 2.0, 1.0]), min_lesion_mm3=3.0) == 1
    assert min_lesion_size_voxels(thick, min_lesion_voxels=3) == 3  # unset: voxels, as before
    with pytest.raises(ValueError, match="min_lesion_mm3"):
        min_lesion_size_voxels(thick, min_lesion_mm3=-1.0)


@pytest.mark.parametrize("precision", [None, "float32", "bfloat16"])
def test_cross_validation_runs_the_networks_in_the_precision_asked(tmp_path, monkeypatch, precision):
    """``precision`` reaches the inference path (None: the machine's policy, as the workflow runs it)."""
    import radfusion.evaluate as evaluate_module
    from radfusion.evaluate import evaluate_cross_validation
    from radfusion.models import build_model
    from radfusion.train import save_model

    seen = []
    original = evaluate_module.predict_probabilities

    def recording(model, images, *, precision=None, batch_size=None):
        seen.append(precision)
        return original(model, images, precision=precision, batch_size=batch_size)

    monkeypatch.setattr(evaluate_module, "predict_probabilities", recording)
    torch.manual_seed(0)
    save_model(build_model("resnext_unet", 1).eval(), tmp_path / "m.pt", model_name="resnext_unet", input_name="mri",
               image_size=32)
    images = np.random.default_rng(0).uniform(size=(2, 3, 32, 32)).astype(np.float32)
    masks = np.zeros((2, 32, 32), np.uint8)
    masks[:, 10:14, 10:14] = 1
    save_slices({"images": images, "masks": masks, "slice_index": np.array([1, 3]), "shape": np.array([32, 32, 5])},
                tmp_path / "s1.npz")
    subjects, _, _ = evaluate_cross_validation({1: tmp_path / "m.pt"}, {"s1": tmp_path / "s1.npz"}, {"s1": 1},
                                               device="cpu", precision=precision)
    assert seen == [precision] and len(subjects) == 1
