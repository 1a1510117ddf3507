"""End-to-end test of benchmarks/calibrate_demo.py on a tiny fake results folder."""

from __future__ import annotations

import subprocess
import sys

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from conftest import PROJECT, shared_data
from radfusion.evaluate import SUBJECT_COLUMNS

SCRIPT = PROJECT / "benchmarks" / "calibrate_demo.py"
SHAPE = (20, 18, 12)


def save(path, data, affine):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), affine), str(path))


def fake_subject(results, subject, *, voxel, cubes, specks=0, bright=0, tissues_dir=None, quantized=False):
    """Brain: GM (x < 10) at 0.3 and WM (x >= 10) at 0.4; 2x2x2 lesion cubes at 0.8 in WM, lone
    lesion voxels (``specks``), ``bright`` non-lesion GM voxels at 0.9. CR separates lesions
    perfectly (AUC 1), RE inversely (AUC 0). ``quantized``: tissue maps as the demo rule writes
    them, uint8 with the scale slope 1/255."""
    affine = np.diag([voxel, voxel, voxel, 1.0])
    brain = np.zeros(SHAPE, bool)
    brain[2:18, 2:16, 1:11] = True
    flair = np.zeros(SHAPE, np.float32)
    flair[2:10][brain[2:10]] = 0.3
    flair[10:18][brain[10:18]] = 0.4
    gm, wm = np.zeros(SHAPE, np.float32), np.zeros(SHAPE, np.float32)
    gm[2:10], wm[10:18] = 0.95, 0.95
    gm *= brain
    wm *= brain
    mask = np.zeros(SHAPE, np.uint8)
    for k in range(cubes):
        mask[11 + 3 * (k % 2) : 13 + 3 * (k % 2), 3 + 3 * (k // 2) : 5 + 3 * (k // 2), 2:4] = 1
    for k in range(specks):
        mask[16, 14, 2 + 3 * k] = 1
    flair[mask == 1] = 0.8
    flair[3, 3, 1 : 1 + bright] = 0.9
    gm[3, 3, 1 : 1 + bright] = 0.5
    save(results / "normalized" / subject / "flair.nii.gz", flair, affine)
    save(results / "normalized" / subject / "brain.nii.gz", brain.astype(np.uint8), affine)
    save(results / "nifti" / subject / "mask.nii.gz", mask, affine)
    save(results / "features" / subject / "cr.nii.gz", (brain + 10.0 * mask).astype(np.float32), affine)
    save(results / "features" / subject / "re.nii.gz", (2.0 - mask).astype(np.float32), affine)
    if tissues_dir is not None:
        tissues = np.stack([1 - gm - wm, gm, wm], axis=-1)
        image = nib.Nifti1Image(np.rint(tissues * 255).astype(np.uint8) if quantized else tissues, affine)
        if quantized:
            image.header.set_slope_inter(1 / 255, 0.0)
        (tissues_dir / subject).mkdir(parents=True, exist_ok=True)
        nib.save(image, str(tissues_dir / subject / "tissues.nii.gz"))
    return {"n_other": int(np.count_nonzero(brain & (mask == 0))), "gm": gm, "wm": wm, "affine": affine}


@pytest.fixture
def fake_run(tmp_path):
    results, tissues, cache = tmp_path / "results", tmp_path / "demo", tmp_path / "cache"
    info = {
        "demo01": fake_subject(results, "demo01", voxel=1.0, cubes=2, bright=4, tissues_dir=tissues),
        "demo02": fake_subject(results, "demo02", voxel=0.8, cubes=4, specks=1, bright=2, tissues_dir=tissues,
                               quantized=True),
        "demo03": fake_subject(results, "demo03", voxel=1.0, cubes=3, bright=6),  # no tissue maps
        "patient99": fake_subject(results, "patient99", voxel=1.0, cubes=1),
    }
    # The real patient's MNI tissue maps, already in the cache (as a previous run leaves them).
    real = info["patient99"]
    (cache / "patient99").mkdir(parents=True)
    np.savez_compressed(cache / "patient99" / "mni_gm_wm.npz", gm=real["gm"], wm=real["wm"], affine=real["affine"])
    rows = []
    for k, (subject, dice) in enumerate((("demo01", 0.2), ("demo02", 0.4), ("demo03", 0.9))):
        for baseline, value in (("all_background", 0.0), ("flair_threshold", dice)):
            row = dict.fromkeys(SUBJECT_COLUMNS, 0)
            row.update(subject=subject, fold=k, dice=value)
            rows.append({"baseline": baseline, "threshold": 0.5 if value else np.nan, **row})
    (results / "eval").mkdir()
    pd.DataFrame(rows).to_csv(results / "eval" / "baselines.tsv", sep="\t", index=False)
    return tmp_path, info


def test_calibrate_demo_end_to_end(fake_run):
    root, info = fake_run
    out = root / "out"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--results", str(root / "results"), "--tissues-dir", str(root / "demo"),
         "--cache", str(root / "cache"), "--real", "patient99", "--out", str(out), "--name", "fake",
         "--real-data", str(root / "no_such_folder")],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "CPU:" in result.stdout and "| measure |" in result.stdout
    summary = pd.read_csv(out / "demo_calibration_fake.tsv", sep="\t").set_index("measure")
    subjects = pd.read_csv(out / "demo_calibration_fake_subjects.tsv", sep="\t").set_index("subject")
    assert sorted(subjects.index) == ["demo01", "demo02", "demo03", "patient99"]
    assert (subjects["group"] == "real").tolist() == [False, False, False, True]
    # Bright voxels: every lesion is at 0.8, so the bright ones are exactly those at 0.9.
    bright = {s: 100 * b / info[s]["n_other"] for s, b in (("demo01", 4), ("demo02", 2), ("demo03", 6))}
    np.testing.assert_allclose(subjects.loc[list(bright), "bright_share"], list(bright.values()), rtol=1e-5)
    assert subjects.loc["demo01", "bright_count"] == 4
    assert summary.loc["bright_share", "demo_median"] == pytest.approx(bright["demo01"], rel=1e-5)
    np.testing.assert_allclose(subjects["flair_auc"], [1 - bright[s] / 100 for s in bright] + [1.0], rtol=1e-5)
    assert summary.loc["cr_auc", ["demo_median", "demo_min", "demo_max", "patient99"]].tolist() == [1, 1, 1, 1]
    assert summary.loc["re_auc", "demo_max"] == 0 and summary.loc["re_auc", "patient99"] == 0
    # Ratios: lesion 0.8 / WM 0.4, GM 0.3 / WM 0.4; demo03 has no tissue maps (NaN, not counted).
    assert summary.loc["lesion_wm_ratio", "demo_n"] == 2
    assert summary.loc["lesion_wm_ratio", ["demo_median", "patient99"]].tolist() == pytest.approx([2.0, 2.0])
    assert summary.loc["gm_wm_ratio", ["demo_min", "demo_max"]].tolist() == pytest.approx([0.75, 0.75])
    assert np.isnan(subjects.loc["demo03", "gm_wm_ratio"])
    # Burden: 2, 4 (+ one lone voxel under 3 mm^3) and 3 cubes of 8 voxels; demo02 at 0.8 mm.
    assert subjects.loc[["demo01", "demo02", "demo03", "patient99"], "lesions"].tolist() == [2, 4, 3, 1]
    assert summary.loc["lesions", ["demo_median", "demo_min", "demo_max"]].tolist() == [3, 2, 4]
    assert summary.loc["median_lesion_mm3", "demo_min"] == pytest.approx(8 * 0.8**3, rel=1e-5)
    assert summary.loc["median_lesion_mm3", "demo_median"] == pytest.approx(8.0)
    assert subjects.loc["demo02", "total_volume_ml"] == pytest.approx(33 * 0.8**3 / 1000, rel=1e-5)
    assert summary.loc["small_share", "demo_max"] == 100
    # Threshold baseline: the run's flair_threshold rows for the demo; one real patient has no
    # other to fit on (NaN), but its own best threshold (lesions are each slice's maximum) is exact.
    demo_dice = summary.loc["threshold_dice", ["demo_median", "demo_min", "demo_max"]].tolist()
    assert demo_dice == pytest.approx([0.4, 0.2, 0.9])
    assert np.isnan(summary.loc["threshold_dice", "patient99"])
    assert summary.loc["own_dice", "patient99"] == pytest.approx(1.0)
    assert summary.loc["own_threshold", "patient99"] == pytest.approx(1.0)
    markdown = (out / "demo_calibration_fake.md").read_text()
    assert "| measure | demo median (range) | patient99 |" in markdown
    assert "| lesions | 3 (2–4) | 1 |" in markdown
    assert (out / "demo_calibration_fake.png").stat().st_size > 10_000


def test_calibrate_demo_real_patients_only(tmp_path):
    """The real patients alone, prepared from ../shared/data as the workflow's rules would (slow)."""
    data = shared_data("open_ms_data")
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--real", "patient07", "patient26", "--real-data", str(data),
         "--cache", str(tmp_path / "cache"), "--out", str(out)],
        capture_output=True, text=True, timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    summary = pd.read_csv(out / "demo_calibration_real.tsv", sep="\t").set_index("measure")
    assert summary.loc["flair_auc", ["patient07", "patient26"]].min() > 0.85
    assert summary.loc["threshold_dice", ["patient07", "patient26"]].notna().all()
