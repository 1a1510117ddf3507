"""Rule predict: one new patient's lesion mask, lesion tables and overlay from the fold models (SPEC stage 12)."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # radfusion from this workflow's src/
sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO)

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
    threads=snakemake.threads,
)
