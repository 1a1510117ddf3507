"""Scoring of predicted masks (SPEC stage 8): hand-made cases and a brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from radfusion.evaluate import (
    SLICE_COLUMNS,
    SUBJECT_COLUMNS,
    best_flair_threshold,
    dice_score,
    evaluate_baselines,
    lesion_counts,
    lesion_scores,
    precision_score,
    predict_slice_masks,
    prediction_volume,
    score_subject,
    sensitivity_score,
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
