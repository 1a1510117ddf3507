"""Rule evaluate_models: every fold's final model on its test subjects (SPEC stage 8)."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # radfusion from this workflow's src/
sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO)

import torch

from radfusion.evaluate import evaluate_cross_validation, min_lesion_size_voxels, write_table
from radfusion.folds import read_folds
from radfusion.io import load_volume, save_volume

torch.set_num_threads(snakemake.threads)
subjects = snakemake.params.subjects
min_lesion_voxels = snakemake.params.min_lesion_voxels
if snakemake.params.min_lesion_mm3 is not None:  # per subject's grid (evaluation.min_lesion_mm3)
    min_lesion_voxels = {
        subject: min_lesion_size_voxels(load_volume(path)[1], min_lesion_mm3=snakemake.params.min_lesion_mm3)
        for subject, path in zip(subjects, snakemake.input.flair)
    }
folds = read_folds(snakemake.input.folds)
subject_table, slice_table, predictions = evaluate_cross_validation(
    dict(zip(snakemake.params.folds, snakemake.input.models)),
    dict(zip(subjects, snakemake.input.slices)),
    folds,
    threshold=snakemake.params.threshold,
    min_lesion_voxels=min_lesion_voxels,
    min_overlap=snakemake.params.min_overlap,
)
for fold, subjects_path, slices_path in zip(snakemake.params.folds, snakemake.output.subjects, snakemake.output.slices):
    write_table(subject_table[subject_table["fold"] == fold], subjects_path)
    write_table(slice_table[slice_table["fold"] == fold], slices_path)
for subject, flair_path, prediction_path in zip(subjects, snakemake.input.flair, snakemake.output.predictions):
    flair, affine = load_volume(flair_path)
    if flair.shape != predictions[subject].shape:
        raise ValueError(f"subject '{subject}': prediction shape {predictions[subject].shape} != FLAIR {flair.shape}")
    save_volume(predictions[subject], affine, prediction_path)
logging.info("mean subject Dice per fold:\n%s", subject_table.groupby("fold")["dice"].mean().to_string())
