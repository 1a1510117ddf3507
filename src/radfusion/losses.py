"""Segmentation losses on logits: soft Dice and Dice + binary cross-entropy.

The networks return logits; these losses apply the sigmoid themselves (BCE through
``binary_cross_entropy_with_logits``, which is numerically stable for large logits).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LOSS_NAMES = ("dice", "dice_bce")


def _check_pair(logits: torch.Tensor, target: torch.Tensor) -> None:
    if logits.shape != target.shape:
        raise ValueError(
            f"logits and target must have the same shape; got {tuple(logits.shape)} "
            f"and {tuple(target.shape)}"
        )


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, *, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice loss of sigmoid(logits) against a binary target, pooled over the batch.

    Parameters
    ----------
    logits : torch.Tensor
        Network output, any shape (e.g. (B, 1, H, W)).
    target : torch.Tensor
        Binary mask of the same shape (0/1, any dtype).
    smooth : float
        Added to numerator and denominator (1.0).

    Returns
    -------
    torch.Tensor
        Scalar ``1 - (2 * sum(p * t) + smooth) / (sum(p) + sum(t) + smooth)`` with
        ``p = sigmoid(logits)``.

    Notes
    -----
    The sums run over every element of the batch at once (one Dice for the batch, not a
    mean of per-slice Dice), as in the Dice losses of rai2021's and rondinella2023's
    code; a lesion-free slice then costs only its false-positive mass. ``smooth`` keeps
    the loss defined on an all-empty batch: an empty target with an empty prediction
    gives ``1 - smooth / (sum(p) + smooth)``, close to 0 when ``sum(p)`` is small next to
    ``smooth``, and tending to 1 as the prediction fills with false positives. A perfect
    non-empty prediction gives ``1 - (2n + smooth) / (2n + smooth) = 0``.
    """
    _check_pair(logits, target)
    if smooth < 0:
        raise ValueError(f"smooth must be non-negative; got {smooth}")
    probability = torch.sigmoid(logits.float())
    target = target.to(probability.dtype)
    intersection = (probability * target).sum()
    total = probability.sum() + target.sum()
    return 1.0 - (2.0 * intersection + smooth) / (total + smooth)


class DiceLoss(nn.Module):
    """Soft Dice loss on logits (see :func:`soft_dice_loss`).

    Parameters
    ----------
    smooth : float
        Smoothing term added to numerator and denominator (1.0).
    """

    def __init__(self, smooth: float = 1.0) -> None:
        super().__init__()
        if smooth < 0:
            raise ValueError(f"smooth must be non-negative; got {smooth}")
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return soft_dice_loss(logits, target, smooth=self.smooth)


class DiceBCELoss(nn.Module):
    """``gamma * Dice + (1 - gamma) * BCE`` on logits.

    Parameters
    ----------
    gamma : float
        Weight of the Dice term in [0, 1] (0.5: equal weighting, the paper's ResNeXt-UNet
        protocol).
    smooth : float
        Smoothing term of the Dice part (1.0).

    Notes
    -----
    BCE is ``binary_cross_entropy_with_logits`` averaged over all pixels of the batch;
    the Dice part is :func:`soft_dice_loss`.
    """

    def __init__(self, gamma: float = 0.5, smooth: float = 1.0) -> None:
        super().__init__()
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1]; got {gamma}")
        if smooth < 0:
            raise ValueError(f"smooth must be non-negative; got {smooth}")
        self.gamma = gamma
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        dice = soft_dice_loss(logits, target, smooth=self.smooth)
        bce = F.binary_cross_entropy_with_logits(logits.float(), target.float())
        return self.gamma * dice + (1.0 - self.gamma) * bce


def build_loss(name: str) -> nn.Module:
    """The training loss by its config name.

    Parameters
    ----------
    name : {"dice", "dice_bce"}
        ``"dice"``: :class:`DiceLoss` (attention_unet protocol); ``"dice_bce"``:
        :class:`DiceBCELoss` with gamma 0.5 (resnext_unet protocol).

    Returns
    -------
    torch.nn.Module
        Called as ``loss(logits, target)``, returning a scalar tensor.
    """
    if name == "dice":
        return DiceLoss()
    if name == "dice_bce":
        return DiceBCELoss(gamma=0.5)
    raise ValueError(f"unknown loss {name!r}; expected one of {', '.join(LOSS_NAMES)}")
