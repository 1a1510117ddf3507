"""Building blocks shared by the segmentation networks.

Small ``nn.Module`` pieces in the manner of segmentation-models-pytorch's ``base``
package: each reads like one box of the paper's figure.
"""

from __future__ import annotations

import torch
from torch import nn


class Conv2dReLU(nn.Sequential):
    """A 2D convolution with bias followed by ReLU (no normalization).

    Parameters
    ----------
    in_channels, out_channels : int
        Channels in and out.
    kernel_size : int
        Square kernel size; padding is ``kernel_size // 2`` so that odd kernels keep the
        spatial size.

    Notes
    -----
    The ResNeXt-UNet decoder and head (rai2021) use plain convolution + ReLU; unlike
    ``segmentation_models_pytorch.base.Conv2dReLU`` there is no batch normalization.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
            nn.ReLU(inplace=True),
        )


class Conv2dBNReLU(nn.Sequential):
    """A 3x3 convolution with bias, batch normalization and ReLU.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels in and out.

    Notes
    -----
    The unit of the Squeeze-and-Attention branches (zhong2020), ordered conv-BN-ReLU as
    in rondinella2023's public code. Parameters: ``9 * in * out + out`` (conv) plus
    ``2 * out`` (BN scale and shift).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


def check_input_size(x: torch.Tensor, *, in_channels: int, size_multiple: int, model: str) -> None:
    """Raise a ValueError unless ``x`` is (B, in_channels, H, W) with H, W multiples of a number.

    Parameters
    ----------
    x : torch.Tensor
        The network input.
    in_channels : int
        Channels the network was built for.
    size_multiple : int
        The product of the network's down-sampling factors; H and W must be multiples of it
        so that every skip connection meets a feature map of the same size.
    model : str
        Name used in the message.
    """
    if x.ndim != 4:
        raise ValueError(
            f"{model} expects a 4D input (batch, channels, height, width); "
            f"got a tensor of shape {tuple(x.shape)}"
        )
    if x.shape[1] != in_channels:
        raise ValueError(
            f"{model} was built for {in_channels} input channel(s); "
            f"got an input with {x.shape[1]} (shape {tuple(x.shape)})"
        )
    height, width = x.shape[-2:]
    if height % size_multiple or width % size_multiple:
        raise ValueError(
            f"{model} needs height and width that are multiples of {size_multiple}; "
            f"got {height}x{width} (resize or pad the slices, e.g. to 224 or 256)"
        )
