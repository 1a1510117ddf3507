"""The demo cohort: FLAIR-like volumes with MS-like white-matter lesions (SPEC "Demo cohort").

Each subject is nilearn's bundled MNI152 2009 template, warped by a small random affine and a
smooth random deformation, resampled onto an isotropic grid of a random voxel size, given a
FLAIR contrast, lesions, a multiplicative bias field and Rician noise. The lesion mask is the
ground truth the lesions were drawn from.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi
from scipy import special

TEMPLATE_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
LESION_LOCATIONS = ("periventricular", "deep_wm", "juxtacortical", "infratentorial")
LESION_KINDS = ("ellipsoid", "blob")


def _mni_coordinates(shape: tuple[int, ...], affine: np.ndarray) -> list[np.ndarray]:
    """World (MNI mm) coordinate of every voxel, one broadcastable array per axis.

    Zero affine terms are skipped, so an axis-aligned affine gives sparse (1D-like) arrays.
    """
    grids = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij", sparse=True)
    coordinates = []
    for d in range(3):
        world = np.full((1, 1, 1), affine[d, 3], dtype=np.float32)
        for e in range(3):
            if affine[d, e] != 0:
                world = world + np.float32(affine[d, e]) * grids[e]
        coordinates.append(world)
    return coordinates


def lesion_site_map(
    gm: np.ndarray, wm: np.ndarray, csf: np.ndarray, affine: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Label the template's white matter by where MS lesions occur.

    Parameters
    ----------
    gm, wm, csf : ndarray of float32, shape (X, Y, Z)
        Tissue probabilities of the MNI152 template.
    affine : ndarray, shape (4, 4)
        Voxel-to-MNI affine (mm).

    Returns
    -------
    sites : ndarray of uint8
        0 where no lesion centre may lie, else ``1 + LESION_LOCATIONS.index(location)``.
    ventricle_distance : ndarray of float32
        Distance (mm) to the lateral ventricles (inf outside the brain's bounding box); its
        gradient orients periventricular lesions.

    Notes
    -----
    Candidate centres are confident white matter (``wm >= 0.6``).

    - Lateral ventricles: CSF (``csf > 0.5``) deeper than 8 mm inside the brain, midline
      (|x| < 3 mm, interhemispheric fissure and third ventricle) excluded, largest connected
      component in each hemisphere.
    - infratentorial: cerebellar white matter (y < -35, z < -22, |x| < 38 mm) and brainstem
      (|x| < 14, -45 < y < -10, z < -8 mm), MNI coordinates.
    - periventricular: supratentorial, within 3.5 mm of a lateral ventricle (the lesion then
      abuts the ventricular wall).
    - juxtacortical: supratentorial, within 2 mm of cortical grey matter (``gm > 0.5`` outside
      the deep grey nuclei box |x| < 32, -40 < y < 28, -12 < z < 22 mm) and over 10 mm from
      the ventricles.
    - deep_wm: supratentorial, over 5 mm from the ventricles and over 4 mm from the cortex.
    """
    gm, wm, csf = (np.asarray(a, dtype=np.float32) for a in (gm, wm, csf))
    if not gm.shape == wm.shape == csf.shape or gm.ndim != 3:
        raise ValueError(f"expected three 3D maps of one shape, got {gm.shape}, {wm.shape}, {csf.shape}")
    affine = np.asarray(affine, dtype=np.float64)
    sites = np.zeros(gm.shape, dtype=np.uint8)
    ventricle_distance = np.full(gm.shape, np.inf, dtype=np.float32)
    brain = (gm + wm + csf) >= 0.5
    if not brain.any():
        return sites, ventricle_distance
    # Work in the brain's bounding box (plus a background margin): the distance transforms
    # dominate the cost and the box is about half the template.
    corners = np.argwhere(brain)
    box = tuple(slice(max(int(a) - 2, 0), int(b) + 3) for a, b in zip(corners.min(0), corners.max(0)))
    gm, wm, csf, brain = gm[box], wm[box], csf[box], brain[box]
    box_affine = affine.copy()
    box_affine[:3, 3] = affine[:3, :3] @ [b.start for b in box] + affine[:3, 3]
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    x, y, z = _mni_coordinates(gm.shape, box_affine)

    depth = ndi.distance_transform_edt(brain, sampling=spacing)
    deep_csf = (csf > 0.5) & (depth > 8.0) & (np.abs(x) >= 3.0)
    del depth
    ventricles = np.zeros(gm.shape, dtype=bool)
    for hemisphere in (x < 0, x > 0):
        labels, n = ndi.label(deep_csf & hemisphere)
        if n:
            sizes = np.bincount(labels.ravel())[1:]
            ventricles |= labels == 1 + int(np.argmax(sizes))
    to_ventricle = ndi.distance_transform_edt(~ventricles, sampling=spacing) if ventricles.any() else np.inf

    deep_grey_box = (np.abs(x) < 32) & (y > -40) & (y < 28) & (z > -12) & (z < 22)
    cortex = (gm > 0.5) & ~deep_grey_box
    to_cortex = ndi.distance_transform_edt(~cortex, sampling=spacing) if cortex.any() else np.inf

    white = wm >= 0.6
    infratentorial = ((y < -35) & (z < -22) & (np.abs(x) < 38)) | ((np.abs(x) < 14) & (y > -45) & (y < -10) & (z < -8))
    supra = white & ~infratentorial
    box_sites = sites[box]
    box_sites[supra & (to_ventricle > 5) & (to_cortex > 4)] = 2
    box_sites[supra & (to_cortex <= 2) & (to_ventricle > 10)] = 3
    box_sites[supra & (to_ventricle <= 3.5)] = 1
    box_sites[white & infratentorial] = 4
    ventricle_distance[box] = to_ventricle
    return sites, ventricle_distance


@dataclass(eq=False)
class Template:
    """The MNI152 2009 template: T1, tissue probabilities and lesion sites.

    Attributes
    ----------
    t1, gm, wm, csf : ndarray of float32, shape (197, 233, 189)
        T1 intensities scaled to [0, 1] and tissue probabilities in [0, 1]; 0 outside the brain.
    affine : ndarray, shape (4, 4)
        Voxel-to-MNI affine (1 mm).
    lesion_sites, ventricle_distance : ndarray
        From :func:`lesion_site_map`; computed from the tissue maps when not given.
    """

    t1: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    affine: np.ndarray
    lesion_sites: np.ndarray | None = field(default=None, repr=False)
    ventricle_distance: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        shapes = {name: np.shape(getattr(self, name)) for name in ("t1", "gm", "wm", "csf")}
        if len(set(shapes.values())) != 1 or len(shapes["t1"]) != 3:
            raise ValueError(f"expected 3D t1, gm, wm, csf maps of one shape, got {shapes}")
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.affine.shape != (4, 4):
            raise ValueError(f"expected a 4x4 affine, got shape {self.affine.shape}")
        if self.lesion_sites is None or self.ventricle_distance is None:
            self.lesion_sites, self.ventricle_distance = lesion_site_map(self.gm, self.wm, self.csf, self.affine)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.gm.shape)


def default_template_dir() -> Path:
    """Folder of the MNI152 2009 files inside the installed nilearn package (no import of nilearn)."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("nilearn is not installed; the demo cohort needs its bundled MNI152 template")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


@functools.lru_cache(maxsize=2)
def _load_template_cached(template_dir: Path) -> Template:
    missing = [name for name in TEMPLATE_FILES.values() if not (template_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"MNI152 template files missing from {template_dir}: {', '.join(missing)} "
            "(expected the files nilearn ships in nilearn/datasets/data)"
        )
    images = {key: nib.load(template_dir / name) for key, name in TEMPLATE_FILES.items()}
    affine = images["t1"].affine
    for key, image in images.items():
        if image.shape != images["t1"].shape or not np.allclose(image.affine, affine, atol=1e-4):
            raise ValueError(f"template file {template_dir / TEMPLATE_FILES[key]} is not on the T1 grid")
    maps = {}
    for key, image in images.items():
        data = np.asanyarray(image.dataobj).astype(np.float32)
        top = 255.0 if image.get_data_dtype() == np.uint8 else max(float(data.max()), 1e-12)
        maps[key] = np.clip(data / top, 0.0, 1.0)
    # The T1 template is skull-stripped: its nonzero voxels are the brain.
    brain = (maps["t1"] > 0).astype(np.float32)
    gm = maps["gm"] * brain
    wm = maps["wm"] * brain
    csf = np.clip(brain - gm - wm, 0.0, 1.0)
    template = Template(t1=maps["t1"], gm=gm, wm=wm, csf=csf, affine=affine)
    for name in ("t1", "gm", "wm", "csf", "lesion_sites", "ventricle_distance"):
        getattr(template, name).flags.writeable = False  # shared by the cache
    template.affine.flags.writeable = False
    return template


def load_template(template_dir: str | Path | None = None) -> Template:
    """Load the MNI152 2009 template that nilearn ships inside its package.

    Parameters
    ----------
    template_dir : str or Path, optional
        Folder holding ``mni_icbm152_{t1,gm,wm}_tal_nlin_sym_09a_converted.nii.gz``; default
        the installed nilearn package's ``datasets/data`` folder.

    Returns
    -------
    template : Template
        Read-only arrays (cached per folder: loading twice costs nothing).

    Notes
    -----
    Nothing is downloaded and no nilearn fetcher is called. CSF is brain minus GM and WM,
    clipped to [0, 1], with brain = the nonzero voxels of the skull-stripped T1 template.

    References
    ----------
    Fonov V. et al., "Unbiased average age-appropriate atlases for pediatric studies",
    NeuroImage 54 (2011) 313-327 (ICBM 2009 nonlinear symmetric template).
    """
    folder = default_template_dir() if template_dir is None else Path(template_dir)
    return _load_template_cached(folder.resolve())


@dataclass(eq=False)
class SyntheticSubject:
    """One synthetic FLAIR volume, its lesion mask and how it was made.

    Attributes
    ----------
    flair : ndarray of float32, shape (X, Y, Z)
        FLAIR-like intensities (white matter about 100), 0 outside the brain.
    mask : ndarray of uint8
        Lesion ground truth, ``lesion_fraction >= 0.5``.
    affine : ndarray, shape (4, 4)
        Voxel-to-world affine; its columns have length ``voxel_size``.
    lesions : list of dict
        Per lesion: ``centre`` (voxel indices), ``radii`` (mm, along ``axes``), ``axes``
        (3x3, columns are unit vectors in world space), ``kind`` (ellipsoid | blob),
        ``location`` (periventricular | deep_wm | juxtacortical | infratentorial),
        ``intensity`` (relative to white matter).
    voxel_size : float
        Isotropic voxel size (mm).
    lesion_fraction : ndarray of float32
        Partial-volume fraction of lesion tissue in each voxel, in [0, 1].
    tissues : dict of str to ndarray of float32
        ``gm``, ``wm``, ``csf`` probabilities on the subject's grid (before lesions).
    """

    flair: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    lesions: list[dict]
    voxel_size: float
    lesion_fraction: np.ndarray = field(repr=False)
    tissues: dict[str, np.ndarray] = field(repr=False)


def _subject_grid(template: Template, voxel_size: float) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and affine of an isotropic grid covering the template's field of view."""
    spacing = np.sqrt((template.affine[:3, :3] ** 2).sum(axis=0))
    shape = tuple(max(1, int(round(n * s / voxel_size))) for n, s in zip(template.shape, spacing))
    affine = np.eye(4)
    affine[:3, :3] = template.affine[:3, :3] / spacing * voxel_size
    centre = template.affine[:3, :3] @ ((np.array(template.shape) - 1) / 2) + template.affine[:3, 3]
    affine[:3, 3] = centre - affine[:3, :3] @ ((np.array(shape) - 1) / 2)
    return shape, affine


def _random_rotation(rng: np.random.Generator, max_degrees: float) -> np.ndarray:
    """Rotation about x, then y, then z by angles uniform in +-max_degrees."""
    ax, ay, az = np.deg2rad(rng.uniform(-max_degrees, max_degrees, size=3))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _separable_field(coefficients: np.ndarray, bases: list[np.ndarray]) -> np.ndarray:
    """``sum_abc C[a, b, c] Bx[:, a] By[:, b] Bz[:, c]`` on the full grid, as float32.

    Contracting the small axes first keeps the cost at a few passes over the volume.
    """
    bx, by, bz = (b.astype(np.float64) for b in bases)
    yz = np.einsum("abc,yb,zc->ayz", coefficients, by, bz).astype(np.float32)
    out = np.zeros((bx.shape[0],) + yz.shape[1:], dtype=np.float32)
    for a in range(bx.shape[1]):
        out += bx[:, a, None, None].astype(np.float32) * yz[a]
    return out


def _template_coordinates(
    rng: np.random.Generator,
    template: Template,
    shape: tuple[int, int, int],
    affine: np.ndarray,
    *,
    rotation_degrees: float,
    scale_range: tuple[float, float],
    translation_mm: float,
    deformation_mm: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Template voxel coordinates of every subject voxel under a random affine + smooth warp.

    Returns the coordinates, shape (3, X, Y, Z) float32, and the 3x3 linear part of the
    subject-world to template-world map (for orienting lesions).
    """
    linear = _random_rotation(rng, rotation_degrees) @ np.diag(rng.uniform(*scale_range, size=3))
    shift = rng.uniform(-translation_mm, translation_mm, size=3)
    centre = affine[:3, :3] @ ((np.array(shape) - 1) / 2) + affine[:3, 3]
    world_map = np.eye(4)
    world_map[:3, :3] = linear
    world_map[:3, 3] = centre + shift - linear @ centre
    to_template = np.linalg.inv(template.affine) @ world_map @ affine

    # Smooth displacement (mm, template world): sine basis vanishing at the field-of-view
    # borders, coefficients falling with frequency, scaled to an RMS of deformation_mm.
    n_freq = 3
    freq = np.arange(1, n_freq + 1)
    bases = [np.sin(np.pi * np.outer(np.linspace(0, 1, n), freq)) for n in shape]
    decay = 1.0 / (freq[:, None, None] ** 2 + freq[None, :, None] ** 2 + freq[None, None, :] ** 2)
    coefficients = rng.standard_normal((3, n_freq, n_freq, n_freq)) * decay
    rms = np.sqrt(0.125 * (coefficients**2).sum(axis=(1, 2, 3), keepdims=True))
    coefficients *= deformation_mm / rms
    # Displacement in template voxels: rotate the coefficients, not the volume.
    coefficients = np.einsum("de,eabc->dabc", np.linalg.inv(template.affine[:3, :3]), coefficients)

    index = [np.arange(n, dtype=np.float32) for n in shape]
    coords = np.empty((3,) + tuple(shape), dtype=np.float32)
    for d in range(3):
        coords[d] = _separable_field(coefficients[d], bases)
        coords[d] += (to_template[d, 0] * index[0] + to_template[d, 3]).astype(np.float32)[:, None, None]
        coords[d] += (to_template[d, 1] * index[1]).astype(np.float32)[None, :, None]
        coords[d] += (to_template[d, 2] * index[2]).astype(np.float32)[None, None, :]
    return coords, linear


def _bias_field(rng: np.random.Generator, shape: tuple[int, int, int], strength: float) -> np.ndarray:
    """Smooth multiplicative field ``exp(sum c_abc P_a(x) P_b(y) P_c(z))``, Legendre degree <= 2."""
    bases = [np.polynomial.legendre.legvander(np.linspace(-1, 1, n), 2) for n in shape]
    coefficients = rng.normal(0.0, strength, size=(3, 3, 3))
    coefficients[0, 0, 0] = 0.0
    return np.exp(_separable_field(coefficients, bases))


def _lesion_radius_function(rng: np.random.Generator, amplitude: float, n_terms: int = 5):
    """Random smooth positive function of direction, mean about 1, for irregular blob borders."""
    directions = rng.standard_normal((n_terms, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    frequencies = rng.uniform(1.0, 3.0, size=n_terms)
    phases = rng.uniform(0, 2 * np.pi, size=n_terms)
    weights = rng.uniform(0.5, 1.0, size=n_terms)
    weights *= amplitude / weights.sum()

    def radius(unit: np.ndarray) -> np.ndarray:
        proj = np.tensordot(directions, unit, axes=(1, 0))  # (n_terms, ...)
        waves = np.cos(np.pi * frequencies[:, None] * proj.reshape(n_terms, -1) + phases[:, None])
        return 1.0 + (weights[:, None] * waves).sum(axis=0).reshape(unit.shape[1:])

    return radius


def _ellipsoid_fraction(
    offsets_mm: np.ndarray, axes: np.ndarray, radii: np.ndarray, edge_mm: float, radius_function=None
) -> np.ndarray:
    """Soft indicator of an (optionally star-perturbed) ellipsoid at ``offsets_mm`` from its centre.

    The boundary distance is measured along the ray from the centre; the fraction is
    ``erfc(d / (sqrt(2) edge_mm)) / 2``, so it is 0.5 on the surface.
    """
    local = np.tensordot(axes.T, offsets_mm, axes=(1, 0)) / radii[:, None, None, None]
    rho = np.sqrt((local**2).sum(axis=0))
    length = np.sqrt((offsets_mm**2).sum(axis=0))
    safe_rho = np.where(rho > 1e-6, rho, 1.0)
    along_ray = np.where(rho > 1e-6, length / safe_rho, radii.min())  # mm per unit of rho
    boundary = 1.0 if radius_function is None else radius_function(local / safe_rho)
    distance = (rho - boundary) * along_ray
    return 0.5 * special.erfc(distance / (np.sqrt(2.0) * edge_mm))


def _draw_lesion(
    rng: np.random.Generator,
    location: str,
    kind: str,
    radial_direction: np.ndarray | None,
    radius_range_mm: tuple[float, float],
) -> dict:
    """Random size, shape, orientation, softness and brightness of one lesion."""
    low, high = radius_range_mm
    if location in ("juxtacortical", "infratentorial"):
        high = min(high, max(low, 4.0))  # these are small in MS
    median = np.clip(2.8, low, high)
    radius = float(np.clip(median * np.exp(rng.normal(0.0, 0.45)), low, high))
    if location == "periventricular" and radial_direction is not None:
        # Dawson's fingers: ovoid, long axis perpendicular to the ventricular wall.
        major = radial_direction / np.linalg.norm(radial_direction)
        elongation = rng.uniform(1.2, 2.2)
    else:
        major = rng.standard_normal(3)
        major /= np.linalg.norm(major)
        elongation = rng.uniform(1.0, 1.6)
    helper = rng.standard_normal(3)
    second = helper - helper.dot(major) * major
    second /= np.linalg.norm(second)
    axes = np.column_stack([major, second, np.cross(major, second)])
    minor_ratio = rng.uniform(0.8, 1.0)
    shape = np.array([elongation, minor_ratio, 1.0])
    radii = radius * shape / np.cbrt(shape.prod())
    return {
        "radii": radii,
        "axes": axes,
        "kind": kind,
        "location": location,
        # Soft border, but never so soft that the centre falls below half lesion.
        "edge_mm": min(rng.uniform(0.7, 1.4), 0.5 * radii.min()),
        "intensity_factor": rng.uniform(0.93, 1.07),
    }


def _rasterize_lesion(
    rng: np.random.Generator, lesion: dict, centre: np.ndarray, affine: np.ndarray, shape: tuple[int, int, int]
) -> tuple[tuple[slice, ...], np.ndarray]:
    """Partial-volume fraction of one lesion inside its bounding box on the subject grid."""
    voxel_size = float(np.sqrt((affine[:3, :3] ** 2).sum(axis=0)).mean())
    parts = [(np.zeros(3), lesion["radii"])]
    radius_functions = [None]
    if lesion["kind"] == "blob":
        # Irregular (confluent-looking) lesion: a star-perturbed ellipsoid plus 1-3 lobes whose
        # centres lie inside it, so the union stays one connected lesion.
        radius_functions = [_lesion_radius_function(rng, amplitude=0.35)]
        for _ in range(int(rng.integers(1, 4))):
            direction = rng.standard_normal(3)
            direction /= np.linalg.norm(direction)
            offset = lesion["axes"] @ (direction * lesion["radii"] * rng.uniform(0.3, 0.7))
            parts.append((offset, lesion["radii"] * rng.uniform(0.45, 0.75)))
            radius_functions.append(_lesion_radius_function(rng, amplitude=0.25))
    reach_mm = max(np.linalg.norm(off) + r.max() * 1.35 for off, r in parts) + 3 * lesion["edge_mm"]
    half = int(np.ceil(reach_mm / voxel_size))
    lo = np.maximum(centre - half, 0)
    hi = np.minimum(centre + half + 1, shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    grids = np.meshgrid(*[np.arange(a, b) - c for a, b, c in zip(lo, hi, centre)], indexing="ij")
    offsets_mm = np.tensordot(affine[:3, :3], np.stack(grids).astype(np.float64), axes=(1, 0))
    fraction = np.zeros(tuple(hi - lo), dtype=np.float64)
    for (offset, radii), radius_function in zip(parts, radius_functions):
        part = _ellipsoid_fraction(
            offsets_mm - offset[:, None, None, None], lesion["axes"], radii, lesion["edge_mm"], radius_function
        )
        np.maximum(fraction, part, out=fraction)
    return box, fraction.astype(np.float32)


def _central_gradient(volume: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Central-difference gradient of ``volume`` at one voxel (one-sided at the borders)."""
    grad = np.zeros(3)
    for d in range(3):
        lo, hi = index.copy(), index.copy()
        lo[d] = max(index[d] - 1, 0)
        hi[d] = min(index[d] + 1, volume.shape[d] - 1)
        if hi[d] > lo[d]:
            grad[d] = (float(volume[tuple(hi)]) - float(volume[tuple(lo)])) / (hi[d] - lo[d])
    return grad


def _white_matter_support(wm: np.ndarray) -> np.ndarray:
    """Fraction of a voxel that can hold lesion: 0 below wm = 0.25, 1 above wm = 0.75."""
    return np.clip((wm - 0.25) / 0.5, 0.0, 1.0)


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


class _LesionSites(NamedTuple):
    """Candidate lesion centres: confident subject white-matter voxels and their template site."""

    candidates: np.ndarray
    """Flat indices into the subject grid."""
    nearest: tuple[np.ndarray, ...]
    """The nearest template voxel of each candidate, per axis."""
    site: np.ndarray
    """Template lesion site of each candidate (0 none, k + 1 for ``LESION_LOCATIONS[k]``)."""


def _lesion_sites(template: Template, coords: np.ndarray, wm: np.ndarray) -> _LesionSites:
    """Candidate centres (subject WM >= 0.6) labelled by their template site (step 2)."""
    candidates = np.flatnonzero(wm >= 0.6)
    where = coords.reshape(3, -1)[:, candidates]
    nearest = tuple(np.clip(np.rint(where[d]).astype(np.intp), 0, template.shape[d] - 1) for d in range(3))
    return _LesionSites(candidates, nearest, template.lesion_sites[nearest])


def _place_lesions(
    rng: np.random.Generator,
    template: Template,
    sites: _LesionSites,
    wm: np.ndarray,
    affine: np.ndarray,
    linear: np.ndarray,
    *,
    n_lesions: int,
    location_p: np.ndarray,
    lesion_intensity: float,
    blob_fraction: float,
    lesion_radius_mm: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Draw and rasterize ``n_lesions`` lesions (step 3 of :func:`synthesize_subject`).

    Returns the lesion partial-volume fraction, the lesion intensity per voxel (relative to
    WM) and one dict per lesion (centre, radii, axes, kind, location, intensity).
    """
    shape = wm.shape
    to_template_linear = np.linalg.inv(template.affine[:3, :3])
    support = _white_matter_support(wm)
    lesion_fraction = np.zeros(shape, dtype=np.float32)
    lesion_level = np.zeros(shape, dtype=np.float32)
    lesions = []
    for _ in range(n_lesions):
        location = LESION_LOCATIONS[int(rng.choice(len(LESION_LOCATIONS), p=location_p))]
        pool = np.flatnonzero(sites.site == LESION_LOCATIONS.index(location) + 1)
        # Prefer a centre not already inside a lesion (a few tries), so lesions rarely merge.
        for _try in range(5):
            pick = int(pool[rng.integers(pool.size)])
            centre = np.array(np.unravel_index(sites.candidates[pick], shape))
            if lesion_fraction[tuple(centre)] < 0.5:
                break
        radial = None
        if location == "periventricular":
            at = np.array([n[pick] for n in sites.nearest])
            grad_voxel = _central_gradient(template.ventricle_distance, at)
            # d/d(subject world) of D(template(x)) = A^T (M^-T grad_voxel); direction only.
            radial = linear.T @ (to_template_linear.T @ grad_voxel)
            if not np.isfinite(radial).all() or np.linalg.norm(radial) < 1e-6:
                radial = None
        kind = LESION_KINDS[1] if rng.random() < blob_fraction else LESION_KINDS[0]
        lesion = _draw_lesion(rng, location, kind, radial, lesion_radius_mm)
        box, fraction = _rasterize_lesion(rng, lesion, centre, affine, shape)
        fraction *= support[box]
        # A lesion is one connected focus: pieces of it that the grid or the white-matter
        # limit cut off from its centre stay below 0.5 (partial volume), out of the mask.
        core, _ = ndi.label(fraction >= 0.5)
        centre_label = core[tuple(centre - [b.start for b in box])]
        if centre_label == 0 and core.any():  # not expected: the border is capped above
            centre_label = 1 + int(np.argmax(np.bincount(core.ravel())[1:]))
        detached = (core > 0) & (core != centre_label)
        fraction[detached] = np.minimum(fraction[detached], 0.45)
        level = lesion_intensity * lesion["intensity_factor"]
        brighter = fraction > lesion_fraction[box]
        lesion_fraction[box] = np.where(brighter, fraction, lesion_fraction[box])
        lesion_level[box] = np.where(brighter, level, lesion_level[box])
        lesions.append(
            {
                "centre": tuple(int(c) for c in centre),
                "radii": tuple(float(r) for r in lesion["radii"]),
                "axes": lesion["axes"].tolist(),
                "kind": kind,
                "location": location,
                "intensity": float(level),
            }
        )
    return lesion_fraction, lesion_level, lesions


def _flair_contrast(
    rng: np.random.Generator,
    tissues: dict[str, np.ndarray],
    lesion_fraction: np.ndarray,
    lesion_level: np.ndarray,
    intensity: dict[str, float],
    voxel_size: float,
) -> np.ndarray:
    """Noise-free FLAIR (white matter = 1) with lesions blended by their fraction (step 2 of the Notes)."""
    texture = ndi.gaussian_filter(rng.standard_normal(lesion_fraction.shape, dtype=np.float32), 1.5 / voxel_size)
    texture *= 0.03 / max(float(texture.std()), 1e-12)
    image = tissues["gm"] * intensity["gm"] + tissues["wm"] + tissues["csf"] * intensity["csf"]
    image = (1.0 - lesion_fraction) * image + lesion_fraction * lesion_level
    image *= 1.0 + texture * (1.0 + 2.0 * lesion_fraction)
    return image


def _acquire(
    rng: np.random.Generator,
    image: np.ndarray,
    brain: np.ndarray,
    *,
    bias_strength: float,
    noise_range: tuple[float, float],
) -> np.ndarray:
    """Bias field, Rician noise, white matter about 100, background 0 (step 4 of the Notes)."""
    image *= _bias_field(rng, image.shape, bias_strength)  # in place, float32 as the caller made it
    sigma = rng.uniform(*noise_range)
    real = image + rng.standard_normal(image.shape, dtype=np.float32) * np.float32(sigma)
    imaginary = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(sigma)
    flair = np.sqrt(real * real + imaginary * imaginary)
    flair *= np.float32(100.0)
    flair[~brain] = 0.0
    return flair


def synthesize_subject(
    template: Template,
    seed: int,
    *,
    voxel_size_range: tuple[float, float] = (0.8, 1.0),
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
    """Synthesize one FLAIR-like volume with MS-like lesions and its ground-truth mask.

    Parameters
    ----------
    template : Template
        From :func:`load_template`.
    seed : int
        Non-negative; the same seed gives bit-identical arrays.
    voxel_size_range : (float, float)
        Isotropic voxel size (mm) drawn uniformly; the volume covers the template's field of
        view, so its shape scales with ``1 / voxel_size`` (the paper: 0.8-1.0 mm; (1.6, 2.0)
        gives a coarse quick cohort with ~8x fewer voxels).
    n_lesions_range : (int, int)
        Number of lesions, drawn uniformly, bounds included.
    location_weights : 4 floats
        Probability of each of ``LESION_LOCATIONS`` (periventricular, deep_wm, juxtacortical,
        infratentorial); renormalized over the locations the template offers.
    blob_fraction : float
        Probability that a lesion is an irregular blob rather than a plain ellipsoid.
    lesion_radius_mm : (float, float)
        Bounds of a lesion's equivalent-sphere radius (median 2.8 mm, log-normal spread;
        juxtacortical and infratentorial lesions at most 4 mm).
    rotation_degrees, scale_range, translation_mm : float, (float, float), float
        Random affine: rotation per axis, scale per axis, shift per axis.
    deformation_mm : float
        RMS of the smooth random displacement per axis.
    bias_strength : float
        SD of the bias field's log-polynomial coefficients (0.04: typically +-10-15 % over
        the brain).
    noise_range : (float, float)
        Rician noise SD relative to white matter, drawn uniformly.

    Returns
    -------
    subject : SyntheticSubject

    Notes
    -----
    1. Grid and warp: an isotropic grid of the drawn voxel size over the template's field of
       view; each voxel samples the template (trilinear) at ``A x + u(x)``, ``A`` a random
       rotation-scale-shift and ``u`` a smooth sine-basis displacement.
    2. FLAIR contrast as a partial-volume mixture ``I = sum_t p_t I_t`` with, relative to WM,
       CSF 0.05-0.15 (suppressed fluid), GM 1.1-1.25, lesion 1.4-1.65 (x 0.93-1.07 per lesion,
       so always above GM), times a faint smooth texture (3 % in tissue, up to 9 % inside
       lesions, which are heterogeneous on FLAIR).
    3. Lesions: centres drawn among confident white-matter voxels whose template site
       (:func:`lesion_site_map`) is the drawn location; each lesion is a soft ellipsoid or a
       star-perturbed blob with 1-3 lobes, its fraction ``f`` limited to white matter
       (``f <- f * clip((wm - 0.25) / 0.5, 0, 1)``); pieces of ``f >= 0.5`` cut off from the
       lesion's centre are capped at 0.45, so each lesion is one connected focus (lesions may
       still merge). Overlapping lesions combine by maximum, and the image is blended as
       ``I <- (1 - f) I + f I_lesion``. The mask is ``f >= 0.5``.
    4. A multiplicative bias field (Legendre degree 2 in each axis, log domain), then Rician
       noise ``sqrt((I + n1)^2 + n2^2)``; voxels outside the brain are 0 (skull-stripped, like
       the Ljubljana FLAIRs).

    References
    ----------
    Filippi M. et al., "Assessment of lesions on magnetic resonance imaging in multiple
    sclerosis: practical guidelines", Brain 142 (2019) 1858-1875 (lesion locations, shapes).
    Gudbjartsson H., Patz S., "The Rician distribution of noisy MRI data", Magn Reson Med 34
    (1995) 910-914.
    """
    if not isinstance(template, Template):
        raise TypeError(f"expected a Template from load_template(), got {type(template).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"expected a non-negative integer seed, got {seed!r}")
    voxel_size_range = _check_range("voxel_size_range", voxel_size_range, low=0.1)
    n_lesions_range = _check_range("n_lesions_range", n_lesions_range, low=0, integer=True)
    lesion_radius_mm = _check_range("lesion_radius_mm", lesion_radius_mm, low=0.1)
    scale_range = _check_range("scale_range", scale_range, low=0.1)
    noise_range = _check_range("noise_range", noise_range, low=0.0)
    weights = np.asarray(location_weights, dtype=np.float64)
    if weights.shape != (len(LESION_LOCATIONS),) or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"expected {len(LESION_LOCATIONS)} non-negative location_weights, got {location_weights!r}")
    if not 0.0 <= blob_fraction <= 1.0:
        raise ValueError(f"expected blob_fraction in [0, 1], got {blob_fraction!r}")

    # The order of the draws from rng is part of the result: keep it when changing the steps.
    rng = np.random.default_rng(int(seed))
    voxel_size = float(rng.uniform(*voxel_size_range))
    shape, affine = _subject_grid(template, voxel_size)
    # 1. Warp and resample the tissue maps.
    coords, linear = _template_coordinates(
        rng,
        template,
        shape,
        affine,
        rotation_degrees=rotation_degrees,
        scale_range=scale_range,
        translation_mm=translation_mm,
        deformation_mm=deformation_mm,
    )
    tissues = {
        name: np.clip(
            ndi.map_coordinates(getattr(template, name), coords, order=1, mode="constant", output=np.float32), 0, 1
        )
        for name in ("gm", "wm", "csf")
    }
    brain = (tissues["gm"] + tissues["wm"] + tissues["csf"]) >= 0.5
    # 2. Lesion centres and lesions.
    sites = _lesion_sites(template, coords, tissues["wm"])
    del coords
    location_p = weights * np.array([(sites.site == k + 1).any() for k in range(len(LESION_LOCATIONS))])
    n_lesions = int(rng.integers(n_lesions_range[0], n_lesions_range[1] + 1))
    if n_lesions and location_p.sum() == 0:
        raise ValueError("the template offers no white-matter voxel to place a lesion in")
    if location_p.sum() > 0:
        location_p /= location_p.sum()
    intensity = {
        "csf": rng.uniform(0.05, 0.15),
        "gm": rng.uniform(1.1, 1.25),
        "lesion": rng.uniform(1.4, 1.65),
    }
    lesion_fraction, lesion_level, lesions = _place_lesions(
        rng,
        template,
        sites,
        tissues["wm"],
        affine,
        linear,
        n_lesions=n_lesions,
        location_p=location_p,
        lesion_intensity=intensity["lesion"],
        blob_fraction=blob_fraction,
        lesion_radius_mm=lesion_radius_mm,
    )
    # 3. FLAIR contrast; 4. bias field, Rician noise, skull-stripped background.
    image = _flair_contrast(rng, tissues, lesion_fraction, lesion_level, intensity, voxel_size)
    flair = _acquire(rng, image, brain, bias_strength=bias_strength, noise_range=noise_range)

    return SyntheticSubject(
        flair=flair.astype(np.float32, copy=False),
        mask=(lesion_fraction >= 0.5).astype(np.uint8),
        affine=affine,
        lesions=lesions,
        voxel_size=voxel_size,
        lesion_fraction=lesion_fraction,
        tissues=tissues,
    )
