"""Rule-drawn lesions (SPEC "Demo cohort"): ellipsoids and blobs placed by anatomical site.

The option ``demo.lesions: drawn``; the default draws real lesion masks instead (:mod:`.library`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage as ndi
from scipy import special

from .template import LESION_LOCATIONS, Template

LESION_KINDS = ("ellipsoid", "blob")


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
        # Unused since the contrast step draws lesion brightness; still drawn, so the random
        # stream (and every later draw of a seed) stays as it was.
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


class _LesionSites(NamedTuple):
    """Candidate lesion centres: confident subject white-matter voxels and their template site."""

    candidates: np.ndarray
    """Flat indices into the subject grid."""
    nearest: tuple[np.ndarray, ...]
    """The nearest template voxel of each candidate, per axis."""
    site: np.ndarray
    """Template lesion site of each candidate (0 none, k + 1 for ``LESION_LOCATIONS[k]``)."""


def candidate_sites(template: Template, coords: np.ndarray, wm: np.ndarray) -> _LesionSites:
    """Candidate centres (subject WM >= 0.6) labelled by their template site ."""
    candidates = np.flatnonzero(wm >= 0.6)
    where = coords.reshape(3, -1)[:, candidates]
    nearest = tuple(np.clip(np.rint(where[d]).astype(np.intp), 0, template.shape[d] - 1) for d in range(3))
    return _LesionSites(candidates, nearest, template.lesion_sites[nearest])


def place_lesions(
    rng: np.random.Generator,
    template: Template,
    sites: _LesionSites,
    wm: np.ndarray,
    affine: np.ndarray,
    linear: np.ndarray,
    *,
    n_lesions: int,
    location_p: np.ndarray,
    blob_fraction: float,
    lesion_radius_mm: tuple[float, float],
) -> tuple[np.ndarray, list[dict]]:
    """Draw and rasterize ``n_lesions`` lesions.

    Returns the lesion partial-volume fraction and one dict per lesion (centre, radii, axes,
    kind, location); the contrast step draws every lesion's brightness.
    """
    shape = wm.shape
    to_template_linear = np.linalg.inv(template.affine[:3, :3])
    support = _white_matter_support(wm)
    lesion_fraction = np.zeros(shape, dtype=np.float32)
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
        np.maximum(lesion_fraction[box], fraction, out=lesion_fraction[box])
        lesions.append(
            {
                "centre": tuple(int(c) for c in centre),
                "radii": tuple(float(r) for r in lesion["radii"]),
                "axes": lesion["axes"].tolist(),
                "kind": kind,
                "location": location,
            }
        )
    return lesion_fraction, lesions




def drawn_lesions(
    rng: np.random.Generator,
    template: Template,
    coords: np.ndarray,
    wm: np.ndarray,
    affine: np.ndarray,
    linear: np.ndarray,
    *,
    n_lesions_range: tuple[int, int],
    location_weights: tuple[float, ...],
    blob_fraction: float,
    lesion_radius_mm: tuple[float, float],
) -> tuple[np.ndarray, list[dict]]:
    """Lesion fraction and lesion descriptions of the rule-drawn option (SPEC "Demo cohort").

    Centres are drawn among confident white-matter voxels whose template site
    (:func:`.template.lesion_site_map`) is the drawn location; each lesion is a soft ellipsoid or
    a star-perturbed blob with 1-3 lobes limited to white matter; pieces cut off from the
    lesion's centre stay below 0.5. ``n_lesions_range`` bounds the number of lesions.
    """
    weights = np.asarray(location_weights, dtype=np.float64)
    sites = candidate_sites(template, coords, wm)
    location_p = weights * np.array([(sites.site == k + 1).any() for k in range(len(LESION_LOCATIONS))])
    n_lesions = int(rng.integers(n_lesions_range[0], n_lesions_range[1] + 1))
    if n_lesions and location_p.sum() == 0:
        raise ValueError("the template offers no white-matter voxel to place a lesion in")
    if location_p.sum() > 0:
        location_p /= location_p.sum()
    return place_lesions(
        rng, template, sites, wm, affine, linear, n_lesions=n_lesions, location_p=location_p,
        blob_fraction=blob_fraction, lesion_radius_mm=lesion_radius_mm,
    )
