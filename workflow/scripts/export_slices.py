"""Rule export_slices: one subject's axial slices (FLAIR, CR, RE, mask) as an .npz (SPEC stage 5)."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # radfusion from this workflow's src/
sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO)

import numpy as np

from radfusion.io import load_volume
from radfusion.slices import export_slices, save_slices, subject_seed

subject = snakemake.wildcards.subject
flair, _ = load_volume(snakemake.input.flair)
cr, _ = load_volume(snakemake.input.cr)
re, _ = load_volume(snakemake.input.re)
mask, _ = load_volume(snakemake.input.mask, dtype=np.uint8)
brain = load_volume(snakemake.input.brain, dtype=np.uint8)[0] > 0
arrays = export_slices(
    flair,
    cr,
    re,
    mask,
    brain,
    min_lesion_voxels=snakemake.params.min_lesion_voxels,
    brain_fraction=snakemake.params.brain_fraction,
    stride=snakemake.params.stride,
    seed=subject_seed(snakemake.params.seed, subject),
)
if arrays["slice_index"].size == 0:
    logging.warning("subject %s: no slice selected (no lesion slice on the stride grid)", subject)
save_slices(arrays, snakemake.output[0])
logging.info(
    "subject %s: %d slices of %s exported (indices %s)",
    subject,
    arrays["slice_index"].size,
    arrays["images"].shape[2:],
    arrays["slice_index"].tolist(),
)
