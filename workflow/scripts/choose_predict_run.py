"""Checkpoint choose_predict_run: the (model, input) whose fold models predict new patients (SPEC stage 12)."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # radfusion from this workflow's src/
sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO)

import pandas as pd

from radfusion.ensemble import choose_model_input

model, input_name, cv_dice = choose_model_input(
    "results/eval",
    model=snakemake.params.model,
    input_name=snakemake.params.input,
    candidates=[tuple(run) for run in snakemake.params.runs],
)
choice = dict(
    model=model,
    input=input_name,
    cv_dice=cv_dice,
    models_dir=snakemake.params.models_dir,
    brain_fraction=snakemake.params.brain_fraction,
)
pd.DataFrame([choice]).to_csv(snakemake.output[0], sep="\t", index=False)
logging.info("predicting with %s", choice)
