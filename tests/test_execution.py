"""The execution settings shared by training, evaluation and predict: device and precision policy."""

from __future__ import annotations

import json
import math

import pytest
import torch

from radfusion import execution
from radfusion.execution import autocast_precision, cpu_has_native_bfloat16, cpu_precision, uses_autocast


def mock_cpu(monkeypatch, cache, *, avx512_bf16: bool, amx: bool, speedup: float | None = None) -> list:
    """Pretend this CPU has the given bfloat16 hardware and bfloat16 probe speed; returns the probe calls."""
    calls = []

    def probe(**kwargs):
        if speedup is None:
            raise AssertionError("the probe must not run on this CPU")
        calls.append(kwargs)
        return speedup

    monkeypatch.delenv(execution.PRECISION_ENV, raising=False)
    monkeypatch.setenv(execution.CACHE_ENV, str(cache))
    monkeypatch.setattr(execution, "cpu_capabilities", lambda: {"avx512_bf16": avx512_bf16, "amx": amx})
    monkeypatch.setattr(execution, "measure_bfloat16_speedup", probe)
    cpu_precision.cache_clear()
    return calls


def test_a_cpu_without_bfloat16_hardware_stays_float32_without_measuring(monkeypatch, tmp_path):
    # The machine of issue 22 (AVX-512 VNNI, no avx512_bf16, no AMX): bfloat16 ran 3x slower there.
    mock_cpu(monkeypatch, tmp_path, avx512_bf16=False, amx=False)
    assert not cpu_has_native_bfloat16()
    assert cpu_precision() == "float32"
    assert autocast_precision(torch.device("cpu")) == "float32"
    assert not uses_autocast(torch.device("cpu"))


@pytest.mark.parametrize(("flags", "speedup", "expected"), [
    ({"avx512_bf16": True, "amx": False}, 1.8, "bfloat16"),
    ({"avx512_bf16": True, "amx": True}, 4.0, "bfloat16"),
    ({"avx512_bf16": True, "amx": False}, 1.05, "float32"),  # within the noise margin: not worth it
    ({"avx512_bf16": False, "amx": True}, 0.6, "float32"),
])
def test_bfloat16_hardware_is_used_only_where_measured_faster(monkeypatch, tmp_path, flags, speedup, expected):
    calls = mock_cpu(monkeypatch, tmp_path, **flags, speedup=speedup)
    assert cpu_precision() == expected
    assert len(calls) == 1
    assert uses_autocast(torch.device("cpu")) == (expected == "bfloat16")


def test_the_measured_choice_is_kept_per_machine(monkeypatch, tmp_path):
    calls = mock_cpu(monkeypatch, tmp_path, avx512_bf16=True, amx=False, speedup=2.0)
    assert cpu_precision() == "bfloat16"
    cpu_precision.cache_clear()
    monkeypatch.setattr(execution, "measure_bfloat16_speedup", lambda **_: 0.1)  # would say float32
    assert cpu_precision() == "bfloat16"  # read from the cache: no second measurement
    assert len(calls) == 1
    record = json.loads((tmp_path / "cpu_precision.json").read_text())
    assert [entry["bfloat16_speedup"] for entry in record.values()] == [2.0]


def test_the_environment_overrides_and_is_checked(monkeypatch, tmp_path):
    mock_cpu(monkeypatch, tmp_path, avx512_bf16=False, amx=False)
    monkeypatch.setenv(execution.PRECISION_ENV, "bfloat16")
    assert cpu_precision() == "bfloat16"
    cpu_precision.cache_clear()
    monkeypatch.setenv(execution.PRECISION_ENV, "float16")
    with pytest.raises(ValueError, match="RADFUSION_PRECISION"):
        cpu_precision()


def test_cuda_and_the_mixed_precision_switch(monkeypatch, tmp_path):
    mock_cpu(monkeypatch, tmp_path, avx512_bf16=True, amx=True, speedup=3.0)
    assert autocast_precision(torch.device("cuda")) == "float16"
    assert autocast_precision(torch.device("cuda"), mixed_precision=False) == "float32"
    assert autocast_precision(torch.device("cpu"), mixed_precision=False) == "float32"


def test_the_probe_measures_a_finite_ratio():
    speedup = execution.measure_bfloat16_speedup(repeats=1, size=16, batch=1)
    assert math.isfinite(speedup) and speedup > 0


def test_the_probe_leaves_the_global_random_state_alone():
    """A job that probes and a job that reads the cached choice must train from the same numbers."""
    from radfusion.execution import measure_bfloat16_speedup

    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    measure_bfloat16_speedup(repeats=1, size=16, batch=1)
    torch.testing.assert_close(torch.rand(3), expected, rtol=0, atol=0)


def test_inference_batches_hold_a_fixed_number_of_pixels_on_a_cpu():
    from radfusion.execution import CPU_INFERENCE_PIXELS, CUDA_INFERENCE_BATCH, inference_batch_size

    assert CPU_INFERENCE_PIXELS == 2**16
    assert inference_batch_size(64, 64) == 16  # the quick settings' slices
    assert inference_batch_size(128, 128) == 4
    assert inference_batch_size(224, 224) == inference_batch_size(256, 256) == 1  # full size: one at a time
    assert inference_batch_size(512, 512) == 1  # never zero
    assert inference_batch_size(32, 128) == 16  # pixels, not sides
    assert inference_batch_size(256, 256, torch.device("cuda")) == inference_batch_size(64, 64, "cuda") == CUDA_INFERENCE_BATCH


def test_predict_probabilities_batches_by_the_policy_and_the_batch_changes_nothing():
    from radfusion.evaluate import predict_probabilities

    seen = []

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)

        def forward(self, x):
            seen.append(x.shape[0])
            return self.conv(x)

    model = Recorder()
    x = torch.rand(40, 1, 64, 64)
    default = predict_probabilities(model, x, precision="float32")
    assert seen == [16, 16, 8]
    seen.clear()
    one_by_one = predict_probabilities(model, x, precision="float32", batch_size=1)
    assert seen == [1] * 40
    torch.testing.assert_close(one_by_one, default, rtol=0, atol=1e-6)
