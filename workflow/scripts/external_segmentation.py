"""Rule external_segmentation: one run's averaged fold models segment every external subject;
whole-volume 3D scores and masks (external validation)."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # radfusion from this workflow's src/
sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO)
logging.captureWarnings(True)

import torch

from radfusion.evaluate import write_table
from radfusion.external import segment_external_cohort

torch.set_num_threads(snakemake.threads)
table = segment_external_cohort(
    snakemake.input.models,
    snakemake.params.subjects,
    snakemake.input.flairs,
    snakemake.input.masks,
    snakemake.output.masks,
    brain_paths=snakemake.input.brains,
    min_lesion_voxels=snakemake.params.min_lesion_voxels,
    min_lesion_mm3=snakemake.params.min_lesion_mm3,
    min_overlap=snakemake.params.min_overlap,
    threads=snakemake.threads,
)
write_table(table, snakemake.output.subjects)
logging.info("%s/%s on the external cohort:\n%s", snakemake.wildcards.model, snakemake.wildcards.input, table.to_string(index=False))
