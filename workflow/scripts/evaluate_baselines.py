"""Rule evaluate_baselines: all-background and FLAIR-threshold baselines, scored like the networks."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # radfusion from this workflow's src/
sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO)

from radfusion.evaluate import evaluate_baselines, min_lesion_size_voxels, write_table
from radfusion.io import load_volume
from radfusion.folds import read_folds

min_lesion_voxels = snakemake.params.min_lesion_voxels
if snakemake.params.min_lesion_mm3 is not None:  # per subject's grid (evaluation.min_lesion_mm3)
    min_lesion_voxels = {
        subject: min_lesion_size_voxels(load_volume(path)[1], min_lesion_mm3=snakemake.params.min_lesion_mm3)
        for subject, path in zip(snakemake.params.subjects, snakemake.input.flair)
    }
table = evaluate_baselines(
    dict(zip(snakemake.params.subjects, snakemake.input.slices)),
    read_folds(snakemake.input.folds),
    min_lesion_voxels=min_lesion_voxels,
    min_overlap=snakemake.params.min_overlap,
)
write_table(table, snakemake.output[0])
logging.info("mean subject Dice:\n%s", table.groupby("baseline")["dice"].mean().to_string())
