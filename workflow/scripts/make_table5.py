"""Rule table5_external: Table 5, the external cohort's whole-volume scores per model and input,
MRI vs MRI+radiomics, next to the cross-validated numbers (external validation)."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # radfusion from this workflow's src/
sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO)

import pandas as pd

from radfusion.io import atomic_output
from radfusion.stats.display import external_display_table, table_html
from radfusion.stats.tables import external_summary_table, read_metric_tables

runs = [(run["model"], run["input"]) for run in snakemake.params.runs]
folds = snakemake.params.folds
baseline, fusion = snakemake.params.inputs
external = read_metric_tables(snakemake.input.external, required=("subject", "model", "input"))
# get_table5_inputs: every run's fold tables, in run order then fold order
cross_validated = pd.concat(
    [
        read_metric_tables(snakemake.input.cv[index * len(folds) : (index + 1) * len(folds)], required=("subject", "fold"))
        .assign(model=model, input=input_name)
        for index, (model, input_name) in enumerate(runs)
    ],
    ignore_index=True,
)
models = list(dict.fromkeys(model for model, _ in runs))
table = external_summary_table(external, cross_validated, models=models, baseline=baseline, fusion=fusion)
with atomic_output(snakemake.output.csv) as tmp:
    table.to_csv(tmp, index=False, float_format="%.6g")
n_subjects = int(table["n_subjects"].max())
note = (
    f"External cohort: {n_subjects} subject(s), each segmented whole by the mean of the {len(folds)} fold models' "
    f"probabilities (the predict procedure) and scored in 3D on every brain slice at the original resolution. "
    f"Mean ± sample SD (ddof = 1) over subjects. p: two-sided Wilcoxon signed-rank test of MRI vs MRI+radiomics "
    f"over the paired subjects, Bonferroni-adjusted per model for the metrics tested. LTPR, LFPR and F1: lesions "
    f"are 3D connected components (26-connectivity) of at least the configured size; AVD: |V_pred - V_true| / "
    f"V_true in %. Cross-validated: Tables 1 and 3's mean ± population SD of the fold means, lesion slices only "
    f"(LTPR, LFPR, F1 and AVD of the exported slices stacked in 3D)."
)
with atomic_output(snakemake.output.html) as tmp:
    tmp.write_text(
        table_html(
            external_display_table(table, baseline=baseline, fusion=fusion),
            title="Table 5: external validation, whole-volume scores of the averaged fold models",
            note=note,
        ),
        encoding="utf-8",
    )
logging.info("table 5:\n%s", table.to_string(index=False))
