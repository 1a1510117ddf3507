"""Rule skull_strip: the subject's brain mask and skull-stripped FLAIR (preprocess.skull_strip)."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # radfusion from this workflow's src/
sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO)
logging.captureWarnings(True)

import numpy as np

from radfusion.io import load_volume, save_volume
from radfusion.skullstrip import subject_brain_mask

flair, affine = load_volume(snakemake.input[0])
result = subject_brain_mask(
    flair,
    affine,
    mode=snakemake.params.mode,
    threads=snakemake.threads,
    subject=snakemake.wildcards.subject,
    path=snakemake.input[0],
)
save_volume(np.where(result.brain, flair, 0).astype(np.float32), affine, snakemake.output.flair)
save_volume(result.brain.astype(np.uint8), affine, snakemake.output.brain)
logging.info("%s: %s", snakemake.wildcards.subject, result.description)
