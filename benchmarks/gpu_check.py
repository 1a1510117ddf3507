"""GPU check in one call: the full protocol's training steps and predict on CUDA, against the CPU.

On a CUDA machine, for both networks at the full protocol's sizes (``config/config.yaml``:
resnext_unet 256 px batch 32, attention_unet 224 px batch 6; 3 input channels):

- training: the project's own loop (:func:`radfusion.train.train_epochs` through
  ``benchmarks/bench_training.py``: float16 autocast + GradScaler on CUDA as
  ``training.mixed_precision`` sets it, the protocol's loss, optimizer and schedule, flips), two
  epochs of ``--cuda-batches`` batches on random slices, the second timed;
- inference: :func:`radfusion.evaluate.predict_probabilities`, the function behind
  ``radfusion predict`` and the evaluation (channels-last, inference mode, the machine's autocast);
- the same steps on the CPU, a few (``--cpu-batches`` batches of ``--cpu-batch``);
- projections: one cross-validation job, ``epochs * (n_train / train_rate + n_val / infer_rate)
  + n_val / infer_rate`` with ``n_train = 5/6`` of ``--slices`` (1,309 lesion slices at stride 3
  on the 46-subject demo cohort) and ``n_val = 1/6``, the 24-job protocol (2 networks x 2 inputs x
  6 folds, one job after another), and ``radfusion predict`` of one patient (``--patient-slices``
  slices through the 6 fold models). Process start-up, data loading and checkpoints are not included.

Without CUDA (or with ``--smoke``) it runs a smoke version on the CPU: 32 px, batch 2, two
training steps (the second timed) and 4 inference images per network, and says so in its results.

Writes ONE results file pair, ``gpu_check_<host>.json`` and ``.md``, into ``--out-dir``. Needs no
network: untrained networks (no ImageNet weights), random slices. Run it through
``benchmarks/gpu_check.sh`` (sets PYTHONPATH; ``$OUT`` is the default folder).
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import socket
import sys
import time
from pathlib import Path

import torch

from radfusion.execution import autocast_precision, resolve_device
from radfusion.protocol import TrainingProtocol

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_training import PROJECT, inference_rate, read_config, training_rate  # noqa: E402

CHANNELS = 3
SMOKE = {"image_size": 32, "batch_size": 2, "batches": 1, "inference_images": 4}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=PROJECT / "benchmarks" / "measurements")
    parser.add_argument("--smoke", action="store_true", help="the CPU smoke version even where CUDA is present")
    parser.add_argument("--cuda-batches", type=int, default=10, help="training batches per timed epoch on CUDA")
    parser.add_argument("--cpu-batches", type=int, default=2, help="training batches per timed epoch on the CPU")
    parser.add_argument("--cpu-batch", type=int, default=4, help="CPU training batch (the protocol's needs > 20 GB)")
    parser.add_argument("--inference-images", type=int, default=256, help="images timed in inference on CUDA")
    parser.add_argument("--cpu-inference-images", type=int, default=16)
    parser.add_argument("--slices", type=int, default=1309, help="cohort lesion slices (demo: 1,309 at stride 3)")
    parser.add_argument("--patient-slices", type=int, default=150, help="slices of one patient (1 mm brain)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    return parser.parse_args(argv)


def protocol_of(config: dict, name: str, device: torch.device, args: argparse.Namespace, smoke: bool) -> TrainingProtocol:
    """The network's protocol at the batch size timed on ``device`` (smoke: tiny sizes)."""
    protocol = TrainingProtocol.from_config(config["training"][name])
    if smoke:
        return protocol.replace(image_size=SMOKE["image_size"], batch_size=SMOKE["batch_size"])
    if device.type == "cpu":
        return protocol.replace(batch_size=min(protocol.batch_size, args.cpu_batch))
    return protocol


def time_network(config: dict, name: str, device: torch.device, args: argparse.Namespace, smoke: bool) -> dict:
    """Training and inference rates of one network on one device, and its projected jobs."""
    mixed_precision = config["training"].get("mixed_precision", True)
    protocol = protocol_of(config, name, device, args, smoke)
    if smoke:
        batches, images = SMOKE["batches"], SMOKE["inference_images"]
    elif device.type == "cuda":
        batches, images = args.cuda_batches, args.inference_images
    else:
        batches, images = args.cpu_batches, args.cpu_inference_images
    started = time.perf_counter()
    train = training_rate(name, protocol, CHANNELS, device, batches, mixed_precision)
    infer = inference_rate(name, protocol, CHANNELS, device, images)
    folds, inputs = config["folds"], len(config["inputs"])
    n_val = args.slices / folds
    n_train = args.slices - n_val
    job = protocol.epochs * (n_train / train + n_val / infer) + n_val / infer
    return {
        "device": device.type, "network": name, "image_size": protocol.image_size,
        "protocol_batch_size": TrainingProtocol.from_config(config["training"][name]).batch_size,
        "timed_batch_size": protocol.batch_size, "timed_training_steps": batches,
        "precision": autocast_precision(device, mixed_precision), "epochs": protocol.epochs,
        "train_seconds_per_step": protocol.batch_size / train, "train_images_per_s": train,
        "inference_images_per_s": infer, "job_minutes": job / 60, "jobs": inputs * folds,
        "network_protocol_hours": inputs * folds * job / 3600,
        "predict_patient_minutes": args.patient_slices * folds / infer / 60,
        "measured_seconds": time.perf_counter() - started,
    }


def machine() -> dict:
    """The CPU, torch and (where present) the CUDA device."""
    facts = {"host": socket.gethostname(), "cpu": platform.processor() or platform.machine(),
             "torch": torch.__version__, "threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                facts["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if facts["cuda"]:
        properties = torch.cuda.get_device_properties(0)
        facts.update(gpu=properties.name, gpu_memory_gib=round(properties.total_memory / 2**30, 1),
                     cuda_version=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    return facts


def summarize(runs: list[dict]) -> dict:
    """Per device: the 24-job protocol's projected hours; per network: CUDA's speed-up over the CPU."""
    summary = {}
    for device in sorted({run["device"] for run in runs}):
        summary[f"{device}_protocol_hours"] = sum(r["network_protocol_hours"] for r in runs if r["device"] == device)
        summary[f"{device}_protocol_jobs"] = sum(r["jobs"] for r in runs if r["device"] == device)
    by_key = {(r["device"], r["network"]): r for r in runs}
    for (device, name), run in by_key.items():
        cpu = by_key.get(("cpu", name))
        if device == "cuda" and cpu:
            summary[f"{name}_cuda_over_cpu_training"] = run["train_images_per_s"] / cpu["train_images_per_s"]
            summary[f"{name}_cuda_over_cpu_inference"] = run["inference_images_per_s"] / cpu["inference_images_per_s"]
    return summary


def markdown(results: dict) -> str:
    facts, header = results["machine"], "# GPU check"
    if results["smoke"]:
        header += " (SMOKE RUN on the CPU: tiny sizes, two training steps; not a measurement)"
    lines = [header, "",
             f"- host {facts['host']}; CPU {facts['cpu']}, {facts['threads']} threads; torch {facts['torch']}",
             f"- GPU: {facts.get('gpu', 'none')}" + (f" ({facts['gpu_memory_gib']} GiB, CUDA {facts['cuda_version']}, "
                                                   f"cuDNN {facts['cudnn']})" if facts["cuda"] else ""),
             f"- projection: {results['slices']} slices, {results['folds']} folds, 5/6 per training job; "
             f"predict: {results['patient_slices']} slices x {results['folds']} fold models", "",
             "| device | network | px | batch (protocol) | precision | s/step | train img/s | infer img/s | "
             "min/job | jobs | h (this network) | predict min/patient |",
             "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results["runs"]:
        lines.append(
            f"| {r['device']} | {r['network']} | {r['image_size']} | {r['timed_batch_size']} ({r['protocol_batch_size']}) | "
            f"{r['precision']} | {r['train_seconds_per_step']:.3f} | {r['train_images_per_s']:.2f} | "
            f"{r['inference_images_per_s']:.2f} | {r['job_minutes']:.2f} | {r['jobs']} | "
            f"{r['network_protocol_hours']:.2f} | {r['predict_patient_minutes']:.2f} |")
    lines += ["", *(f"- {key}: {value:.3f}" if isinstance(value, float) else f"- {key}: {value}"
                    for key, value in results["summary"].items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    smoke = args.smoke or not torch.cuda.is_available()
    config = read_config([PROJECT / "config" / "config.yaml"])
    devices = ["cpu"] if smoke else ["cuda", "cpu"]
    runs = []
    for device_name in devices:
        for name in config["models"]:
            run = time_network(config, name, resolve_device(device_name), args, smoke)
            runs.append(run)
            print(f"{run['device']:4s} {name:15s} {run['image_size']}px batch {run['timed_batch_size']}: "
                  f"{run['train_seconds_per_step']:.3f} s/step, infer {run['inference_images_per_s']:.1f} img/s, "
                  f"{run['network_protocol_hours']:.2f} h for its {run['jobs']} jobs", flush=True)
    results = {"smoke": smoke, "machine": machine(), "slices": args.slices, "folds": config["folds"],
               "patient_slices": args.patient_slices, "runs": runs, "summary": summarize(runs)}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    host = re.sub(r"[^A-Za-z0-9_.-]+", "_", results["machine"]["host"]) or "host"
    path = args.out_dir / f"gpu_check_{host}.json"
    path.write_text(json.dumps(results, indent=1))
    path.with_suffix(".md").write_text(markdown(results))
    print(f"wrote {path} and {path.with_suffix('.md')}")
    return path


if __name__ == "__main__":
    main()
