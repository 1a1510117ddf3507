"""Attention-augmented U-Net: an FC-DenseNet (Tiramisu) with Squeeze-and-Attention blocks.

After rondinella2023 (public code: ictlab-unict/attention-cnn-MS-segmentation) without its
bidirectional ConvLSTM in the bottleneck, as the paper describes: FC-DenseNet-67-style
dense blocks of 5 layers with growth rate 12, and a Squeeze-and-Attention block (zhong2020)
after every dense block of the encoder and of the decoder.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from radfusion.models.blocks import Conv2dBNReLU, check_input_size

# FX graphs (int8 quantization, radfusion.quantize) record the input check as one call.
torch.fx.wrap("check_input_size")


class DenseLayer(nn.Sequential):
    """BN - ReLU - 3x3 conv (``growth_rate`` filters) - dropout.

    Notes
    -----
    Parameters: ``2 * in`` (BN) + ``9 * in * growth_rate + growth_rate`` (conv).
    Dropout is channel-wise (``nn.Dropout2d``), as in rondinella2023's code.
    """

    def __init__(self, in_channels: int, growth_rate: int, dropout: float) -> None:
        super().__init__(
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, growth_rate, kernel_size=3, padding=1),
            nn.Dropout2d(dropout),
        )


class DenseBlock(nn.Module):
    """``n_layers`` dense layers, each fed the concatenation of the input and all earlier outputs.

    Parameters
    ----------
    in_channels, growth_rate, n_layers : int
        Layer ``j`` (0-based) sees ``in_channels + j * growth_rate`` channels and adds
        ``growth_rate``.
    dropout : float
        Dropout probability of each layer.
    new_features_only : bool
        Return only the ``n_layers * growth_rate`` new feature maps (the bottleneck and the
        up-path blocks of Tiramisu, which keeps the up path from growing) instead of the
        whole stack ``in_channels + n_layers * growth_rate``.
    """

    def __init__(
        self,
        in_channels: int,
        growth_rate: int,
        n_layers: int,
        dropout: float,
        *,
        new_features_only: bool = False,
    ) -> None:
        super().__init__()
        self.new_features_only = new_features_only
        self.layers = nn.ModuleList(
            DenseLayer(in_channels + j * growth_rate, growth_rate, dropout) for j in range(n_layers)
        )
        self.out_channels = n_layers * growth_rate + (0 if new_features_only else in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        new_features = []
        for layer in self.layers:
            out = layer(x)
            x = torch.cat([x, out], dim=1)
            new_features.append(out)
        return torch.cat(new_features, dim=1) if self.new_features_only else x


class TransitionDown(nn.Sequential):
    """BN - ReLU - 1x1 conv (channels kept) - dropout - 2x2 max-pool.

    Notes
    -----
    Parameters: ``2 * c`` (BN) + ``c * c + c`` (conv).
    """

    def __init__(self, channels: int, dropout: float) -> None:
        super().__init__(
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, kernel_size=1),
            nn.Dropout2d(dropout),
            nn.MaxPool2d(2),
        )


class TransitionUp(nn.Module):
    """3x3 stride-2 transposed conv, cropped to the skip's size and concatenated with it.

    Notes
    -----
    With padding 0 the transposed conv maps h to ``2h + 1``; the centre crop (as in
    Tiramisu and rondinella2023) keeps the first ``2h`` rows and columns. Output channels:
    ``out_channels + skip channels``, in the order [upsampled, skip]. Parameters:
    ``9 * in * out + out``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.upsample = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        out = self.upsample(x)
        height, width = skip.shape[-2:]
        top = (out.shape[-2] - height) // 2
        left = (out.shape[-1] - width) // 2
        out = out[:, :, top : top + height, left : left + width]
        return torch.cat([out, skip], dim=1)


class SqueezeAttentionBlock(nn.Module):
    """Squeeze-and-Attention: ``x_res * x_att + x_att``, channels preserved.

    Parameters
    ----------
    channels : int
        Channels in and out.

    Notes
    -----
    ``x_res`` = two 3x3 conv-BN-ReLU of ``x``; ``x_att`` = two 3x3 conv-BN-ReLU (separate
    weights) of the 2x2 average-pooled ``x``, upsampled bilinearly back to ``x``'s size.
    The product re-weights the local features by the pooled (non-local) attention and the
    added ``x_att`` keeps its context (zhong2020, Eq. of the SA module). Parameters:
    ``4 * (9c^2 + c + 2c)``. Needs even height and width.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(Conv2dBNReLU(channels, channels), Conv2dBNReLU(channels, channels))
        self.attention = nn.Sequential(Conv2dBNReLU(channels, channels), Conv2dBNReLU(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_res = self.residual(x)
        x_att = self.attention(F.avg_pool2d(x, kernel_size=2))
        x_att = F.interpolate(x_att, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return x_res * x_att + x_att


class AttentionUNet(nn.Module):
    """FC-DenseNet (Tiramisu) U-Net with Squeeze-and-Attention after every dense block.

    Parameters
    ----------
    in_channels : int
        Input channels: 1 for FLAIR only, 3 for FLAIR + CR + RE.
    n_classes : int
        Output logits per pixel (1 for lesion vs background).
    first_filters : int
        Filters of the first 3x3 convolution (48).
    down_layers : sequence of int
        Dense layers in each down block; its length is the number of resolution levels.
    bottleneck_layers : int
        Dense layers of the bottleneck (5).
    growth_rate : int
        Feature maps added by each dense layer (12).
    dropout : float
        Dropout probability of dense layers and transitions down (0.2).

    Notes
    -----
    Channel counts with the defaults (F = 48, five levels of 5 layers, g = 12, so each
    block adds 60 maps); spatial size in units of the input H:

    =====================  =========  ======================  ==========
    stage                  size       channels in -> out      SA on
    =====================  =========  ======================  ==========
    first 3x3 conv         H          in_channels -> 48
    down block 1 + SA      H          48 -> 108               108
    TD 1                   H -> H/2   108 -> 108
    down block 2 + SA      H/2        108 -> 168              168
    down block 3 + SA      H/4        168 -> 228              228
    down block 4 + SA      H/8        228 -> 288              288
    down block 5 + SA      H/16       288 -> 348              348
    TD 5                   H/32       348 -> 348
    bottleneck             H/32       348 -> 60 (new only)
    TU 1 + skip 5          H/16       60 -> 60 + 348 = 408
    up block 1 + SA        H/16       408 -> 60 (new only)    60
    TU 2 + skip 4          H/8        60 + 288 = 348 -> 60    60
    TU 3 + skip 3          H/4        60 + 228 = 288 -> 60    60
    TU 4 + skip 2          H/2        60 + 168 = 228 -> 60    60
    TU 5 + skip 1          H          60 + 108 = 168 -> 228   228
    final 1x1 conv         H          228 -> n_classes
    =====================  =========  ======================  ==========

    Skips are taken after the encoder SA blocks. As in Tiramisu the bottleneck and up
    blocks 1-4 pass on only their new feature maps (so each transition up upsamples only
    those 60) and the last up block returns its whole stack (168 + 60 = 228). The
    Squeeze-and-Attention block follows every dense block of the encoder and decoder,
    the last decoder block included (the SPEC; rondinella2023's code omits that last
    one), none after the bottleneck. The LSTM of rondinella2023 is not used. Conv weights
    are initialized Kaiming-uniform with zero bias, as in rondinella2023's code.

    H and W must be multiples of 32 (five 2x2 max-pools); :attr:`size_multiple` holds it.
    The output is logits of shape (B, n_classes, H, W).

    References
    ----------
    rondinella2023: A. Rondinella et al., "Boosting multiple sclerosis lesion segmentation
    through attention mechanism", Computers in Biology and Medicine 161, 2023.
    jegou2017: S. Jegou et al., "The one hundred layers Tiramisu: fully convolutional
    DenseNets for semantic segmentation", CVPR Workshops 2017.
    zhong2020: Z. Zhong et al., "Squeeze-and-attention networks for semantic
    segmentation", CVPR 2020.
    """

    def __init__(
        self,
        in_channels: int = 3,
        n_classes: int = 1,
        first_filters: int = 48,
        down_layers: Sequence[int] = (5, 5, 5, 5, 5),
        bottleneck_layers: int = 5,
        growth_rate: int = 12,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        for name, value in [
            ("in_channels", in_channels),
            ("n_classes", n_classes),
            ("first_filters", first_filters),
            ("bottleneck_layers", bottleneck_layers),
            ("growth_rate", growth_rate),
        ]:
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        down_layers = tuple(down_layers)
        if not down_layers or any(not isinstance(n, int) or n < 1 for n in down_layers):
            raise ValueError(
                f"down_layers must be a non-empty sequence of positive integers; got {down_layers!r}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {dropout!r}")
        self.in_channels = in_channels
        # Five max-pools, and the SA block at the deepest encoder level pools once more.
        self.size_multiple = 2 ** len(down_layers)

        self.first_conv = nn.Conv2d(in_channels, first_filters, kernel_size=3, padding=1)
        channels = first_filters
        skip_channels = []
        self.down_blocks = nn.ModuleList()
        self.down_attention = nn.ModuleList()
        self.transitions_down = nn.ModuleList()
        for n_layers in down_layers:
            block = DenseBlock(channels, growth_rate, n_layers, dropout)
            channels = block.out_channels
            self.down_blocks.append(block)
            self.down_attention.append(SqueezeAttentionBlock(channels))
            self.transitions_down.append(TransitionDown(channels, dropout))
            skip_channels.append(channels)

        self.bottleneck = DenseBlock(
            channels, growth_rate, bottleneck_layers, dropout, new_features_only=True
        )
        upsampled = self.bottleneck.out_channels

        self.transitions_up = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        self.up_attention = nn.ModuleList()
        up_layers = down_layers[::-1]
        for level, (n_layers, skip) in enumerate(zip(up_layers, reversed(skip_channels))):
            last = level == len(up_layers) - 1
            self.transitions_up.append(TransitionUp(upsampled, upsampled))
            block = DenseBlock(upsampled + skip, growth_rate, n_layers, dropout, new_features_only=not last)
            self.up_blocks.append(block)
            self.up_attention.append(SqueezeAttentionBlock(block.out_channels))
            upsampled = block.out_channels

        self.final_conv = nn.Conv2d(upsampled, n_classes, kernel_size=1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(
            x, in_channels=self.in_channels, size_multiple=self.size_multiple, model="attention_unet"
        )
        out = self.first_conv(x)
        skips = []
        for block, attention, down in zip(self.down_blocks, self.down_attention, self.transitions_down):
            out = attention(block(out))
            skips.append(out)
            out = down(out)
        out = self.bottleneck(out)
        for up, block, attention in zip(self.transitions_up, self.up_blocks, self.up_attention):
            out = attention(block(up(out, skips.pop())))
        return self.final_conv(out)
