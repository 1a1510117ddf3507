"""Subject grids and random spatial transforms: affine, smooth deformation, smooth multiplicative fields."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .template import Template


def subject_grid(template: Template, voxel_size: float) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and affine of an isotropic grid covering the template's field of view."""
    spacing = np.sqrt((template.affine[:3, :3] ** 2).sum(axis=0))
    shape = tuple(max(1, int(round(n * s / voxel_size))) for n, s in zip(template.shape, spacing))
    affine = np.eye(4)
    affine[:3, :3] = template.affine[:3, :3] / spacing * voxel_size
    centre = template.affine[:3, :3] @ ((np.array(template.shape) - 1) / 2) + template.affine[:3, 3]
    affine[:3, 3] = centre - affine[:3, :3] @ ((np.array(shape) - 1) / 2)
    return shape, affine


def random_rotation(rng: np.random.Generator, max_degrees: float) -> np.ndarray:
    """Rotation about x, then y, then z by angles uniform in +-max_degrees."""
    ax, ay, az = np.deg2rad(rng.uniform(-max_degrees, max_degrees, size=3))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def separable_field(coefficients: np.ndarray, bases: list[np.ndarray]) -> np.ndarray:
    """``sum_abc C[a, b, c] Bx[:, a] By[:, b] Bz[:, c]`` on the full grid, as float32.

    Contracting the small axes first keeps the cost at a few passes over the volume.
    """
    bx, by, bz = (b.astype(np.float64) for b in bases)
    yz = np.einsum("abc,yb,zc->ayz", coefficients, by, bz).astype(np.float32)
    out = np.zeros((bx.shape[0],) + yz.shape[1:], dtype=np.float32)
    for a in range(bx.shape[1]):
        out += bx[:, a, None, None].astype(np.float32) * yz[a]
    return out


def template_coordinates(
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
    linear = random_rotation(rng, rotation_degrees) @ np.diag(rng.uniform(*scale_range, size=3))
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
        coords[d] = separable_field(coefficients[d], bases)
        coords[d] += (to_template[d, 0] * index[0] + to_template[d, 3]).astype(np.float32)[:, None, None]
        coords[d] += (to_template[d, 1] * index[1]).astype(np.float32)[None, :, None]
        coords[d] += (to_template[d, 2] * index[2]).astype(np.float32)[None, None, :]
    return coords, linear


def bias_field(rng: np.random.Generator, shape: tuple[int, int, int], strength: float) -> np.ndarray:
    """Smooth multiplicative field ``exp(sum c_abc P_a(x) P_b(y) P_c(z))``, Legendre degree <= 2."""
    bases = [np.polynomial.legendre.legvander(np.linspace(-1, 1, n), 2) for n in shape]
    coefficients = rng.normal(0.0, strength, size=(3, 3, 3))
    coefficients[0, 0, 0] = 0.0
    return np.exp(separable_field(coefficients, bases))




def voxel_average(volume: np.ndarray, voxel_size: float, spacing: float = 1.0) -> np.ndarray:
    """``volume`` (of grid ``spacing`` mm) averaged over a subject voxel of ``voxel_size`` mm.

    A Gaussian of FWHM ``sqrt(voxel_size^2 - spacing^2)`` mm, the rule the lesion masks follow
    (:func:`.library.warp_lesion_mask`), so that a trilinear sample at a subject voxel's centre
    holds the share of its whole volume rather than of one point. On a grid as fine as the
    source's or finer (the full cohort's 0.8-1.0 mm), ``volume`` itself is returned.
    """
    fwhm = np.sqrt(max(float(voxel_size) ** 2 - float(spacing) ** 2, 0.0))
    if fwhm <= 0:
        return volume
    return ndi.gaussian_filter(volume, fwhm / 2.3548 / spacing, mode="constant")


def sample_map(volume: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Trilinear samples of ``volume`` at voxel coordinates ``points`` (shape (3, ...)), 0 outside.

    Only the points inside the bounding box of the volume's nonzero voxels are interpolated, so
    sampling a small structure (a lesion mask, the ventricles' surroundings) costs little.
    Returns float32 of shape ``points.shape[1:]``.
    """
    out = np.zeros(points.shape[1:], dtype=np.float32)
    nonzero = np.argwhere(volume != 0)
    if nonzero.size == 0:
        return out
    lo, hi = nonzero.min(0) - 1.0, nonzero.max(0) + 1.0
    flat = points.reshape(3, -1)
    near = np.ones(flat.shape[1], dtype=bool)
    for d in range(3):
        near &= (flat[d] >= lo[d]) & (flat[d] <= hi[d])
    out.reshape(-1)[near] = ndi.map_coordinates(volume, flat[:, near], order=1, mode="constant", output=np.float32)
    return out


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``matrix`` (4x4 homogeneous) applied to coordinates ``points`` of shape (3, ...), as float32."""
    out = np.empty(points.shape, dtype=np.float32)
    for d in range(3):
        out[d] = np.float32(matrix[d, 3])
        for e in range(3):
            out[d] += np.float32(matrix[d, e]) * points[e]
    return out
