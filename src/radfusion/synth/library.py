"""Real lesions for the demo cohort: the lesion library of 27 Ljubljana MS patients in MNI space.

Each demo subject takes the expert lesion mask of one library patient, optionally mirrored left to
right and thinned to a random subset of its lesions, and carries it through its own random affine
and deformation (:func:`warp_lesion_mask`). Shapes, sizes, counts and locations are then those of
real MS (periventricular, juxtacortical, infratentorial), not of a drawing rule.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from .warp import sample_map, transform_points

LIBRARY_DIR = Path(__file__).resolve().parent / "lesion_library"
"""The vendored masks (CC-BY; README.md and LICENSE.txt there give the citation)."""

TEST_PATIENTS = ("patient07", "patient19", "patient26")
"""The database's test patients: the external stage scores on them, so they are never a source."""

_MASK_NAME = re.compile(r"^(patient\d+)_lesion_mask\.nii(\.gz)?$")


@dataclass(frozen=True, eq=False)
class LesionSource:
    """One library patient's lesion mask: ``mask`` (uint8, read-only) on its ``affine`` grid (MNI mm)."""

    name: str
    mask: np.ndarray
    affine: np.ndarray


def library_names(folder: str | Path | None = None) -> list[str]:
    """Names of the library's patients (``patientXX``), sorted.

    Raises
    ------
    ValueError
        When the folder holds the mask of a test patient (:data:`TEST_PATIENTS`): none of their
        voxels may reach the demo cohort, whose models the external stage tests on them.
    FileNotFoundError
        When the folder holds no mask.
    """
    folder = LIBRARY_DIR if folder is None else Path(folder)
    found = {}
    for path in sorted(folder.glob("patient*_lesion_mask.nii*")):
        match = _MASK_NAME.match(path.name)
        if match:
            found[match.group(1)] = path
    leaked = sorted(set(found) & set(TEST_PATIENTS))
    if leaked:
        raise ValueError(
            f"lesion library {folder} holds the mask of test patient(s) {', '.join(leaked)} "
            f"({', '.join(found[n].name for n in leaked)}); the external stage tests on them, so they "
            "may never be a demo lesion source: remove the file(s)"
        )
    if not found:
        raise FileNotFoundError(f"no patientXX_lesion_mask.nii.gz in lesion library {folder}")
    return sorted(found)


@functools.lru_cache(maxsize=32)
def _load_source_cached(folder: Path, name: str) -> LesionSource:
    if name in TEST_PATIENTS:
        raise ValueError(f"{name} is a test patient of the external stage and never a demo lesion source")
    paths = sorted(folder.glob(f"{name}_lesion_mask.nii*"))
    if not paths:
        raise FileNotFoundError(f"no mask of {name} in lesion library {folder}")
    image = nib.load(paths[0])
    mask = (np.asanyarray(image.dataobj) > 0).astype(np.uint8)
    mask.flags.writeable = False
    affine = np.asarray(image.affine, dtype=np.float64)
    affine.flags.writeable = False
    return LesionSource(name=name, mask=mask, affine=affine)


def load_lesion_source(name: str, folder: str | Path | None = None) -> LesionSource:
    """One library patient's mask (cached; the test patients are refused by name and by folder)."""
    folder = (LIBRARY_DIR if folder is None else Path(folder)).resolve()
    library_names(folder)  # refuses a folder that holds a test patient
    return _load_source_cached(folder, name)


def lesion_subset(rng: np.random.Generator, mask: np.ndarray, keep_fraction: float) -> np.ndarray:
    """Keep each lesion (26-connected component) of ``mask`` with probability ``keep_fraction``.

    At least one lesion is kept when the mask has any. Returns a new uint8 mask.
    """
    labels, n = ndi.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    if n == 0:
        return np.zeros(mask.shape, dtype=np.uint8)
    keep = rng.random(n) < keep_fraction
    if not keep.any():
        keep[int(rng.integers(n))] = True
    return np.concatenate([[False], keep])[labels].astype(np.uint8)


def warp_lesion_mask(
    mask: np.ndarray,
    mask_affine: np.ndarray,
    coords: np.ndarray,
    template_affine: np.ndarray,
    *,
    mirror: bool = False,
    voxel_size: float = 1.0,
) -> np.ndarray:
    """Lesion partial-volume fraction on a subject grid from a mask in MNI space.

    Parameters
    ----------
    mask : ndarray, shape (I, J, K)
        Binary lesion mask on its own grid (the library's FSL MNI152 grid).
    mask_affine : ndarray, shape (4, 4)
        Its voxel-to-MNI affine.
    coords : ndarray of float32, shape (3, X, Y, Z)
        Template voxel coordinates of every subject voxel (:func:`.warp.template_coordinates`).
    template_affine : ndarray, shape (4, 4)
        The template's voxel-to-MNI affine. Mask and template meet in world (MNI mm)
        coordinates, never by voxel index: the two grids differ.
    mirror : bool
        Flip left and right (MNI ``x -> -x``; the 2009 symmetric template's midline is x = 0).
    voxel_size : float
        The subject's voxel size (mm). Coarser than the mask's 1 mm, the mask is first smoothed
        by a Gaussian of FWHM ``sqrt(voxel_size^2 - 1)`` mm, so a subject voxel holds the lesion
        share of its whole volume rather than of one point.

    Returns
    -------
    fraction : ndarray of float32, shape (X, Y, Z)
        In [0, 1]; a lesion covers the subject voxels with ``fraction >= 0.5``.
    """
    source = np.asarray(mask, dtype=np.float32)
    spacing = np.sqrt((np.asarray(mask_affine)[:3, :3] ** 2).sum(axis=0))
    fwhm = np.sqrt(max(voxel_size**2 - float(spacing.mean()) ** 2, 0.0))
    if fwhm > 0:
        source = ndi.gaussian_filter(source, fwhm / 2.3548 / spacing, mode="constant")
    world = np.diag([-1.0 if mirror else 1.0, 1.0, 1.0, 1.0])
    to_mask = np.linalg.inv(mask_affine) @ world @ np.asarray(template_affine, dtype=np.float64)
    return np.clip(sample_map(source, transform_points(coords, to_mask)), 0.0, 1.0)



def tissue_limited(fraction: np.ndarray, gm: np.ndarray, wm: np.ndarray) -> np.ndarray:
    """Lesion fraction limited to brain tissue: ``f <- min(f, p_gm + p_wm)``.

    A library lesion lies in its own patient's anatomy; where it falls into the subject's CSF
    (a ventricle of another size, a sulcus) or outside the brain, a scan would show fluid or
    nothing, not lesion. Lesion replaces tissue only, so such voxels lose their lesion share and
    a lesion abutting a ventricle ends at the ventricle wall, as on real FLAIR.
    """
    return np.minimum(fraction, np.clip(gm + wm, 0.0, 1.0)).astype(np.float32)
