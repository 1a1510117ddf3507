"""Rule evaluate_baselines: all-background and FLAIR-threshold baselines, scored like the networks."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # radfusion from this workflow's src/
sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO)

from radfusion.evaluate import evaluate_baselines, write_table
from radfusion.folds import read_folds

table = evaluate_baselines(
    dict(zip(snakemake.params.subjects, snakemake.input.slices)),
    read_folds(snakemake.input.folds),
    min_lesion_voxels=snakemake.params.min_lesion_voxels,
    min_overlap=snakemake.params.min_overlap,
)
write_table(table, snakemake.output[0])
logging.info("mean subject Dice:\n%s", table.groupby("baseline")["dice"].mean().to_string())
