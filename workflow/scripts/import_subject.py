"""Rule import_subject: DICOM folder or NIfTI -> canonical, checked NIfTI (SPEC stage 1)."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # radfusion from this workflow's src/
sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO)
logging.captureWarnings(True)

from radfusion.io import import_subject

import_subject(
    snakemake.input.flair,
    snakemake.input.mask,
    snakemake.output.flair,
    snakemake.output.mask,
    subject=snakemake.wildcards.subject,
    affine_tolerance=snakemake.params.affine_tolerance,
    mask_threshold=snakemake.params.mask_threshold,
)
