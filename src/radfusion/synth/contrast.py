"""FLAIR contrast of a demo subject: tissues, the bright things that are not lesions, and lesions.

On real FLAIR a threshold does not find MS lesions: the cortical ribbon and its CSF rims, the
periventricular caps and bands, the septum pellucidum, the choroid plexus, CSF inflow in the third
and fourth ventricles and slow-flow vessels are as bright as lesions, and lesions themselves range
from faint (grey-matter-like) to very bright. This module draws all of them, relative to white
matter = 1; :mod:`.acquire` adds the scanner's bias field and noise.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


VESSEL_MM = 1.2  # width of a drawn slow-flow vessel (mm)


def draw_levels(rng: np.random.Generator) -> dict[str, float]:
    """A subject's contrast, relative to white matter (the calibration of docs/decisions.md).

    ``lesion`` 1.3-1.42 (median lesion level) and ``lesion_spread`` 0.25-0.35 (log-normal spread
    of the per-lesion excess over white matter); ``csf`` 0.05-0.15 (nulled fluid); ``gm``
    1.02-1.1 and ``gm_variation`` 0.04-0.07 (SD of a smooth regional GM field). The mimics are
    set relative to the subject's drawn lesions' median level (:func:`flair_contrast`), as on
    real FLAIR, where they overlap the lesions' range: ``cortex_rim`` brings cortex beside CSF to 1.12-1.3 of it, ``periventricular``
    (caps, bands, septum) 1.05-1.25, ``bright_csf`` (choroid plexus, inflow) 0.7-1.1,
    ``vessel`` 0.95-1.2.
    """
    lesion = rng.uniform(1.3, 1.42)
    gm = rng.uniform(1.02, 1.1)
    return {
        "csf": rng.uniform(0.05, 0.15),
        "gm": gm,
        "gm_variation": rng.uniform(0.04, 0.07),
        # The cortex next to CSF (near_csf about 0.5) reaches 1.12-1.3 x the lesion median.
        "cortex_rim": rng.uniform(1.12, 1.3),
        "periventricular": rng.uniform(1.05, 1.25),
        "bright_csf": rng.uniform(0.7, 1.1),
        "vessel": rng.uniform(0.95, 1.2),
        "lesion": lesion,
        "lesion_spread": rng.uniform(0.25, 0.35),
    }


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], scale_voxels: float) -> np.ndarray:
    """Gaussian random field of unit SD, correlated over about ``scale_voxels``, as float32.

    Drawn on a grid ``scale_voxels`` times coarser and interpolated up, so the cost stays one
    pass over the volume whatever the scale.
    """
    step = max(float(scale_voxels), 1.0)
    coarse_shape = tuple(max(2, int(np.ceil(n / step)) + 2) for n in shape)
    coarse = ndi.gaussian_filter(rng.standard_normal(coarse_shape), 1.0, mode="wrap")
    coarse /= max(float(coarse.std()), 1e-12)
    fine = ndi.zoom(coarse.astype(np.float32), [n / c for n, c in zip(shape, coarse_shape)], order=1)
    return fine[tuple(slice(0, n) for n in shape)]


def vessel_map(
    rng: np.random.Generator, candidates: np.ndarray, voxel_size: float, n_vessels: int, length_mm: tuple[float, float] = (8.0, 30.0)
) -> np.ndarray:
    """Thin tortuous tubes (slow-flow vessels), partial-volume fraction in [0, 1].

    Each vessel starts at a random ``candidates`` voxel (sulcal CSF next to cortex) and follows a
    random walk with a slowly turning direction; the traced centre lines are blurred by a
    Gaussian of 0.5 mm SD (vessels about 1-1.5 mm across). On voxels coarser than the vessels'
    width (``VESSEL_MM``) a vessel fills only ``(VESSEL_MM / voxel_size)^2`` of a voxel's cross
    section, and its fraction is scaled by that (partial volume; 1 at <= 1.2 mm).
    """
    shape = candidates.shape
    trace = np.zeros(shape, dtype=np.float32)
    starts = np.flatnonzero(candidates)
    if starts.size == 0 or n_vessels == 0:
        return trace
    step = 0.5  # voxels per step
    for start in rng.choice(starts, size=n_vessels):
        point = np.array(np.unravel_index(start, shape), dtype=np.float64)
        direction = rng.standard_normal(3)
        direction /= np.linalg.norm(direction)
        for _ in range(int(rng.uniform(*length_mm) / (voxel_size * step))):
            direction += 0.15 * rng.standard_normal(3)
            direction /= np.linalg.norm(direction)
            point += step * direction
            index = np.rint(point).astype(int)
            if (index < 0).any() or (index >= shape).any():
                break
            trace[tuple(index)] = 1.0
    blurred = ndi.gaussian_filter(trace, 0.5 / voxel_size)
    on_line = blurred[trace > 0]
    fraction = np.clip(blurred / max(float(np.median(on_line)), 1e-6), 0.0, 1.0)
    filled = min(1.0, (VESSEL_MM / voxel_size) ** 2)
    return fraction if filled >= 1.0 else fraction * np.float32(filled)


def lesion_levels(
    rng: np.random.Generator, lesion_fraction: np.ndarray, gm: np.ndarray, median: float, spread: float
) -> np.ndarray:
    """Brightness of every lesion relative to white matter, one value per lesion, as a volume.

    Lesions are the 26-connected components of ``lesion_fraction > 0.05`` (a lesion with its
    partial-volume rim). Each gets ``1 + (median - 1) exp(N(0, spread))``; lesions touching grey
    matter (mean ``p_gm`` over the lesion above 0.2) are fainter by a factor 0.6-0.9 of that
    excess, as juxtacortical lesions are on FLAIR. Returns float32, 0 outside lesions.
    """
    labels, n = ndi.label(lesion_fraction > 0.05, structure=np.ones((3, 3, 3), dtype=bool))
    out = np.zeros(lesion_fraction.shape, dtype=np.float32)
    if n == 0:
        return out
    excess = (median - 1.0) * np.exp(rng.normal(0.0, spread, size=n))
    mean_gm = ndi.mean(gm, labels, index=np.arange(1, n + 1))
    excess *= np.where(np.asarray(mean_gm) > 0.2, rng.uniform(0.6, 0.9, size=n), 1.0)
    levels = np.concatenate([[0.0], 1.0 + np.clip(excess, 0.05, 1.2)]).astype(np.float32)
    return levels[labels]


def flair_contrast(
    rng: np.random.Generator,
    tissues: dict[str, np.ndarray],
    brain: np.ndarray,
    mimics: np.ndarray,
    lesion_fraction: np.ndarray,
    levels: dict[str, float],
    voxel_size: float,
    n_vessels: int,
) -> np.ndarray:
    """Noise-free FLAIR (white matter = 1) of one subject.

    Parameters
    ----------
    tissues : dict
        ``gm``, ``wm``, ``csf`` probabilities on the subject grid.
    brain : ndarray of bool
        The subject's brain (``p_gm + p_wm + p_csf >= 0.5``).
    mimics : ndarray, shape (2, X, Y, Z)
        The template's :func:`.template.mimic_maps` warped onto the subject grid.
    lesion_fraction : ndarray
        Lesion partial-volume fraction.
    levels : dict
        From :func:`draw_levels`.
    voxel_size : float
        mm; sets the scales of the smooth fields.
    n_vessels : int
        Number of bright vessels.

    Notes
    -----
    Partial-volume mixture, then blends, in this order:

    1. ``I = p_gm G + p_wm + p_csf C`` with the GM level ``G = gm (1 + v n(x)) (1 + r s(x))``:
       ``n`` a smooth regional field (about 20 mm), ``s`` the CSF share within about 1 mm
       (Gaussian-smoothed ``p_csf``), so cortex beside sulci is brighter (the cortical ribbon
       and its partial-volume rim); ``C`` raised towards ``bright_csf`` (times a lumpy field)
       inside the choroid plexus and inflow map.
    2. Periventricular band, caps and septum: ``I <- (1 - m) I + m P``.
    3. Vessels: ``I <- (1 - v) I + v V`` in the brain.
    4. Lesions: ``I <- (1 - f) I + f L`` with ``L`` per lesion from :func:`lesion_levels`.
    5. A faint texture, 3 % in tissue and up to 9 % inside lesions (heterogeneous on FLAIR).
    """
    gm, wm, csf = tissues["gm"], tissues["wm"], tissues["csf"]
    shape = gm.shape
    lesion_level = lesion_levels(rng, lesion_fraction, gm, levels["lesion"], levels["lesion_spread"])
    in_lesion = lesion_fraction >= 0.5
    median = float(np.median(lesion_level[in_lesion])) if in_lesion.any() else levels["lesion"]
    regional = smooth_noise(rng, shape, 20.0 / voxel_size)
    near_csf = ndi.gaussian_filter(csf, 1.0 / voxel_size)
    rim = (median * levels["cortex_rim"] / levels["gm"] - 1.0) / 0.5
    grey = levels["gm"] * (1.0 + levels["gm_variation"] * regional) * (1.0 + rim * near_csf)
    lumpy = np.clip(0.7 + 0.5 * smooth_noise(rng, shape, 3.0 / voxel_size), 0.2, 1.6)
    fluid = levels["csf"] + mimics[1] * lumpy * (median * levels["bright_csf"] - levels["csf"])
    image = gm * grey + wm + csf * fluid
    image = (1.0 - mimics[0]) * image + mimics[0] * (median * levels["periventricular"])
    sulcal = brain & (csf > 0.5) & (near_csf < 0.8) & (gm > 0.05) & (mimics[1] == 0)
    vessels = vessel_map(rng, sulcal, voxel_size, n_vessels) * brain
    image = (1.0 - vessels) * image + vessels * (median * levels["vessel"])
    image = (1.0 - lesion_fraction) * image + lesion_fraction * lesion_level
    texture = ndi.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), 1.5 / voxel_size)
    texture *= 0.03 / max(float(texture.std()), 1e-12)
    image *= 1.0 + texture * (1.0 + 2.0 * lesion_fraction)
    return image.astype(np.float32, copy=False)
