"""Import stage (SPEC stage 1) and the bad-input cases of SPEC's last section."""

from __future__ import annotations

import gzip
import json
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from radfusion.io import (
    InputError,
    atomic_output,
    check_sample_sheet,
    dicom_to_nifti,
    import_subject,
    read_volume,
)

from conftest import shared_data


def outputs(tmp_path):
    return tmp_path / "out" / "flair.nii.gz", tmp_path / "out" / "mask.nii.gz"


def assert_nothing_written(tmp_path):
    out = tmp_path / "out"
    assert not out.exists() or not any(out.iterdir()), f"partial output left: {list(out.iterdir())}"


def test_import_nifti_passes_through_in_canonical_orientation(tmp_path, write_nifti):
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    lps = np.diag([-2.0, -2.0, 2.0, 1.0])  # LPS+ axes: canonical flips x and y
    flair = write_nifti("in/flair.nii.gz", data, lps)
    mask = write_nifti("in/mask.nii.gz", (data > 60).astype(np.uint8), lps)
    flair_out, mask_out = outputs(tmp_path)
    import_subject(flair, mask, flair_out, mask_out, subject="s1")
    image = nib.load(str(flair_out))
    assert nib.aff2axcodes(image.affine) == ("R", "A", "S")
    np.testing.assert_array_equal(image.get_fdata(), data[::-1, ::-1, :])
    assert image.get_data_dtype() == np.float32
    mask_image = nib.load(str(mask_out))
    assert mask_image.get_data_dtype() == np.uint8
    np.testing.assert_allclose(mask_image.affine, image.affine)
    np.testing.assert_array_equal(np.asarray(mask_image.dataobj), (data[::-1, ::-1, :] > 60))


def test_fractional_mask_is_binarized_at_threshold(tmp_path, write_nifti, small_subject):
    flair, _ = small_subject
    fractions = np.zeros((24, 20, 16), np.float32)
    fractions[5, 5, 5], fractions[6, 6, 6] = 0.4, 0.6
    mask = write_nifti("frac.nii.gz", fractions)
    flair_out, mask_out = outputs(tmp_path)
    with pytest.warns(UserWarning, match="binarized"):
        import_subject(flair, mask, flair_out, mask_out, subject="s1", mask_threshold=0.5)
    out = np.asarray(nib.load(str(mask_out)).dataobj)
    assert out.sum() == 1 and out[6, 6, 6] == 1


def test_empty_mask_is_allowed_with_a_warning(tmp_path, write_nifti, small_subject):
    flair, _ = small_subject
    mask = write_nifti("empty.nii.gz", np.zeros((24, 20, 16), np.uint8))
    flair_out, mask_out = outputs(tmp_path)
    with pytest.warns(UserWarning, match="subject 's1'.*empty"):
        import_subject(flair, mask, flair_out, mask_out, subject="s1")
    assert mask_out.exists()


def test_trailing_singleton_axis_is_accepted(write_nifti):
    path = write_nifti("x.nii.gz", np.ones((4, 5, 6, 1), np.float32))
    assert read_volume(path).shape == (4, 5, 6)


# --- bad input: a clear error naming the subject and file, and nothing half-written ---------


def _corrupt_gzip(tmp_path, small_subject):
    flair, _ = small_subject
    raw = flair.read_bytes()
    bad = tmp_path / "corrupt.nii.gz"
    bad.write_bytes(raw[: len(raw) // 2])
    return bad


def _not_gzip(tmp_path, small_subject):
    bad = tmp_path / "garbage.nii.gz"
    bad.write_bytes(b"this is not a NIfTI file at all" * 10)
    return bad


BAD_FLAIRS = {
    "missing file": (lambda tmp, w, s: tmp / "nope.nii.gz", "does not exist"),
    "corrupt gzip": (lambda tmp, w, s: _corrupt_gzip(tmp, s), "cannot be read"),
    "unreadable file": (lambda tmp, w, s: _not_gzip(tmp, s), "cannot be read"),
    "4D image": (lambda tmp, w, s: w("f4d.nii.gz", np.ones((24, 20, 16, 2), np.float32)), "expected a 3D volume"),
    "2D image": (lambda tmp, w, s: w("f2d.nii.gz", np.ones((24, 20), np.float32)), "expected a 3D volume"),
    "NaN voxels": (
        lambda tmp, w, s: w("fnan.nii.gz", np.where(np.eye(24, 20)[..., None] > 0, np.nan, 1.0).repeat(16, 2).astype(np.float32)),
        "NaN or infinite",
    ),
    "infinite voxels": (
        lambda tmp, w, s: w("finf.nii.gz", np.full((24, 20, 16), np.inf, np.float32)),
        "NaN or infinite",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FLAIRS))
def test_bad_flair_raises_naming_subject_and_file(case, tmp_path, write_nifti, small_subject):
    make, message = BAD_FLAIRS[case]
    bad = make(tmp_path, write_nifti, small_subject)
    _, mask = small_subject
    flair_out, mask_out = outputs(tmp_path)
    with pytest.raises(InputError, match=message) as err:
        import_subject(bad, mask, flair_out, mask_out, subject="sub-bad")
    assert "sub-bad" in str(err.value) and bad.name in str(err.value)
    assert_nothing_written(tmp_path)


BAD_MASKS = {
    "different shape": (lambda w, tmp: w("m_shape.nii.gz", np.zeros((24, 20, 15), np.uint8)), "shape"),
    "different affine": (
        lambda w, tmp: w("m_affine.nii.gz", np.zeros((24, 20, 16), np.uint8), np.diag([1.0, 1.0, 1.2, 1.0])),
        "different affines",
    ),
    "non-binary labels": (
        lambda w, tmp: w("m_labels.nii.gz", (np.arange(24 * 20 * 16).reshape(24, 20, 16) % 3).astype(np.int16)),
        "must be binary",
    ),
    "0/255 mask": (lambda w, tmp: w("m_255.nii.gz", np.full((24, 20, 16), 255, np.uint8)), "must be binary"),
    "NaN mask": (lambda w, tmp: w("m_nan.nii.gz", np.full((24, 20, 16), np.nan, np.float32)), "NaN or infinite"),
    "missing mask": (lambda w, tmp: tmp / "absent_mask.nii.gz", "does not exist"),
}


@pytest.mark.parametrize("case", sorted(BAD_MASKS))
def test_bad_mask_raises_naming_subject_and_file(case, tmp_path, write_nifti, small_subject):
    make, message = BAD_MASKS[case]
    bad = make(write_nifti, tmp_path)
    flair, _ = small_subject
    flair_out, mask_out = outputs(tmp_path)
    with pytest.raises(InputError, match=message) as err:
        import_subject(flair, bad, flair_out, mask_out, subject="sub-bad")
    assert "sub-bad" in str(err.value) and bad.name in str(err.value)
    assert_nothing_written(tmp_path)


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "a" / "x.nii.gz"
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list(target.parent.iterdir()) == []


# --- sample sheet ----------------------------------------------------------------------------


def sheet(subjects):
    return pd.DataFrame({"subject": subjects, "flair": ["f.nii.gz"] * len(subjects), "mask": ["m.nii.gz"] * len(subjects)})


def test_sample_sheet_duplicate_ids():
    with pytest.raises(InputError, match=r"my\.tsv: duplicate subject ID\(s\) \['a'\]"):
        check_sample_sheet(sheet(["a", "b", "a", "c"]), n_folds=2, sheet="my.tsv")


def test_sample_sheet_fewer_subjects_than_folds():
    with pytest.raises(InputError, match="3 subject\\(s\\) is fewer than the 6 folds"):
        check_sample_sheet(sheet(["a", "b", "c"]), n_folds=6, sheet="my.tsv")


def test_sample_sheet_missing_column():
    with pytest.raises(InputError, match="missing column"):
        check_sample_sheet(pd.DataFrame({"subject": ["a"], "flair": ["x"]}), n_folds=1)


def test_sample_sheet_strips_whitespace():
    out = check_sample_sheet(sheet([" a", "b "]), n_folds=2)
    assert list(out["subject"]) == ["a", "b"]


# --- real DICOM: dcm2niix reproduces the reference conversions --------------------------------

DICOM_CASES = {
    "ge_epi_dcm_qa_nih": "DCM2NIIX_regression_test_4.nii",
    "siemens_xa30_t1w_dcm_qa_xa30": "5_anat-T1w_acq-tfl.nii",
}


@pytest.mark.parametrize("case", sorted(DICOM_CASES))
def test_dicom_conversion_matches_reference(case, tmp_path):
    folder = shared_data("dicom", case)
    out = dicom_to_nifti(folder / "in", tmp_path / "series.nii", subject=case)
    ref = nib.load(str(folder / "ref" / DICOM_CASES[case]))
    got = nib.load(str(out))
    assert got.shape == ref.shape
    np.testing.assert_array_equal(np.asarray(got.dataobj), np.asarray(ref.dataobj))
    np.testing.assert_allclose(got.affine, ref.affine, atol=1e-5)
    sidecar = json.loads((tmp_path / "series.json").read_text())
    assert not any(key in sidecar for key in ("PatientName", "PatientID", "PatientBirthDate", "AcquisitionDateTime"))
    assert "RepetitionTime" in sidecar


def test_import_dicom_folder_as_flair(tmp_path):
    folder = shared_data("dicom", "siemens_xa30_t1w_dcm_qa_xa30", "in")
    flair_out = tmp_path / "out" / "flair.nii.gz"
    import_subject(folder, None, flair_out, None, subject="xa30")
    image = nib.load(str(flair_out))
    assert nib.aff2axcodes(image.affine) == ("R", "A", "S")
    assert sorted(image.shape) == [96, 128, 128]
    assert (tmp_path / "out" / "flair.json").exists()


def test_dicom_folder_with_several_series(tmp_path):
    ge = shared_data("dicom", "ge_epi_dcm_qa_nih", "in")
    xa = shared_data("dicom", "siemens_xa30_t1w_dcm_qa_xa30", "in")
    mixed = tmp_path / "mixed"
    shutil.copytree(ge, mixed / "a")
    shutil.copytree(xa, mixed / "b")
    with pytest.raises(InputError, match="subject 'sub-mixed'.*mixed.*series") as err:
        import_subject(mixed, None, tmp_path / "out" / "flair.nii.gz", None, subject="sub-mixed")
    assert str(mixed) in str(err.value)
    assert_nothing_written(tmp_path)


def test_dicom_folder_with_no_series(tmp_path):
    empty = tmp_path / "empty_dicom"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(InputError, match="subject 'sub-empty'.*empty_dicom.*no DICOM series"):
        import_subject(empty, None, tmp_path / "out" / "flair.nii.gz", None, subject="sub-empty")
    assert_nothing_written(tmp_path)


def test_dicom_4d_series_is_refused_as_flair(tmp_path):
    folder = shared_data("dicom", "ge_epi_dcm_qa_nih", "in")
    with pytest.raises(InputError, match="expected a 3D volume, got 4D"):
        import_subject(folder, None, tmp_path / "out" / "flair.nii.gz", None, subject="epi")
    assert_nothing_written(tmp_path)


# --- real NIfTI: an MS patient imports ----------------------------------------------------------


def test_real_patient_imports(tmp_path):
    patient = shared_data("open_ms_data", "patient26")
    flair_out, mask_out = outputs(tmp_path)
    import_subject(patient / "FLAIR.nii.gz", patient / "lesion_mask.nii.gz", flair_out, mask_out, subject="patient26")
    mask = np.asarray(nib.load(str(mask_out)).dataobj)
    assert mask.shape == (182, 218, 182)
    assert 7000 < mask.sum() < 9500
    with gzip.open(flair_out) as handle:  # a valid gzip stream
        assert len(handle.read(348)) == 348


def test_atomic_output_files_get_usual_permissions(tmp_path):
    import os
    import stat

    umask = os.umask(0o022)
    os.umask(umask)
    target = tmp_path / "x.txt"
    with atomic_output(target) as tmp:
        tmp.write_text("done")
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_sample_sheet_malformed_id():
    with pytest.raises(InputError, match=r"my\.tsv: subject IDs must be letters.*\['a b'\]"):
        check_sample_sheet(sheet(["a b", "c"]), n_folds=2, sheet="my.tsv")


@pytest.mark.parametrize("scan", ["patient01_study1", "patient03_study1"])
def test_a_thick_slice_clinical_flair_keeps_its_own_grid(tmp_path, scan):
    # 2D axial, 0.57-0.72 mm in plane, 3.3-4 mm slices: the import reorients, never resamples
    from radfusion.io import import_subject, load_volume

    source = shared_data("open_ms_data", "clinical_flair", scan, "FLAIR.nii.gz")
    raw = nib.load(str(source))
    import_subject(source, None, tmp_path / "flair.nii.gz", None, subject=scan)
    flair, affine = load_volume(tmp_path / "flair.nii.gz")
    ornt = nib.orientations.io_orientation(raw.affine)
    assert flair.shape == tuple(raw.shape[int(axis)] for axis in ornt[:, 0].argsort())
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    assert zooms[2] >= 3.0 and zooms[0] < 1.0  # still thick, the slices still axial (the third axis)
    np.testing.assert_allclose(sorted(zooms), sorted(raw.header.get_zooms()[:3]), rtol=1e-5)
    assert np.array_equal(np.sort(flair.ravel()), np.sort(np.asarray(raw.dataobj, dtype=np.float32).ravel()))
