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
def test_predict_probabilities_int8_agrees_with_float32():
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
    range grows, so only their extremes are compared.)"""
    from radfusion import execution

    model, x = _model_with_set_statistics("resnext_unet", 32)
    x[1] *= 3  # the extremes in a later slice than the first
    whole = quantize.activation_ranges(model, x)
    monkeypatch.setattr(execution, "CPU_INFERENCE_PIXELS", 1)  # one slice per batch
    sliced = quantize.activation_ranges(model, x)
    assert whole["ranges"].keys() == sliced["ranges"].keys()
    for name, state in whole["ranges"].items():
        for key in ("min_val", "max_val"):
            torch.testing.assert_close(torch.tensor(sliced["ranges"][name][key]), torch.tensor(state[key]), rtol=1e-5, atol=1e-6)
