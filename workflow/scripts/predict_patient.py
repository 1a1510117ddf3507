"""Rule predict: one new patient's lesion mask, lesion tables and overlay from the fold models (SPEC stage 12)."""

import logging
import sys

sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO)

from pathlib import Path

import torch

from radfusion.predict import choose_model_input, predict_patient

torch.set_num_threads(snakemake.threads)
model, input_name, cv_dice = choose_model_input(
    "results/eval",
    model=snakemake.params.model,
    input_name=snakemake.params.input,
    candidates=[tuple(run) for run in snakemake.params.runs],
)
# results/models/{model}/{input}/fold{fold}/model.pt: the chosen run's files among the rule's inputs
model_paths = [path for path in snakemake.input.models if Path(path).parts[-4:-2] == (model, input_name)]
predict_patient(
    snakemake.input.flair,
    Path(snakemake.output.mask).parent,
    model_paths=model_paths,
    patient=snakemake.wildcards.patient,
    cv_dice=cv_dice,
    threshold=snakemake.params.threshold,
    lower_percentile=snakemake.params.normalize["lower_percentile"],
    upper_percentile=snakemake.params.normalize["upper_percentile"],
    cr=dict(snakemake.params.radiomics["cr"]),
    re=dict(snakemake.params.radiomics["re"]),
    threads=snakemake.threads,
)
