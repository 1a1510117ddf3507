"""Rules import_subject and import_flair: DICOM folder or NIfTI -> canonical, checked NIfTI (SPEC stage 1)."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # radfusion from this workflow's src/
sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO)
logging.captureWarnings(True)

from radfusion.io import import_subject

import_subject(  # rule import_flair (a subject without lesion mask) has neither mask
    snakemake.input.flair,
    snakemake.input.get("mask"),
    snakemake.output.flair,
    snakemake.output.get("mask"),
    subject=snakemake.wildcards.subject,
    affine_tolerance=snakemake.params.affine_tolerance,
    mask_threshold=snakemake.params.mask_threshold,
)
