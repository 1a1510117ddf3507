"""Skull stripping: the per-subject brain mask of a FLAIR as a hospital exports it.

The brain mask of every later stage (normalization, features, slices, predict, figures,
external) is the one :func:`subject_brain_mask` returns. A FLAIR that is already
skull-stripped keeps today's definition, its nonzero voxels
(:func:`radfusion.normalize.brain_mask`); any other FLAIR is stripped by deepbet (Fisch et al.
2024), whose network weights ship inside its PyPI wheel, so stripping runs offline. Why deepbet,
and the rule for "already stripped": docs/decisions.md, "Skull stripping".
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass

import numpy as np

from radfusion.io import InputError, _where

log = logging.getLogger(__name__)

SKULL_STRIP_MODES = ("auto", "always", "none")
TOOL = "deepbet"

# "Already stripped" (measured: docs/decisions.md, "Skull stripping"): the nonzero voxels hold
# at most this volume. Skull-stripped FLAIRs measured 1,123-1,540 mL (the two test patients, the
# six clinical scans stripped with their reference masks); the six whole-head clinical scans, air
# exactly 0, 2,804-3,343 mL (benchmarks/measurements/skull_strip*.tsv); a scan with noise in the
# air is nonzero everywhere.
STRIPPED_MAX_ML = 1900.0
# Plausible brain volumes (mL) for a stripping result (adult intracranial volume 1,100-1,900 mL;
# a scan may cover only part of the brain, hence the low floor): below the floor there is no
# brain in it (an error), above the ceiling it kept skull or neck (a warning).
BRAIN_MIN_ML = 100.0
BRAIN_MAX_ML = 2100.0


@dataclass(frozen=True)
class BrainMaskResult:
    """A subject's brain mask and how it was made (the log records every field)."""

    brain: np.ndarray
    stripped: bool
    tool: str
    reason: str
    seconds: float

    @property
    def description(self) -> str:
        """One line for the job's log: the tool and its version, or why nothing was stripped."""
        return f"brain mask by {self.tool} ({self.reason}; {self.seconds:.1f} s, {int(self.brain.sum())} voxels)"


def nonzero_volume_ml(flair: np.ndarray, affine: np.ndarray) -> float:
    """Volume (mL) of a FLAIR's nonzero voxels, ``count * |det(affine[:3, :3])| / 1000``."""
    return float(np.count_nonzero(flair)) * abs(float(np.linalg.det(np.asarray(affine)[:3, :3]))) / 1000.0


def looks_skull_stripped(flair: np.ndarray, affine: np.ndarray, *, max_ml: float = STRIPPED_MAX_ML) -> bool:
    """Whether a FLAIR is already skull-stripped: its nonzero voxels are no larger than a brain.

    Parameters
    ----------
    flair : ndarray
        The imported FLAIR, shape (x, y, z).
    affine : ndarray, shape (4, 4)
        Its voxel-to-world affine (mm).
    max_ml : float
        Largest volume (mL) of nonzero voxels that is still a brain.

    Returns
    -------
    bool
        ``nonzero_volume_ml(flair, affine) <= max_ml`` and at least one voxel is 0.

    Notes
    -----
    A stripped FLAIR has a zero background and a brain of at most ~1,900 mL; a whole-head scan
    either has noise in the air (no zero voxel at all) or, with air set to 0, a head of well over
    2,000 mL. The volume rather than a voxel fraction, because the field of view varies: a
    thick-slice scan covers the head tightly, a 1 mm MNI volume is mostly background.
    """
    flair = np.asarray(flair)
    if flair.size == 0 or np.count_nonzero(flair) == flair.size:
        return False
    return nonzero_volume_ml(flair, affine) <= max_ml


def deepbet_version() -> str:
    """The installed deepbet's version (the wheel's metadata)."""
    from importlib.metadata import version

    return version("deepbet")


def deepbet_brain_mask(flair: np.ndarray, *, threads: int | None = None, threshold: float = 0.5) -> np.ndarray:
    """Brain mask of a whole-head image by deepbet, on the image's own (canonical) grid.

    Parameters
    ----------
    flair : ndarray
        The image in nibabel's closest canonical orientation (RAS+), the orientation deepbet's
        networks were trained in (its ``run`` reorients with ``nib.as_closest_canonical``).
    threads : int, optional
        torch intra-op threads (the rule's ``threads``); ``None`` keeps torch's default.
    threshold : float
        Probability above which a voxel is brain (deepbet's default 0.5).

    Returns
    -------
    brain : ndarray of bool, same shape as ``flair``

    Notes
    -----
    deepbet's own steps, without its file handling: a bounding-box network at 128^3, the brain
    network at 256^3 inside the box (nearest-exact resampling both ways), largest connected
    component, holes filled. It runs on the CPU: the networks take about 2 s there, so the GPU
    is not worth a ``gpu`` resource.

    References
    ----------
    Fisch L, et al. "deepbet: Fast brain extraction of T1-weighted MRI using Convolutional
    Neural Networks", Computers in Biology and Medicine 179 (2024) 108845.
    """
    import torch
    from deepbet.bet import BrainExtraction

    if threads is not None:
        torch.set_num_threads(int(threads))
    flair = np.ascontiguousarray(flair, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch.jit's deprecation notes on loading
        warnings.simplefilter("ignore", FutureWarning)
        bet = BrainExtraction(no_gpu=True)
    try:
        probability = bet.run_model(flair.copy())
        return np.asarray(bet.postprocess(probability > threshold), dtype=bool)
    except (AssertionError, ValueError):
        # deepbet found no foreground: its bounding box asserts, or the largest component of an
        # empty mask fails (np.bincount(...).argmax() of nothing); the brain is empty, which
        # check_brain_volume refuses with the subject and file named.
        return np.zeros(flair.shape, dtype=bool)


def check_brain_volume(
    brain: np.ndarray, affine: np.ndarray, *, subject: str | None = None, path: str | os.PathLike | None = None
) -> float:
    """Refuse a stripping result without a brain; warn on one far larger than a brain.

    Parameters
    ----------
    brain : ndarray of bool
        The brain mask.
    affine : ndarray, shape (4, 4)
        Its affine (mm).
    subject, path : optional
        Named in the message.

    Returns
    -------
    float
        The mask's volume in mL.

    Raises
    ------
    InputError
        Under ``BRAIN_MIN_ML`` (100 mL): the scan holds no brain the tool could find (wrong
        modality, a phantom, a scan of another body part), and a mask that small would make
        every later stage meaningless.

    Notes
    -----
    Over ``BRAIN_MAX_ML`` (2,100 mL) is a ``UserWarning``: the mask probably kept skull, scalp or
    neck; the run goes on, the log and console say so.
    """
    volume = nonzero_volume_ml(np.asarray(brain, dtype=bool), affine)
    where = _where(path, subject)
    if volume < BRAIN_MIN_ML:
        raise InputError(
            f"{where}: skull stripping found {volume:.0f} mL of brain (under {BRAIN_MIN_ML:.0f} mL): "
            "no brain in this scan? Check that it is a head FLAIR; set preprocess.skull_strip: none "
            "(radfusion predict --skull-strip none) if it is already skull-stripped"
        )
    if volume > BRAIN_MAX_ML:
        warnings.warn(
            f"{where}: the brain mask is {volume:.0f} mL, more than any brain ({BRAIN_MAX_ML:.0f} mL): it "
            "probably includes skull, scalp or neck; check the brain mask before trusting the features",
            stacklevel=2,
        )
    return volume


def subject_brain_mask(
    flair: np.ndarray,
    affine: np.ndarray,
    *,
    mode: str = "auto",
    threads: int | None = None,
    subject: str | None = None,
    path: str | os.PathLike | None = None,
) -> BrainMaskResult:
    """The brain mask of one imported FLAIR under ``preprocess.skull_strip``.

    Parameters
    ----------
    flair : ndarray
        The imported FLAIR (canonical orientation, before normalization).
    affine : ndarray, shape (4, 4)
        Its affine.
    mode : {'auto', 'always', 'none'}
        ``auto``: strip unless :func:`looks_skull_stripped`; ``always``: strip; ``none``: the
        nonzero voxels (the FLAIR is skull-stripped, or the user wants the whole image).
    threads : int, optional
        Threads of the stripping network.
    subject, path : optional
        Named in messages.

    Returns
    -------
    BrainMaskResult
        The mask (bool, same shape) and how it was made.
    """
    from radfusion.normalize import brain_mask, check_background

    if mode not in SKULL_STRIP_MODES:
        raise ValueError(f"expected skull_strip one of {SKULL_STRIP_MODES}, got {mode!r}")
    start = time.perf_counter()
    if mode == "none" or (mode == "auto" and looks_skull_stripped(flair, affine)):
        reason = (
            "preprocess.skull_strip: none"
            if mode == "none"
            else f"already skull-stripped: nonzero voxels {nonzero_volume_ml(flair, affine):.0f} mL <= {STRIPPED_MAX_ML:.0f} mL"
        )
        brain = brain_mask(flair)
        check_background(brain, subject=subject, path=path)
        return BrainMaskResult(brain, False, "nonzero voxels", reason, time.perf_counter() - start)
    reason = (
        "preprocess.skull_strip: always"
        if mode == "always"
        else f"not skull-stripped: nonzero voxels {nonzero_volume_ml(flair, affine):.0f} mL > {STRIPPED_MAX_ML:.0f} mL"
    )
    brain = deepbet_brain_mask(flair, threads=threads)
    check_brain_volume(brain, affine, subject=subject, path=path)
    return BrainMaskResult(brain, True, f"{TOOL} {deepbet_version()}", reason, time.perf_counter() - start)
