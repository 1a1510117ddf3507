"""Rule train_model: one (model, input, fold) of the cross-validation (SPEC stage 7)."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # radfusion from this workflow's src/
sys.stderr = open(snakemake.log[0], "a")  # appended: a resumed job keeps the first attempt's log
logging.basicConfig(stream=sys.stderr, level=logging.INFO)

import torch

from radfusion.folds import read_folds
from radfusion.protocol import TrainingProtocol
from radfusion.train import fit_one_fold

torch.set_num_threads(snakemake.threads)
fit_one_fold(
    dict(zip(snakemake.params.subjects, snakemake.input.slices)),
    read_folds(snakemake.input.folds),
    fold=int(snakemake.wildcards.fold),
    model_name=snakemake.wildcards.model,
    input_name=snakemake.wildcards.input,
    model_path=snakemake.output.model,
    history_path=snakemake.output.history,
    checkpoint_path=snakemake.params.checkpoint,
    protocol=TrainingProtocol.from_config(snakemake.params.protocol),
    preprocessing=snakemake.params.preprocessing,
    validation=snakemake.params.validation,
    holdout_fraction=snakemake.params.holdout_fraction,
    mixed_precision=snakemake.params.mixed_precision,
    seed=snakemake.params.seed,
)
