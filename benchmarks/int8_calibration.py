"""How int8's calibration changes ``radfusion predict``'s mask: observer and number of slices.

For each run of trained fold models, the whole-patient lesion mask of
:func:`radfusion.predict.predict_lesion_mask` with ``precision="int8"`` against the float32 mask,
for min-max and histogram activation ranges, each from 4, 8 and 16 calibration slices
(:mod:`radfusion.quantize`). Run from the repository root::

    python benchmarks/int8_calibration.py --out benchmarks/measurements/int8_calibration.tsv \\
        results/models/attention_unet/mri_radiomics results/models/resnext_unet/mri
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "src"))

from radfusion import quantize  # noqa: E402
from radfusion.ensemble import load_fold_models  # noqa: E402
from radfusion.evaluate import dice_score  # noqa: E402
from radfusion.predict import predict_lesion_mask  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="folders of fold models (fold*/model.pt)")
    parser.add_argument("--flair", type=Path, default=PROJECT.parent / "shared/data/open_ms_data/patient26/FLAIR.nii.gz")
    parser.add_argument("--slices", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--observers", nargs="+", default=["minmax", "histogram"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    image = nib.as_closest_canonical(nib.load(str(args.flair)))
    flair = np.asarray(image.dataobj, dtype=np.float32)
    zooms = [float(z) for z in image.header.get_zooms()[:3]]
    voxel_ml = abs(np.linalg.det(image.affine[:3, :3])) / 1000
    rows = ["run\tobserver\tslices\tvoxel_dice_vs_float32\tvolume_ml\tfloat32_volume_ml\tseconds"]
    print(rows[0], flush=True)
    for run in args.runs:
        models, settings = load_fold_models(sorted(run.glob("fold*/model.pt")))
        options = dict(channels=settings["channels"], image_size=settings["image_size"], threads=args.threads,
                       voxel_sizes=zooms, **settings["preprocessing"])
        reference, _ = predict_lesion_mask(flair, models, precision="float32", **options)
        for observer in args.observers:
            for n in args.slices:
                quantize.OBSERVER, quantize.CALIBRATION_SLICES = observer, n
                started = time.perf_counter()
                mask, _ = predict_lesion_mask(flair, models, precision="int8", **options)
                rows.append(f"{run.parent.name}/{run.name}\t{observer}\t{n}\t{dice_score(mask, reference):.4f}\t"
                            f"{mask.sum() * voxel_ml:.2f}\t{reference.sum() * voxel_ml:.2f}\t"
                            f"{time.perf_counter() - started:.0f}")
                print(rows[-1], flush=True)
    if args.out:
        args.out.write_text("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
