"""Rule demo_subject: one synthetic FLAIR subject, its lesion mask and its tissue maps (SPEC "Demo cohort")."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # radfusion from this workflow's src/
sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO)

import numpy as np

from radfusion.io import save_volume
from radfusion.synth import load_template, synthesize_subject

subject = synthesize_subject(
    load_template(),
    seed=snakemake.params.seed,
    lesions=snakemake.params.lesions,
    voxel_size_range=tuple(snakemake.params.voxel_size_range),
    keep_fraction_range=tuple(snakemake.params.keep_fraction_range),
    n_lesions_range=tuple(snakemake.params.n_lesions_range),
)
save_volume(subject.flair, subject.affine, snakemake.output.flair)
save_volume(subject.mask, subject.affine, snakemake.output.mask)
# Tissue probabilities (CSF, GM, WM along the last axis), for measuring the cohort's contrast
# (benchmarks/calibrate_demo.py): uint8 with the NIfTI scale slope 1/255, read back as [0, 1].
tissues = np.stack([subject.tissues[name] for name in ("csf", "gm", "wm")], axis=-1)
save_volume(np.rint(tissues * 255).astype(np.uint8), subject.affine, snakemake.output.tissues, slope=1 / 255)
logging.info(
    "subject %s: seed %d, lesions %s (source %s, mirrored %s), voxel size %.3f mm, shape %s, "
    "%d lesions, %d lesion voxels",
    snakemake.wildcards.subject,
    snakemake.params.seed,
    snakemake.params.lesions,
    subject.source,
    subject.mirrored,
    subject.voxel_size,
    subject.flair.shape,
    len(subject.lesions),
    int(subject.mask.sum()),
)
