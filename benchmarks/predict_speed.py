"""Speed of ``radfusion predict``'s network passes on this CPU, and what the fast path changes.

Two measurements, side by side in one run on one machine:

1. **Time** of the fold ensemble on a real patient's brain slices with full-size models (the full
   config's image sizes; untrained weights, with batch-norm statistics set on the patient's slices
   as training would set them, so that every path computes finite activations: the time does not
   depend on the weights). For each network, the inference path before issue 22 (float32, NCHW,
   ``torch.no_grad``, batches of 32), today's default
   (:func:`radfusion.evaluate.predict_probabilities`: the machine's precision policy,
   channels-last, ``torch.inference_mode``) and ``--precision int8`` (where the CPU has VNNI) run
   on the same ``--slices`` brain slices, interleaved; the per-slice time is projected to the
   patient's brain slices x ``--folds`` models, plus int8's quantization of each fold model
   (:func:`radfusion.quantize.quantize_int8`, calibration on the scan included), timed separately
   (int8 then runs on all but the calibration slices, which keep the calibration pass's output);
   and the quantization from ranges observed beforehand (:func:`radfusion.quantize.activation_ranges`,
   as training could store them), which needs no calibration pass.
2. **Agreement** (with trained models, e.g. the quick demo's): the lesion mask of
   :func:`radfusion.predict.predict_lesion_mask` on the whole patient in float32 against the
   policy's precision and int8, and with fewer fold models (the first 1, 2, 3) against all of
   them: voxel Dice and lesion volume. ``--trained`` may name several runs. int8 twice: calibrated
   on the scan (what predict does) and from ranges observed on as many of each fold's training
   slices (``CALIBRATION_SLICES``; ``--slices-dir``, default the run's ``results/slices``).

Run from the repository root::

    python benchmarks/predict_speed.py --out benchmarks/measurements/predict_speed.md \\
        --trained results/models/attention_unet/mri_radiomics

Times exclude skull stripping, radiomics and file writing (seconds; ``radfusion predict`` logs them).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import platform
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "src"))

from bench_training import read_config  # noqa: E402
from radfusion import execution  # noqa: E402
from radfusion.evaluate import dice_score, predict_probabilities  # noqa: E402
from radfusion.models import build_model  # noqa: E402
from radfusion.normalize import normalize_intensity  # noqa: E402
from radfusion.ensemble import load_fold_models  # noqa: E402
from radfusion.predict import brain_slice_indices, predict_lesion_mask, slice_stack  # noqa: E402
from radfusion import quantize  # noqa: E402
from radfusion.quantize import (  # noqa: E402
    activation_ranges, calibration_indices, calibration_slices, int8_supported, quantize_int8,
)
from radfusion.slices import resize_images  # noqa: E402
from radfusion.train import load_fold_slices, load_trained_model  # noqa: E402


def legacy_probabilities(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The inference path before issue 22: float32 autocast off on the CPU, NCHW, no_grad, batches of 32."""
    model.eval()
    parts = []
    with torch.no_grad():
        for start in range(0, images.shape[0], 32):
            parts.append(torch.sigmoid(model(images[start : start + 32]).float()))
    return torch.cat(parts)


def cpu_description() -> str:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in lscpu.splitlines() if line.startswith("Flags")), [])
    wanted = ("avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
    return f"{model}; flags: {' '.join(f for f in wanted if f in flags) or 'none of ' + ', '.join(wanted)}"


def model_with_statistics(name: str, channels: int, statistics: torch.Tensor) -> torch.nn.Module:
    """An untrained network whose batch-norm statistics are those of ``statistics`` (evaluation mode)."""
    model = build_model(name, channels)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # a cumulative average over the pass
            module.reset_running_stats()
    with torch.no_grad():
        model.train()(statistics)
    return model.eval()


def int8_probabilities(model: torch.nn.Module, images: torch.Tensor, batch: int | None = None) -> torch.Tensor:
    """``--precision int8`` without its quantization (``model`` is already quantized), in batches of
    ``batch`` (default :func:`radfusion.execution.inference_batch_size`, as predict runs it)."""
    batch = batch or execution.inference_batch_size(*images.shape[-2:])
    with torch.inference_mode():
        return torch.cat([torch.sigmoid(model(images[i : i + batch])) for i in range(0, images.shape[0], batch)])


def time_ensemble(name: str, size: int, images: torch.Tensor, all_slices: torch.Tensor, folds: int,
                  repeats: int) -> dict:
    """Seconds per slice for ``folds`` models on each path, interleaved; int8's quantization per model."""
    torch.manual_seed(0)
    statistics = resize_images(calibration_slices(all_slices, 8), size)
    models = [model_with_statistics(name, images.shape[1], statistics) for _ in range(folds)]
    x = resize_images(images, size)
    paths = {"legacy": (copy.deepcopy(models), legacy_probabilities),
             "today": (copy.deepcopy(models), predict_probabilities)}
    best = {}
    if int8_supported():
        calibration = resize_images(calibration_slices(all_slices), size)
        started = time.perf_counter()
        quantized = [quantize_int8(model, calibration) for model in models]
        best["quantize"] = (time.perf_counter() - started) / folds
        ranges = [activation_ranges(model, statistics) for model in models]
        started = time.perf_counter()
        for model, observed in zip(models, ranges):
            quantize_int8(model, ranges=observed)
        best["quantize_ranges"] = (time.perf_counter() - started) / folds
        paths["int8"] = (quantized, int8_probabilities)
    best.update({path: float("inf") for path in paths})
    for _ in range(repeats + 1):  # the first round warms up
        for path, (path_models, run) in paths.items():
            started = time.perf_counter()
            for model in path_models:
                run(model, x)
            best[path] = min(best[path], (time.perf_counter() - started) / x.shape[0])
    return best


def write_report(lines: list[str], out: Path | None) -> None:
    """Print the report's markdown lines and write them to ``out`` when given."""
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        out.write_text(text)


@contextlib.contextmanager
def training_slice_ranges(models: list, paths: list[Path], slices_dir: Path):
    """Within the block, ``--precision int8`` quantizes each of ``models`` from ranges observed on
    :data:`radfusion.quantize.CALIBRATION_SLICES` of its fold's training slices (the
    ``train_subjects`` of its ``model.pt``) instead of calibrating on the scan; the seconds
    reported include observing them."""
    ranges = {}
    for model, path in zip(models, paths):
        _, info = load_trained_model(path)
        subjects = info["metadata"]["train_subjects"]
        [(images, _)] = load_fold_slices(
            {s: slices_dir / f"{s}.npz" for s in subjects}, [subjects], input_name=info["input_name"],
            image_size=info["image_size"], crop=info["crop"],
        )
        ranges[id(model)] = activation_ranges(model, calibration_slices(images))
    calibrated = quantize.quantize_int8

    def from_ranges(model, calibration, *, return_logits=False, **_):
        """No calibration pass: the calibration slices run through the int8 copy like the others."""
        quantized = calibrated(model, ranges=ranges[id(model)])
        if not return_logits:
            return quantized
        with torch.inference_mode():
            return quantized, quantized(calibration.contiguous(memory_format=torch.channels_last))

    quantize.quantize_int8 = from_ranges
    try:
        yield
    finally:
        quantize.quantize_int8 = calibrated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flair", type=Path, default=PROJECT.parent / "shared/data/open_ms_data/patient26/FLAIR.nii.gz")
    parser.add_argument("--slices", type=int, default=8, help="brain slices timed (the middle ones)")
    parser.add_argument("--folds", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", nargs="*", default=["resnext_unet", "attention_unet"],
                        help="timed networks (none: agreement only)")
    parser.add_argument("--trained", type=Path, nargs="+", help="run folders of trained fold models, for the agreement")
    parser.add_argument("--slices-dir", type=Path, help="the trained runs' exported slices (default: <results>/slices)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = read_config([PROJECT / "config/config.yaml"])

    image = nib.as_closest_canonical(nib.load(str(args.flair)))  # the canonical grid predict works on
    flair, affine = np.asarray(image.dataobj, dtype=np.float32), image.affine
    brain = flair != 0
    index = brain_slice_indices(brain)
    normalized = normalize_intensity(flair, brain=brain)
    middle = index[len(index) // 2 - args.slices // 2 :][: args.slices]
    images = torch.from_numpy(slice_stack([normalized] * 3, middle))
    lines = [
        f"# radfusion predict: network passes on {args.flair.parent.name}",
        "",
        f"CPU: {cpu_description()}; {args.threads} threads; torch {torch.__version__}; "
        f"precision policy: {execution.cpu_precision()}; {platform.node()}",
        f"{index.size} brain slices of {flair.shape} at {np.round(np.sqrt((affine[:3, :3] ** 2).sum(0)), 2).tolist()} mm; "
        f"{args.slices} timed, {args.folds} fold models, best of {args.repeats}",
    ]
    if args.models:
        lines += [
            "",
            "| network | size | before (s/slice) | today (s/slice) | int8 (s/slice) | int8 quantization (s/fold) "
            "| speed-up today, int8 | before per patient | today per patient | int8 per patient "
            "| int8 from stored ranges: quantization (s/fold), per patient, speed-up |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
    all_slices = torch.from_numpy(slice_stack([normalized] * 3, index))
    for name in args.models:
        size = int(config["training"][name]["image_size"])
        best = time_ensemble(name, size, images, all_slices, args.folds, args.repeats)
        minutes = {path: best[path] * index.size / 60 for path in ("legacy", "today")}
        if "int8" in best:
            # the calibration slices keep the calibration pass's output: int8 runs on the others
            int8_slices = index.size - len(calibration_indices(index.size))
            int8_total = best["int8"] * int8_slices + best["quantize"] * args.folds
            stored_total = best["int8"] * index.size + best["quantize_ranges"] * args.folds
            int8 = (f"{best['int8']:.2f} | {best['quantize']:.1f} | {best['legacy'] / best['today']:.2f}x, "
                    f"{best['legacy'] * index.size / int8_total:.2f}x",
                    f"{int8_total / 60:.1f} min | {best['quantize_ranges']:.1f}, {stored_total / 60:.1f} min, "
                    f"{best['legacy'] * index.size / stored_total:.2f}x")
        else:
            int8 = (f"- | - | {best['legacy'] / best['today']:.2f}x, -", "- | -")
        lines.append(
            f"| {name} | {size} | {best['legacy']:.2f} | {best['today']:.2f} | {int8[0]} "
            f"| {minutes['legacy']:.1f} min | {minutes['today']:.1f} min | {int8[1]} |"
        )
        print(lines[-1], flush=True)

    voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000
    for number, run in enumerate(args.trained or []):
        paths = sorted(run.glob("fold*/model.pt"), key=lambda p: int(p.parent.name[4:]))
        models, settings = load_fold_models(paths)
        options = dict(
            channels=settings["channels"], image_size=settings["image_size"], threads=args.threads, brain=brain,
            **settings["preprocessing"],
        )

        def segment(precision: str, subset) -> tuple[np.ndarray, float]:
            started = time.perf_counter()
            mask, _ = predict_lesion_mask(flair, subset, precision=precision, **options)
            return mask, time.perf_counter() - started

        policy = execution.cpu_precision()
        reference, seconds32 = segment("float32", models)
        lines += [
            "",
            f"Agreement on the whole patient, trained models {run} ({len(models)} folds, "
            f"{settings['image_size']} px), against float32 with all folds "
            f"({reference.sum() * voxel_ml:.2f} mL, {seconds32:.0f} s including radiomics):",
            "",
            "| path | voxel Dice | lesion volume (mL) | seconds |",
            "|---|---|---|---|",
        ]
        rows = [(policy, len(models))] + ([("int8", len(models))] if int8_supported() else [])
        rows += [("int8 from training-slice ranges", len(models))] if int8_supported() else []
        rows += [(policy, k) for k in (1, 2, 3)] if number == 0 else []
        for precision, k in rows:
            if precision == "int8 from training-slice ranges":
                with training_slice_ranges(models, paths, args.slices_dir or run.parents[2] / "slices"):
                    mask, seconds = segment("int8", models[:k])
            else:
                mask, seconds = segment(precision, models[:k])
            folds = "all folds" if k == len(models) else f"folds 1-{k}"
            lines.append(f"| {precision}, {folds} | {dice_score(mask, reference):.4f} | {mask.sum() * voxel_ml:.2f} "
                         f"| {seconds:.0f} |")
            print(lines[-1], flush=True)
    write_report(lines, args.out)


if __name__ == "__main__":
    main()
