"""Tests of radfusion.cohort: contrast, burden, MNI tissue maps and the threshold baseline."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from conftest import shared_data
from radfusion.cohort import (
    lesion_auc,
    lesion_burden,
    lesion_contrast,
    lesion_slices,
    mni_tissue_maps,
    threshold_baseline,
)
from radfusion.evaluate import best_flair_threshold, evaluate_baselines
from radfusion.slices import export_slices, save_slices


def test_lesion_auc_perfect_reversed_and_outside_brain_ignored():
    rng = np.random.default_rng(0)
    values = rng.uniform(0.1, 0.5, size=(10, 10, 10))
    brain = np.zeros(values.shape, bool)
    brain[1:9, 1:9, 1:9] = True
    lesion = np.zeros(values.shape, bool)
    lesion[3:5, 3:5, 3:5] = True
    values[lesion] = 0.9
    values[0, 0, 0] = 5.0  # outside the brain, brighter than any lesion: must not count
    assert lesion_auc(values, brain, lesion) == 1.0
    assert lesion_auc(-values, brain, lesion) == 0.0
    assert lesion_auc(np.ones(values.shape), brain, lesion) == 0.5


def contrast_case():
    """Brain (x < 10) of GM at 0.3 and WM at 0.4, lesions at 0.8 inside WM, bright voxels at 0.9."""
    shape = (20, 10, 10)
    flair = np.zeros(shape, np.float32)
    brain = np.zeros(shape, bool)
    brain[:16] = True
    gm, wm = np.zeros(shape), np.zeros(shape)
    gm[:8], wm[8:16] = 0.95, 0.95
    wm[16:] = 1.0  # outside the brain: flair 0, must not enter the WM median
    flair[:8], flair[8:16] = 0.3, 0.4
    lesion = np.zeros(shape, bool)
    lesion[8:12, :, :] = True  # 400 lesion voxels, WM probability 0.95: excluded from WM
    flair[lesion] = 0.8
    flair[0, 0, :7] = 0.9  # 7 bright non-lesion voxels
    gm[0, 0, :7] = 0.5
    flair[0, 1, :3] = 0.8  # 3 ties with the lesion median: not brighter
    return flair, brain, lesion, gm, wm


def test_lesion_contrast_bright_share_ratios_and_auc():
    flair, brain, lesion, gm, wm = contrast_case()
    result = lesion_contrast(flair, brain, lesion, wm=wm, gm=gm)
    n_other = 16 * 100 - 400
    assert result["nonlesion_voxels"] == n_other and result["lesion_voxels"] == 400
    assert result["lesion_median"] == pytest.approx(0.8)
    assert result["bright_count"] == 7
    assert result["bright_share"] == pytest.approx(100 * 7 / n_other)
    assert result["auc"] == pytest.approx((n_other - 10 + 0.5 * 3) / n_other)
    assert result["wm_median"] == pytest.approx(0.4)  # not 0.8 (lesions) nor 0 (outside the brain)
    assert result["gm_median"] == pytest.approx(0.3)
    assert result["lesion_wm_ratio"] == pytest.approx(2.0)
    assert result["gm_wm_ratio"] == pytest.approx(0.75)
    bare = lesion_contrast(flair, brain, lesion)
    assert np.isnan(bare["lesion_wm_ratio"]) and np.isnan(bare["gm_wm_ratio"])
    assert bare["bright_count"] == 7
    with pytest.raises(ValueError):
        lesion_contrast(flair, brain, np.zeros_like(lesion))


def test_lesion_burden_anisotropic_voxels_and_connectivity():
    mask = np.zeros((30, 30, 10), np.uint8)
    mask[1:4, 1:3, 1] = 1  # 6 voxels
    mask[10:15, 1, 1] = 1  # 5 voxels
    mask[20:25, 20:24, 2:4] = 1  # 40 voxels
    mask[5:7, 10:12, 5:7] = 1  # two 2x2x2 cubes touching at one corner only
    mask[7:9, 12:14, 7:9] = 1
    voxel = 0.5 * 0.5 * 2.0  # anisotropic 0.5 x 0.5 x 2 mm: 0.5 mm^3
    burden = lesion_burden(mask, voxel)
    # 6 voxels = 3 mm^3 (kept, exactly at the minimum), 5 voxels = 2.5 mm^3 dropped, 40 voxels =
    # 20 mm^3, the cubes one lesion of 8 mm^3 (26-connectivity).
    assert burden["lesions"] == 3
    assert burden["median_lesion_mm3"] == pytest.approx(8.0)
    assert burden["small_share"] == pytest.approx(100 * 2 / 3)
    assert burden["total_volume_ml"] == pytest.approx((6 + 5 + 40 + 16) * 0.5 / 1000)
    six = lesion_burden(mask, voxel, connectivity=6)
    assert six["lesions"] == 4 and six["median_lesion_mm3"] == pytest.approx(4.0)
    one_mm = lesion_burden(mask, 1.0)  # 1 mm voxels: the 5-voxel line is 5 mm^3 and counts
    assert one_mm["lesions"] == 4
    empty = lesion_burden(np.zeros((4, 4, 4)), 1.0)
    assert empty["lesions"] == 0 and np.isnan(empty["median_lesion_mm3"]) and empty["total_volume_ml"] == 0


def test_mni_tissue_maps_shifted_grid_recovers_the_template():
    rng = np.random.default_rng(1)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-20.0, -30.0, -10.0]
    template = SimpleNamespace(gm=rng.random((12, 14, 10)).astype(np.float32),
                               wm=rng.random((12, 14, 10)).astype(np.float32), affine=affine)
    shifted = affine.copy()
    shifted[:3, 3] += affine[:3, :3] @ [3, 2, 1]  # voxel (0, 0, 0) sits on template voxel (3, 2, 1)
    gm, wm = mni_tissue_maps((9, 12, 9), shifted, template)
    np.testing.assert_allclose(gm, template.gm[3:12, 2:14, 1:10], atol=1e-6)
    np.testing.assert_allclose(wm, template.wm[3:12, 2:14, 1:10], atol=1e-6)
    # Half a template voxel along x at 1 mm spacing: trilinear interpolation is exact on a ramp.
    template.gm = np.broadcast_to(np.arange(12, dtype=np.float32)[:, None, None], (12, 14, 10)).copy()
    fine = np.diag([1.0, 2.0, 2.0, 1.0])
    fine[:3, 3] = affine[:3, 3] + [1.0, 0.0, 0.0]
    gm, _ = mni_tissue_maps((20, 14, 10), fine, template)
    np.testing.assert_allclose(gm[:, 0, 0], 0.5 + 0.5 * np.arange(20), atol=1e-5)
    far = affine.copy()
    far[:3, 3] += 1000.0
    assert not mni_tissue_maps((3, 3, 3), far, template)[1].any()  # outside the template: 0


def random_subject(rng, shape=(16, 14, 12)):
    brain = np.zeros(shape, bool)
    brain[2:14, 2:12, 1:11] = True
    flair = np.where(brain, rng.uniform(0.05, 0.7, shape), 0).astype(np.float32)
    mask = np.zeros(shape, np.uint8)
    for _ in range(4):
        x, y, z = rng.integers(3, 10), rng.integers(3, 9), rng.integers(1, 10)
        mask[x : x + 2, y : y + 2, z] = 1
    flair[mask == 1] += rng.uniform(0.1, 0.4, size=int(mask.sum())).astype(np.float32)
    return flair, mask, brain


def test_lesion_slices_equal_the_slice_export():
    flair, mask, brain = random_subject(np.random.default_rng(2))
    ours = lesion_slices(flair, mask, brain, stride=2)
    export = export_slices(flair, flair, flair, mask, brain, stride=2)
    np.testing.assert_array_equal(ours["slice_index"], export["slice_index"])
    np.testing.assert_array_equal(ours["flair"], export["images"][:, 0])
    np.testing.assert_array_equal(ours["masks"], export["masks"])
    assert ours["flair"].max() == 1.0  # each slice min-max scaled


def test_threshold_baseline_is_evaluate_baselines_with_one_fold_per_subject(tmp_path):
    rng = np.random.default_rng(3)
    slices, paths = {}, {}
    for s in ("a", "b", "c"):
        flair, mask, brain = random_subject(rng)
        slices[s] = lesion_slices(flair, mask, brain)
        paths[s] = tmp_path / f"{s}.npz"
        save_slices(export_slices(flair, flair, flair, mask, brain), paths[s])
    ours = threshold_baseline(slices).set_index("subject")
    theirs = evaluate_baselines(paths, {"a": 0, "b": 1, "c": 2})
    theirs = theirs[theirs["baseline"] == "flair_threshold"].set_index("subject")
    np.testing.assert_allclose(ours.loc[["a", "b", "c"], "threshold"], theirs.loc[["a", "b", "c"], "threshold"])
    np.testing.assert_allclose(ours.loc[["a", "b", "c"], "dice"], theirs.loc[["a", "b", "c"], "dice"])
    own = best_flair_threshold([slices["b"]["flair"]], [slices["b"]["masks"]])
    assert ours.loc["b", ["own_threshold", "own_dice"]].tolist() == pytest.approx(list(own))
    assert ours.loc["b", "own_dice"] >= ours.loc["b", "dice"]
    alone = threshold_baseline({"a": slices["a"]})
    assert np.isnan(alone.loc[0, "threshold"]) and np.isnan(alone.loc[0, "dice"])


def test_real_patient_contrast_with_mni_tissues():
    """On a real FLAIR in MNI space the resampled template puts GM brighter than WM and lesions
    well above WM (the issue's lesion/WM 1.33-1.37)."""
    from radfusion.io import read_volume
    from radfusion.normalize import brain_mask, normalize_intensity

    folder = shared_data("open_ms_data", "patient26")
    image = read_volume(folder / "FLAIR.nii.gz")
    raw = np.asarray(image.dataobj, dtype=np.float32)
    mask = np.asarray(read_volume(folder / "lesion_mask.nii.gz").dataobj) > 0
    gm, wm = mni_tissue_maps(raw.shape, image.affine)
    result = lesion_contrast(normalize_intensity(raw), brain_mask(raw), mask, wm=wm, gm=gm)
    assert result["auc"] > 0.85
    assert 1.1 < result["lesion_wm_ratio"] < 1.7
    assert result["gm_wm_ratio"] > 1.0
