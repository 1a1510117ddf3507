"""Rule figure5_external_slices: Figure 5, the external subjects' axial slices with the most
ground-truth lesion (one per subject), with every model's whole-volume prediction, in Figure 1's style."""

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

runs = [(run["model"], run["input"]) for run in snakemake.params.runs]
subjects = list(snakemake.params.subjects)
masks = dict(zip(subjects, snakemake.input.masks))
flairs = dict(zip(subjects, snakemake.input.flairs))
brains = dict(zip(subjects, snakemake.input.brains))
# get_figure5_inputs: run order, then subject order
predictions = {
    (run, subject): snakemake.input.predictions[r * len(subjects) + s]
    for r, run in enumerate(runs)
    for s, subject in enumerate(subjects)
}
# Candidates: every axial slice of every external subject (all were segmented and scored).
rows = []
for subject in subjects:
    counts = lesion_voxels_per_slice(load_volume(masks[subject], dtype=np.uint8)[0])
    rows += [{"subject": subject, "slice": k, "lesion_voxels": int(n)} for k, n in enumerate(counts)]
chosen = select_example_slices(pd.DataFrame(rows), n_examples=snakemake.params.n_examples)
logging.info("figure 5 slices (subject, axial index): %s", chosen)

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
figure.suptitle("External cohort: averaged fold models on whole volumes", fontsize="medium")
save_figure(figure, snakemake.output.png, snakemake.output.svg)
