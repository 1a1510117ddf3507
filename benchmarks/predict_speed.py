"""Speed of ``radfusion predict``'s network passes on this CPU, and what the fast path changes.

Two measurements, side by side in one run on one machine:

1. **Time** of the fold ensemble on a real patient's brain slices with full-size models (the full
   config's image sizes; untrained weights: the time does not depend on them). For each network,
   the inference path before issue 22 (float32, NCHW, ``torch.no_grad``, batches of 32) and today's
   (:func:`radfusion.evaluate.predict_probabilities`: the machine's precision policy,
   channels-last, ``torch.inference_mode``) run on the same ``--slices`` brain slices, interleaved;
   the per-slice time is projected to the patient's brain slices x ``--folds`` models.
2. **Agreement** (with trained models, e.g. the quick demo's): the lesion mask of
   :func:`radfusion.predict.predict_lesion_mask` on the whole patient in float32 against the
   policy's precision, and with fewer fold models (the first 1, 2, 3) against all of them:
   voxel Dice and lesion volume.

Run from the repository root::

    python benchmarks/predict_speed.py --out benchmarks/measurements/predict_speed.md \\
        --trained results/models/attention_unet/mri_radiomics

Times exclude skull stripping, radiomics and file writing (seconds; ``radfusion predict`` logs them).
"""

from __future__ import annotations

import argparse
import os
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
from radfusion.slices import resize_images  # noqa: E402


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


def time_ensemble(name: str, size: int, images: torch.Tensor, folds: int, repeats: int) -> dict:
    """Seconds per slice for ``folds`` untrained models, legacy path and today's, interleaved."""
    torch.manual_seed(0)
    legacy = [build_model(name, images.shape[1]).eval() for _ in range(folds)]
    today = [build_model(name, images.shape[1]).eval() for _ in range(folds)]
    x = resize_images(images, size)
    best = {"legacy": float("inf"), "today": float("inf")}
    for _ in range(repeats + 1):  # the first round warms up
        for path, models, run in (("legacy", legacy, legacy_probabilities), ("today", today, predict_probabilities)):
            started = time.perf_counter()
            for model in models:
                run(model, x)
            best[path] = min(best[path], (time.perf_counter() - started) / x.shape[0])
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flair", type=Path, default=PROJECT.parent / "shared/data/open_ms_data/patient26/FLAIR.nii.gz")
    parser.add_argument("--slices", type=int, default=8, help="brain slices timed (the middle ones)")
    parser.add_argument("--folds", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=["resnext_unet", "attention_unet"])
    parser.add_argument("--trained", type=Path, help="a run folder of trained fold models, for the agreement")
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
        "",
        "| network | size | before (s/slice) | today (s/slice) | speed-up | before per patient | today per patient |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in args.models:
        size = int(config["training"][name]["image_size"])
        best = time_ensemble(name, size, images, args.folds, args.repeats)
        projected = {path: seconds * index.size / 60 for path, seconds in best.items()}
        lines.append(
            f"| {name} | {size} | {best['legacy']:.2f} | {best['today']:.2f} | {best['legacy'] / best['today']:.2f}x "
            f"| {projected['legacy']:.1f} min | {projected['today']:.1f} min |"
        )
        print(lines[-1], flush=True)

    if args.trained:
        paths = sorted(args.trained.glob("fold*/model.pt"), key=lambda p: int(p.parent.name[4:]))
        models, settings = load_fold_models(paths)
        options = dict(
            channels=settings["channels"], image_size=settings["image_size"], threads=args.threads, brain=brain,
            **settings["preprocessing"],
        )

        def segment(precision: str, subset) -> tuple[np.ndarray, float]:
            os.environ[execution.PRECISION_ENV] = precision
            execution.cpu_precision.cache_clear()
            started = time.perf_counter()
            mask, _ = predict_lesion_mask(flair, subset, **options)
            return mask, time.perf_counter() - started

        policy = execution.cpu_precision()
        reference, seconds32 = segment("float32", models)
        fast, seconds = segment(policy, models)
        voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000
        lines += [
            "",
            f"Agreement on the whole patient, trained models {args.trained} ({len(models)} folds, "
            f"{settings['image_size']} px), against float32 with all folds "
            f"({reference.sum() * voxel_ml:.2f} mL, {seconds32:.0f} s including radiomics):",
            "",
            "| path | voxel Dice | lesion volume (mL) | seconds |",
            "|---|---|---|---|",
            f"| {policy}, all folds | {dice_score(fast, reference):.4f} | {fast.sum() * voxel_ml:.2f} | {seconds:.0f} |",
        ]
        for k in (1, 2, 3):
            subset, seconds_k = segment(policy, models[:k])
            lines.append(f"| {policy}, folds 1-{k} | {dice_score(subset, reference):.4f} | {subset.sum() * voxel_ml:.2f} | {seconds_k:.0f} |")
        os.environ.pop(execution.PRECISION_ENV, None)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
