"""Reading, checking and writing the cohort's images (SPEC stage 1 and "Bad input").

Every problem with a user's file raises :class:`InputError`, whose message names the subject
(when known) and the file, and every writer goes through :func:`atomic_output`, so a failing
step never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import warnings
import zlib
from pathlib import Path
from typing import Iterator

import nibabel as nib
import numpy as np
import pandas as pd

from radfusion.protocol import ID_PATTERN

log = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii", ".nii.gz")
SAMPLE_COLUMNS = ("subject", "flair", "mask")
_UMASK = os.umask(0o022)
os.umask(_UMASK)


class InputError(ValueError):
    """A user's input file or table cannot be used; the message says which and why."""


def _where(path, subject: str | None) -> str:
    return f"subject '{subject}', file '{path}'" if subject else f"file '{path}'"


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` and move it into place only on success.

    The temporary name keeps the suffix (``.nii.gz`` included) so writers that infer the
    format from the name still work. On any exception the temporary file is removed and
    ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name.split('.')[0]}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if tmp.exists():  # mkstemp makes files owner-only; give them the usual permissions
            os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def is_nifti(path: str | os.PathLike) -> bool:
    """True when ``path`` names a NIfTI file (``.nii`` or ``.nii.gz``)."""
    return str(path).endswith(NIFTI_SUFFIXES)


def read_volume(path: str | os.PathLike, *, subject: str | None = None) -> nib.Nifti1Image:
    """Read a 3D NIfTI volume, checked and reoriented to the closest canonical (RAS+) axes.

    Parameters
    ----------
    path : path-like
        A ``.nii`` or ``.nii.gz`` file.
    subject : str, optional
        Named in error messages.

    Returns
    -------
    image : nibabel.Nifti1Image
        Canonical-orientation image whose data are loaded and finite.

    Notes
    -----
    Trailing axes of length one (``x, y, z, 1``) are dropped; a real 4D series or a 2D image is
    refused. Unreadable or corrupt files (including truncated gzip streams), NaN and infinite
    voxels raise :class:`InputError`.
    """
    path = Path(path)
    where = _where(path, subject)
    if not path.exists():
        raise InputError(f"{where}: does not exist")
    if not path.is_file() or not is_nifti(path):
        raise InputError(f"{where}: expected a NIfTI file (.nii or .nii.gz)")
    try:
        image = nib.load(str(path))
        data = np.asanyarray(image.dataobj)
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile, ValueError, nib.filebasedimages.ImageFileError) as err:
        raise InputError(f"{where}: cannot be read as NIfTI ({err})") from err
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"{where}: expected a 3D volume, got {data.ndim}D with shape {data.shape}")
    if min(data.shape) < 2:
        raise InputError(f"{where}: expected a 3D volume, got a single-slice shape {data.shape}")
    if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        n_bad = int((~np.isfinite(data)).sum())
        raise InputError(f"{where}: contains {n_bad} NaN or infinite voxels")
    image = nib.Nifti1Image(data, image.affine, image.header)
    return nib.as_closest_canonical(image)


def dicom_to_nifti(
    folder: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    subject: str | None = None,
) -> Path:
    """Convert one DICOM series to NIfTI with the dcm2niix wheel, with an anonymized sidecar.

    Parameters
    ----------
    folder : path-like
        Folder holding the DICOM files of exactly one series (searched recursively).
    out_path : path-like
        The ``.nii.gz`` (or ``.nii``) to write; the BIDS sidecar goes next to it as ``.json``.
    subject : str, optional
        Named in error messages.

    Returns
    -------
    out_path : pathlib.Path

    Notes
    -----
    Runs ``dcm2niix -b y -ba y`` (BIDS sidecar with patient name, ID and dates removed). The
    voxel data and affine are dcm2niix's, unchanged; reorientation happens in
    :func:`read_volume`. A folder with no series, or with several, raises :class:`InputError`.
    """
    import dcm2niix

    folder, out_path = Path(folder), Path(out_path)
    where = _where(folder, subject)
    if not folder.is_dir():
        raise InputError(f"{where}: DICOM folder does not exist")
    compress = "y" if str(out_path).endswith(".gz") else "n"
    with tempfile.TemporaryDirectory(prefix="dcm2niix-") as tmp:
        cmd = [dcm2niix.bin, "-b", "y", "-ba", "y", "-z", compress, "-f", "series_%s_%e", "-o", tmp, str(folder)]
        run = subprocess.run(cmd, capture_output=True, text=True)
        log.info("dcm2niix output for %s:\n%s", folder, run.stdout + run.stderr)
        images = sorted(p for p in Path(tmp).iterdir() if is_nifti(p))
        if run.returncode != 0 and not images:
            raise InputError(f"{where}: dcm2niix found no DICOM series (exit {run.returncode}): {run.stdout.strip()[-300:]}")
        if not images:
            raise InputError(f"{where}: no DICOM series found")
        if len(images) > 1:
            names = ", ".join(p.name for p in images)
            raise InputError(f"{where}: holds {len(images)} series or volumes ({names}); give one series per folder")
        sidecar = images[0].with_name(images[0].name.split(".")[0] + ".json")
        with atomic_output(out_path) as tmp_nifti:
            shutil.copyfile(images[0], tmp_nifti)
            if sidecar.exists():
                meta = json.loads(sidecar.read_text())
                with atomic_output(sidecar_path(out_path)) as tmp_json:
                    tmp_json.write_text(json.dumps(meta, indent=2))
    return out_path


def sidecar_path(nifti_path: str | os.PathLike) -> Path:
    """The ``.json`` sidecar next to a NIfTI file."""
    nifti_path = Path(nifti_path)
    return nifti_path.with_name(nifti_path.name.split(".")[0] + ".json")


def binarize_mask(
    data: np.ndarray, *, threshold: float = 0.5, subject: str | None = None, path=None
) -> np.ndarray:
    """Binarize a lesion mask: values in {0, 1} pass; fractions in [0, 1] are thresholded.

    Parameters
    ----------
    data : ndarray
        Mask voxels.
    threshold : float
        Voxels ``>= threshold`` become lesion when the mask holds fractional values in [0, 1]
        (e.g. partial-volume masks, or binary masks after interpolation).

    Returns
    -------
    mask : ndarray of uint8 in {0, 1}

    Notes
    -----
    Values outside [0, 1] (label maps such as {0, 1, 2} or {0, 255}) are refused, because which
    labels are lesions is ambiguous. An empty mask is allowed, with a warning.
    """
    where = _where(path, subject)
    values = np.unique(data)
    if values.min() < 0 or values.max() > 1:
        shown = ", ".join(f"{v:g}" for v in values[:8]) + (" ..." if values.size > 8 else "")
        raise InputError(f"{where}: lesion mask must be binary (0/1) or fractions in [0, 1]; found values {shown}")
    if not np.isin(values, (0, 1)).all():
        warnings.warn(f"{where}: fractional mask values binarized at >= {threshold}", stacklevel=2)
    mask = (data >= threshold).astype(np.uint8)
    if not mask.any():
        warnings.warn(f"{where}: lesion mask is empty", stacklevel=2)
    return mask


def check_same_grid(
    flair: nib.Nifti1Image,
    mask: nib.Nifti1Image,
    *,
    tolerance: float = 1e-3,
    subject: str | None = None,
    flair_path=None,
    mask_path=None,
) -> None:
    """Raise :class:`InputError` unless FLAIR and mask share shape and affine (within ``tolerance`` mm)."""
    if flair.shape != mask.shape:
        raise InputError(
            f"subject '{subject}': FLAIR '{flair_path}' has shape {flair.shape} "
            f"but mask '{mask_path}' has shape {mask.shape}"
        )
    if not np.allclose(flair.affine, mask.affine, atol=tolerance, rtol=0):
        diff = float(np.abs(flair.affine - mask.affine).max())
        raise InputError(
            f"subject '{subject}': FLAIR '{flair_path}' and mask '{mask_path}' have different affines "
            f"(max difference {diff:.3g} > tolerance {tolerance:g})"
        )


def import_subject(
    flair_source: str | os.PathLike,
    mask_source: str | os.PathLike | None,
    flair_out: str | os.PathLike,
    mask_out: str | os.PathLike | None,
    *,
    subject: str,
    affine_tolerance: float = 1e-3,
    mask_threshold: float = 0.5,
) -> None:
    """Import one subject (SPEC stage 1): DICOM or NIfTI in, canonical checked NIfTI out.

    Parameters
    ----------
    flair_source : path-like
        FLAIR as a NIfTI file or a folder with one DICOM series.
    mask_source : path-like or None
        Lesion mask NIfTI on the FLAIR's grid (``None`` for prediction-only subjects).
    flair_out, mask_out : path-like
        Output NIfTI files; a DICOM input also gets an anonymized ``.json`` sidecar.
    subject : str
        Subject ID, named in every error.

    Notes
    -----
    Both images are reoriented to the closest canonical orientation (RAS+). The FLAIR is stored
    as float32, the mask as uint8 {0, 1} (see :func:`binarize_mask`). Nothing is written unless
    every check passes.
    """
    flair_source = Path(flair_source)
    with tempfile.TemporaryDirectory(prefix="radfusion-import-") as tmp:
        flair_path = flair_source
        if flair_source.is_dir():
            flair_path = dicom_to_nifti(flair_source, Path(tmp) / "flair.nii.gz", subject=subject)
        flair = read_volume(flair_path, subject=subject)
        if flair_source.is_dir():
            # Name the DICOM folder, not the temporary conversion, in later messages.
            flair_path = flair_source
        flair_data = np.asarray(flair.dataobj, dtype=np.float32)
        mask_image = None
        if mask_source is not None:
            mask = read_volume(mask_source, subject=subject)
            check_same_grid(
                flair, mask, tolerance=affine_tolerance, subject=subject, flair_path=flair_path, mask_path=mask_source
            )
            mask_data = binarize_mask(np.asarray(mask.dataobj), threshold=mask_threshold, subject=subject, path=mask_source)
            mask_image = nib.Nifti1Image(mask_data, flair.affine)
        with contextlib.ExitStack() as stack:
            tmp_flair = stack.enter_context(atomic_output(flair_out))
            save_volume(flair_data, flair.affine, tmp_flair)
            if mask_image is not None and mask_out is not None:
                tmp_mask = stack.enter_context(atomic_output(mask_out))
                nib.save(mask_image, str(tmp_mask))
            if flair_source.is_dir():
                tmp_json = stack.enter_context(atomic_output(sidecar_path(flair_out)))
                shutil.copyfile(sidecar_path(Path(tmp) / "flair.nii.gz"), tmp_json)


def save_volume(data: np.ndarray, affine: np.ndarray, path: str | os.PathLike, *, slope: float | None = None) -> None:
    """Write ``data`` with ``affine`` as NIfTI at ``path`` (atomically, keeping the dtype).

    ``slope``: the header's scale slope (readers see ``data * slope``), for quantized maps.
    """
    image = nib.Nifti1Image(np.asarray(data), np.asarray(affine, dtype=np.float64))
    image.header.set_data_dtype(np.asarray(data).dtype)
    if slope is not None:
        image.header.set_slope_inter(slope, 0.0)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    with atomic_output(path) as tmp:
        nib.save(image, str(tmp))


def load_volume(path: str | os.PathLike, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Read a workflow-made NIfTI (already canonical and checked) as ``(data, affine)``."""
    image = nib.load(str(path))
    return np.asarray(image.dataobj, dtype=dtype), image.affine


def check_sample_sheet(samples: pd.DataFrame, *, n_folds: int, sheet: str = "sample sheet") -> pd.DataFrame:
    """Check the sample sheet's columns, IDs and size before any job runs.

    Parameters
    ----------
    samples : DataFrame
        One row per subject with columns ``subject``, ``flair``, ``mask``.
    n_folds : int
        Number of cross-validation folds; the cohort needs at least one subject per fold.
    sheet : str
        The sheet's path, named in errors.

    Returns
    -------
    samples : DataFrame
        The same table, with surrounding whitespace stripped.
    """
    samples = check_id_table(samples, id_column="subject", columns=SAMPLE_COLUMNS, sheet=sheet)
    if len(samples) < n_folds:
        raise InputError(f"{sheet}: {len(samples)} subject(s) is fewer than the {n_folds} folds; need at least one per fold")
    return samples


def check_id_table(table: pd.DataFrame, *, id_column: str, columns, sheet: str) -> pd.DataFrame:
    """Check a sheet with one row per ID and a FLAIR column (sample or patient sheet).

    Strips whitespace, then refuses missing columns, empty or malformed IDs (IDs name folders:
    letters, digits, ``_ . -``, starting with a letter or digit), duplicate IDs and rows without
    a FLAIR, with an :class:`InputError` naming ``sheet``.
    """
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputError(f"{sheet}: missing column(s) {missing}; expected columns {list(columns)}")
    table = table.copy()
    for column in columns:
        table[column] = table[column].astype(str).str.strip()
    empty = table.loc[table[id_column] == "", id_column].index.tolist()
    if empty:
        raise InputError(f"{sheet}: empty {id_column} ID in row(s) {[i + 2 for i in empty]}")
    bad = [name for name in table[id_column] if not re.fullmatch(ID_PATTERN, name)]
    if bad:
        raise InputError(
            f"{sheet}: {id_column} IDs must be letters, digits, '_', '.', '-' (starting with a letter or digit); got {bad}"
        )
    duplicated = sorted(set(table.loc[table[id_column].duplicated(), id_column]))
    if duplicated:
        raise InputError(f"{sheet}: duplicate {id_column} ID(s) {duplicated}")
    no_flair = table.loc[table["flair"] == "", id_column].tolist()
    if no_flair:
        raise InputError(f"{sheet}: no FLAIR given for {id_column}(s) {no_flair}")
    return table
