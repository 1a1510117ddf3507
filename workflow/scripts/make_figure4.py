"""Rule figure4_validation_curves: validation Dice per epoch, MRI vs MRI+radiomics, all folds."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # radfusion from this workflow's src/
sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO)

from radfusion.figures import plot_validation_curves, save_figure
from radfusion.stats.tables import read_histories

histories = read_histories(snakemake.input, snakemake.params.runs)
figure = plot_validation_curves(histories, models=snakemake.params.models, inputs=snakemake.params.inputs)
save_figure(figure, snakemake.output.png, snakemake.output.svg)
logging.info("figure 4 from %d training runs", len(snakemake.params.runs))
