"""Where and how the networks run: device, floating-point precision, memory layout, threads.

The one place for the execution settings that training (:mod:`radfusion.train`), the evaluation
(:mod:`radfusion.evaluate`) and ``radfusion predict`` share, so that they cannot drift apart.

Precision policy (docs/decisions.md, "Precision policy"):

- CUDA: float16 autocast (with a gradient scaler in training).
- CPU without native bfloat16 (no AVX512-BF16, no AMX): float32. bfloat16 is emulated there and
  measured 2.9-3.6x *slower* per training step (issue 22's Intel Xeon), so nothing is measured.
- CPU with native bfloat16: decided by measurement, :func:`measure_bfloat16_speedup`, once per
  machine and torch version (cached in :func:`cache_dir`): bfloat16 autocast when it is at least
  :data:`MIN_BFLOAT16_SPEEDUP` times faster than float32 on a probe of the networks' layer kinds.
- ``RADFUSION_PRECISION=float32|bfloat16`` overrides the CPU choice (e.g. for reproducing a run
  from another machine bit for bit).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import platform
import time
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

PRECISION_ENV = "RADFUSION_PRECISION"
CACHE_ENV = "RADFUSION_CACHE_DIR"
#: bfloat16 must beat float32 by this factor on the probe to be used on a CPU: a margin over
#: timing noise, so that a machine does not flip between precisions from one job to the next.
MIN_BFLOAT16_SPEEDUP = 1.15
CPU_PRECISIONS = ("float32", "bfloat16")
#: Pixels per no-gradient batch on a CPU (:func:`inference_batch_size`): 16 slices at 64 px, 4 at
#: 128 px, 1 at 224-256 px. Measured per slice on this project's 2-core AMD EPYC
#: (``benchmarks/measurements/inference_batch.md``): larger batches spill the caches.
CPU_INFERENCE_PIXELS = 2**16
#: Slices per no-gradient batch on CUDA, where larger batches fill the device.
CUDA_INFERENCE_BATCH = 32


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a ``torch.device``; ``None`` picks CUDA when present, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def cpu_capabilities() -> dict[str, bool]:
    """The CPU's bfloat16 hardware as torch sees it: ``avx512_bf16`` and ``amx`` (tile) flags."""
    checks = {"avx512_bf16": "_is_avx512_bf16_supported", "amx": "_is_amx_tile_supported"}
    return {key: bool(getattr(torch.cpu, name, lambda: False)()) for key, name in checks.items()}


def cpu_has_native_bfloat16(capabilities: dict[str, bool] | None = None) -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX)."""
    capabilities = cpu_capabilities() if capabilities is None else capabilities
    return bool(capabilities.get("avx512_bf16") or capabilities.get("amx"))


def _probe_network() -> nn.Module:
    """The layer kinds of both networks: 3x3, grouped 3x3 (ResNeXt), 1x1, batch norm, up-convolution."""
    return nn.Sequential(
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1, groups=32), nn.BatchNorm2d(64), nn.ReLU(),
        nn.Conv2d(64, 48, 1), nn.ReLU(),
        nn.ConvTranspose2d(48, 16, 3, stride=2, padding=1, output_padding=1),
    )


def measure_bfloat16_speedup(*, repeats: int = 3, size: int = 48, batch: int = 4) -> float:
    """float32 time / bfloat16-autocast time of a forward and backward pass on this CPU.

    The probe (:func:`_probe_network`, channels-last, the current thread count) runs ``repeats``
    times in each precision, interleaved; the fastest of each is compared. Takes about a second.
    Leaves torch's global random state as it found it: the first job on a machine probes and the
    next ones read the cache, and both must then train from the same random numbers.
    """
    generator = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        model = _probe_network().to(memory_format=torch.channels_last)
    x = torch.rand(batch, 32, size, size, generator=generator).contiguous(memory_format=torch.channels_last)

    def step(bfloat16: bool) -> float:
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
            out = model(x)
        out.float().square().mean().backward()
        return time.perf_counter() - started

    step(False), step(True)  # warm-up: kernel selection, allocations
    times = {False: [], True: []}
    for _ in range(repeats):
        for bfloat16 in (False, True):
            times[bfloat16].append(step(bfloat16))
    return min(times[False]) / min(times[True])


def cache_dir() -> Path:
    """Where measured machine facts are kept: ``$RADFUSION_CACHE_DIR`` or ``~/.cache/radfusion``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "radfusion")


def _machine_key() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model} | torch {torch.__version__} | threads {torch.get_num_threads()}"


@functools.lru_cache(maxsize=None)
def cpu_precision() -> str:
    """The CPU's precision for the networks: "float32" or "bfloat16" (see the module notes)."""
    forced = os.environ.get(PRECISION_ENV)
    if forced:
        if forced not in CPU_PRECISIONS:
            raise ValueError(f"{PRECISION_ENV} must be one of {', '.join(CPU_PRECISIONS)}, got {forced!r}")
        return forced
    if not cpu_has_native_bfloat16():
        return "float32"
    key = _machine_key()
    path = cache_dir() / "cpu_precision.json"
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    if key not in cached:
        speedup = measure_bfloat16_speedup()
        cached[key] = {
            "precision": "bfloat16" if speedup >= MIN_BFLOAT16_SPEEDUP else "float32",
            "bfloat16_speedup": round(speedup, 3),
        }
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(f".{os.getpid()}.tmp")
            temporary.write_text(json.dumps(cached, indent=1))
            temporary.replace(path)
        except OSError as err:  # a read-only home: measure again next time
            log.debug("cannot cache the precision choice in %s: %s", path, err)
    log.info("CPU precision %s (bfloat16/float32 speed %.2fx on %s)", cached[key]["precision"],
             cached[key]["bfloat16_speedup"], key)
    return cached[key]["precision"]


def autocast_precision(device: torch.device, mixed_precision: bool = True) -> str:
    """The floating-point type of the forward passes: "float16", "bfloat16" or "float32".

    CUDA: float16. CPU: :func:`cpu_precision`. ``mixed_precision=False``: float32 everywhere.
    """
    if not mixed_precision:
        return "float32"
    return "float16" if device.type == "cuda" else cpu_precision()


def uses_autocast(device: torch.device, mixed_precision: bool = True) -> bool:
    """Whether the forward passes on ``device`` run under ``torch.autocast``."""
    return autocast_precision(device, mixed_precision) != "float32"


def autocast(device: torch.device, precision: str):
    """``torch.autocast`` for ``precision`` ("float32": a context that changes nothing)."""
    if precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=getattr(torch, precision))


def inference_batch_size(height: int, width: int, device: torch.device | str = "cpu") -> int:
    """Slices per batch of the no-gradient passes (validation, evaluation, predict) of images ``height`` x ``width``.

    On a CPU as many as :data:`CPU_INFERENCE_PIXELS` hold (at least one); on CUDA
    :data:`CUDA_INFERENCE_BATCH`. It sets the time; the outputs move only by float rounding where
    oneDNN picks another convolution kernel for another batch (1.6e-5 relative, measured on an
    Intel Xeon; bit for bit on the quick models on an AMD EPYC).
    """
    if torch.device(device).type == "cuda":
        return CUDA_INFERENCE_BATCH
    return max(1, CPU_INFERENCE_PIXELS // (int(height) * int(width)))


def prepare_for_inference(model: nn.Module) -> nn.Module:
    """Evaluation mode, channels-last memory (faster oneDNN and tensor-core convolutions)."""
    return model.eval().to(memory_format=torch.channels_last)
