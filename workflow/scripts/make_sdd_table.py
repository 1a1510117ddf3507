"""Rule sdd_table: SDD of every validation curve (Eq. 4-5), per model and input, with the fold test."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # radfusion from this workflow's src/
sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO)

from radfusion.io import atomic_output
from radfusion.stats.display import sdd_display_table, table_html
from radfusion.stats.tables import read_histories, sdd_per_run, sdd_table

baseline, fusion = snakemake.params.inputs
runs = sdd_per_run(read_histories(snakemake.input, snakemake.params.runs))
table = sdd_table(runs, baseline=baseline, fusion=fusion, models=snakemake.params.models)
with atomic_output(snakemake.output.runs) as tmp:
    runs.to_csv(tmp, index=False, float_format="%.6g")
with atomic_output(snakemake.output.csv) as tmp:
    table.to_csv(tmp, index=False, float_format="%.6g")
note = (
    "SDD: population SD of the epoch-to-epoch changes of the validation Dice (Equations 4-5), "
    f"mean ± population SD over {table['n_folds'].iloc[0]} folds; p: two-sided Wilcoxon signed-rank test over "
    "the folds paired, one test per model."
)
with atomic_output(snakemake.output.html) as tmp:
    tmp.write_text(
        table_html(sdd_display_table(table, baseline=baseline, fusion=fusion), title="Training stability (SDD)", note=note),
        encoding="utf-8",
    )
logging.info("SDD per run:\n%s\nSDD table:\n%s", runs.to_string(index=False), table.to_string(index=False))
