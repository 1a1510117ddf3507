"""Rule predict: one new patient's lesion mask, lesion tables and overlay from the fold models (SPEC stage 12)."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # radfusion from this workflow's src/
sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO)

import pandas as pd
import torch

from radfusion.predict import predict_patient

torch.set_num_threads(snakemake.threads)
choice = pd.read_csv(snakemake.input.choice, sep="\t").iloc[0]  # checkpoint choose_predict_run
logging.info("fold models: %s", ", ".join(snakemake.input.models))
predict_patient(
    snakemake.input.flair,
    Path(snakemake.output.mask).parent,
    model_paths=list(snakemake.input.models),
    patient=snakemake.wildcards.patient,
    cv_dice=float(choice["cv_dice"]),
    threads=snakemake.threads,
    skull_strip=snakemake.params.skull_strip,
)
