"""ResNeXt-UNet: a ResNeXt-50 32x4d encoder with a light transposed-convolution decoder.

The paper's CNN (after rai2021): the segmentation-models-pytorch ResNeXt-50 32x4d encoder
with its stem max-pool removed, four decoder blocks added to the encoder's skips, and a
two-convolution head that returns logits at the input resolution.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from segmentation_models_pytorch.encoders import get_encoder
from torch import nn

from radfusion.models.blocks import Conv2dReLU, check_input_size, init_relu_convolutions, prior_bias

# FX graphs (int8 quantization, radfusion.quantize) record the input check as one call.
torch.fx.wrap("check_input_size")

ENCODER_NAME = "resnext50_32x4d"

#: Where ``encoder_weights="imagenet"`` is looked for, in order. The first is the file
#: segmentation-models-pytorch itself downloads (Hugging Face hub cache), the others the
#: torchvision ImageNet checkpoints in the torch hub cache. Nothing is ever downloaded.
IMAGENET_HF_REPO = "smp-hub/resnext50_32x4d.imagenet"
IMAGENET_HF_REVISION = "329793c85d62fd340ae42ae39fb905a63df872e7"
IMAGENET_TORCHVISION_FILES = ("resnext50_32x4d-7cdf4587.pth", "resnext50_32x4d-1a0047aa.pth")


class DecoderBlock(nn.Module):
    """Upsample by 2: 1x1 conv (in -> in/4), 4x4 stride-2 transposed conv, 1x1 conv (-> out).

    Parameters
    ----------
    in_channels : int
        Channels of the coarser feature map (divisible by 4).
    out_channels : int
        Channels after the block, equal to those of the skip it is added to.
    batchnorm : bool
        Batch normalization after each 1x1 convolution (before its ReLU), as in smp's U-Net
        decoder; False gives rai2021's plain conv-ReLU.

    Notes
    -----
    The transposed convolution (kernel 4, stride 2, padding 1) maps H to
    ``(H - 1) * 2 - 2 + 4 = 2H`` exactly. It has no activation of its own, as in rai2021's
    decoder.
    """

    def __init__(self, in_channels: int, out_channels: int, *, batchnorm: bool = True) -> None:
        super().__init__()
        if in_channels % 4:
            raise ValueError(f"in_channels must be divisible by 4; got {in_channels}")
        mid = in_channels // 4
        self.reduce = Conv2dReLU(in_channels, mid, kernel_size=1, batchnorm=batchnorm)
        self.upsample = nn.ConvTranspose2d(mid, mid, kernel_size=4, stride=2, padding=1)
        self.expand = Conv2dReLU(mid, out_channels, kernel_size=1, batchnorm=batchnorm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expand(self.upsample(self.reduce(x)))


class ResNeXtUNet(nn.Module):
    """ResNeXt-50 32x4d U-Net returning one logit per pixel.

    Parameters
    ----------
    in_channels : int
        Input channels: 1 for FLAIR only, 3 for FLAIR + CR + RE.
    encoder_weights : str or None
        ``None`` for random initialization; ``"imagenet"`` to load ImageNet weights from a
        pre-filled cache (never downloaded; see :func:`load_encoder_weights`); or the path
        of a local weights file.
    decoder_batchnorm : bool
        conv-BN-ReLU in the decoder blocks and the head (default) instead of rai2021's
        conv-ReLU.
    he_init : bool
        He-initialize the decoder and head (:func:`init_relu_convolutions`) instead of
        PyTorch's default, which shrinks the signal about 6-fold per layer.
    zero_init_residual : bool
        Start every residual block of a randomly initialized encoder as the identity (the last
        BN's scale at 0; goyal2017); ignored when ``encoder_weights`` are loaded.
    output_prior : float or None
        Start the output at this lesion probability (bias ``logit(prior)``, lin2017); ``None``
        leaves the bias at 0 (probability 0.5).

    Notes
    -----
    Encoder (``smp.encoders.get_encoder("resnext50_32x4d", depth=5)``) with its max-pool
    replaced by the identity, so for an input of H x W the features are

    ======  ========  ==========  =================================
    name    channels  resolution  module
    ======  ========  ==========  =================================
    stem    64        H/2         conv1 (7x7, stride 2) + BN + ReLU
    e1      256       H/2         layer1 (no max-pool before it)
    e2      512       H/4         layer2
    e3      1024      H/8         layer3
    e4      2048      H/16        layer4
    ======  ========  ==========  =================================

    Decoder: ``d4 = D(2048->1024)(e4) + e3`` (H/8), ``d3 = D(1024->512)(d4) + e2`` (H/4),
    ``d2 = D(512->256)(d3) + e1`` (H/2), ``d1 = D(256->256)(d2)`` (H); head
    3x3 conv 256->128 + BN + ReLU, 3x3 conv 128->1. Each ``D`` doubles the resolution, so
    the logits come out at H x W. H and W must be multiples of 16 (the encoder's total
    stride without the max-pool); :attr:`size_multiple` holds it.

    The defaults of ``decoder_batchnorm``, ``he_init``, ``zero_init_residual`` and
    ``output_prior`` depart from rai2021's plain decoder so that the network leaves the
    all-background start within ~100 steps at the paper's learning rate; the measurements
    behind each are in docs/decisions.md ("ResNeXt-UNet start") and
    ``benchmarks/bench_plateau.py``.

    The output is logits: apply ``torch.sigmoid`` for probabilities.

    References
    ----------
    rai2021: H. M. Rai, K. Chatterjee, "Automatic and accurate abnormality detection from
    brain MR images using a novel hybrid UnetResNext-50 deep CNN model", Biomedical Signal
    Processing and Control 66, 2021.
    xie2017: S. Xie et al., "Aggregated residual transformations for deep neural
    networks", CVPR 2017.
    goyal2017: P. Goyal et al., "Accurate, large minibatch SGD: training ImageNet in 1 hour",
    arXiv:1706.02677 (zero-initialized last BN of each residual block).
    lin2017: T.-Y. Lin et al., "Focal loss for dense object detection", ICCV 2017.
    """

    size_multiple = 16

    def __init__(
        self,
        in_channels: int = 3,
        encoder_weights: str | os.PathLike | None = None,
        *,
        decoder_batchnorm: bool = True,
        he_init: bool = False,
        zero_init_residual: bool = True,
        output_prior: float | None = 0.01,
    ) -> None:
        super().__init__()
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be a positive integer; got {in_channels!r}")
        self.in_channels = in_channels
        self.encoder = build_encoder(in_channels, encoder_weights=encoder_weights)
        if zero_init_residual and encoder_weights is None:
            zero_init_last_batchnorm(self.encoder)
        self.decoder4 = DecoderBlock(2048, 1024, batchnorm=decoder_batchnorm)
        self.decoder3 = DecoderBlock(1024, 512, batchnorm=decoder_batchnorm)
        self.decoder2 = DecoderBlock(512, 256, batchnorm=decoder_batchnorm)
        self.decoder1 = DecoderBlock(256, 256, batchnorm=decoder_batchnorm)
        self.head = nn.Sequential(
            Conv2dReLU(256, 128, kernel_size=3, batchnorm=decoder_batchnorm),
            nn.Conv2d(128, 1, kernel_size=3, padding=1),
        )
        if he_init:
            for block in (self.decoder4, self.decoder3, self.decoder2, self.decoder1, self.head[0]):
                init_relu_convolutions(block)
            # The output layer has no ReLU after it: Glorot (xavier) as smp's heads.
            nn.init.xavier_uniform_(self.head[1].weight)
            nn.init.zeros_(self.head[1].bias)
        if output_prior is not None:
            nn.init.constant_(self.head[1].bias, prior_bias(output_prior))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(
            x, in_channels=self.in_channels, size_multiple=self.size_multiple, model="resnext_unet"
        )
        _, _, e1, e2, e3, e4 = self.encoder(x)
        d4 = self.decoder4(e4) + e3
        d3 = self.decoder3(d4) + e2
        d2 = self.decoder2(d3) + e1
        d1 = self.decoder1(d2)
        return self.head(d1)


def zero_init_last_batchnorm(encoder: nn.Module) -> None:
    """Set the scale of the last BN of every ResNeXt bottleneck to 0 (goyal2017, Section 5.1).

    Each residual block then starts as the identity, so a randomly initialized 50-layer
    encoder passes its stem's signal to every skip unchanged instead of amplifying it block by
    block (torchvision's ``zero_init_residual=True``).
    """
    for m in encoder.modules():
        last = getattr(m, "bn3", None)
        if isinstance(last, nn.BatchNorm2d) and hasattr(m, "conv3"):
            nn.init.zeros_(last.weight)


def build_encoder(in_channels: int, *, encoder_weights: str | os.PathLike | None = None) -> nn.Module:
    """The smp ResNeXt-50 32x4d encoder without its stem max-pool, optionally with weights.

    Parameters
    ----------
    in_channels : int
        Input channels.
    encoder_weights : str, path or None
        ``None``, ``"imagenet"`` or a local weights file; see :func:`load_encoder_weights`.

    Returns
    -------
    torch.nn.Module
        The encoder; ``encoder(x)`` returns six feature maps ``[x, stem, e1, e2, e3, e4]``.

    Notes
    -----
    Pretrained weights are three-channel; they are loaded first and the first convolution
    is then adapted with smp's ``patch_first_conv`` (``encoder.set_in_channels(...,
    pretrained=True)``): for one channel the RGB kernels are summed, for more channels
    the RGB kernels are repeated cyclically and scaled by ``3 / in_channels``.
    """
    if encoder_weights is None:
        encoder = get_encoder(ENCODER_NAME, in_channels=in_channels, depth=5, weights=None)
    else:
        state_dict = load_encoder_weights(encoder_weights)
        file_channels = state_dict["conv1.weight"].shape[1]
        encoder = get_encoder(ENCODER_NAME, in_channels=3, depth=5, weights=None)
        if file_channels == 3:
            _load_strict(encoder, state_dict, encoder_weights)
            encoder.set_in_channels(in_channels, pretrained=True)
        elif file_channels == in_channels:
            encoder.set_in_channels(in_channels, pretrained=False)
            _load_strict(encoder, state_dict, encoder_weights)
        else:
            raise ValueError(
                f"encoder weights {encoder_weights!s} have a first convolution for "
                f"{file_channels} input channels; expected 3 (to be adapted) or {in_channels}"
            )
    # The paper's encoder keeps the stem at H/2 resolution for the first skip (rai2021).
    encoder.maxpool = nn.Identity()
    return encoder


def load_encoder_weights(encoder_weights: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read ResNeXt-50 32x4d encoder weights from a local file or a pre-filled cache.

    Parameters
    ----------
    encoder_weights : str or path
        ``"imagenet"``: the first file that exists of (1) segmentation-models-pytorch's
        ``model.safetensors`` of ``smp-hub/resnext50_32x4d.imagenet`` in the Hugging Face
        hub cache (``HF_HUB_CACHE`` / ``HF_HOME``), (2) torchvision's
        ``resnext50_32x4d-7cdf4587.pth`` or ``-1a0047aa.pth`` in
        ``<torch.hub.get_dir()>/checkpoints`` (``TORCH_HOME``). Otherwise a path to a
        ``.safetensors`` or ``torch.save`` file holding a state dict of the smp encoder or
        of torchvision/timm ``resnext50_32x4d`` (the classifier ``fc.*`` is dropped; a
        ``encoder.`` prefix from a whole smp model is stripped).

    Returns
    -------
    dict
        The state dict, on the CPU.

    Notes
    -----
    Nothing is downloaded: only local files are read, so runs without network behave
    the same as runs with it. A missing file raises FileNotFoundError naming every place
    that was looked at.
    """
    if str(encoder_weights) == "imagenet":
        path = find_imagenet_weights()
    else:
        path = Path(encoder_weights)
        if not path.is_file():
            raise FileNotFoundError(
                f"encoder weights file {path} does not exist; encoder_weights must be None, "
                f"'imagenet' or the path of a local weights file"
            )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state_dict = load_file(str(path), device="cpu")
        else:
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch and safetensors raise many types for bad files
        raise ValueError(f"cannot read encoder weights from {path}: {error}") from error
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ValueError(f"encoder weights file {path} does not hold a state dict of tensors")
    state_dict = {
        key.removeprefix("encoder."): value
        for key, value in state_dict.items()
        if not key.startswith(("fc.", "segmentation_head.", "decoder."))
    }
    if "conv1.weight" not in state_dict:
        raise ValueError(
            f"encoder weights file {path} has no 'conv1.weight'; expected a ResNeXt-50 32x4d "
            f"state dict (torchvision, timm or smp encoder keys)"
        )
    return state_dict


def find_imagenet_weights() -> Path:
    """Path of cached ImageNet ResNeXt-50 32x4d weights; FileNotFoundError if none is cached.

    Returns
    -------
    pathlib.Path
        The first existing file of the places listed in :func:`load_encoder_weights`.
    """
    looked = []
    try:
        from huggingface_hub import try_to_load_from_cache
        from huggingface_hub.constants import HF_HUB_CACHE

        cached = try_to_load_from_cache(
            IMAGENET_HF_REPO, "model.safetensors", revision=IMAGENET_HF_REVISION
        )
        if isinstance(cached, str) and Path(cached).is_file():
            return Path(cached)
        looked.append(f"{IMAGENET_HF_REPO}/model.safetensors in the Hugging Face cache {HF_HUB_CACHE}")
    except ImportError:
        looked.append("the Hugging Face cache (huggingface_hub is not installed)")
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    for name in IMAGENET_TORCHVISION_FILES:
        candidate = checkpoints / name
        if candidate.is_file():
            return candidate
        looked.append(str(candidate))
    raise FileNotFoundError(
        "encoder_weights='imagenet' needs ImageNet ResNeXt-50 32x4d weights already on disk "
        "(nothing is downloaded); looked for: " + "; ".join(looked) + ". Put one of these "
        "files in place or pass the path of a local weights file."
    )


def _load_strict(encoder: nn.Module, state_dict: dict[str, torch.Tensor], source) -> None:
    """Load every encoder parameter, with a message naming the file on any mismatch."""
    try:
        encoder.load_state_dict(state_dict)
    except RuntimeError as error:
        raise ValueError(
            f"encoder weights {source!s} do not match ResNeXt-50 32x4d: {error}"
        ) from error
