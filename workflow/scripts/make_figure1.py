"""Rule figure1_example_slices: FLAIR, ground truth and every model's predictions on the test
slices with the most lesion (one per subject)."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # radfusion from this workflow's src/
sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO)

import numpy as np
import pandas as pd

from radfusion.figures import (
    lesion_voxels_per_slice,
    plot_example_slices,
    read_example_slice,
    save_figure,
    select_example_slices,
)
from radfusion.io import load_volume
from radfusion.stats.tables import read_metric_tables

runs = [(run["model"], run["input"]) for run in snakemake.params.runs]
subjects = list(snakemake.params.subjects)
n_folds = len(snakemake.input.slices) // len(runs)
# Candidate slices: those evaluated under every (model, input) (get_figure1_inputs order).
evaluated = None
for index in range(len(runs)):
    table = read_metric_tables(snakemake.input.slices[index * n_folds : (index + 1) * n_folds], required=("subject", "slice"))
    keys = set(zip(table["subject"].astype(str), table["slice"].astype(int)))
    evaluated = keys if evaluated is None else evaluated & keys
masks = dict(zip(subjects, snakemake.input.masks))
flairs = dict(zip(subjects, snakemake.input.flairs))
brains = dict(zip(subjects, snakemake.input.brains))
predictions = {
    (run, subject): snakemake.input.predictions[r * len(subjects) + s]
    for r, run in enumerate(runs)
    for s, subject in enumerate(subjects)
}
rows = []
for subject in sorted({s for s, _ in evaluated}):
    counts = lesion_voxels_per_slice(load_volume(masks[subject], dtype=np.uint8)[0])
    rows += [{"subject": subject, "slice": k, "lesion_voxels": int(counts[k])} for s, k in evaluated if s == subject]
chosen = select_example_slices(pd.DataFrame(rows), n_examples=snakemake.params.n_examples)
logging.info("figure 1 slices (subject, axial index): %s", chosen)

examples = [
    read_example_slice(
        subject,
        k,
        flair=flairs[subject],
        brain=brains[subject],
        mask=masks[subject],
        predictions={run: predictions[run, subject] for run in runs},
    )
    for subject, k in chosen
]
figure = plot_example_slices(examples)
save_figure(figure, snakemake.output.png, snakemake.output.svg)
