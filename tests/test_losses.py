"""Tests of radfusion.losses against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from radfusion.losses import DiceBCELoss, DiceLoss, build_loss, soft_dice_loss

LN3 = math.log(3.0)  # sigmoid(ln 3) = 0.75


def as_batch(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).reshape(1, 1, 2, 2)


def test_dice_of_half_probabilities_by_hand():
    # p = 0.5 everywhere, t = [1, 1, 0, 0]: sum(p t) = 1, sum p = 2, sum t = 2.
    loss = DiceLoss()(as_batch([0, 0, 0, 0]), as_batch([1, 1, 0, 0]))
    assert loss.item() == pytest.approx(1 - (2 * 1 + 1) / (2 + 2 + 1))  # 0.4


def test_dice_of_three_quarter_probabilities_by_hand():
    # p = [.75, .75, .25, .25], t = [1, 1, 0, 0]: sum(p t) = 1.5, sum p = 2, sum t = 2.
    loss = DiceLoss()(as_batch([LN3, LN3, -LN3, -LN3]), as_batch([1, 1, 0, 0]))
    assert loss.item() == pytest.approx(1 - (3 + 1) / (4 + 1))  # 0.2
    # without smoothing: 1 - 3 / 4
    unsmoothed = DiceLoss(smooth=0.0)(as_batch([LN3, LN3, -LN3, -LN3]), as_batch([1, 1, 0, 0]))
    assert unsmoothed.item() == pytest.approx(0.25)


def test_perfect_prediction_gives_zero_dice_loss():
    target = as_batch([1, 0, 1, 0])
    logits = (2 * target - 1) * 50.0
    assert DiceLoss()(logits, target).item() == pytest.approx(0.0, abs=1e-6)


def test_empty_target_handling():
    empty = as_batch([0, 0, 0, 0])
    # Empty prediction on an empty target: 1 - smooth / (sum p + smooth) ~ 0.
    assert DiceLoss()(torch.full_like(empty, -50.0), empty).item() == pytest.approx(0.0, abs=1e-6)
    # Four false positives on an empty target: 1 - 1 / (4 + 1).
    assert DiceLoss()(torch.full_like(empty, 50.0), empty).item() == pytest.approx(0.8)
    # Half probabilities: sum p = 2 -> 1 - 1 / 3.
    assert DiceLoss()(torch.zeros_like(empty), empty).item() == pytest.approx(2 / 3)


def test_dice_is_pooled_over_the_batch_not_averaged_per_slice():
    # Slice 1: perfect on 2 lesion pixels; slice 2: empty target, two p = 0.5 pixels.
    logits = torch.tensor([[50.0, 50.0, -50.0, -50.0], [0.0, 0.0, -50.0, -50.0]]).reshape(2, 1, 2, 2)
    target = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]).reshape(2, 1, 2, 2)
    # pooled: sum(p t) = 2, sum p = 3, sum t = 2 -> 1 - 5 / 6
    assert DiceLoss()(logits, target).item() == pytest.approx(1 / 6, abs=1e-6)


def test_dice_bce_equals_half_dice_plus_half_bce_by_hand():
    logits, target = as_batch([0, 0, 0, 0]), as_batch([1, 1, 0, 0])
    # BCE of p = 0.5 is ln 2 at every pixel; Dice loss is 0.4 (above).
    assert DiceBCELoss()(logits, target).item() == pytest.approx(0.5 * 0.4 + 0.5 * math.log(2.0))


def test_dice_bce_on_random_tensors_combines_its_parts():
    torch.manual_seed(0)
    logits = torch.randn(3, 1, 8, 8) * 3
    target = (torch.rand(3, 1, 8, 8) > 0.7).float()
    expected = 0.5 * DiceLoss()(logits, target) + 0.5 * F.binary_cross_entropy_with_logits(logits, target)
    torch.testing.assert_close(DiceBCELoss()(logits, target), expected)
    gamma = 0.25
    expected = gamma * soft_dice_loss(logits, target) + (1 - gamma) * F.binary_cross_entropy_with_logits(
        logits, target
    )
    torch.testing.assert_close(DiceBCELoss(gamma=gamma)(logits, target), expected)


def test_losses_are_stable_and_differentiable_for_large_logits():
    logits = torch.tensor([[[[200.0, -200.0], [-200.0, 200.0]]]], requires_grad=True)
    target = as_batch([0, 1, 1, 0])
    loss = DiceBCELoss()(logits, target)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_build_loss_names():
    assert isinstance(build_loss("dice"), DiceLoss)
    dice_bce = build_loss("dice_bce")
    assert isinstance(dice_bce, DiceBCELoss) and dice_bce.gamma == 0.5
    with pytest.raises(ValueError, match="unknown loss 'bce'"):
        build_loss("bce")


def test_shape_mismatch_and_bad_parameters_raise():
    with pytest.raises(ValueError, match="same shape"):
        DiceLoss()(torch.zeros(1, 1, 4, 4), torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="gamma must be in"):
        DiceBCELoss(gamma=1.5)
    with pytest.raises(ValueError, match="smooth must be non-negative"):
        DiceLoss(smooth=-1)
