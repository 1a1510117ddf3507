"""Rule normalize_flair: percentile clipping to [0, 1] and 8-bit quantization (SPEC stage 2)."""

import logging
import sys

sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO)

from radfusion.io import load_volume, save_volume
from radfusion.normalize import normalize_intensity, quantize_8bit

flair, affine = load_volume(snakemake.input[0])
normalized = normalize_intensity(
    flair,
    lower_percentile=snakemake.params.lower_percentile,
    upper_percentile=snakemake.params.upper_percentile,
)
save_volume(normalized, affine, snakemake.output.flair)
save_volume(quantize_8bit(normalized), affine, snakemake.output.flair_u8)
logging.info("normalized %s: shape %s", snakemake.input[0], normalized.shape)
