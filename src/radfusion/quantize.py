"""Post-training int8 quantization of a trained network, for inference on a CPU.

Static quantization in FX graph mode on torch's ``x86`` backend (oneDNN/FBGEMM kernels; the
VNNI instruction ``VPDPBUSD`` does four int8 multiply-adds per 32-bit lane, where float32 does
one): weights per output channel, activations per tensor, with ranges observed on calibration
slices (Jacob et al. 2018, "Quantization and training of neural networks for efficient
integer-arithmetic-only inference"; torch.ao.quantization). Batch norm is folded into the
preceding convolution. What it changes in the masks and what it gains are measured in
``benchmarks/predict_speed.py`` (README, "Prediction speed").
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from radfusion.execution import autocast, cpu_precision

#: torch's quantized engine for x86 CPUs.
ENGINE = "x86"
#: At most this many slices, evenly spaced over the input, set the activation ranges.
CALIBRATION_SLICES = 8
#: How activation ranges are set (benchmarks/int8_calibration.py compares the two).
OBSERVER = "minmax"


def int8_supported() -> bool:
    """Whether this CPU has int8 dot-product hardware (AVX512-VNNI or AVX-VNNI) and torch the engine."""
    vnni = bool(getattr(torch.cpu, "_is_vnni_supported", lambda: False)())
    return vnni and ENGINE in torch.backends.quantized.supported_engines


def calibration_slices(images: torch.Tensor, n: int | None = None) -> torch.Tensor:
    """``n`` (default :data:`CALIBRATION_SLICES`) slices of ``images`` (N, C, H, W), evenly spaced
    from the first to the last (all when N <= n)."""
    n = CALIBRATION_SLICES if n is None else n
    if images.shape[0] <= n:
        return images
    return images[torch.linspace(0, images.shape[0] - 1, n).round().long()]


def quantize_int8(model: nn.Module, calibration: torch.Tensor, *, observer: str | None = None) -> nn.Module:
    """An int8 copy of ``model`` (float32, on the CPU), its activation ranges observed on ``calibration``.

    Parameters
    ----------
    model : nn.Module
        A trained network (logits out); left unchanged.
    calibration : torch.Tensor, shape (N, C, H, W)
        Inputs like those the copy will see, at the model's input size.
    observer : {"minmax", "histogram"}, optional
        How activation ranges are set (default :data:`OBSERVER`): "minmax" covers every observed
        value; "histogram" (torch's x86 default) minimizes their quantization error.

    Returns
    -------
    nn.Module
        A ``torch.fx.GraphModule`` with quantized convolutions, float32 in and out.

    Notes
    -----
    The calibration pass runs in the machine's training precision
    (:func:`radfusion.execution.cpu_precision`: bfloat16 where it is measured faster), which
    halves its time there; the ranges it observes differ from float32's by bfloat16's rounding
    (< 0.4 %), far below an int8 step. A network whose observed activations are not finite (an
    untrained network whose batch-norm statistics were never set) cannot be quantized:
    ``RuntimeError``.
    """
    from torch.ao.quantization import MinMaxObserver, QConfig, get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    if not int8_supported():
        raise RuntimeError("int8 inference needs a CPU with VNNI (AVX512-VNNI or AVX-VNNI) and torch's x86 engine")
    torch.backends.quantized.engine = ENGINE
    calibration = calibration.float().cpu().contiguous()
    model = copy.deepcopy(model).float().cpu().eval().to(memory_format=torch.contiguous_format)
    observer = OBSERVER if observer is None else observer
    mapping = get_default_qconfig_mapping(ENGINE)
    if observer == "minmax":
        default = mapping.global_qconfig
        mapping.set_global(QConfig(activation=MinMaxObserver.with_args(reduce_range=False), weight=default.weight))
    elif observer != "histogram":
        raise ValueError(f"expected observer 'histogram' or 'minmax', got {observer!r}")
    precision = cpu_precision()  # outside no_grad: the first call may run the policy's probe
    with warnings.catch_warnings():
        # torch's notices that FX graph mode quantization moves to torchao (README, "Prediction speed")
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*(migrat|reduce_range|_empty_affine_quantized)")
        try:
            prepared = prepare_fx(model, mapping, example_inputs=(calibration[:1],))
            # the calibration pass also runs the model's input check (kept in the traced graph)
            with torch.no_grad(), autocast(torch.device("cpu"), precision):
                prepared(calibration)
            _check_ranges(prepared)
            return convert_fx(prepared)
        finally:
            _release_quantization_caches()


def _check_ranges(prepared: nn.Module) -> None:
    """Raise ``RuntimeError`` unless every observed activation range is finite."""
    for name, module in prepared.named_modules():
        low, high = getattr(module, "min_val", None), getattr(module, "max_val", None)
        if isinstance(low, torch.Tensor) and not (torch.isfinite(low).all() and torch.isfinite(high).all()):
            raise RuntimeError(
                f"int8 calibration: the activations at '{name}' are not finite (an untrained network, or "
                "batch-norm statistics that were never set); use float32 or bfloat16"
            )


def _release_quantization_caches() -> None:
    """Empty torch's per-module cache of FX quantization, which otherwise keeps every network it saw.

    ``torch.ao.quantization.fx.utils.assert_and_get_unique_device`` is an ``lru_cache`` keyed by
    the module: without this, each quantization leaves a float copy of the network in memory
    (measured: +115 MB per resnext_unet quantization), and ``radfusion predict --bids`` over a
    cohort would grow without bound.
    """
    from torch.ao.quantization.fx import utils

    cached = getattr(utils, "assert_and_get_unique_device", None)
    if hasattr(cached, "cache_clear"):
        cached.cache_clear()
