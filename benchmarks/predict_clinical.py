"""``radfusion predict`` on the shared clinical FLAIRs as exported (whole head, 2D axial 3-4 mm).

For each scan of ``../shared/data/open_ms_data/clinical_flair/``: ``radfusion predict`` with the
given fold models (the default ``--skull-strip auto``), then, against the scan's reference brain
mask: lesion count and volume, predicted lesion voxels outside the reference brain (as given,
and with the reference's interior holes filled: a pinhole inside a reference mask is not
outside the brain), the Dice of
the written ``brain_mask.nii.gz`` and the acquisition warnings. Then the same six scans as a BIDS
dataset through ``radfusion predict --bids``, and the check that its brain masks equal the
single-scan ones (and, with ``--workflow-results``, the workflow's brain masks of that tree).

Run: ``python benchmarks/predict_clinical.py --models RUN_DIR --out DIR``
(``--tsv benchmarks/measurements/predict_clinical.tsv``).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "open_ms_data" / "clinical_flair"
# The six scans as a BIDS dataset: patient -> subject label, study -> session label.
BIDS_NAMES = {
    "patient01_study1": ("01", "1"), "patient01_study2": ("01", "2"), "patient03_study1": ("03", "1"),
    "patient03_study2": ("03", "2"), "patient04_study1": ("04", "1"), "patient09_study2": ("09", "2"),
}


def bids_tree(root: Path) -> Path:
    """The six clinical FLAIRs as a BIDS dataset of symbolic links (no lesion masks)."""
    for scan, (subject, session) in BIDS_NAMES.items():
        anat = root / f"sub-{subject}" / f"ses-{session}" / "anat"
        anat.mkdir(parents=True, exist_ok=True)
        link = anat / f"sub-{subject}_ses-{session}_FLAIR.nii.gz"
        if not link.exists():
            link.symlink_to(DATA / scan / "FLAIR.nii.gz")
    return root


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", required=True, help="one run's fold models, RUN_DIR/fold*/model.pt")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--threshold", type=float, help="overrides the models' threshold (a stress test of the brain mask)")
    parser.add_argument("--tsv", type=Path, default=Path("benchmarks/measurements/predict_clinical.tsv"))
    parser.add_argument(
        "--workflow-results",
        type=Path,
        help="results/ of a workflow run with samples = the same BIDS tree (sub-01_ses-1 ...): compare its "
        "results/normalized/{subject}/brain.nii.gz with predict's brain masks",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import torch

    from radfusion.bids import predict_bids
    from radfusion.ensemble import fold_model_paths
    from radfusion.predict import SURFACE_MARGIN_MM, acquisition_warnings, predict_patient

    torch.set_num_threads(args.threads)
    run = Path(args.models)
    paths = fold_model_paths(run.parent.parent, run.parent.name, run.name)
    rows = []
    for scan in sorted(BIDS_NAMES):
        out = args.out / "single" / scan
        start = time.perf_counter()
        summary = predict_patient(
            DATA / scan / "FLAIR.nii.gz", out, model_paths=paths, patient=scan, threads=args.threads,
            threshold=args.threshold,
        )
        seconds = time.perf_counter() - start
        lesions = np.asarray(nib.load(str(out / "lesion_mask.nii.gz")).dataobj) > 0
        brain = np.asarray(nib.load(str(out / "brain_mask.nii.gz")).dataobj) > 0
        reference = np.asarray(nib.load(str(DATA / scan / "brain_mask.nii.gz")).dataobj) > 0.5
        zooms = [summary[f"voxel_size_{a}_mm"] for a in "xyz"]
        rows.append({
            "scan": scan, "lesion_count": summary["lesion_count"], "total_volume_ml": round(summary["total_volume_ml"], 4),
            "lesion_voxels": summary["lesion_voxels"],
            "lesion_voxels_outside_reference_brain": int(np.count_nonzero(lesions & ~reference)),
            "lesion_voxels_outside_reference_brain_filled": int(
                np.count_nonzero(lesions & ~ndimage.binary_fill_holes(reference))
            ),
            "reference_interior_hole_voxels": int(np.count_nonzero(ndimage.binary_fill_holes(reference) & ~reference)),
            "lesion_voxels_outside_brain_mask": int(np.count_nonzero(lesions & ~brain)),
            "brain_mask_dice": round(2 * np.count_nonzero(brain & reference) / (brain.sum() + reference.sum()), 4),
            "brain_slices": summary["brain_slices"], "seconds": round(seconds, 1),
            "warnings": " | ".join(acquisition_warnings(zooms)),
        })
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    start = time.perf_counter()
    cohort = predict_bids(
        bids_tree(args.out / "bids"), args.out / "bids_derivatives", model_paths=paths, threads=args.threads,
        threshold=args.threshold,
    )
    bids_seconds = time.perf_counter() - start
    same = []
    for scan, (subject, session) in sorted(BIDS_NAMES.items()):
        derived = args.out / "bids_derivatives" / f"sub-{subject}" / f"ses-{session}" / "anat"
        a = np.asarray(nib.load(str(derived / f"sub-{subject}_ses-{session}_label-brain_mask.nii.gz")).dataobj)
        b = np.asarray(nib.load(str(args.out / "single" / scan / "brain_mask.nii.gz")).dataobj)
        same.append(bool(np.array_equal(a, b)))
    table["bids_lesion_count"] = cohort["lesion_count"].to_numpy()
    table["bids_brain_mask_equal"] = same
    if args.workflow_results:
        from radfusion.predict import canonical_to_original

        equal = []
        for scan, (subject, session) in sorted(BIDS_NAMES.items()):
            workflow = nib.load(str(args.workflow_results / "normalized" / f"sub-{subject}_ses-{session}" / "brain.nii.gz"))
            predicted = nib.load(str(args.out / "single" / scan / "brain_mask.nii.gz"))
            mapped = canonical_to_original(np.asarray(workflow.dataobj), predicted.affine)
            equal.append(bool(np.array_equal(mapped, np.asarray(predicted.dataobj))))
        table["workflow_brain_mask_equal"] = equal
    args.tsv.parent.mkdir(parents=True, exist_ok=True)
    with open(args.tsv, "w") as f:
        f.write(f"# models {args.models}; threshold {args.threshold or 'of the models'}; {args.threads} threads; python {platform.python_version()}; "
                f"surface margin {SURFACE_MARGIN_MM:g} mm; predict --bids of the six scans: {bids_seconds:.0f} s\n")
        table.to_csv(f, sep="\t", index=False)
    print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
