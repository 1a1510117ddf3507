"""The demo cohort: FLAIR volumes with real MS lesions and the contrast of real FLAIR (SPEC "Demo cohort").

A subject is made in five named steps, each a module of this package:

1. grid and warp (:mod:`.warp`): nilearn's MNI152 2009 template under a random affine and a smooth
   deformation, on an isotropic grid of a random voxel size;
2. tissues: the template's GM, WM, CSF and FLAIR-mimic maps (:mod:`.template`) carried along;
3. lesions (:mod:`.library`): a real patient's expert lesion mask from the vendored lesion
   library, mirrored or not, thinned to a random subset, carried through the same warp
   (the SPEC's rule-drawn lesions, :mod:`.drawn`, stay as the option ``lesions="drawn"``);
4. contrast (:mod:`.contrast`): FLAIR levels with the bright things that are not lesions
   (cortical ribbon, CSF rims, periventricular caps and bands, septum, choroid plexus, CSF inflow,
   vessels) and lesions from faint to bright;
5. acquisition (:mod:`.acquire`): bias field and Rician noise, skull-stripped background.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from .acquire import acquire
from .contrast import draw_levels, flair_contrast
from .drawn import LESION_KINDS, drawn_lesions
from .library import LIBRARY_DIR, TEST_PATIENTS, library_names, lesion_subset, load_lesion_source, tissue_limited, warp_lesion_mask
from .template import LESION_LOCATIONS, MIMICS, TEMPLATE_FILES, Template, default_template_dir, load_template
from .warp import sample_map, subject_grid, template_coordinates, voxel_average

__all__ = [
    "LESION_KINDS",
    "LESION_LOCATIONS",
    "LESION_SOURCES",
    "LIBRARY_DIR",
    "MIMICS",
    "TEMPLATE_FILES",
    "TEST_PATIENTS",
    "SyntheticSubject",
    "Template",
    "default_template_dir",
    "library_names",
    "load_template",
    "synthesize_subject",
]

LESION_SOURCES = ("library", "drawn")


@dataclass(eq=False)
class SyntheticSubject:
    """One synthetic FLAIR volume, its lesion mask and how it was made.

    Attributes
    ----------
    flair : ndarray of float32, shape (X, Y, Z)
        FLAIR intensities (white matter about 100), 0 outside the brain.
    mask : ndarray of uint8
        Lesion ground truth, ``lesion_fraction >= 0.5``.
    affine : ndarray, shape (4, 4)
        Voxel-to-world affine; its columns have length ``voxel_size``.
    lesions : list of dict
        Library lesions: per 26-connected lesion of the mask, ``centre`` (voxel indices) and
        ``voxels``. Drawn lesions: ``centre``, ``radii``, ``axes``, ``kind``, ``location``.
    voxel_size : float
        Isotropic voxel size (mm).
    lesion_fraction : ndarray of float32
        Partial-volume fraction of lesion tissue in each voxel, in [0, 1].
    tissues : dict of str to ndarray of float32
        ``gm``, ``wm``, ``csf`` probabilities on the subject's grid (before lesions).
    source : str or None
        The library patient the lesions come from (``None`` for drawn lesions).
    mirrored : bool
        Whether the source mask was mirrored left to right.
    """

    flair: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    lesions: list[dict]
    voxel_size: float
    lesion_fraction: np.ndarray = field(repr=False)
    tissues: dict[str, np.ndarray] = field(repr=False)
    source: str | None = None
    mirrored: bool = False


def _check_range(name: str, value, *, low: float, integer: bool = False) -> tuple:
    try:
        a, b = value
    except (TypeError, ValueError):
        raise ValueError(f"expected {name} as a pair (min, max), got {value!r}") from None
    if integer and not all(isinstance(v, (int, np.integer)) for v in (a, b)):
        raise ValueError(f"expected integer {name}, got {value!r}")
    if not (np.isfinite(a) and np.isfinite(b) and low <= a <= b):
        raise ValueError(f"expected {name} with {low} <= min <= max, got {value!r}")
    return (int(a), int(b)) if integer else (float(a), float(b))


def warp_tissues(template: Template, coords: np.ndarray, voxel_size: float = 1.0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Step 2: GM, WM, CSF probabilities and the FLAIR-mimic maps sampled at ``coords``.

    On a grid coarser than the template's 1 mm, each map is first averaged over the subject's
    voxel (:func:`.warp.voxel_average`, the lesion masks' rule), so a 2 mm voxel holds the tissue
    shares of its whole volume: thin bright structures (cortical rims, periventricular caps and
    bands, septum) are diluted by their neighbours as in a real 2 mm scan. At <= 1 mm nothing changes.
    """
    spacing = float(np.sqrt((template.affine[:3, :3] ** 2).sum(axis=0)).mean())
    tissues = {
        name: np.clip(sample_map(voxel_average(getattr(template, name), voxel_size, spacing), coords), 0, 1)
        for name in ("gm", "wm", "csf")
    }
    mimics = np.stack([np.clip(sample_map(voxel_average(m, voxel_size, spacing), coords), 0, 1) for m in template.mimics])
    return tissues, mimics


def library_lesions(
    rng: np.random.Generator,
    template: Template,
    coords: np.ndarray,
    tissues: dict[str, np.ndarray],
    voxel_size: float,
    *,
    library: str | Path | None,
    keep_fraction_range: tuple[float, float],
    mirror_probability: float,
) -> tuple[np.ndarray, str, bool]:
    """Step 3: one library patient's lesions on the subject grid.

    Returns the lesion fraction (limited to tissue, :func:`.library.tissue_limited`), the
    source patient's name and whether it was mirrored.
    """
    names = library_names(library)
    source = load_lesion_source(names[int(rng.integers(len(names)))], library)
    mirrored = bool(rng.random() < mirror_probability)
    kept = lesion_subset(rng, source.mask, rng.uniform(*keep_fraction_range))
    fraction = warp_lesion_mask(kept, source.affine, coords, template.affine, mirror=mirrored, voxel_size=voxel_size)
    return tissue_limited(fraction, tissues["gm"], tissues["wm"]), source.name, mirrored


def _describe_lesions(mask: np.ndarray) -> list[dict]:
    labels, n = ndi.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    if n == 0:
        return []
    index = np.arange(1, n + 1)
    sizes = ndi.sum_labels(mask, labels, index)
    centres = ndi.center_of_mass(mask, labels, index)
    return [
        {"centre": tuple(int(round(c)) for c in centre), "voxels": int(size)} for centre, size in zip(centres, sizes)
    ]


def synthesize_subject(
    template: Template,
    seed: int,
    *,
    lesions: str = "library",
    library: str | Path | None = None,
    voxel_size_range: tuple[float, float] = (0.8, 1.0),
    keep_fraction_range: tuple[float, float] = (0.6, 1.0),
    mirror_probability: float = 0.5,
    n_vessels_range: tuple[int, int] = (40, 100),
    n_lesions_range: tuple[int, int] = (2, 40),
    location_weights: tuple[float, float, float, float] = (0.45, 0.30, 0.15, 0.10),
    blob_fraction: float = 0.5,
    lesion_radius_mm: tuple[float, float] = (1.5, 9.0),
    rotation_degrees: float = 5.0,
    scale_range: tuple[float, float] = (0.93, 1.07),
    translation_mm: float = 4.0,
    deformation_mm: float = 2.0,
    bias_strength: float = 0.04,
    noise_range: tuple[float, float] = (0.03, 0.06),
) -> SyntheticSubject:
    """Synthesize one FLAIR volume with MS lesions and its ground-truth mask.

    Parameters
    ----------
    template : Template
        From :func:`load_template`.
    seed : int
        Non-negative; the same seed gives bit-identical arrays.
    lesions : {"library", "drawn"}
        Real lesion masks from the lesion library (default) or the SPEC's rule-drawn lesions.
    library : str or Path, optional
        Folder of ``patientXX_lesion_mask.nii.gz`` in MNI space; default the vendored library
        (:data:`LIBRARY_DIR`). A folder that holds a test patient (07, 19, 26) is refused.
    voxel_size_range : (float, float)
        Isotropic voxel size (mm) drawn uniformly; the volume covers the template's field of
        view (the paper: 0.8-1.0 mm; (1.8, 2.0) gives the quick cohort, ~8x fewer voxels).
    keep_fraction_range : (float, float)
        Library lesions: each lesion of the source mask is kept with a probability drawn from
        this range (at least one is kept), so subjects sharing a source differ.
    mirror_probability : float
        Library lesions: probability of mirroring the source mask left to right.
    n_vessels_range : (int, int)
        Number of bright slow-flow vessels, drawn uniformly (at 1 mm; scaled by the voxel size's
        inverse square so a coarse grid is not crowded with them).
    n_lesions_range, location_weights, blob_fraction, lesion_radius_mm
        Drawn lesions only (:func:`.drawn.drawn_lesions`).
    rotation_degrees, scale_range, translation_mm : float, (float, float), float
        Random affine: rotation per axis, scale per axis, shift per axis.
    deformation_mm : float
        RMS of the smooth random displacement per axis.
    bias_strength : float
        SD of the bias field's log-polynomial coefficients (0.04: typically +-10-15 %).
    noise_range : (float, float)
        Rician noise SD relative to white matter, drawn uniformly, for voxels of 1 mm or less; a
        coarser voxel averages ``voxel_size^3`` mm^3 and its SD is divided by
        ``voxel_size^1.5`` (:func:`.acquire.noise_sigma`).

    Returns
    -------
    subject : SyntheticSubject

    Notes
    -----
    The steps of the module docstring; the contrast is calibrated on two real patients of the
    Ljubljana database (benchmarks/calibrate_demo.py, docs/decisions.md "Demo cohort"). The mask
    is ``lesion_fraction >= 0.5``.

    References
    ----------
    Lesjak Z. et al., "A Novel Public MR Image Dataset of Multiple Sclerosis Patients With Lesion
    Segmentations Based on Multi-rater Consensus", Neuroinformatics 16 (2018) 51-63 (the lesion
    library). Filippi M. et al., "Assessment of lesions on magnetic resonance imaging in multiple
    sclerosis: practical guidelines", Brain 142 (2019) 1858-1875.
    """
    if not isinstance(template, Template):
        raise TypeError(f"expected a Template from load_template(), got {type(template).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"expected a non-negative integer seed, got {seed!r}")
    if lesions not in LESION_SOURCES:
        raise ValueError(f"expected lesions in {LESION_SOURCES}, got {lesions!r}")
    voxel_size_range = _check_range("voxel_size_range", voxel_size_range, low=0.1)
    keep_fraction_range = _check_range("keep_fraction_range", keep_fraction_range, low=0.0)
    n_vessels_range = _check_range("n_vessels_range", n_vessels_range, low=0, integer=True)
    n_lesions_range = _check_range("n_lesions_range", n_lesions_range, low=0, integer=True)
    lesion_radius_mm = _check_range("lesion_radius_mm", lesion_radius_mm, low=0.1)
    scale_range = _check_range("scale_range", scale_range, low=0.1)
    noise_range = _check_range("noise_range", noise_range, low=0.0)
    if keep_fraction_range[1] > 1.0:
        raise ValueError(f"expected keep_fraction_range within [0, 1], got {keep_fraction_range!r}")
    weights = np.asarray(location_weights, dtype=np.float64)
    if weights.shape != (len(LESION_LOCATIONS),) or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"expected {len(LESION_LOCATIONS)} non-negative location_weights, got {location_weights!r}")
    if not 0.0 <= blob_fraction <= 1.0:
        raise ValueError(f"expected blob_fraction in [0, 1], got {blob_fraction!r}")
    if not 0.0 <= mirror_probability <= 1.0:
        raise ValueError(f"expected mirror_probability in [0, 1], got {mirror_probability!r}")

    # The order of the draws from rng is part of the result: keep it when changing the steps.
    rng = np.random.default_rng(int(seed))
    voxel_size = float(rng.uniform(*voxel_size_range))
    # 1. Grid and warp.
    shape, affine = subject_grid(template, voxel_size)
    coords, linear = template_coordinates(
        rng, template, shape, affine, rotation_degrees=rotation_degrees, scale_range=scale_range,
        translation_mm=translation_mm, deformation_mm=deformation_mm,
    )
    # 2. Tissues.
    tissues, mimics = warp_tissues(template, coords, voxel_size)
    brain = (tissues["gm"] + tissues["wm"] + tissues["csf"]) >= 0.5
    # 3. Lesions.
    source, mirrored = None, False
    if lesions == "library":
        fraction, source, mirrored = library_lesions(
            rng, template, coords, tissues, voxel_size, library=library,
            keep_fraction_range=keep_fraction_range, mirror_probability=mirror_probability,
        )
        described = None
    else:
        fraction, described = drawn_lesions(
            rng, template, coords, tissues["wm"], affine, linear, n_lesions_range=n_lesions_range,
            location_weights=location_weights, blob_fraction=blob_fraction, lesion_radius_mm=lesion_radius_mm,
        )
    del coords
    mask = (fraction >= 0.5).astype(np.uint8)
    # 4. Contrast; 5. acquisition.
    levels = draw_levels(rng)
    n_vessels = int(round(rng.integers(n_vessels_range[0], n_vessels_range[1] + 1) / voxel_size**2))
    image = flair_contrast(rng, tissues, brain, mimics, fraction, levels, voxel_size, n_vessels)
    flair = acquire(rng, image, brain, bias_strength=bias_strength, noise_range=noise_range, voxel_size=voxel_size)
    return SyntheticSubject(
        flair=flair.astype(np.float32, copy=False),
        mask=mask,
        affine=affine,
        lesions=_describe_lesions(mask) if described is None else described,
        voxel_size=voxel_size,
        lesion_fraction=fraction,
        tissues=tissues,
        source=source,
        mirrored=mirrored,
    )
