"""Rule radiomics_maps: CR and RE volumes of one subject (SPEC stage 3)."""

import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # radfusion from this workflow's src/
sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO)

import numpy as np

from radfusion.io import load_volume, save_volume
from radfusion.radiomics import radiomics_volume

image, affine = load_volume(snakemake.input[0], dtype=np.uint8)
start = time.perf_counter()
cr, re = radiomics_volume(image, cr=dict(snakemake.params.cr), re=dict(snakemake.params.re), threads=snakemake.threads)
logging.info("CR and RE of %s slices of shape %s in %.2f s", image.shape[2], image.shape[:2], time.perf_counter() - start)
save_volume(cr, affine, snakemake.output.cr)
save_volume(re, affine, snakemake.output.re)
