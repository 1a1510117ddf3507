"""Post-training int8 quantization of a trained network, for inference on a CPU.

Static quantization in FX graph mode on torch's ``x86`` backend (oneDNN/FBGEMM kernels; the
VNNI instruction ``VPDPBUSD`` does four int8 multiply-adds per 32-bit lane, where float32 does
one): weights per output channel, activations per tensor, with ranges observed on calibration
slices (Jacob et al. 2018, "Quantization and training of neural networks for efficient
integer-arithmetic-only inference"; torch.ao.quantization). Batch norm is folded into the
preceding convolution where one precedes it. The ranges are observed on 8 slices of the scan
being segmented: ranges observed on the training slices instead (:func:`activation_ranges`,
``ranges=``) need no calibration pass per scan, but moved the masks much further from float32's
(docs/decisions.md, "int8 is an option, not the default"). What int8 changes in the masks and
what it gains, both ways, are measured in ``benchmarks/predict_speed.py`` (README, "Prediction
speed").
"""

from __future__ import annotations

import contextlib
import copy
import warnings

import torch
from torch import nn

from radfusion.execution import autocast, cpu_precision, inference_batch_size

#: torch's quantized engine for x86 CPUs.
ENGINE = "x86"
#: At most this many slices, evenly spaced over the input, set the activation ranges (4 moved
#: attention_unet/mri below 0.98 of float32's mask: benchmarks/measurements/predict_speed_4_calibration_slices.md).
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


def _prepared_copy(model: nn.Module, example: torch.Tensor, observer: str) -> nn.Module:
    """A float32 CPU copy of ``model`` with observers after each activation to quantize (FX graph mode)."""
    from torch.ao.quantization import MinMaxObserver, QConfig, get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_fx

    model = copy.deepcopy(model).float().cpu().eval().to(memory_format=torch.contiguous_format)
    mapping = get_default_qconfig_mapping(ENGINE)
    if observer == "minmax":  # torch's per-operator choices (histograms for transposed convolutions) stay
        default = mapping.global_qconfig
        mapping.set_global(QConfig(activation=MinMaxObserver.with_args(reduce_range=False), weight=default.weight))
    elif observer != "histogram":
        raise ValueError(f"expected observer 'histogram' or 'minmax', got {observer!r}")
    return prepare_fx(model, mapping, example_inputs=(example,))


@contextlib.contextmanager
def _quiet_fx_quantization():
    """Silence torch's notices that FX graph mode quantization moves to torchao (README, "Prediction
    speed"), and empty its module cache afterwards (:func:`_release_quantization_caches`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*(migrat|reduce_range|_empty_affine_quantized)")
        try:
            yield
        finally:
            _release_quantization_caches()


def _calibrated_copy(model: nn.Module, calibration: torch.Tensor, observer: str, precision: str) -> nn.Module:
    """:func:`_prepared_copy` with its observers run on ``calibration`` in ``precision``, in the
    batches of :func:`radfusion.execution.inference_batch_size` (min-max observers keep the
    extremes over batches; the histograms torch keeps on transposed convolutions are re-binned as
    their range grows, so theirs depend slightly on the batches); ``RuntimeError`` unless every observed range is finite. The pass also runs the
    model's input check (kept in the traced graph)."""
    calibration = calibration.float().cpu().contiguous()
    prepared = _prepared_copy(model, calibration[:1], observer)
    with torch.no_grad(), autocast(torch.device("cpu"), precision):
        for batch in calibration.split(inference_batch_size(*calibration.shape[-2:])):
            prepared(batch)
    _check_ranges(prepared)
    return prepared


def _observers(prepared: nn.Module) -> dict[str, nn.Module]:
    """The activation observers of a prepared network that hold observed state (min-max and
    histogram), by module name; the others (sigmoid's fixed range, reshape's reuse of its input's)
    hold none."""
    from torch.ao.quantization import HistogramObserver, MinMaxObserver

    return {
        name: m for name, m in prepared.named_modules()
        if name.startswith("activation_post_process") and isinstance(m, (MinMaxObserver, HistogramObserver))
    }


def activation_ranges(model: nn.Module, calibration: torch.Tensor, *, precision: str = "float32") -> dict:
    """The activation ranges int8 quantization needs, observed on ``calibration`` (min-max observers).

    Parameters
    ----------
    model : nn.Module
        A trained network (logits out), on any device; left unchanged.
    calibration : torch.Tensor, shape (N, C, H, W)
        Inputs like those the network sees, at its input size (e.g. training slices; see Notes).
    precision : {"float32", "bfloat16"}
        Of the calibration pass.

    Returns
    -------
    dict
        ``{"observer": "minmax", "input_shape": [1, C, H, W], "ranges": {name: state}}``, each
        observer's state (``min_val``, ``max_val``; and ``histogram`` for the histogram observers
        torch's x86 defaults keep on transposed convolutions) as plain Python values: what
        :func:`quantize_int8` takes as ``ranges`` instead of a calibration pass.

    Notes
    -----
    Observed once on training slices, they would spare ``--precision int8`` its calibration pass
    per scan (about 7.5 of the 9.2 s that quantizing one 224 px attention_unet takes here); measured
    against the scan's own slices, they agree much worse with float32 (``benchmarks/predict_speed.py``),
    so predict calibrates on the scan. Raises ``RuntimeError`` when an observed range is not
    finite (see :func:`quantize_int8`).
    """
    with _quiet_fx_quantization():
        prepared = _calibrated_copy(model, calibration, "minmax", precision)
        ranges = {
            name: {key: value.tolist() for key, value in m.state_dict().items()} for name, m in _observers(prepared).items()
        }
    return {"observer": "minmax", "input_shape": [1, *calibration.shape[1:]], "ranges": ranges}


def quantize_int8(
    model: nn.Module,
    calibration: torch.Tensor | None = None,
    *,
    observer: str | None = None,
    ranges: dict | None = None,
) -> nn.Module:
    """An int8 copy of ``model`` (float32, on the CPU), its activation ranges observed on ``calibration``
    or given as ``ranges``.

    Parameters
    ----------
    model : nn.Module
        A trained network (logits out); left unchanged.
    calibration : torch.Tensor, shape (N, C, H, W), optional
        Inputs like those the copy will see, at the model's input size. One of ``calibration``
        and ``ranges``.
    observer : {"minmax", "histogram"}, optional
        How activation ranges are set from ``calibration`` (default :data:`OBSERVER`): "minmax"
        covers every observed value (torch's x86 defaults keep their histogram observers on
        transposed convolutions, as measured: README, "Prediction speed"); "histogram" (torch's
        x86 default everywhere) minimizes their quantization error.
    ranges : dict, optional
        Ranges observed before (:func:`activation_ranges`): no calibration pass. ``ValueError``
        when they do not fit the network's observers.

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
    from torch.ao.quantization.quantize_fx import convert_fx

    if not int8_supported():
        raise RuntimeError("int8 inference needs a CPU with VNNI (AVX512-VNNI or AVX-VNNI) and torch's x86 engine")
    if (calibration is None) == (ranges is None):
        raise ValueError("quantize_int8 takes one of calibration and ranges")
    torch.backends.quantized.engine = ENGINE
    with _quiet_fx_quantization():
        if ranges is not None:
            prepared = _prepared_copy(model, torch.zeros(ranges["input_shape"]), ranges["observer"])
            _load_ranges(prepared, ranges)
            _check_ranges(prepared)
        else:
            # the precision outside no_grad: the first call may run the policy's probe
            prepared = _calibrated_copy(model, calibration, OBSERVER if observer is None else observer, cpu_precision())
        return convert_fx(prepared)


def _load_ranges(prepared: nn.Module, ranges: dict) -> None:
    """Set the observers of a prepared network to stored states; ``ValueError`` unless they match."""
    observers = _observers(prepared)
    stored = ranges["ranges"]
    if set(observers) != set(stored):
        raise ValueError(
            f"the stored int8 ranges ({len(stored)} activations) do not fit this network's "
            f"{len(observers)} (another torch version or network)"
        )
    for name, module in observers.items():
        module.load_state_dict({key: torch.tensor(value) for key, value in stored[name].items()})


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
