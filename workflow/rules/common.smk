# Config and sample-sheet validation, and every input/param helper the rules use.
import re

import pandas as pd
from snakemake.utils import validate

from radfusion.io import check_sample_sheet

validate(config, schema="../schemas/config.schema.yaml")

SAMPLES = check_sample_sheet(
    pd.read_csv(config["samples"], sep="\t", dtype=str, comment="#").fillna(""),
    n_folds=config["folds"],
    sheet=config["samples"],
)
for _, row in SAMPLES.iterrows():
    validate(row.to_frame().T, schema="../schemas/samples.schema.yaml")
SAMPLES = SAMPLES.set_index("subject", drop=False)

SUBJECTS = list(SAMPLES.index)
MODELS = list(config["models"])
INPUTS = list(config["inputs"])
FOLDS = list(range(1, config["folds"] + 1))
# Demo subjects are synthesized by rule demo_subject; their files live here.
DEMO_DIR = "resources/demo"


wildcard_constraints:
    subject="|".join(map(re.escape, SUBJECTS)) if SUBJECTS else "[^/]+",
    model="|".join(MODELS),
    input="|".join(INPUTS),
    fold=r"\d+",


def get_final_output():
    """Every target of a full run (rule all)."""
    return expand("results/normalized/{subject}/flair.nii.gz", subject=SUBJECTS)


def get_flair_source(wildcards):
    """The subject's FLAIR as listed in the sample sheet (NIfTI file or DICOM folder)."""
    return SAMPLES.loc[wildcards.subject, "flair"]


def get_mask_source(wildcards):
    """The subject's lesion mask as listed in the sample sheet."""
    return SAMPLES.loc[wildcards.subject, "mask"]


def get_demo_seed(wildcards):
    """A demo subject's seed: the cohort seed and the subject's number (demo07 -> 7)."""
    number = re.fullmatch(r"demo(\d+)", wildcards.subject)
    if number is None:
        raise ValueError(
            f"demo subjects are named demo<number>, got '{wildcards.subject}'"
        )
    return config["demo"]["seed"] * 1000 + int(number.group(1))
