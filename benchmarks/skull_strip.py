"""Skull stripping measured on the shared clinical FLAIRs against their reference brain masks.

For each raw scan of ``../shared/data/open_ms_data/clinical_flair/``, in a fresh process (so
the peak memory is the scan's own): import as the workflow does (canonical orientation), the
stage's brain mask (:func:`radfusion.skullstrip.subject_brain_mask`, ``always``), its Dice
against the reference mask, the wall time (network loading included) and the peak resident
memory. Also the volume of nonzero voxels of every raw scan, of the same scans stripped with
their reference, and of the two skull-stripped test patients: the numbers behind the "already
stripped" rule (:data:`radfusion.skullstrip.STRIPPED_MAX_ML`).

Run: ``python benchmarks/skull_strip.py --threads 2 --out benchmarks/measurements/skull_strip.tsv``
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "open_ms_data"


def cpu_model() -> str:
    """CPU model name as ``lscpu`` reports it."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient of two boolean masks."""
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def measure_one(scan: Path, threads: int) -> dict:
    """Strip one scan in this process; Dice, time and peak memory."""
    from radfusion.io import read_volume
    from radfusion.skullstrip import nonzero_volume_ml, subject_brain_mask

    start = time.perf_counter()
    image = read_volume(scan / "FLAIR.nii.gz")
    flair = np.asarray(image.dataobj, dtype=np.float32)
    result = subject_brain_mask(flair, image.affine, mode="always", threads=threads, subject=scan.name)
    seconds = time.perf_counter() - start
    reference = np.asarray(read_volume(scan / "brain_mask.nii.gz").dataobj) > 0.5
    return {
        "scan": scan.name,
        "shape": "x".join(map(str, flair.shape)),
        "voxel_mm": "x".join(f"{z:.2f}" for z in image.header.get_zooms()[:3]),
        "dice": round(dice(result.brain, reference), 4),
        "seconds": round(seconds, 2),
        "peak_mem_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0),
        "brain_ml": round(nonzero_volume_ml(result.brain, image.affine), 1),
        "reference_ml": round(nonzero_volume_ml(reference, image.affine), 1),
        "raw_nonzero_ml": round(nonzero_volume_ml(flair, image.affine), 1),
        "stripped_by_reference_nonzero_ml": round(nonzero_volume_ml(flair * reference, image.affine), 1),
        "tool": result.tool,
    }


def stripped_volumes() -> list[dict]:
    """Nonzero volume of the skull-stripped test patients (the 'already stripped' side)."""
    from radfusion.io import read_volume
    from radfusion.skullstrip import nonzero_volume_ml

    rows = []
    for patient in ("patient07", "patient26"):
        path = DATA / patient / "FLAIR.nii.gz"
        if path.exists():
            image = read_volume(path)
            rows.append({"scan": patient, "nonzero_ml": round(nonzero_volume_ml(np.asarray(image.dataobj), image.affine), 1)})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/measurements/skull_strip.tsv"))
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)  # child process: one scan
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure_one(args.one, args.threads)))
        return 0
    import pandas as pd

    scans = sorted(p for p in (DATA / "clinical_flair").glob("patient*_study*") if p.is_dir())
    if not scans:
        sys.exit(f"no clinical FLAIRs under {DATA / 'clinical_flair'}")
    rows = []
    for scan in scans:
        out = subprocess.run(
            [sys.executable, __file__, "--threads", str(args.threads), "--one", str(scan)],
            capture_output=True, text=True, check=True,
        ).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    header = f"# {cpu_model()}, {args.threads} torch threads, python {platform.python_version()}\n"
    with open(args.out, "w") as f:
        f.write(header)
        table.to_csv(f, sep="\t", index=False)
    stripped = pd.DataFrame(stripped_volumes())
    with open(args.out.with_name(args.out.stem + "_stripped_inputs.tsv"), "w") as f:
        f.write(header)
        stripped.to_csv(f, sep="\t", index=False)
    print(table.to_string(index=False))
    print(stripped.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
