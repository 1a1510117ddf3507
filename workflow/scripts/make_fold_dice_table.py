"""Rules fold_dice_table: Table 2 / Table 4, mean Dice of the test subjects per fold (SPEC stage 9)."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # radfusion from this workflow's src/
sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO)

from radfusion.io import atomic_output
from radfusion.protocol import MODEL_LABELS
from radfusion.stats.display import fold_display_table, table_html
from radfusion.stats.tables import fold_dice_table, read_metric_tables

model = snakemake.params.model
subjects = {name: read_metric_tables(snakemake.input[name]) for name in snakemake.params.inputs}
table = fold_dice_table(subjects, folds=snakemake.params.folds)
with atomic_output(snakemake.output.csv) as tmp:
    table.to_csv(tmp, index=False, float_format="%.6f")
title = f"{snakemake.wildcards.table.capitalize()}: mean Dice of the test subjects in each fold, {MODEL_LABELS.get(model, model)}"
with atomic_output(snakemake.output.html) as tmp:
    tmp.write_text(table_html(fold_display_table(table), title=title), encoding="utf-8")
logging.info("%s (%s):\n%s", snakemake.wildcards.table, model, table.to_string(index=False))
