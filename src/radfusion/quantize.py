"""Post-training int8 quantization of a trained network, for inference on a CPU.

Static quantization in FX graph mode on torch's ``x86`` backend (oneDNN/FBGEMM kernels; the
VNNI instruction ``VPDPBUSD`` does four int8 multiply-adds per 32-bit lane, where float32 does
one): weights per output channel, activations per tensor, with ranges observed on calibration
slices (Jacob et al. 2018, "Quantization and training of neural networks for efficient
integer-arithmetic-only inference"; torch.ao.quantization). Batch norm is folded into the
preceding convolution where one precedes it. The ranges are observed on 8 slices of the scan
being segmented, in a channels-last float pass whose logits the caller may keep for those slices
(``return_logits``): ranges observed on the training slices instead (:func:`activation_ranges`,
``ranges=``) need no calibration pass per scan, but moved the masks much further from float32's
(docs/decisions.md, "int8 is an option, not the default"). What int8 changes in the masks and
what it gains, both ways, are measured in ``benchmarks/predict_speed.py`` (README, "Prediction
speed").
"""

from __future__ import annotations

import contextlib
import copy
import functools
import warnings

import torch
from torch import nn

from radfusion.execution import autocast, cpu_precision, inference_batch_size

#: torch's quantized engine for x86 CPUs.
ENGINE = "x86"
#: At most this many slices, evenly spaced over the input, set the activation ranges (4 moved
#: attention_unet/mri below 0.98 of float32's mask: benchmarks/measurements/predict_speed_4_calibration_slices.md).
CALIBRATION_SLICES = 8
#: The error of a calibration pass whose activations are not finite.
_NOT_FINITE = (
    "int8 calibration: the activations at {name} are not finite (an untrained network, batch-norm "
    "statistics that were never set, or inputs unlike the training slices); use float32 or bfloat16"
)
#: How activation ranges are set (benchmarks/int8_calibration.py compares the two).
OBSERVER = "minmax"


def int8_supported() -> bool:
    """Whether this CPU has int8 dot-product hardware (AVX512-VNNI or AVX-VNNI) and torch the engine."""
    vnni = bool(getattr(torch.cpu, "_is_vnni_supported", lambda: False)())
    return vnni and ENGINE in torch.backends.quantized.supported_engines


def calibration_indices(count: int, n: int | None = None) -> torch.Tensor:
    """Indices of ``n`` (default :data:`CALIBRATION_SLICES`) of ``count`` slices, evenly spaced
    from the first to the last (all when count <= n)."""
    n = CALIBRATION_SLICES if n is None else n
    if count <= n:
        return torch.arange(count)
    return torch.linspace(0, count - 1, n).round().long()


def calibration_slices(images: torch.Tensor, n: int | None = None) -> torch.Tensor:
    """The :func:`calibration_indices` slices of ``images`` (N, C, H, W)."""
    return images[calibration_indices(images.shape[0], n)]


@functools.cache
def _minmax_observer() -> type:
    """torch's ``MinMaxObserver``, reading channels-last activations in their memory order.

    A per-tensor minimum and maximum do not depend on the order of the values, but
    ``torch.aminmax`` on a channels-last tensor first copies it to NCHW: measured on the 224 px
    attention_unet, those copies took more time than its convolutions in the calibration pass
    (``benchmarks/measurements/predict_speed.md``). The observed values are the same.
    """
    from torch.ao.quantization import MinMaxObserver

    class ChannelsLastMinMaxObserver(MinMaxObserver):
        def forward(self, x_orig: torch.Tensor) -> torch.Tensor:
            channels_last = x_orig.dim() == 4 and x_orig.is_contiguous(memory_format=torch.channels_last)
            if channels_last and not x_orig.is_contiguous():
                super().forward(x_orig.permute(0, 2, 3, 1))  # NHWC: a contiguous view, no copy
                return x_orig
            return super().forward(x_orig)

    return ChannelsLastMinMaxObserver


def _prepared_copy(model: nn.Module, example: torch.Tensor, observer: str) -> nn.Module:
    """A float32 CPU copy of ``model`` with observers after each activation to quantize (FX graph
    mode), channels-last like the inputs of :func:`radfusion.evaluate.predict_probabilities`."""
    from torch.ao.quantization import QConfig, get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_fx

    model = copy.deepcopy(model).float().cpu().eval().to(memory_format=torch.contiguous_format)
    mapping = get_default_qconfig_mapping(ENGINE)
    if observer == "minmax":  # torch's per-operator choices (histograms for transposed convolutions) stay
        default = mapping.global_qconfig
        mapping.set_global(QConfig(activation=_minmax_observer().with_args(reduce_range=False), weight=default.weight))
    elif observer != "histogram":
        raise ValueError(f"expected observer 'histogram' or 'minmax', got {observer!r}")
    return prepare_fx(model, mapping, example_inputs=(example,)).to(memory_format=torch.channels_last)


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


def _calibrated_copy(
    model: nn.Module, calibration: torch.Tensor, observer: str, precision: str
) -> tuple[nn.Module, torch.Tensor]:
    """:func:`_prepared_copy` with its observers run on ``calibration`` in ``precision``, and the
    logits of that pass (computed in ``precision``, returned as float32). In the batches of :func:`radfusion.execution.inference_batch_size`
    (min-max observers keep the extremes over batches; the histograms torch keeps on transposed
    convolutions are re-binned as their range grows, so theirs depend slightly on the batches);
    ``RuntimeError`` unless every observed range is finite. The pass also runs the model's input
    check (kept in the traced graph)."""
    calibration = calibration.float().cpu().contiguous(memory_format=torch.channels_last)
    prepared = _prepared_copy(model, calibration[:1], observer)
    logits = []
    try:
        with torch.no_grad(), autocast(torch.device("cpu"), precision):
            for batch in calibration.split(inference_batch_size(*calibration.shape[-2:])):
                logits.append(prepared(batch).float())
    except RuntimeError as err:  # a histogram observer meets a non-finite range first
        if "not finite" not in str(err):
            raise
        raise RuntimeError(_NOT_FINITE.format(name="a transposed convolution")) from err
    _check_ranges(prepared)
    return prepared, torch.cat(logits)


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
    per scan (most of the 10.9 s that quantizing one 224 px attention_unet takes on a 2-core Intel Xeon); measured
    against the scan's own slices, they agree much worse with float32 (``benchmarks/predict_speed.py``),
    so predict calibrates on the scan. Raises ``RuntimeError`` when an observed range is not
    finite (see :func:`quantize_int8`).
    """
    with _quiet_fx_quantization():
        prepared, _ = _calibrated_copy(model, calibration, "minmax", precision)
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
    return_logits: bool = False,
) -> nn.Module | tuple[nn.Module, torch.Tensor]:
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
    return_logits : bool
        Also return the logits of the calibration pass (with ``calibration`` only).

    Returns
    -------
    nn.Module
        A ``torch.fx.GraphModule`` with quantized convolutions, float32 in and out.
    logits : torch.Tensor, shape (N, 1, H, W)
        With ``return_logits``: the network's float32 logits on ``calibration``, computed by the
        calibration pass in the machine's training precision (batch norm folded into the
        convolutions), for callers that need no int8 pass on those slices.

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
    if return_logits and calibration is None:
        raise ValueError("return_logits needs a calibration pass: stored ranges have no logits")
    torch.backends.quantized.engine = ENGINE
    with _quiet_fx_quantization():
        if ranges is not None:
            prepared = _prepared_copy(model, torch.zeros(ranges["input_shape"]), ranges["observer"])
            _load_ranges(prepared, ranges)
            _check_ranges(prepared)
        else:
            # the precision outside no_grad: the first call may run the policy's probe
            observer = OBSERVER if observer is None else observer
            prepared, logits = _calibrated_copy(model, calibration, observer, cpu_precision())
        quantized = convert_fx(prepared)
    return (quantized, logits) if return_logits else quantized


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
            raise RuntimeError(_NOT_FINITE.format(name=f"'{name}'"))


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
