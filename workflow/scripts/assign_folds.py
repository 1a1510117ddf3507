"""Rule assign_folds: subject-level cross-validation folds (SPEC stage 6)."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # radfusion from this workflow's src/
sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO)

from collections import Counter

import pandas as pd

from radfusion.folds import subject_folds, write_folds
from radfusion.io import check_sample_sheet

# The sample sheet's full check, with the fold count: here, where the folds are needed, rather than
# when the workflow is read, so that targets without folds (one subject's feature maps) run with
# fewer subjects than folds. The message names the sheet; --show-failed-logs prints it.
if snakemake.input:  # a sample sheet
    sheet = snakemake.input[0]
    table = pd.read_csv(sheet, sep="\t", dtype=str, comment="#").fillna("")
else:  # a BIDS dataset, its table made by the workflow (common.smk): only the fold count to check
    sheet = f"BIDS dataset {snakemake.config['samples']}"
    subjects = snakemake.params.subjects
    table = pd.DataFrame({"subject": subjects, "flair": ["(BIDS)"] * len(subjects), "mask": ""})
check_sample_sheet(table, n_folds=snakemake.params.n_folds, sheet=sheet)
folds = subject_folds(snakemake.params.subjects, n_folds=snakemake.params.n_folds, seed=snakemake.params.seed)
write_folds(folds, snakemake.output[0])
logging.info("fold sizes: %s", dict(sorted(Counter(folds.values()).items())))
