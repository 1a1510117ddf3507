"""Rule demo_subject: one synthetic FLAIR-like subject with its lesion mask (SPEC "Demo cohort")."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # radfusion from this workflow's src/
sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO)

from radfusion.io import save_volume
from radfusion.synth import load_template, synthesize_subject

subject = synthesize_subject(
    load_template(),
    seed=snakemake.params.seed,
    voxel_size_range=tuple(snakemake.params.voxel_size_range),
    n_lesions_range=tuple(snakemake.params.n_lesions_range),
)
save_volume(subject.flair, subject.affine, snakemake.output.flair)
save_volume(subject.mask, subject.affine, snakemake.output.mask)
logging.info(
    "subject %s: seed %d, voxel size %.3f mm, shape %s, %d lesions, %d lesion voxels",
    snakemake.wildcards.subject,
    snakemake.params.seed,
    subject.voxel_size,
    subject.flair.shape,
    len(subject.lesions),
    int(subject.mask.sum()),
)
