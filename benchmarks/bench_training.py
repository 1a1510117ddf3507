"""Training and inference throughput of both networks, and the projected wall time of the protocol.

For each network, with its protocol (``config/config.yaml``, or ``--configfile`` overlays such as
``config/quick.yaml``): trains on random in-memory slices through the project's own loop
(:func:`radfusion.train.train_epochs`: with ``training.mixed_precision``, float16 autocast +
GradScaler on CUDA and bfloat16 autocast on CPUs with native bfloat16; the protocol's loss,
optimizer and schedule, horizontal flips) and times the last of two epochs (the first warms up
kernels and allocators); then times inference (:func:`radfusion.evaluate.predict_probabilities`).
From the measured images/s it projects one cross-validation job and the whole protocol
(networks x 2 inputs x folds jobs, one after another on one device):

    job = epochs * (n_train / train_rate + n_val / inference_rate) + n_test / inference_rate

with ``n_train = n_slices * (folds - 1) / folds`` and ``n_val = n_test = n_slices / folds``
(per-epoch validation on the test fold, then the evaluation). Process start-up, slice loading
and checkpoint writing are not included (seconds per job).

Target (SPEC "Performance targets"): the full protocol on the 46-subject cohort (~1102 slices)
under 1 hour on one H100-class GPU.

Run: ``python benchmarks/bench_training.py`` (``--help``). On the CPU the training timings use
batches of 4 (``--cpu-batch-size``): the protocol's 32 slices of 256x256 need more than 20 GB of
RAM there; the projection uses images/s, which barely depend on the batch size at these sizes.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
import yaml

from radfusion.evaluate import predict_probabilities
from radfusion.losses import build_loss
from radfusion.models import build_model
from radfusion.protocol import TrainingProtocol
from radfusion.execution import resolve_device, uses_autocast
from radfusion.train import build_optimization, seed_everything, train_epochs

PROJECT = Path(__file__).resolve().parents[1]


def read_config(paths: list[Path]) -> dict:
    """The workflow config with overlays merged key by key (as Snakemake's --configfile does)."""

    def merge(base: dict, overlay: dict) -> dict:
        for key, value in overlay.items():
            base[key] = merge(dict(base.get(key, {})), value) if isinstance(value, dict) else value
        return base

    config: dict = {}
    for path in paths:
        config = merge(config, yaml.safe_load(path.read_text()) or {})
    return config


def random_slices(n: int, channels: int, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images and masks with ~2 % lesion pixels (the content does not change the timing)."""
    images = torch.rand((n, channels, size, size), generator=generator)
    masks = (torch.rand((n, 1, size, size), generator=generator) < 0.02).float()
    return images, masks


def training_rate(
    name: str, protocol: TrainingProtocol, channels: int, device: torch.device, batches: int, mixed_precision: bool = True
) -> float:
    """Training images per second of one network with its protocol (last of two epochs)."""
    seed_everything(0)
    model = build_model(name, channels)
    n = protocol.batch_size * batches
    protocol = protocol.replace(epochs=2)
    optimizer, scheduler = build_optimization(protocol, model, n_train=n)
    images, masks = random_slices(n, channels, protocol.image_size, torch.Generator().manual_seed(0))
    empty = images[:0]
    history = train_epochs(
        model, optimizer, scheduler, build_loss(protocol.loss), images, masks, empty, masks[:0],
        epochs=2, batch_size=protocol.batch_size, hflip=protocol.hflip, seed=0, device=device,
        mixed_precision=mixed_precision,
    )
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / float(history["seconds"].iloc[-1])


def inference_rate(name: str, protocol: TrainingProtocol, channels: int, device: torch.device, n: int) -> float:
    """Inference images per second (sigmoid probabilities, batches of 32)."""
    model = build_model(name, channels).to(device)
    images, _ = random_slices(n, channels, protocol.image_size, torch.Generator().manual_seed(1))
    predict_probabilities(model, images[: min(n, 32)])  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    predict_probabilities(model, images)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", type=Path, nargs="*", default=[], help="overlays on config/config.yaml")
    parser.add_argument("--devices", nargs="*", default=None, help="cpu and/or cuda (default: cpu, plus cuda when present)")
    parser.add_argument("--models", nargs="*", default=None, help="networks (default: the config's)")
    parser.add_argument("--channels", type=int, default=3, help="input channels (3 = mri_radiomics, 1 = mri)")
    parser.add_argument("--train-batches", type=int, default=2, help="batches per timed epoch (CPU default 2)")
    parser.add_argument("--cuda-train-batches", type=int, default=20, help="batches per timed epoch on CUDA")
    parser.add_argument(
        "--cpu-batch-size", type=int, default=4,
        help="batch size of CPU timings (the protocol's 32 x 256^2 needs > 20 GB of RAM on the CPU); "
        "images/s barely depend on it at these sizes; 0 = the protocol's",
    )
    parser.add_argument("--inference-images", type=int, default=64)
    parser.add_argument("--slices", type=int, default=1102, help="cohort slices (the paper: 1102 from 46 subjects)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    config = read_config([PROJECT / "config" / "config.yaml", *args.configfile])
    folds = config["folds"]
    models = args.models or config["models"]
    n_inputs = len(config["inputs"])
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    n_val = args.slices / folds
    n_train = args.slices - n_val
    results = {
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "slices": args.slices,
        "folds": folds,
        "runs": [],
    }
    mixed_precision = config["training"].get("mixed_precision", True)
    results["mixed_precision"] = mixed_precision
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; {args.slices} slices, {folds} folds; "
        f"mixed precision {'on' if mixed_precision else 'off'}"
    )
    for device_name in devices:
        device = resolve_device(device_name)
        print(f"{device_name}: autocast {'on' if uses_autocast(device, mixed_precision) else 'off'}")
        if device.type == "cuda":
            print(f"CUDA device: {torch.cuda.get_device_name(device)}")
        total = 0.0
        for name in models:
            protocol = TrainingProtocol.from_config(config["training"][name])
            batches = args.cuda_train_batches if device.type == "cuda" else args.train_batches
            timed = protocol
            if device.type == "cpu" and args.cpu_batch_size:
                timed = protocol.replace(batch_size=args.cpu_batch_size)
            train = training_rate(name, timed, args.channels, device, batches, mixed_precision)
            infer = inference_rate(name, protocol, args.channels, device, args.inference_images)
            job = protocol.epochs * (n_train / train + n_val / infer) + n_val / infer
            jobs = n_inputs * folds
            total += jobs * job
            run = {
                "device": device_name, "model": name, "image_size": protocol.image_size,
                "batch_size": protocol.batch_size, "timed_batch_size": timed.batch_size,
                "epochs": protocol.epochs,
                "train_images_per_s": train, "inference_images_per_s": infer,
                "job_minutes": job / 60, "jobs": jobs, "model_total_minutes": jobs * job / 60,
            }
            results["runs"].append(run)
            print(
                f"{device_name:5s} {name:15s} {protocol.image_size}px batch {timed.batch_size:3d}: "
                f"train {train:8.1f} img/s, inference {infer:8.1f} img/s; "
                f"{protocol.epochs} epochs x {n_train:.0f} slices -> {job / 60:.2f} min/job, "
                f"{jobs} jobs {jobs * job / 60:.1f} min"
            )
        print(f"{device_name}: projected protocol ({len(models)} networks x {n_inputs} inputs x {folds} folds): {total / 3600:.2f} h")
        results[f"{device_name}_projected_hours"] = total / 3600
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
