"""The scanner's part: a smooth multiplicative bias field and Rician noise on a skull-stripped volume."""

from __future__ import annotations

import numpy as np

from .warp import bias_field


def noise_sigma(sigma_1mm: float, voxel_size: float) -> float:
    """Noise SD of a voxel of ``voxel_size`` mm given the SD ``sigma_1mm`` of a 1 mm voxel.

    Thermal noise is independent between 1 mm voxels, so a voxel that averages ``v^3`` of them
    (the partial-volume rule of :func:`.warp.voxel_average`) has SD ``sigma / v^1.5``: SNR grows
    with voxel volume. ``noise_range`` was calibrated at 0.8-1.0 mm, so voxels of 1 mm or less
    keep ``sigma_1mm`` (the full cohort is unchanged).
    """
    return float(sigma_1mm) * min(1.0, float(voxel_size) ** -1.5)


def acquire(
    rng: np.random.Generator,
    image: np.ndarray,
    brain: np.ndarray,
    *,
    bias_strength: float,
    noise_range: tuple[float, float],
    voxel_size: float = 1.0,
) -> np.ndarray:
    """Bias field, Rician noise, white matter about 100, background 0.

    ``image`` (white matter = 1) is multiplied by :func:`.warp.bias_field`, then
    ``sqrt((I + n1)^2 + n2^2)`` with ``n1, n2 ~ N(0, sigma)`` and ``sigma`` drawn from
    ``noise_range`` (a 1 mm voxel's SD) and scaled to the voxel's volume by :func:`noise_sigma`
    (Gudbjartsson and Patz, Magn Reson Med 34 (1995) 910-914); voxels outside the brain are 0,
    as on the skull-stripped Ljubljana FLAIRs. ``image`` is modified in place.
    """
    image *= bias_field(rng, image.shape, bias_strength)
    sigma = noise_sigma(rng.uniform(*noise_range), voxel_size)
    real = image + rng.standard_normal(image.shape, dtype=np.float32) * np.float32(sigma)
    imaginary = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(sigma)
    flair = np.sqrt(real * real + imaginary * imaginary)
    flair *= np.float32(100.0)
    flair[~brain] = 0.0
    return flair
