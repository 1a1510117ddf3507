"""External validation (radfusion.external): whole-volume segmentation by the predict procedure and
3D scoring of an external cohort."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from radfusion.evaluate import VOLUME_SCORE_COLUMNS, score_volume
from radfusion.external import (
    SUBJECT_ID_COLUMNS,
    external_subject_columns,
    segment_and_score,
    segment_external_cohort,
)
from radfusion.io import import_subject, load_volume
from radfusion.predict import OUTPUT_FILES, canonical_to_original, predict_lesion_mask, predict_patient

from test_predict import LPS, PREPROCESSING, BrightSpots, blob_volume, write_fold_models

SETTINGS = {
    "model_name": "attention_unet",
    "input_name": "mri",
    "channels": (0,),
    "image_size": 32,
    "preprocessing": PREPROCESSING,
}


def imported_subject(tmp_path, write_nifti, name="ext01", shape=(32, 32, 6)):
    """An LPS FLAIR with bright blobs and its blob mask, imported (canonical) as the workflow does."""
    flair, blobs = blob_volume(shape=shape)
    source = write_nifti(f"in/{name}_flair.nii.gz", flair, LPS)
    mask = write_nifti(f"in/{name}_mask.nii.gz", blobs, LPS)
    out = tmp_path / "nifti" / name
    import_subject(source, mask, out / "flair.nii.gz", out / "mask.nii.gz", subject=name)
    return source, out / "flair.nii.gz", out / "mask.nii.gz"


def test_columns_are_the_ids_then_score_volume():
    assert external_subject_columns() == (*SUBJECT_ID_COLUMNS, *VOLUME_SCORE_COLUMNS)


def test_segment_and_score_is_predict_lesion_mask_scored_in_3d(tmp_path, write_nifti):
    _, flair_path, mask_path = imported_subject(tmp_path, write_nifti)
    flair, _ = load_volume(flair_path)
    truth, _ = load_volume(mask_path, dtype=np.uint8)
    models = [BrightSpots(0.9), BrightSpots(0.05)]  # their mean is lesion on the blobs only
    row, mask = segment_and_score(flair, truth, models, SETTINGS, subject="ext01", min_lesion_voxels=3)
    expected, _ = predict_lesion_mask(flair, models, channels=(0,), image_size=32, **PREPROCESSING)
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(mask, truth)
    assert list(row) == list(external_subject_columns())
    assert (row["subject"], row["model"], row["input"], row["folds"], row["brain_slices"]) == (
        "ext01", "attention_unet", "mri", 2, 6,
    )
    assert row == {**row, **score_volume(mask, truth, min_lesion_voxels=3)}
    # two blobs of >= 3 voxels; the one-voxel lesion is dropped from both masks, Dice keeps it
    assert (row["dice"], row["true_lesions"], row["ltpr"], row["lfpr"], row["avd"]) == (1.0, 2, 1.0, 0.0, 0.0)


def test_every_slice_is_scored_so_false_positives_on_lesion_free_slices_count(tmp_path, write_nifti):
    _, flair_path, mask_path = imported_subject(tmp_path, write_nifti)
    flair, _ = load_volume(flair_path)
    truth, _ = load_volume(mask_path, dtype=np.uint8)
    truth[:, :, 3:] = 0  # the reference has lesions on slices 0-2 only; the prediction on 0-5
    row, mask = segment_and_score(flair, truth, [BrightSpots(0.6)], SETTINGS, subject="ext01", min_lesion_voxels=1)
    assert mask[:, :, 3:].any()
    assert row["true_lesions"] == 1 and row["predicted_lesions"] == 3
    assert row["ltpr"] == 1.0 and row["lfpr"] == pytest.approx(2 / 3)
    assert row["precision"] == pytest.approx(truth.sum() / mask.sum())


def test_a_reference_lesion_outside_the_brain_counts_as_missed(tmp_path, write_nifti):
    _, flair_path, mask_path = imported_subject(tmp_path, write_nifti)
    flair, _ = load_volume(flair_path)
    truth, _ = load_volume(mask_path, dtype=np.uint8)
    assert flair[0, 0, 0] == 0
    truth[0, 0, 0] = 1
    row, mask = segment_and_score(flair, truth, [BrightSpots(0.6)], SETTINGS, subject="ext01", min_lesion_voxels=1)
    assert mask[0, 0, 0] == 0
    assert row["sensitivity"] == pytest.approx((truth.sum() - 1) / truth.sum())
    assert row["detected_lesions"] == row["true_lesions"] - 1


def test_shape_mismatch_names_the_subject():
    with pytest.raises(ValueError, match="subject 'ext02'"):
        segment_and_score(np.zeros((4, 4, 4)), np.zeros((4, 4, 3)), [BrightSpots()], SETTINGS, subject="ext02")


def test_cohort_masks_equal_radfusion_predict_on_the_same_flair(tmp_path, write_nifti):
    """The external masks are what `radfusion predict` delivers, on the imported (canonical) grid."""
    subjects = ["ext01", "ext02"]
    imported = [imported_subject(tmp_path, write_nifti, name=s) for s in subjects]
    model_paths = write_fold_models(tmp_path / "models", model_name="attention_unet", input_name="mri_radiomics")
    outputs = [tmp_path / "external" / f"{s}.nii.gz" for s in subjects]
    table = segment_external_cohort(
        model_paths, subjects, [i[1] for i in imported], [i[2] for i in imported], outputs,
        min_lesion_voxels=3, min_overlap=0.0, device="cpu",
    )
    assert list(table.columns) == list(external_subject_columns())
    assert list(table["subject"]) == subjects
    assert (table["model"] == "attention_unet").all() and (table["input"] == "mri_radiomics").all()
    assert (table["folds"] == 2).all()
    for (source, flair_path, mask_path), output, (_, row) in zip(imported, outputs, table.iterrows()):
        written = nib.load(str(output))
        canonical = nib.load(str(flair_path))
        np.testing.assert_array_equal(written.affine, canonical.affine)
        mask = np.asarray(written.dataobj)
        assert mask.dtype == np.uint8 and mask.shape == canonical.shape
        predict_patient(source, tmp_path / "predict" / row["subject"], model_paths=model_paths, device="cpu")
        predicted = np.asarray(nib.load(str(tmp_path / "predict" / row["subject"] / OUTPUT_FILES["mask"])).dataobj)
        np.testing.assert_array_equal(canonical_to_original(mask, nib.load(str(source)).affine), predicted)
        truth, _ = load_volume(mask_path, dtype=np.uint8)
        expected = score_volume(mask, truth, min_lesion_voxels=3)
        for key in VOLUME_SCORE_COLUMNS:
            assert row[key] == pytest.approx(expected[key], nan_ok=True), key


def test_cohort_needs_one_file_of_each_kind_per_subject(tmp_path):
    with pytest.raises(ValueError, match="one FLAIR, mask, brain mask and output per subject"):
        segment_external_cohort([], ["a", "b"], ["f"], ["m", "n"], ["o", "p"])
