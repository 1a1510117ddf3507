"""Brain mask and normalization (SPEC stage 2)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from radfusion.io import import_subject, load_volume
from radfusion.normalize import brain_mask, check_background, normalize_intensity, quantize_8bit

from conftest import shared_data


def test_percentile_clipping_and_scaling():
    volume = np.zeros((10, 10, 10))
    volume[1:9, 1:9, 1:9] = np.linspace(1, 1000, 512).reshape(8, 8, 8)
    out = normalize_intensity(volume, 0.5, 99.5)
    nonzero = volume[volume != 0]
    lo, hi = np.percentile(nonzero, [0.5, 99.5])
    assert out.dtype == np.float32
    assert out.min() == 0 and out.max() == 1
    assert (out[volume == 0] == 0).all()
    inside = (volume > lo) & (volume < hi)
    np.testing.assert_allclose(out[inside], (volume[inside] - lo) / (hi - lo), rtol=1e-6)
    assert (out[volume >= hi] == 1).all()


def test_percentiles_ignore_background():
    volume = np.zeros((20, 20, 20))
    volume[5:10, 5:10, 5:10] = 100.0
    volume[5, 5, 5] = 200.0
    # With zeros counted, the 0.5th percentile would be 0; nonzero voxels only give 100.
    out = normalize_intensity(volume, 0.5, 99.5)
    assert out[6, 6, 6] == 0.0


def negative_edge_volume() -> np.ndarray:
    """A skull-stripped-like volume whose brain has a rim of slightly negative voxels (as bias
    correction and spline resampling leave them), enough to make the 0.5th percentile negative."""
    rng = np.random.default_rng(3)
    volume = np.zeros((20, 20, 20))
    volume[3:17, 3:17, 3:17] = rng.uniform(-0.2, -0.01, (14, 14, 14))  # the rim stays negative
    volume[4:16, 4:16, 4:16] = rng.uniform(10, 100, (12, 12, 12))
    return volume


def test_negative_edge_voxels_are_brain_and_the_background_stays_zero():
    volume = negative_edge_volume()
    brain = brain_mask(volume)
    assert brain.dtype == bool
    np.testing.assert_array_equal(brain, volume != 0)
    assert brain[3, 3, 3] and volume[3, 3, 3] < 0  # a negative edge voxel is brain
    lo, hi = np.percentile(volume[brain], [0.5, 99.5])
    assert lo < 0  # the case of the issue: scaling the background too would lift it to -lo / (hi - lo)
    out = normalize_intensity(volume, 0.5, 99.5)
    assert (out[volume == 0] == 0).all()
    assert (quantize_8bit(out)[volume == 0] == 0).all()
    np.testing.assert_allclose(out[brain], np.clip((volume[brain] - lo) / (hi - lo), 0, 1), rtol=1e-6, atol=1e-7)
    # brain voxels at or below the lower percentile are 0 too: "normalized > 0" is not the brain
    assert np.count_nonzero(out) < np.count_nonzero(brain)


def test_brain_mask_refuses_non_real_input():
    with pytest.raises(TypeError, match="real-valued"):
        brain_mask(np.array(["a", "b"]))


def test_a_flair_without_zero_background_is_warned_naming_the_subject():
    volume = negative_edge_volume() + 5.0  # no voxel is 0: not skull-stripped
    with pytest.warns(UserWarning, match=r"subject 'p07', file 'in/p07\.nii\.gz': no voxel is 0.*skull and air"):
        check_background(brain_mask(volume), subject="p07", path="in/p07.nii.gz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_background(brain_mask(negative_edge_volume()), subject="p07")  # a zero background: silent


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 4)), np.full((4, 4, 4), 3.0)])
def test_constant_or_empty_volume_is_refused(bad):
    with pytest.raises(ValueError):
        normalize_intensity(bad)


def test_invalid_percentiles():
    with pytest.raises(ValueError, match="lower_percentile < upper_percentile"):
        normalize_intensity(np.ones((3, 3, 3)), 99, 1)


def test_quantize_8bit_is_round_255x():
    x = np.array([0.0, 0.1, 0.5, 1 / 255 * 3.4, 1.0], np.float32)
    np.testing.assert_array_equal(quantize_8bit(x), [0, 26, 128, 3, 255])
    assert quantize_8bit(x).dtype == np.uint8
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        quantize_8bit(np.array([1.5]))


def test_real_patient_normalizes_with_bright_lesions(tmp_path):
    patient = shared_data("open_ms_data", "patient26")
    flair_path, mask_path = tmp_path / "flair.nii.gz", tmp_path / "mask.nii.gz"
    import_subject(patient / "FLAIR.nii.gz", patient / "lesion_mask.nii.gz", flair_path, mask_path, subject="patient26")
    flair, _ = load_volume(flair_path)
    mask, _ = load_volume(mask_path, dtype=np.uint8)
    out = normalize_intensity(flair)
    assert out.dtype == np.float32 and out.min() == 0.0 and out.max() == 1.0
    brain = flair != 0
    assert np.median(out[mask == 1]) > np.median(out[brain])
    # Lesions are hyperintense: most lesion voxels lie above the brain median.
    assert np.mean(out[mask == 1] > np.median(out[brain])) > 0.9


def test_real_patient26_background_stays_zero_despite_negative_edge_voxels(tmp_path):
    """Issue 16: patient26 holds 5,860 negative voxels and a negative 0.5th percentile."""
    patient = shared_data("open_ms_data", "patient26")
    flair_path = tmp_path / "flair.nii.gz"
    import_subject(patient / "FLAIR.nii.gz", None, flair_path, None, subject="patient26")
    flair, _ = load_volume(flair_path)
    brain = brain_mask(flair)
    assert np.count_nonzero(flair < 0) == 5860 and np.count_nonzero(brain) == 1_122_604
    lo = np.percentile(flair[brain], 0.5)
    assert lo < 0  # scaling the background too would lift it to -lo / (hi - lo) = 0.0007
    out = normalize_intensity(flair)
    assert (out[~brain] == 0).all() and (quantize_8bit(out)[~brain] == 0).all()
    assert (out[brain & (flair > lo)] > 0).all()  # every brain voxel above the percentile is > 0
