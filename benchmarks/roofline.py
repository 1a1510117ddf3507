"""Roofline of both networks on this CPU: FLOPs, time, achieved GFLOP/s against the CPU's peak.

For each network (resnext_unet, attention_unet; 3 input channels: FLAIR, CR, RE), at the quick
size (``config/quick.yaml``: 64 px, batch 2) and the full size (``config/config.yaml``: 256 px
resnext_unet, 224 px attention_unet, at a small CPU batch, ``--full-batch``, default 4: the
protocol's 32 and 6 slices are GPU batches), and for each dtype, it measures

- a training step: forward + the protocol's loss + backward + the protocol's optimizer step
  (fused AdamW for resnext_unet, RMSprop for attention_unet) and learning-rate schedule, the
  layout and autocast of :mod:`radfusion.train` (channels-last, loss in float32);
- inference: forward under ``torch.inference_mode`` after
  :func:`radfusion.execution.prepare_for_inference`, as :func:`radfusion.evaluate.predict_probabilities`.

Per row: FLOPs per image (``torch.utils.flop_counter.FlopCounterMode``: the forward for
inference, forward + backward for training; the optimizer's elementwise work is not counted),
seconds per step (warm-up, then the best of ``--repeats``), images/s, achieved GFLOP/s and the
share of the dtype's peak. The peak is computed from ``lscpu`` (see :func:`peak_gflops`, whose
assumptions are printed with the table).

Dtypes: float32 always; bfloat16 autocast where the CPU has AVX512-BF16 or AMX; int8 inference
(post-training static quantization, ``torch.ao`` FX graph mode, x86 backend, calibrated on random
slices) where the CPU has AVX512-VNNI or AVX2. Also, at the quick size: the top 10 operators by
self CPU time (``torch.profiler``) of one training step per network and dtype, and the oneDNN
implementation of each convolution kind (one forward + backward in a subprocess with
``ONEDNN_VERBOSE=1``, the distinct ``exec,cpu,convolution,<impl>,<prop kind>`` lines counted):
the proof of which kernels run, e.g. ``brg_conv_fwd:avx512_core_amx`` (AMX) or ``jit:avx512_core``.

Run (from the project root; a quiet machine, it takes minutes to an hour at the full size)::

    python benchmarks/roofline.py --threads 2                      # both sizes, the CPU's dtypes
    python benchmarks/roofline.py --sizes quick --dtypes float32 --repeats 5
    python benchmarks/roofline.py --smoke --out /tmp/roofline.md   # seconds: 32 px, 1 repeat

Output: a markdown file (``--out``, default ``benchmarks/measurements/roofline_<cpu>.md``) with
the CPU model, its relevant flags and the peaks, and a JSON file with the same numbers next to it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import torch
from torch import nn

from radfusion.execution import autocast, cpu_has_native_bfloat16, prepare_for_inference
from radfusion.losses import build_loss
from radfusion.models import build_model
from radfusion.protocol import TrainingProtocol
from radfusion.train import build_optimization

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_training import read_config  # noqa: E402

NETWORKS = ("resnext_unet", "attention_unet")
CHANNELS = 3
FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
#: FMA units per core: an ASSUMPTION (true for Intel Xeon Skylake-SP and later server cores; AMD
#: Zen 4 issues 512-bit FMAs as two 256-bit halves, so its real AVX-512 peak is half of this).
FMA_UNITS = 2
#: AMX (Sapphire Rapids and later): one TMUL per core, 1024 bfloat16 and 2048 int8 ops per cycle.
AMX_OPS_PER_CYCLE = {"bfloat16": 1024, "int8": 2048}
SMOKE_SIZE = 32


# --------------------------------------------------------------------------------------- the CPU
def lscpu() -> dict[str, str]:
    """``lscpu``'s "key: value" lines (empty where lscpu is missing)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines()) if v}


def cpu_info(ghz: float | None = None) -> dict:
    """Model, flags, threads used and clock (lscpu's max MHz, else /proc/cpuinfo's, else ``ghz``)."""
    info = lscpu()
    flags = set(info.get("Flags", "").split())
    if ghz:
        clock, source = ghz, "--ghz"
    elif info.get("CPU max MHz"):
        clock, source = float(info["CPU max MHz"]) / 1000, "lscpu CPU max MHz"
    else:
        clock, source = _proc_cpuinfo_ghz(), "/proc/cpuinfo cpu MHz (nominal; no max MHz reported)"
    return {
        "model": info.get("Model name", platform.processor() or platform.machine()),
        "flags": {flag: flag in flags for flag in FLAGS},
        "threads": torch.get_num_threads(),
        "logical_cpus": os.cpu_count(),
        "ghz": clock,
        "clock_source": source,
    }


def _proc_cpuinfo_ghz() -> float:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1]) / 1000
    except (OSError, ValueError):
        pass
    return float("nan")


def fp32_lanes(flags: dict[str, bool]) -> int:
    """float32 lanes of the widest vector FMA: 16 (AVX-512), 8 (AVX2 + FMA), else 4 (SSE)."""
    if flags.get("avx512f"):
        return 16
    if flags.get("avx2") and flags.get("fma"):
        return 8
    return 4


def peak_gflops(cpu: dict) -> dict[str, dict]:
    """Peak GFLOP/s (int8: GOP/s) per dtype, with the formula, for ``cpu["threads"]`` cores.

    float32: GHz x cores x lanes x 2 (an FMA is 2 flops) x :data:`FMA_UNITS` (assumed).
    bfloat16: AMX tiles where ``amx_bf16`` (:data:`AMX_OPS_PER_CYCLE`), else 2x float32 where
    ``avx512_bf16`` (VDPBF16PS: two products per float32 lane), else the float32 peak (emulated).
    int8: AMX where ``amx_int8``, else 4x float32 where ``avx512_vnni`` (VPDPBUSD: four products
    per lane), else 2x float32 (AVX2 VPMADDUBSW + VPMADDWD).
    """
    flags, cores, ghz = cpu["flags"], cpu["threads"], cpu["ghz"]
    lanes = fp32_lanes(flags)
    fp32 = ghz * cores * lanes * 2 * FMA_UNITS
    base = f"{ghz:.2f} GHz x {cores} cores x {lanes} lanes x 2 (FMA) x {FMA_UNITS} FMA units (assumed)"
    peaks = {"float32": {"gflops": fp32, "formula": base}}
    if flags.get("amx_bf16"):
        peaks["bfloat16"] = {"gflops": ghz * cores * AMX_OPS_PER_CYCLE["bfloat16"],
                             "formula": f"AMX: {ghz:.2f} GHz x {cores} cores x 1024 ops/cycle"}
    elif flags.get("avx512_bf16"):
        peaks["bfloat16"] = {"gflops": 2 * fp32, "formula": "2 x float32 (AVX512-BF16 dot products)"}
    else:
        peaks["bfloat16"] = {"gflops": fp32, "formula": "float32 (no bfloat16 hardware: emulated)"}
    if flags.get("amx_int8"):
        peaks["int8"] = {"gflops": ghz * cores * AMX_OPS_PER_CYCLE["int8"],
                         "formula": f"AMX: {ghz:.2f} GHz x {cores} cores x 2048 ops/cycle"}
    elif flags.get("avx512_vnni"):
        peaks["int8"] = {"gflops": 4 * fp32, "formula": "4 x float32 (AVX512-VNNI)"}
    else:
        peaks["int8"] = {"gflops": 2 * fp32, "formula": "2 x float32 (AVX2 int8 multiply-adds)"}
    return peaks


def default_dtypes(cpu: dict) -> list[str]:
    """float32; bfloat16 with native bfloat16 hardware; int8 with VNNI or AVX2."""
    dtypes = ["float32"]
    if cpu_has_native_bfloat16() or cpu["flags"].get("amx_bf16"):
        dtypes.append("bfloat16")
    if cpu["flags"].get("avx512_vnni") or cpu["flags"].get("avx2"):
        dtypes.append("int8")
    return dtypes


# ----------------------------------------------------------------------------------- the work
def protocols(sizes: list[str], full_batch: int, smoke: bool) -> list[tuple[str, str, TrainingProtocol]]:
    """(size name, network, protocol) for each requested size, with its image size and CPU batch."""
    configs = {
        "full": read_config([PROJECT / "config" / "config.yaml"]),
        "quick": read_config([PROJECT / "config" / "config.yaml", PROJECT / "config" / "quick.yaml"]),
    }
    runs = []
    for size in sizes:
        for name in NETWORKS:
            protocol = TrainingProtocol.from_config(configs[size]["training"][name])
            if size == "full":
                protocol = protocol.replace(batch_size=min(protocol.batch_size, full_batch))
            if smoke:
                protocol = protocol.replace(image_size=SMOKE_SIZE)
            runs.append((size, name, protocol))
    return runs


def random_batch(protocol: TrainingProtocol, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Channels-last random images and ~2 % lesion masks of one batch."""
    generator = torch.Generator().manual_seed(seed)
    shape = (protocol.batch_size, CHANNELS, protocol.image_size, protocol.image_size)
    images = torch.rand(shape, generator=generator).contiguous(memory_format=torch.channels_last)
    masks = (torch.rand((shape[0], 1, *shape[2:]), generator=generator) < 0.02).float()
    return images, masks


def training_step(name: str, protocol: TrainingProtocol, dtype: str):
    """One training step of a fresh network, as radfusion.train does, as a closure; and ``{}``."""
    torch.manual_seed(0)
    model = build_model(name, CHANNELS).to(memory_format=torch.channels_last).train()
    optimizer, scheduler = build_optimization(protocol, model, n_train=protocol.batch_size * 100)
    loss_fn = build_loss(protocol.loss)
    images, masks = random_batch(protocol)
    device = torch.device("cpu")

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, dtype):
            logits = model(images)
        loss_fn(logits.float(), masks).backward()
        optimizer.step()
        scheduler.step_iteration()

    return step, {}


def inference_step(name: str, protocol: TrainingProtocol, dtype: str):
    """One inference forward pass as a closure, and facts of the path.

    ``dtype`` int8: the quantized network; the facts give its largest probability difference
    from float32 on the (calibration) batch, ``int8_max_abs_dprob``.
    """
    torch.manual_seed(0)
    model = prepare_for_inference(build_model(name, CHANNELS))
    images, _ = random_batch(protocol)
    facts = {}
    if dtype == "int8":
        quantized = quantize_int8(model, images)
        with torch.inference_mode():
            difference = torch.sigmoid(quantized(images)) - torch.sigmoid(model(images))
        facts["int8_max_abs_dprob"] = float(difference.abs().max())
        model = quantized
    device = torch.device("cpu")

    def step() -> None:
        with torch.inference_mode(), autocast(device, "float32" if dtype == "int8" else dtype):
            model(images)

    return step, facts


def quantize_int8(model: nn.Module, images: torch.Tensor) -> nn.Module:
    """``radfusion predict --precision int8``'s quantization (:func:`radfusion.quantize.quantize_int8`).

    Raises whatever FX tracing or conversion raises; the caller reports it as "not supported".
    An untrained network whose batch-norm statistics were never set overflows (non-finite
    activations); ``benchmarks/predict_speed.py`` sets them from data first.
    """
    from radfusion.quantize import quantize_int8 as quantize

    return quantize(model, images)


def count_flops(name: str, protocol: TrainingProtocol) -> dict[str, float]:
    """FLOPs per image of inference (the forward) and of training (forward + backward), float32.

    FlopCounterMode counts matrix products and convolutions (2 per multiply-add); the forward of
    training and inference do the same such work (batch norm and dropout are not counted).
    """
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(name, CHANNELS).train()
    images, masks = random_batch(protocol)
    forward, backward = FlopCounterMode(display=False), FlopCounterMode(display=False)
    with forward:
        loss = build_loss(protocol.loss)(model(images), masks)
    with backward:
        loss.backward()
    per_image = [counter.get_total_flops() / protocol.batch_size for counter in (forward, backward)]
    return {"infer": per_image[0], "train": per_image[0] + per_image[1]}


def best_time(step, repeats: int, warmup: int) -> float:
    """Seconds of the fastest of ``repeats`` calls of ``step`` after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return min(times)


def measure(size: str, name: str, protocol: TrainingProtocol, mode: str, dtype: str,
            flops: float, peaks: dict, repeats: int, warmup: int) -> dict:
    """One table row: time per step, images/s, achieved GFLOP/s and share of the dtype's peak."""
    build = training_step if mode == "train" else inference_step
    step, facts = build(name, protocol, dtype)
    seconds = best_time(step, repeats, warmup)
    achieved = flops * protocol.batch_size / seconds / 1e9
    peak = peaks[dtype]["gflops"]
    return {
        "size": size, "network": name, "image_size": protocol.image_size, "batch": protocol.batch_size,
        "mode": mode, "dtype": dtype, "gflop_per_image": flops / 1e9, "seconds_per_step": seconds,
        "images_per_s": protocol.batch_size / seconds, "gflops": achieved, "peak_gflops": peak,
        "percent_of_peak": 100 * achieved / peak, **facts,
    }


def top_operators(name: str, protocol: TrainingProtocol, dtype: str, warmup: int, limit: int = 10) -> list[dict]:
    """The ``limit`` operators of most self CPU time in one training step (after ``warmup`` steps)."""
    from torch.profiler import ProfilerActivity, profile

    step, _ = training_step(name, protocol, dtype)
    for _ in range(warmup):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    return [
        {"operator": e.key, "calls": e.count, "self_ms": e.self_cpu_time_total / 1e3,
         "percent": 100 * e.self_cpu_time_total / total}
        for e in events[:limit]
    ]


# --------------------------------------------------------------------------------------- oneDNN
PROBE_MARK = "roofline-probe:"


def onednn_probe(dtype: str, specs: list[str]) -> None:
    """One training forward + backward per ``network:px:batch`` spec, each after a marker line.

    Run in a subprocess with ONEDNN_VERBOSE=1 by :func:`onednn_convolutions`.
    """
    for spec in specs:
        name, px, batch = spec.split(":")
        print(f"{PROBE_MARK}{name}", flush=True)
        protocol = TrainingProtocol.from_config(read_config([PROJECT / "config" / "config.yaml"])["training"][name])
        protocol = protocol.replace(image_size=int(px), batch_size=int(batch))
        model = build_model(name, CHANNELS).to(memory_format=torch.channels_last).train()
        images, masks = random_batch(protocol)
        with autocast(torch.device("cpu"), dtype):
            logits = model(images)
        build_loss(protocol.loss)(logits.float(), masks).backward()


def onednn_convolutions(runs: list[tuple[str, TrainingProtocol]], dtype: str) -> dict[str, list[dict]]:
    """Per network, the distinct oneDNN (de)convolution implementations of one forward + backward.

    One subprocess per dtype (ONEDNN_VERBOSE must be set before oneDNN starts).
    """
    env = dict(os.environ, ONEDNN_VERBOSE="1", DNNL_VERBOSE="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT / "src"), os.environ.get("PYTHONPATH")])))
    specs = [f"{name}:{protocol.image_size}:{protocol.batch_size}" for name, protocol in runs]
    command = [sys.executable, __file__, "--threads", str(torch.get_num_threads()), "--onednn-probe", dtype, *specs]
    output = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
    parts = re.split(rf"^{PROBE_MARK}(\S+)$", output, flags=re.MULTILINE)
    return {name: summarize_onednn(text) for name, text in zip(parts[1::2], parts[2::2])}


def summarize_onednn(verbose: str) -> list[dict]:
    """Count ``exec,cpu,(de)convolution,<impl>,<prop kind>`` lines, grouped problems (``g32mb2_...``) apart."""
    counts: Counter = Counter()
    for line in verbose.splitlines():
        if not line.startswith(("onednn_verbose", "dnnl_verbose")):
            continue
        fields = line.split(",")
        try:
            at = fields.index("exec")
        except ValueError:
            continue
        if fields[at + 1] != "cpu" or fields[at + 2] not in ("convolution", "deconvolution"):
            continue
        problem = re.match(r"g(\d+)mb", fields[-2])  # e.g. g32mb2_ic128oc128_ih16... (grouped)
        grouped = bool(problem and int(problem.group(1)) > 1)
        counts[(fields[at + 2], fields[at + 3], fields[at + 4], grouped)] += 1
    return [
        {"primitive": kind, "impl": impl, "prop_kind": prop, "grouped": grouped, "calls": n}
        for (kind, impl, prop, grouped), n in sorted(counts.items())
    ]


# ------------------------------------------------------------------------------------- output
def markdown(cpu: dict, peaks: dict, rows: list[dict], operators: dict, onednn: dict, notes: list[str],
             smoke: bool) -> str:
    """The results as markdown: CPU header, peaks, the roofline table, top operators, oneDNN impls."""
    flags = ", ".join(f"{flag} {'yes' if present else 'no'}" for flag, present in cpu["flags"].items())
    lines = [
        f"# Roofline: {cpu['model']}" + (" (SMOKE RUN: tiny sizes, 1 repeat; not a measurement)" if smoke else ""),
        "",
        f"- CPU: {cpu['model']} ({cpu['logical_cpus']} logical CPUs), {cpu['threads']} torch threads used",
        f"- flags: {flags}",
        f"- clock: {cpu['ghz']:.3f} GHz ({cpu['clock_source']})",
        f"- torch {torch.__version__}, {platform.python_implementation()} {platform.python_version()}",
        f"- assumption: {FMA_UNITS} FMA units per core (Intel Xeon server cores; AMD Zen 4 runs 512-bit "
        "FMAs as two halves, i.e. half this peak)",
        "",
        "| dtype | peak GFLOP/s | formula |",
        "|---|---:|---|",
        *(f"| {d} | {p['gflops']:.1f} | {p['formula']} |" for d, p in peaks.items()),
        "",
        "| network | size | px | batch | mode | dtype | GFLOP/image | s/step | images/s | GFLOP/s | % of peak |",
        "|---|---|---:|---:|---|---|---:|---:|---:|---:|---:|",
        *(f"| {r['network']} | {r['size']} | {r['image_size']} | {r['batch']} | {r['mode']} | {r['dtype']} | "
          f"{r['gflop_per_image']:.2f} | {r['seconds_per_step']:.3f} | {r['images_per_s']:.2f} | "
          f"{r['gflops']:.1f} | {r['percent_of_peak']:.1f} |" for r in rows),
    ]
    if notes:
        lines += ["", *(f"- {note}" for note in notes)]
    for key, ops in operators.items():
        lines += ["", f"## Top operators by self CPU time: {key}", "",
                  "| operator | calls | self ms | % |", "|---|---:|---:|---:|",
                  *(f"| `{o['operator']}` | {o['calls']} | {o['self_ms']:.1f} | {o['percent']:.1f} |" for o in ops)]
    for key, impls in onednn.items():
        lines += ["", f"## oneDNN convolutions (ONEDNN_VERBOSE): {key}", "",
                  "| primitive | impl | prop kind | grouped | calls |", "|---|---|---|---|---:|",
                  *(f"| {i['primitive']} | `{i['impl']}` | {i['prop_kind']} | {'yes' if i['grouped'] else 'no'} | "
                    f"{i['calls']} |" for i in impls)]
        if not impls:
            lines.append("| (no oneDNN convolution ran: torch's own kernels) | | | | |")
    return "\n".join(lines) + "\n"


def default_out(cpu: dict) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "_", cpu["model"].lower()).strip("_") or "cpu"
    return PROJECT / "benchmarks" / "measurements" / f"roofline_{slug}.md"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", choices=("quick", "full"), default=["quick", "full"])
    parser.add_argument("--dtypes", nargs="+", choices=("float32", "bfloat16", "int8"), default=None,
                        help="default: float32, plus bfloat16 and int8 where the CPU has the hardware")
    parser.add_argument("--modes", nargs="+", choices=("train", "infer"), default=["train", "infer"])
    parser.add_argument("--repeats", type=int, default=3, help="timed steps; the best counts (after 1 warm-up)")
    parser.add_argument("--full-batch", type=int, default=4, help="CPU batch at the full size")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--ghz", type=float, default=None, help="clock for the peak (default: from lscpu)")
    parser.add_argument("--out", type=Path, default=None, help="markdown output (JSON next to it)")
    parser.add_argument("--smoke", action="store_true",
                        help=f"{SMOKE_SIZE} px, 1 repeat without warm-up, quick size only (tests the script)")
    parser.add_argument("--onednn-probe", nargs="+", metavar="DTYPE NETWORK:PX:BATCH", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes, args.repeats = ["quick"], 1
    return args


def measure_all(args, peaks: dict, dtypes: list[str]) -> tuple[list[dict], list[str]]:
    """The roofline rows of every size, network, mode and dtype; notes on what could not run."""
    rows, notes, warmup = [], [], 0 if args.smoke else 1
    for size, name, protocol in protocols(args.sizes, args.full_batch, args.smoke):
        flops = count_flops(name, protocol)
        for mode in args.modes:
            for dtype in dtypes:
                if dtype == "int8" and mode == "train":
                    continue  # int8 is an inference path only
                try:
                    row = measure(size, name, protocol, mode, dtype, flops[mode], peaks, args.repeats, warmup)
                except Exception as err:  # noqa: BLE001 - the int8 conversion of a network may fail
                    if dtype != "int8":
                        raise
                    notes.append(f"int8: not supported for {name} at {size} size because "
                                 f"{type(err).__name__}: {str(err).splitlines()[0][:200]}")
                    continue
                rows.append(row)
                print(f"{name:15s} {size:5s} {protocol.image_size:3d}px b{protocol.batch_size} {mode:5s} {dtype:8s} "
                      f"{row['gflop_per_image']:7.2f} GFLOP/img {row['seconds_per_step']:7.3f} s "
                      f"{row['images_per_s']:7.2f} img/s {row['gflops']:7.1f} GFLOP/s "
                      f"({row['percent_of_peak']:.0f} % of {row['peak_gflops']:.0f})", flush=True)
    for row in (r for r in rows if "int8_max_abs_dprob" in r):
        difference = row["int8_max_abs_dprob"]
        verdict = "" if math.isfinite(difference) else ": the quantized network's output is not finite, unusable as is"
        notes.append(f"int8 {row['network']} {row['size']}: largest |probability difference| from float32 on "
                     f"its calibration batch {difference:.3f} (untrained weights){verdict}")
    return rows, notes


def profile_all(args, dtypes: list[str]) -> tuple[dict, dict]:
    """Top operators and oneDNN convolution kernels of one training step, first size, per dtype."""
    runs = [(name, protocol) for size, name, protocol in protocols(args.sizes[:1], args.full_batch, args.smoke)]
    operators, onednn = {}, {}
    for dtype in (d for d in dtypes if d != "int8"):
        kernels = onednn_convolutions(runs, dtype)
        for name, protocol in runs:
            key = f"{name} {protocol.image_size}px batch {protocol.batch_size} training step {dtype}"
            operators[key] = top_operators(name, protocol, dtype, warmup=0 if args.smoke else 1)
            onednn[key] = kernels.get(name, [])
    return operators, onednn


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.onednn_probe:
        onednn_probe(args.onednn_probe[0], args.onednn_probe[1:])
        return
    cpu = cpu_info(args.ghz)
    peaks = peak_gflops(cpu)
    dtypes = args.dtypes or default_dtypes(cpu)
    rows, notes = measure_all(args, peaks, dtypes)
    operators, onednn = profile_all(args, dtypes)
    out = args.out or default_out(cpu)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown(cpu, peaks, rows, operators, onednn, notes, args.smoke))
    results = {"smoke": args.smoke, "cpu": cpu, "torch": torch.__version__, "dtypes": dtypes, "peaks": peaks,
               "rows": rows, "notes": notes, "top_operators": operators, "onednn_convolutions": onednn}
    out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    print(f"wrote {out} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
