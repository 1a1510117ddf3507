"""int8 quantization for CPU inference (radfusion.quantize) and its use by the inference path."""

import gc
import weakref

import pytest
import torch

from radfusion import quantize
from radfusion.evaluate import predict_probabilities
from radfusion.models import build_model

needs_int8 = pytest.mark.skipif(not quantize.int8_supported(), reason="this CPU has no VNNI or torch no x86 engine")


def test_calibration_slices_are_evenly_spaced_and_include_both_ends():
    images = torch.arange(40, dtype=torch.float32).reshape(40, 1, 1, 1)
    chosen = quantize.calibration_slices(images, 5)[:, 0, 0, 0].tolist()
    assert chosen == [0.0, 10.0, 20.0, 29.0, 39.0]
    assert quantize.calibration_slices(images[:3], 5).shape[0] == 3


def _model_with_set_statistics(name: str, size: int) -> tuple[torch.nn.Module, torch.Tensor]:
    """A network whose batch-norm statistics come from data, as after training (weights untrained)."""
    torch.manual_seed(0)
    model = build_model(name, 3)
    x = torch.rand(6, 3, size, size)
    x[:, :, : size // 4] = 0  # background, as in a brain slice
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
            module.reset_running_stats()
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval(), x


@needs_int8
@pytest.mark.parametrize("name", ["resnext_unet", "attention_unet"])
def test_int8_copy_has_quantized_convolutions_and_follows_float32(name):
    model, x = _model_with_set_statistics(name, 64)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    quantized = quantize.quantize_int8(model, x)
    kinds = {type(m).__module__ for m in quantized.modules()}
    assert any("quantized" in kind for kind in kinds)
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())  # original untouched
    with torch.no_grad():
        reference = torch.sigmoid(model(x))
        fast = torch.sigmoid(quantized(x))
    assert fast.shape == reference.shape and torch.isfinite(fast).all()
    assert (fast - reference).abs().mean() < 0.02
    # the input check runs on the calibration before tracing
    with pytest.raises(ValueError, match="input channel"):
        quantize.quantize_int8(model, torch.rand(2, 2, 64, 64))


@needs_int8
def test_predict_probabilities_int8_agrees_with_float32(monkeypatch):
    monkeypatch.setattr(quantize, "CALIBRATION_SLICES", 2)  # int8 runs on the other 4 slices
    model, x = _model_with_set_statistics("resnext_unet", 64)
    reference = predict_probabilities(model, x, precision="float32")
    fast = predict_probabilities(model, x, precision="int8")
    assert fast.shape == reference.shape == (6, 1, 64, 64)
    assert ((fast > 0.5) == (reference > 0.5)).float().mean() > 0.98
    assert predict_probabilities(model, x[:0], precision="int8").shape == (0, 1, 64, 64)


def test_quantize_refuses_without_vnni_and_a_wrong_observer(monkeypatch):
    model, x = _model_with_set_statistics("resnext_unet", 32)
    if quantize.int8_supported():
        with pytest.raises(ValueError, match="observer"):
            quantize.quantize_int8(model, x, observer="mean")
    monkeypatch.setattr(torch.cpu, "_is_vnni_supported", lambda: False)
    assert not quantize.int8_supported()
    with pytest.raises(RuntimeError, match="VNNI"):
        quantize.quantize_int8(model, x)


@needs_int8
def test_quantization_keeps_no_network_alive():
    """torch's FX quantization caches every module it sees; quantize_int8 empties that cache."""
    model, x = _model_with_set_statistics("resnext_unet", 32)
    quantized = quantize.quantize_int8(model, x)
    alive = weakref.ref(quantized)
    del quantized
    gc.collect()
    assert alive() is None


@needs_int8
def test_stored_ranges_give_the_calibrated_copy_without_a_calibration_pass():
    model, x = _model_with_set_statistics("attention_unet", 32)
    ranges = quantize.activation_ranges(model, x)
    assert ranges["input_shape"] == [1, 3, 32, 32] and ranges["observer"] == "minmax"
    assert all(state["min_val"] <= state["max_val"] for state in ranges["ranges"].values())
    assert any("histogram" in state for state in ranges["ranges"].values())  # the transposed convolutions
    # float32 calibration pass vs stored ranges: the same quantized network, bit for bit
    torch.backends.quantized.engine = quantize.ENGINE
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(quantize, "cpu_precision", lambda: "float32")
        calibrated = quantize.quantize_int8(model, x)
    stored = quantize.quantize_int8(model, ranges=ranges)
    with torch.inference_mode():
        assert torch.equal(calibrated(x), stored(x))
    with pytest.raises(ValueError, match="one of"):
        quantize.quantize_int8(model, x, ranges=ranges)
    other, _ = _model_with_set_statistics("resnext_unet", 32)
    with pytest.raises(ValueError, match="do not fit"):
        quantize.quantize_int8(other, ranges=ranges)



@needs_int8
def test_the_calibration_pass_keeps_the_extremes_over_its_batches(monkeypatch):
    """Ranges observed slice by slice equal those of one batch: observers accumulate, no batch is lost.
    (The histograms that torch's defaults keep on transposed convolutions are re-binned as their
    range grows, so only their extremes are compared. The pass is channels-last, where oneDNN may pick
    another convolution kernel for another batch: float32 rounding, 1.6e-5 relative, measured.)"""
    from radfusion import execution

    model, x = _model_with_set_statistics("resnext_unet", 32)
    x[1] *= 3  # the extremes in a later slice than the first
    whole = quantize.activation_ranges(model, x)
    monkeypatch.setattr(execution, "CPU_INFERENCE_PIXELS", 1)  # one slice per batch
    sliced = quantize.activation_ranges(model, x)
    assert whole["ranges"].keys() == sliced["ranges"].keys()
    for name, state in whole["ranges"].items():
        for key in ("min_val", "max_val"):
            torch.testing.assert_close(torch.tensor(sliced["ranges"][name][key]), torch.tensor(state[key]), rtol=1e-4, atol=1e-6)


def test_minmax_observer_reads_channels_last_activations_without_reordering_them(monkeypatch):
    """The calibration's observer sees the extremes torch's sees on NCHW, returns its input as it
    came, and reduces only contiguous memory (torch's would copy a channels-last tensor first)."""
    from torch.ao.quantization import MinMaxObserver

    x = torch.randn(2, 5, 7, 3)
    x[1, 4, 6, 2], x[0, 0, 0, 1] = 9.0, -8.0
    channels_last = x.contiguous(memory_format=torch.channels_last)
    reduced = []
    aminmax = torch.aminmax
    monkeypatch.setattr(torch, "aminmax", lambda t, **kw: reduced.append(t.is_contiguous()) or aminmax(t, **kw))
    ours, reference = quantize._minmax_observer()(), MinMaxObserver()
    assert ours(channels_last) is channels_last
    reference(x)
    assert reduced == [True, True]
    assert (ours.min_val.item(), ours.max_val.item()) == (reference.min_val.item(), reference.max_val.item()) == (-8.0, 9.0)
    ours(x[:, :, :, :2])  # neither layout's contiguous memory: observed as torch does
    assert reduced[-1] is False and ours.max_val.item() == 9.0


@needs_int8
@pytest.mark.parametrize("upsample", [True, False])
def test_calibration_on_non_finite_activations_says_what_to_do(upsample):
    """Whether the first observer to meet a NaN is a histogram (before a transposed convolution,
    where torch.histc raises) or a min-max one (checked after the pass), the error names int8's
    calibration and the precisions that still work."""
    layers = [torch.nn.Conv2d(1, 2, 3, padding=1)] + ([torch.nn.ConvTranspose2d(2, 1, 2, stride=2)] if upsample else [])
    model = torch.nn.Sequential(*layers).eval()
    with torch.no_grad():
        model[0].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(RuntimeError, match="int8 calibration: .* not finite .* use float32 or bfloat16"):
        quantize.quantize_int8(model, torch.rand(2, 1, 8, 8))


@needs_int8
def test_int8_path_keeps_the_calibration_pass_output_on_its_slices(monkeypatch):
    """predict_probabilities in int8: the calibration slices get the float network's probabilities
    (from the calibration pass, no int8 pass on them), every other slice the int8 copy's."""
    monkeypatch.setattr(quantize, "CALIBRATION_SLICES", 3)
    monkeypatch.setattr(quantize, "cpu_precision", lambda: "float32")
    model, x = _model_with_set_statistics("attention_unet", 32)
    x = torch.cat([x, x.flip(-1)])  # 12 slices
    calibrated = quantize.calibration_indices(12)
    assert calibrated.tolist() == [0, 6, 11]
    others = [i for i in range(12) if i not in calibrated.tolist()]
    fast = predict_probabilities(model, x, precision="int8")
    float32 = predict_probabilities(model, x, precision="float32")
    torch.testing.assert_close(fast[calibrated], float32[calibrated], rtol=0, atol=1e-5)  # batch norm folded
    torch.backends.quantized.engine = quantize.ENGINE
    quantized = quantize.quantize_int8(model, x[calibrated])
    with torch.inference_mode():
        expected = torch.sigmoid(quantized(x[others].contiguous(memory_format=torch.channels_last)))
    assert torch.equal(fast[others], expected)
    assert not torch.equal(fast[others], float32[others])  # int8 differs from float32 somewhere
    with pytest.raises(ValueError, match="return_logits"):
        quantize.quantize_int8(model, ranges=quantize.activation_ranges(model, x[:2]), return_logits=True)
