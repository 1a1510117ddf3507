"""BIDS datasets in, BIDS derivatives out (issue 23): a small reader and writer on the BIDS spec.

Reading: a FLAIR is ``sub-<s>/[ses-<t>/]anat/sub-<s>[_ses-<t>][_<entity>-<v>...]_FLAIR.nii[.gz]``;
a subject ID is ``sub-<s>`` or ``sub-<s>_ses-<t>``; one FLAIR per session (two, with ``acq-`` or
``run-`` entities, are refused). The workflow reads a BIDS ``samples`` root by the same rules in
``workflow/rules/common.smk`` (which may not import radfusion); a test checks they agree.

Writing (``radfusion predict --bids``): a derivatives dataset with ``dataset_description.json``
(``DatasetType: derivative``, ``GeneratedBy``), per scan the lesion mask, the brain mask (BIDS
"Masks": ``<source entities>_label-<label>_mask.nii.gz`` with a sidecar whose ``Type`` is
``Lesion`` / ``Brain``) and the lesion table (``<source entities>_desc-lesions_stats.tsv``), and
one cohort table ``lesion_summary.tsv`` (``participant_id``, ``session_id``, lesion count and
volume per scan). Why a reader of our own and not pybids: docs/decisions.md, "BIDS in and out".
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from radfusion.io import InputError

FLAIR_NAME = re.compile(r"(sub-[A-Za-z0-9]+)(?:_(ses-[A-Za-z0-9]+))?((?:_[a-z]+-[A-Za-z0-9]+)*)_FLAIR\.nii(?:\.gz)?")
BIDS_VERSION = "1.10.0"
COHORT_TABLE = "lesion_summary.tsv"
COHORT_COLUMNS = ("participant_id", "session_id", "source", "lesion_count", "total_volume_ml", "lesion_voxels",
                  "brain_volume_ml", "model", "input", "folds")


@dataclass(frozen=True)
class BidsScan:
    """One FLAIR of a BIDS dataset."""

    subject: str  # the workflow's ID: sub-<s> or sub-<s>_ses-<t>
    participant_id: str
    session_id: str  # '' without sessions
    flair: Path
    relative_folder: Path  # sub-<s>/[ses-<t>/]anat

    @property
    def prefix(self) -> str:
        """The FLAIR's entities, the start of every derivative's name (``sub-01_ses-02_acq-ax``)."""
        return self.flair.name[: self.flair.name.rindex("_FLAIR")]


def find_flairs(root: str | os.PathLike) -> list[BidsScan]:
    """Every FLAIR of a BIDS dataset, one per subject and session.

    Parameters
    ----------
    root : path-like
        The dataset root (holding ``sub-*`` folders).

    Returns
    -------
    scans : list of BidsScan
        Sorted by subject ID.

    Raises
    ------
    InputError
        No FLAIR at all (naming the root and the pattern looked for), or more than one FLAIR in
        one session (naming the subject and the files).
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"folder '{root}': not a BIDS dataset root (no such folder)")
    found: dict[str, list[Path]] = {}
    anats = sorted([*root.glob("sub-*/anat"), *root.glob("sub-*/ses-*/anat")])
    for anat in (a for a in anats if a.is_dir()):
        folders = list(anat.relative_to(root).parts[:-1])
        for path in sorted(anat.iterdir()):
            match = FLAIR_NAME.fullmatch(path.name)
            if match and [e for e in match.group(1, 2) if e] == folders:
                found.setdefault("_".join(folders), []).append(path)
    if not found:
        raise InputError(f"folder '{root}': BIDS dataset without FLAIR: no sub-*/[ses-*/]anat/sub-*_FLAIR.nii[.gz]")
    ambiguous = {subject: files for subject, files in found.items() if len(files) > 1}
    if ambiguous:
        listing = "; ".join(f"subject '{s}': {', '.join(map(str, files))}" for s, files in ambiguous.items())
        raise InputError(
            f"folder '{root}': more than one FLAIR in one session ({listing}); keep one per session "
            "(e.g. move the other acq-/run- scans out of the dataset)"
        )
    scans = []
    for subject, (flair,) in sorted(found.items()):
        participant, _, session = subject.partition("_")
        scans.append(BidsScan(subject, participant, session, flair, flair.parent.relative_to(root)))
    return scans


def derivative_names(scan: BidsScan) -> dict[str, Path]:
    """Where a scan's outputs go in the derivatives dataset (relative to its root)."""
    folder, prefix = scan.relative_folder, scan.prefix
    return {
        "mask": folder / f"{prefix}_label-lesion_mask.nii.gz",
        "mask_json": folder / f"{prefix}_label-lesion_mask.json",
        "brain": folder / f"{prefix}_label-brain_mask.nii.gz",
        "brain_json": folder / f"{prefix}_label-brain_mask.json",
        "lesions": folder / f"{prefix}_desc-lesions_stats.tsv",
    }


def dataset_description(description: str, source: Path) -> dict:
    """``dataset_description.json`` of the derivatives dataset (BIDS: Name, BIDSVersion,
    DatasetType, GeneratedBy; the source dataset as ``DatasetLinks["raw"]``, which the sidecars'
    ``bids:raw:`` URIs refer to)."""
    from radfusion import __version__

    return {
        "Name": "radfusion lesion segmentation",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "DatasetLinks": {"raw": Path(source).resolve().as_uri()},
        "SourceDatasets": [{"URL": Path(source).resolve().as_uri()}],
        "GeneratedBy": [
            {"Name": "radfusion", "Version": __version__, "Description": description},
            {"Name": "deepbet", "Description": "skull stripping (brain masks) of FLAIRs that were not stripped"},
        ],
    }


def predict_bids(
    root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    model_paths,
    cv_dice: float = float("nan"),
    threshold: float | None = None,
    device=None,
    threads: int = 1,
    skull_strip: str = "auto",
    precision: str | None = None,
) -> pd.DataFrame:
    """Segment every FLAIR of a BIDS dataset; write a BIDS derivatives dataset at ``out``.

    Parameters
    ----------
    root : path-like
        The BIDS dataset root.
    out : path-like
        The derivatives dataset to write; must not exist yet or be empty. It is assembled in a
        temporary folder beside it and moved into place only when every scan has succeeded.
    model_paths, cv_dice, threshold, device, threads, skull_strip, precision
        As :func:`radfusion.predict.predict_patient`.

    Returns
    -------
    cohort : DataFrame
        The cohort table ``lesion_summary.tsv`` (columns ``COHORT_COLUMNS``).
    """
    from radfusion.predict import OUTPUT_FILES, predict_patient

    root, out = Path(root), Path(out)
    scans = find_flairs(root)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"folder '{out}': exists and is not empty; give a new folder for the derivatives")
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for scan in scans:
            work = staging / ".work" / scan.subject
            summary = predict_patient(
                scan.flair, work, model_paths=model_paths, patient=scan.subject, cv_dice=cv_dice,
                threshold=threshold, device=device, threads=threads, skull_strip=skull_strip,
                precision=precision,
            )
            names = derivative_names(scan)
            (staging / scan.relative_folder).mkdir(parents=True, exist_ok=True)
            source = f"bids:raw:{scan.flair.relative_to(root).as_posix()}"
            os.replace(work / OUTPUT_FILES["mask"], staging / names["mask"])
            os.replace(work / OUTPUT_FILES["brain"], staging / names["brain"])
            for key, kind in (("mask_json", "Lesion"), ("brain_json", "Brain")):
                (staging / names[key]).write_text(json.dumps({"Type": kind, "Sources": [source]}, indent=2) + "\n")
            pd.read_csv(work / OUTPUT_FILES["lesions"]).to_csv(staging / names["lesions"], sep="\t", index=False)
            brain_ml = _mask_volume_ml(staging / names["brain"])
            rows.append({
                "participant_id": scan.participant_id, "session_id": scan.session_id or "n/a",
                "source": scan.flair.relative_to(root).as_posix(), "lesion_count": summary["lesion_count"],
                "total_volume_ml": summary["total_volume_ml"], "lesion_voxels": summary["lesion_voxels"],
                "brain_volume_ml": brain_ml, "model": summary["model"], "input": summary["input"],
                "folds": summary["folds"],
            })
        shutil.rmtree(staging / ".work")
        cohort = pd.DataFrame(rows, columns=list(COHORT_COLUMNS))
        cohort.to_csv(staging / COHORT_TABLE, sep="\t", index=False, float_format="%.6g")
        model = f"{rows[0]['model']}/{rows[0]['input']}, mean of {rows[0]['folds']} fold models"
        (staging / "dataset_description.json").write_text(
            json.dumps(dataset_description(f"MS lesion segmentation of FLAIR ({model})", root), indent=2) + "\n"
        )
        os.chmod(staging, 0o755)
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return cohort


def _mask_volume_ml(path: Path) -> float:
    import nibabel as nib
    import numpy as np

    image = nib.load(str(path))
    return float(np.count_nonzero(np.asarray(image.dataobj))) * abs(float(np.linalg.det(image.affine[:3, :3]))) / 1000
