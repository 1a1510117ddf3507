"""Building blocks shared by the segmentation networks.

Small ``nn.Module`` pieces in the manner of segmentation-models-pytorch's ``base``
package: each reads like one box of the paper's figure.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class Conv2dReLU(nn.Sequential):
    """A 2D convolution followed by ReLU, with batch normalization between them by default.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels in and out.
    kernel_size : int
        Square kernel size; padding is ``kernel_size // 2`` so that odd kernels keep the
        spatial size.
    batchnorm : bool
        conv (no bias) - BN - ReLU, as ``segmentation_models_pytorch.base.Conv2dReLU`` with
        ``use_batchnorm=True``; False gives conv (with bias) - ReLU, rai2021's plain decoder.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, *, batchnorm: bool = True) -> None:
        conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=not batchnorm)
        norm = [nn.BatchNorm2d(out_channels)] if batchnorm else []
        super().__init__(conv, *norm, nn.ReLU(inplace=True))


def init_relu_convolutions(module: nn.Module) -> None:
    """He initialization of every convolution in ``module``, batch norms to the identity.

    Notes
    -----
    ``kaiming_normal_(mode="fan_in", nonlinearity="relu")`` (he2015, Eq. 10), zero biases,
    BN scale 1 and shift 0: a stack of conv-ReLU layers then keeps its activations' second
    moment instead of dividing it by about 6 per layer, as PyTorch's default
    (``kaiming_uniform_`` with ``a=sqrt(5)``, variance ``1 / (3 fan_in)``) does. For a
    transposed convolution the fan-in is the number of inputs that reach one output,
    ``in_channels * (k / stride)**2``.

    References
    ----------
    he2015: K. He et al., "Delving deep into rectifiers", ICCV 2015.
    """
    for m in module.modules():
        if isinstance(m, nn.ConvTranspose2d):
            taps = math.prod(k / s for k, s in zip(m.kernel_size, m.stride))
            nn.init.normal_(m.weight, std=math.sqrt(2.0 / (m.in_channels * taps)))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def prior_bias(prior: float) -> float:
    """The logit of a foreground prior: the output bias that starts a sigmoid head at ``prior``.

    ``b = log(prior / (1 - prior))`` (lin2017, Section 4.1, "Initialization"): the first steps
    then need not spend themselves pushing every pixel to background.

    References
    ----------
    lin2017: T.-Y. Lin et al., "Focal loss for dense object detection", ICCV 2017.
    """
    if not 0.0 < prior < 1.0:
        raise ValueError(f"expected a prior in (0, 1), got {prior}")
    return float(torch.logit(torch.tensor(prior, dtype=torch.float64)))


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
