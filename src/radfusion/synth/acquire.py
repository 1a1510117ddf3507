"""The scanner's part: a smooth multiplicative bias field and Rician noise on a skull-stripped volume."""

from __future__ import annotations

import numpy as np

from .warp import bias_field


def acquire(
    rng: np.random.Generator,
    image: np.ndarray,
    brain: np.ndarray,
    *,
    bias_strength: float,
    noise_range: tuple[float, float],
) -> np.ndarray:
    """Bias field, Rician noise, white matter about 100, background 0.

    ``image`` (white matter = 1) is multiplied by :func:`.warp.bias_field`, then
    ``sqrt((I + n1)^2 + n2^2)`` with ``n1, n2 ~ N(0, sigma)`` and ``sigma`` drawn from
    ``noise_range`` (Gudbjartsson and Patz, Magn Reson Med 34 (1995) 910-914); voxels outside
    the brain are 0, as on the skull-stripped Ljubljana FLAIRs. ``image`` is modified in place.
    """
    image *= bias_field(rng, image.shape, bias_strength)
    sigma = rng.uniform(*noise_range)
    real = image + rng.standard_normal(image.shape, dtype=np.float32) * np.float32(sigma)
    imaginary = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(sigma)
    flair = np.sqrt(real * real + imaginary * imaginary)
    flair *= np.float32(100.0)
    flair[~brain] = 0.0
    return flair
