"""Skull stripping (issue 23): the "already stripped" rule, the brain-volume checks, deepbet on real scans."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from radfusion.io import InputError, read_volume
from radfusion.normalize import normalize_intensity
from radfusion.predict import canonical_to_original
from radfusion.skullstrip import (
    BRAIN_MAX_ML,
    BRAIN_MIN_ML,
    STRIPPED_MAX_ML,
    check_brain_volume,
    looks_skull_stripped,
    nonzero_volume_ml,
    subject_brain_mask,
)

from conftest import shared_data

ONE_MM = np.eye(4)


def ball(shape, radius, voxel_mm=(1.0, 1.0, 1.0)):
    """A ball of ``radius`` mm at the volume's centre, in voxels of ``voxel_mm``."""
    grid = np.indices(shape, dtype=np.float64)
    centre = [(n - 1) / 2 for n in shape]
    distance = sum(((g - c) * v) ** 2 for g, c, v in zip(grid, centre, voxel_mm))
    return distance <= radius**2


def dice(a, b):
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def test_nonzero_volume_uses_the_voxel_volume():
    volume = np.zeros((10, 10, 10))
    volume[:5] = 3
    affine = np.diag([0.7, 0.7, 3.0, 1.0])
    assert nonzero_volume_ml(volume, affine) == pytest.approx(500 * 0.7 * 0.7 * 3.0 / 1000)


def test_already_stripped_is_a_brain_sized_foreground_with_zero_background():
    shape = (140, 140, 140)
    brain = ball(shape, 65)  # 1,150 mL: a brain
    head = ball(shape, 85)  # 2,572 mL: a head with air set to 0
    assert nonzero_volume_ml(brain, ONE_MM) < STRIPPED_MAX_ML < nonzero_volume_ml(head, ONE_MM)
    assert looks_skull_stripped(brain.astype(np.float32), ONE_MM)
    assert not looks_skull_stripped(head.astype(np.float32), ONE_MM)
    # noise in the air: no voxel is 0, whatever the volume
    assert not looks_skull_stripped(np.ones((20, 20, 20), np.float32), ONE_MM)


def test_none_and_auto_keep_the_nonzero_voxels_of_a_stripped_flair():
    flair = ball((60, 60, 40), 20).astype(np.float32) * 100
    for mode in ("none", "auto"):
        result = subject_brain_mask(flair, ONE_MM, mode=mode, subject="s1")
        np.testing.assert_array_equal(result.brain, flair != 0)
        assert not result.stripped and result.tool == "nonzero voxels"
    with pytest.raises(ValueError, match="skull_strip one of"):
        subject_brain_mask(flair, ONE_MM, mode="sometimes")


def test_a_mask_without_brain_is_refused_naming_subject_and_file():
    empty = np.zeros((50, 50, 50), bool)
    empty[:4, :4, :4] = True  # 0.064 mL
    with pytest.raises(InputError, match=r"subject 's7', file 'x\.nii\.gz': skull stripping found 0 mL of brain"):
        check_brain_volume(empty, ONE_MM, subject="s7", path="x.nii.gz")
    assert BRAIN_MIN_ML == 100


def test_a_mask_larger_than_any_brain_warns():
    huge = ball((160, 160, 160), 80)  # 2,144 mL
    assert nonzero_volume_ml(huge, ONE_MM) > BRAIN_MAX_ML
    with pytest.warns(UserWarning, match=r"subject 's8', file 'y\.nii\.gz': the brain mask is 2\d{3} mL"):
        check_brain_volume(huge, ONE_MM, subject="s8", path="y.nii.gz")
    brain = ball((140, 140, 140), 65)
    assert check_brain_volume(brain, ONE_MM) == pytest.approx(nonzero_volume_ml(brain, ONE_MM))


def test_normalization_uses_the_given_brain_mask():
    flair = np.full((20, 20, 4), 500.0, np.float32)  # "scalp" everywhere
    brain = np.zeros(flair.shape, bool)
    brain[5:15, 5:15] = True
    flair[brain] = np.linspace(100, 200, brain.sum())
    normalized = normalize_intensity(flair, 0.0, 100.0, brain=brain)
    assert (normalized[~brain] == 0).all()
    assert normalized[brain].min() == 0 and normalized[brain].max() == 1  # percentiles of the brain only
    with pytest.raises(ValueError, match="brain mask of the volume's shape"):
        normalize_intensity(flair, brain=brain[:, :, :2])


def test_a_scan_without_brain_stops_the_stage():
    phantom = np.full((48, 48, 24), 7.0, np.float32)  # a uniform phantom: deepbet finds nothing
    with pytest.raises(InputError, match=r"subject 'n1', file 'n\.nii': skull stripping found 0 mL"):
        subject_brain_mask(phantom, np.diag([4.0, 4.0, 4.0, 1.0]), mode="auto", threads=1, subject="n1", path="n.nii")


# --- on the shared clinical FLAIRs (real, whole-head, 2D axial 3-4 mm) --------------------------


@pytest.fixture(scope="module")
def patient09():
    folder = shared_data("open_ms_data", "clinical_flair", "patient09_study2")
    return folder / "FLAIR.nii.gz", folder / "brain_mask.nii.gz"


def test_deepbet_matches_the_reference_on_a_clinical_scan(patient09):
    flair_path, reference_path = patient09
    image = read_volume(flair_path, subject="patient09_study2")
    flair = np.asarray(image.dataobj, dtype=np.float32)
    assert not looks_skull_stripped(flair, image.affine)  # whole head: auto strips it
    result = subject_brain_mask(flair, image.affine, mode="auto", threads=2, subject="patient09_study2")
    assert result.stripped and result.tool.startswith("deepbet ")
    reference = np.asarray(read_volume(reference_path).dataobj) > 0.5
    assert dice(result.brain, reference) >= 0.95
    # mapped back onto the scan's own grid exactly (axes permuted and flipped, nothing resampled)
    raw = nib.load(str(flair_path))
    back = canonical_to_original(result.brain.astype(np.uint8), raw.affine)
    raw_reference = np.asarray(nib.load(str(reference_path)).dataobj) > 0.5
    assert back.shape == raw.shape[:3]
    assert dice(back.astype(bool), raw_reference) == pytest.approx(dice(result.brain, reference))
    # stripped with its own mask, the same scan counts as already stripped
    assert looks_skull_stripped(np.where(result.brain, flair, 0), image.affine)
