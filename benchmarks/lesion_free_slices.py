"""Measure what lesion-free training slices do to the models that predict new patients.

For each ``--fractions`` value of ``predict.brain_fraction``, the workflow trains the fold models
of one (model, input) (rule ``train_predict_model``; the fraction of ``slices.brain_fraction``
reuses the cross-validation's models), then this script

- segments every patient of ``--patients`` (sheet with subject, flair, mask, as
  ``external.samples``) as ``radfusion predict`` does, on every brain slice
  (:func:`radfusion.external.segment_and_score`), and counts the false-positive volume, all of it
  and on the slices without any reference lesion (:func:`radfusion.evaluate.false_positive_voxels`);
- segments, in the same way, every whole volume of the training cohort with the one fold model
  that did not train on it, and counts the same (in-domain: the lesion-free slices the models
  were meant for);
- scores the same fold models on the cross-validation's lesion slices of their test folds
  (``results/slices``, :func:`radfusion.evaluate.evaluate_cross_validation`), the paper's measure,
  to see what the lesion-free slices cost there.

Run from the repository root, after the quick demo (README "Lesion-free slices" has the numbers)::

    python benchmarks/lesion_free_slices.py --configfile config/quick.yaml \\
        --model attention_unet --input mri_radiomics --fractions 0 0.5 1 \\
        --patients config/external_open_ms_data.tsv --out benchmarks/measurements

Writes ``lesion_free_slices_patients.tsv`` (one row per fraction and patient),
``lesion_free_slices_cohort.tsv`` (one row per fraction and training subject) and
``lesion_free_slices_cv.tsv`` (one row per fraction) under ``--out``. A fraction's models are
trained again only when the previous run's differ (put the fraction trained last first).
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from bench_training import read_config  # this folder is on sys.path when run as a script
from radfusion.evaluate import evaluate_cross_validation, false_positive_voxels
from radfusion.external import segment_and_score
from radfusion.folds import read_folds
from radfusion.io import load_volume
from radfusion.ensemble import load_fold_models
from radfusion.predict import voxel_volume_ml
from radfusion.protocol import INPUT_NAMES, MODEL_NAMES

PROJECT = Path(__file__).resolve().parents[1]


def train_models(configfiles: list[Path], overlay: dict, targets: list[str], cores: int) -> None:
    """Run the workflow for ``targets`` with the config files and ``overlay`` on top."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump(overlay, handle)
    command = ["snakemake", *targets, "--cores", str(cores), "--configfile", *map(str, configfiles), handle.name]
    print("#", " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=PROJECT)


def training_slice_counts(slice_dir: Path, subjects: list[str]) -> tuple[int, int]:
    """(lesion slices, lesion-free slices) in the exported slices of ``subjects``."""
    lesion = free = 0
    for subject in subjects:
        with np.load(slice_dir / f"{subject}.npz") as arrays:
            has_lesion = arrays["masks"].reshape(arrays["masks"].shape[0], -1).any(axis=1)
        lesion += int(has_lesion.sum())
        free += int((~has_lesion).sum())
    return lesion, free


def score_whole_volume(models, settings, subject: str, config: dict, threads: int) -> dict:
    """Segment ``results/nifti/{subject}/flair.nii.gz`` with the fold models on every brain slice
    (the predict procedure) and score it against the subject's mask, with the false-positive volume."""
    flair, affine = load_volume(PROJECT / f"results/nifti/{subject}/flair.nii.gz")
    truth, _ = load_volume(PROJECT / f"results/nifti/{subject}/mask.nii.gz", dtype=np.uint8)
    row, mask = segment_and_score(
        flair,
        truth,
        models,
        settings,
        subject=subject,
        min_lesion_voxels=config["evaluation"]["min_lesion_voxels"],
        min_overlap=config["evaluation"]["min_overlap"],
        threads=threads,
    )
    voxel_ml = voxel_volume_ml(affine)
    counts = false_positive_voxels(mask, truth)
    return {
        **row,
        "false_positive_ml": counts["false_positive_voxels"] * voxel_ml,
        "false_positive_ml_lesion_free_slices": counts["false_positive_voxels_lesion_free"] * voxel_ml,
        "predicted_ml": row["predicted_voxels"] * voxel_ml,
        "true_ml": row["true_voxels"] * voxel_ml,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configfile", type=Path, nargs="+", default=[Path("config/quick.yaml")])
    parser.add_argument("--model", default="attention_unet", choices=MODEL_NAMES)
    parser.add_argument("--input", default="mri_radiomics", choices=INPUT_NAMES)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    parser.add_argument("--patients", type=Path, default=Path("config/external_open_ms_data.tsv"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/measurements"))
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.cores)

    config = read_config([PROJECT / "config/config.yaml", *(PROJECT / path for path in args.configfile)])
    patients = pd.read_csv(args.patients, sep="\t", dtype=str, comment="#")["subject"].tolist()
    imported = [f"results/nifti/{p}/{name}.nii.gz" for p in patients for name in ("flair", "mask")]
    fold_ids = list(range(1, config["folds"] + 1))
    patient_rows, cohort_rows, cv_rows = [], [], []
    for fraction in args.fractions:
        start = time.perf_counter()
        own_models = fraction != config["slices"]["brain_fraction"]
        models_dir = "results/predict_models" if own_models else "results/models"
        slice_dir = PROJECT / ("results/predict_models/slices" if own_models else "results/slices")
        model_paths = [f"{models_dir}/{args.model}/{args.input}/fold{k}/model.pt" for k in fold_ids]
        overlay = {
            "predict": {"model": args.model, "input": args.input, "brain_fraction": fraction if own_models else None},
            "external": {"samples": str(args.patients)},
        }
        train_models(args.configfile, overlay, model_paths + imported, args.cores)
        trained = time.perf_counter() - start
        folds = read_folds(PROJECT / "results/folds.tsv")
        lesion_slices, free_slices = training_slice_counts(slice_dir, sorted(folds))

        models, settings = load_fold_models([PROJECT / path for path in model_paths], device="cpu")
        for patient in patients:
            row = score_whole_volume(models, settings, patient, config, args.cores)
            patient_rows.append({"brain_fraction": fraction, **row})
            print(pd.DataFrame([patient_rows[-1]]).T.to_string(header=False), flush=True)

        # the synthetic cohort's whole volumes, each subject by the fold model that did not train on it
        for fold, path in zip(fold_ids, model_paths):
            fold_model, fold_settings = load_fold_models([PROJECT / path], device="cpu")
            for subject in sorted(s for s, k in folds.items() if k == fold):
                row = score_whole_volume(fold_model, fold_settings, subject, config, args.cores)
                cohort_rows.append({"brain_fraction": fraction, "fold": fold, **row})
        cohort = pd.DataFrame([r for r in cohort_rows if r["brain_fraction"] == fraction])

        subjects, _, _ = evaluate_cross_validation(
            {k: PROJECT / path for k, path in zip(fold_ids, model_paths)},
            {s: PROJECT / f"results/slices/{s}.npz" for s in folds},
            folds,
            threshold=config["evaluation"]["threshold"],
            min_lesion_voxels=config["evaluation"]["min_lesion_voxels"],
            min_overlap=config["evaluation"]["min_overlap"],
        )
        fold_dice = subjects.groupby("fold")["dice"].mean()
        cv_rows.append(
            {
                "brain_fraction": fraction,
                "model": args.model,
                "input": args.input,
                "training_lesion_slices": lesion_slices,
                "training_lesion_free_slices": free_slices,
                "cv_dice_mean": fold_dice.mean(),
                "cv_dice_sd": fold_dice.std(ddof=0),  # population SD of the fold means, as Tables 1 and 3
                "cv_lfpr_3d_mean": subjects.groupby("fold")["lfpr_3d"].mean().mean(),
                "cohort_volume_dice_mean": cohort["dice"].mean(),
                "cohort_false_positive_ml_mean": cohort["false_positive_ml"].mean(),
                "cohort_false_positive_ml_lesion_free_slices_mean": (
                    cohort["false_positive_ml_lesion_free_slices"].mean()
                ),
                "cohort_lfpr_mean": cohort["lfpr"].mean(),
                "train_s": round(trained),
                "total_s": round(time.perf_counter() - start),
            }
        )
        print(pd.DataFrame([cv_rows[-1]]).T.to_string(header=False), flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").open() if line.startswith("model name")),
        platform.machine(),
    ) if Path("/proc/cpuinfo").exists() else platform.machine()
    header = f"# {' '.join(sys.argv)}\n# cpu: {cpu}, torch {torch.__version__}\n"
    for name, rows in (("patients", patient_rows), ("cohort", cohort_rows), ("cv", cv_rows)):
        path = args.out / f"lesion_free_slices_{name}.tsv"
        path.write_text(header + pd.DataFrame(rows).to_csv(sep="\t", index=False, float_format="%.6g"))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
