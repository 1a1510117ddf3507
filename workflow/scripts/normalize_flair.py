"""Rule normalize_flair: brain mask (rule skull_strip's, or the nonzero voxels), percentile clipping to [0, 1] and 8-bit quantization (SPEC stage 2)."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # radfusion from this workflow's src/
sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO)
logging.captureWarnings(True)

import numpy as np

from radfusion.io import load_volume, save_volume
from radfusion.normalize import brain_mask, check_background, normalize_intensity, quantize_8bit

flair, affine = load_volume(snakemake.input.flair)
if "brain" in snakemake.input.keys():  # rule skull_strip's mask
    brain = load_volume(snakemake.input.brain, dtype=np.uint8)[0].astype(bool)
    logging.info("brain mask of rule skull_strip: %s", snakemake.input.brain)
else:  # a skull-stripped FLAIR: its nonzero voxels
    brain = brain_mask(flair)
    check_background(brain, subject=snakemake.wildcards.subject, path=snakemake.input.flair)
normalized = normalize_intensity(
    flair,
    lower_percentile=snakemake.params.lower_percentile,
    upper_percentile=snakemake.params.upper_percentile,
    brain=brain,
)
save_volume(normalized, affine, snakemake.output.flair)
save_volume(quantize_8bit(normalized), affine, snakemake.output.flair_u8)
save_volume(brain.astype(np.uint8), affine, snakemake.output.brain)
logging.info("normalized %s: shape %s, %d brain voxels", snakemake.input.flair, normalized.shape, np.count_nonzero(brain))
