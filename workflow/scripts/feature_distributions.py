"""Rule feature_distributions: cohort CR/RE histograms inside vs outside lesions (SPEC stage 4)."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # radfusion from this workflow's src/
sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO)

import numpy as np

from radfusion.distributions import cohort_histograms, feature_bin_edges, feature_summary, save_histograms
from radfusion.figures import plot_feature_distribution, save_figure
from radfusion.io import load_volume


def subjects():
    """One subject at a time: its feature maps, lesion mask and brain mask (rule normalize_flair)."""
    inputs = snakemake.input
    for cr, re, mask, brain in zip(inputs.cr, inputs.re, inputs.mask, inputs.brain):
        features = {"cr": load_volume(cr)[0], "re": load_volume(re)[0]}
        yield features, load_volume(mask, dtype=np.uint8)[0] > 0, load_volume(brain, dtype=np.uint8)[0] > 0


edges = {"cr": feature_bin_edges("cr", num=snakemake.params.cr_num), "re": feature_bin_edges("re")}
histograms = cohort_histograms(subjects(), edges)
save_histograms(snakemake.output.histograms, histograms)
summary = feature_summary(histograms)
summary.to_csv(snakemake.output.table, index=False)
logging.info("feature summary:\n%s", summary.to_string())

labels = {
    "cr": ("Concentration rate", "a.u. (sum of 8-bit grey levels)", "figure2"),
    "re": ("Rényi entropy", "nats", "figure3"),
}
for name, (title, units, figure) in labels.items():
    fig = plot_feature_distribution(
        histograms[name].lesion, histograms[name].other, title, units, edges=histograms[name].edges
    )
    save_figure(fig, snakemake.output[figure], snakemake.output[f"{figure}_svg"])
