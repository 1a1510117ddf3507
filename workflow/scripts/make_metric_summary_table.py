"""Rules metric_summary_table: Table 1 / Table 3, metrics across folds with paired tests (SPEC stage 9)."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # radfusion from this workflow's src/
sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO)

from radfusion.io import atomic_output
from radfusion.protocol import MODEL_LABELS
from radfusion.stats.display import summary_display_table, table_html
from radfusion.stats.tables import SLICE_COLUMNS, metric_summary_table, read_metric_tables

model = snakemake.params.model
inputs = snakemake.params.inputs
paired_unit = snakemake.params.paired_unit
subjects = {name: read_metric_tables(snakemake.input[name]) for name in inputs}
paired = None
if paired_unit == "slice":
    paired = {name: read_metric_tables(snakemake.input[f"{name}_slices"], required=SLICE_COLUMNS) for name in inputs}
table = metric_summary_table(subjects, paired, paired_unit=paired_unit, folds=snakemake.params.folds)
with atomic_output(snakemake.output.csv) as tmp:
    table.to_csv(tmp, index=False, float_format="%.6g")
title = f"{snakemake.wildcards.table.capitalize()}: metrics averaged across the cross-validation folds, {MODEL_LABELS.get(model, model)}"
note = (
    f"Mean ± population SD of the {table['n_folds'].iloc[0]} fold means. p: two-sided Wilcoxon signed-rank test "
    f"of MRI vs MRI+radiomics over {table['n_pairs'].min()}-{table['n_pairs'].max()} paired {paired_unit}s, "
    f"Bonferroni-adjusted for {len(table)} metrics."
)
with atomic_output(snakemake.output.html) as tmp:
    tmp.write_text(table_html(summary_display_table(table), title=title, note=note), encoding="utf-8")
logging.info("%s (%s):\n%s", snakemake.wildcards.table, model, table.to_string(index=False))
