"""Normalization (SPEC stage 2)."""

from __future__ import annotations

import numpy as np
import pytest

from radfusion.io import import_subject, load_volume
from radfusion.normalize import normalize_intensity, quantize_8bit

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
