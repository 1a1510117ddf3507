"""Prediction for new patients (SPEC stage 12): fold ensemble, original grid, lesion table, overlay."""

from __future__ import annotations

import math
import shutil

import matplotlib.image
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage
from torch import nn

from radfusion.cli import main
from radfusion.figures import plot_lesion_overlay
from radfusion.io import InputError, import_subject, load_volume
from radfusion.models import build_model
from radfusion.normalize import brain_mask
from radfusion.ensemble import choose_model_input, cross_validated_dice, fold_model_paths
from radfusion.evaluate import dice_score
from radfusion.predict import (
    LESION_COLUMNS,
    OUTPUT_FILES,
    SUMMARY_COLUMNS,
    SURFACE_MARGIN_MM,
    acquisition_warnings,
    brain_slice_indices,
    canonical_to_original,
    lesion_table,
    predict_lesion_mask,
    predict_patient,
    read_patient_sheet,
    segment_with_fold_models,
    surface_rim,
    voxel_volume_ml,
)
from radfusion.train import save_model

from conftest import shared_data

LPS = np.array([[-1.2, 0, 0, 20.0], [0, -1.0, 0, 15.0], [0, 0, 2.0, -6.0], [0, 0, 0, 1]])


class ConstantProbability(nn.Module):
    """A network whose sigmoid output is ``p`` everywhere."""

    def __init__(self, p: float):
        super().__init__()
        self.logit = nn.Parameter(torch.tensor(math.log(p / (1 - p))))

    def forward(self, x):
        return self.logit.expand(x.shape[0], 1, *x.shape[-2:])


class BrightSpots(nn.Module):
    """A network that calls lesion every pixel whose first channel exceeds ``cut``."""

    def __init__(self, cut: float = 0.6):
        super().__init__()
        self.cut = nn.Parameter(torch.tensor(cut))

    def forward(self, x):
        return 100.0 * (x[:, :1] - self.cut)


def blob_volume(shape=(32, 32, 6), seed=0):
    """FLAIR-like volume (background 0, brain 100-200) with two bright blobs; every slice holds a blob."""
    rng = np.random.default_rng(seed)
    flair = np.zeros(shape, np.float32)
    flair[3:29, 2:30, :] = rng.uniform(100, 200, (26, 28, shape[2]))
    blobs = np.zeros(shape, np.uint8)
    blobs[5:9, 6:10, 0:3] = 1
    blobs[20:23, 18:22, 3:6] = 1
    blobs[12, 25, 3] = 1
    flair[blobs == 1] = 600
    return flair, blobs


PREPROCESSING = {
    "lower_percentile": 0.5, "upper_percentile": 99.5, "cr": {"s": 2, "num": 15, "m": 5},
    "re": {"s": 5, "alpha": 7, "offsets": "skimage"}, "threshold": 0.5,
}


def write_fold_models(
    root, model_name="resnext_unet", input_name="mri_radiomics", folds=(1, 2), image_size=32, preprocessing=None,
    crop="none",
):
    """Freshly built (untrained) networks saved as fold models: for file-format and geometry checks."""
    paths = []
    for fold in folds:
        torch.manual_seed(fold)
        model = build_model(model_name, 3 if input_name == "mri_radiomics" else 1)
        path = root / model_name / input_name / f"fold{fold}" / "model.pt"
        save_model(
            model, path, model_name=model_name, input_name=input_name, image_size=image_size, crop=crop,
            preprocessing=preprocessing or PREPROCESSING,
        )
        paths.append(path)
    return paths


def write_eval(root, model, input_name, fold_dice):
    """subjects.tsv files of one (model, input): a list of subject Dice values per fold."""
    for fold, values in enumerate(fold_dice, start=1):
        path = root / model / input_name / f"fold{fold}" / "subjects.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(
            {"subject": [f"s{fold}_{i}" for i in range(len(values))], "fold": fold, "dice": values,
             "precision": 0.5, "sensitivity": 0.5}
        ).to_csv(path, sep="\t", index=False)


# --- choosing the fold models ------------------------------------------------------------------


def test_best_pair_is_the_highest_mean_of_fold_means(tmp_path):
    # resnext/mri: fold means 0.9 and 0.5 -> 0.70 (the pooled subject mean would be 0.567);
    # attention/mri_radiomics: 0.6, 0.6 -> 0.60 (pooled 0.60): the tables' mean of fold means ranks
    # resnext/mri first, a pooled mean would not.
    write_eval(tmp_path, "resnext_unet", "mri", [[0.9], [0.5, 0.5]])
    write_eval(tmp_path, "attention_unet", "mri_radiomics", [[0.6, 0.6], [0.6]])
    write_eval(tmp_path, "resnext_unet", "mri_radiomics", [[0.3], [0.4]])
    runs = cross_validated_dice(tmp_path)
    assert runs[["model", "input"]].values.tolist()[0] == ["resnext_unet", "mri"]
    assert runs["cv_dice"].tolist() == pytest.approx([0.7, 0.6, 0.35])
    assert runs["folds"].tolist() == [2, 2, 2] and runs["subjects"].tolist() == [3, 3, 2]
    assert choose_model_input(tmp_path) == ("resnext_unet", "mri", pytest.approx(0.7))
    # a named part restricts the choice to it
    assert choose_model_input(tmp_path, input_name="mri_radiomics")[:2] == ("attention_unet", "mri_radiomics")
    assert choose_model_input(tmp_path, model="attention_unet")[:2] == ("attention_unet", "mri_radiomics")
    # the rule restricts the choice to the config's pairs
    assert choose_model_input(tmp_path, candidates=[("resnext_unet", "mri_radiomics")])[:2] == (
        "resnext_unet",
        "mri_radiomics",
    )
    # a fully named pair needs no evaluation, and reports its Dice when there is one
    assert choose_model_input(tmp_path, model="resnext_unet", input_name="mri_radiomics")[2] == pytest.approx(0.35)
    name, input_name, dice = choose_model_input(None, model="attention_unet", input_name="mri")
    assert (name, input_name) == ("attention_unet", "mri") and math.isnan(dice)


def test_best_pair_ties_follow_the_project_order(tmp_path):
    write_eval(tmp_path, "attention_unet", "mri", [[0.5], [0.5]])
    write_eval(tmp_path, "resnext_unet", "mri_radiomics", [[0.5], [0.5]])
    write_eval(tmp_path, "resnext_unet", "mri", [[0.5], [0.5]])
    assert choose_model_input(tmp_path)[:2] == ("resnext_unet", "mri")


def test_best_without_evaluation_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="no evaluation results.*--model and --input"):
        choose_model_input(tmp_path / "absent")
    write_eval(tmp_path, "resnext_unet", "mri", [[0.5]])
    with pytest.raises(InputError, match="attention_unet.*evaluated: resnext_unet/mri"):
        choose_model_input(tmp_path, model="attention_unet")
    broken = tmp_path / "attention_unet" / "mri" / "fold1" / "subjects.tsv"
    broken.parent.mkdir(parents=True)
    broken.write_text("subject\tscore\ns1\t0.4\n")
    with pytest.raises(InputError, match="subjects.tsv.*missing column.*'dice'"):
        cross_validated_dice(tmp_path)


def test_fold_models_are_listed_in_fold_order(tmp_path):
    for fold in (10, 2, 1):
        path = tmp_path / "m" / "i" / f"fold{fold}" / "model.pt"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"")
    (tmp_path / "m" / "i" / "fold_old").mkdir()
    (tmp_path / "m" / "i" / "fold_old" / "model.pt").write_bytes(b"")
    assert [p.parent.name for p in fold_model_paths(tmp_path, "m", "i")] == ["fold1", "fold2", "fold10"]
    with pytest.raises(InputError, match="no trained fold models"):
        fold_model_paths(tmp_path, "m", "other")


# --- orientation -------------------------------------------------------------------------------


@pytest.mark.parametrize("codes", [("L", "P", "S"), ("L", "A", "S"), ("P", "I", "R"), ("R", "A", "S")])
def test_canonical_to_original_inverts_the_import_reorientation(codes):
    data = np.random.default_rng(1).normal(size=(5, 6, 7))
    affine = np.eye(4)
    affine[:3, :3] = 0
    for axis, (code, zoom) in enumerate(zip(codes, (1.1, 0.9, 2.0))):
        world = "RLAPSI".index(code) // 2
        affine[world, axis] = zoom if code in "RAS" else -zoom
    image = nib.Nifti1Image(data, affine)
    assert nib.aff2axcodes(affine) == codes
    canonical = nib.as_closest_canonical(image)
    np.testing.assert_array_equal(canonical_to_original(canonical.get_fdata(), affine), data)


# --- ensembling and prediction -----------------------------------------------------------------


def test_lps_input_lesions_come_back_on_the_input_voxels(tmp_path, write_nifti):
    flair, blobs = blob_volume()
    source = write_nifti("in/flair.nii.gz", flair, LPS)
    import_subject(source, None, tmp_path / "canonical.nii.gz", None, subject="p1")
    canonical, _ = load_volume(tmp_path / "canonical.nii.gz")
    # two models that disagree outside the blobs; their mean is lesion only on the blobs
    models = [BrightSpots(0.9), BrightSpots(0.05)]
    mask, normalized = predict_lesion_mask(canonical, models, channels=(0,), image_size=32)
    assert mask.shape == canonical.shape and normalized.max() == pytest.approx(1.0)
    np.testing.assert_array_equal(canonical_to_original(mask, LPS), blobs)
    # and with the radiomics channels: the models read channel 0, the FLAIR
    mask3, _ = predict_lesion_mask(canonical, models, channels=(0, 1, 2), image_size=32)
    np.testing.assert_array_equal(mask3, mask)


def test_only_brain_slices_are_predicted_and_background_is_never_lesion():
    flair, _ = blob_volume(shape=(32, 32, 8))
    flair[:, :, [0, 7]] = 0
    flair[2, 2:30, :] = -0.05  # a rim of negative edge voxels: brain (slice 7 holds only these)
    flair[1, 2:30, 1:7] = -0.5  # makes the 0.5th percentile negative
    assert np.percentile(flair[flair != 0], 0.5) < 0
    assert brain_slice_indices(brain_mask(flair)).tolist() == [0, 1, 2, 3, 4, 5, 6, 7]
    mask, normalized = predict_lesion_mask(flair, [ConstantProbability(0.9)], channels=(0,), image_size=32)
    np.testing.assert_array_equal(mask, (flair != 0).astype(np.uint8))
    assert (normalized[flair == 0] == 0).all()


def test_models_trained_on_the_brain_box_predict_in_it_and_put_the_mask_back():
    flair, blobs = blob_volume(shape=(48, 40, 6))
    flair[30:, :, :] = 0  # brain in rows 3-29: the box leaves out the lower rows
    flair[:, 32:, :] = 0
    blobs[30:, :, :] = 0
    brain = flair != 0
    settings = {"channels": [0], "image_size": 32, "crop": "brain", "preprocessing": PREPROCESSING}
    models = [BrightSpots()]
    mask, _ = segment_with_fold_models(flair, models, settings, brain=brain, voxel_sizes=None)
    whole, _ = segment_with_fold_models(flair, models, {**settings, "crop": "none"}, brain=brain, voxel_sizes=None)
    assert dice_score(mask, blobs) > dice_score(whole, blobs)  # 27x30 brain box to 32 px, not 48x40
    assert dice_score(mask, blobs) > 0.9
    with pytest.raises(ValueError, match="crop"):
        predict_lesion_mask(flair, models, channels=(0,), image_size=32, crop="head")


def test_surface_rim_is_a_physical_distance_on_anisotropic_voxels():
    brain = np.zeros((24, 24, 8), bool)
    brain[2:22, 2:22, 1:7] = True
    brain[10:13, 10:13, 3:5] = False  # an interior hole (a ventricle left out): not surface
    rim = surface_rim(brain, (0.7, 0.7, 3.0), 2.0)
    # in plane the two outer rings (0.7 and 1.4 mm from the outside), not the third (2.1 mm) ...
    middle = rim[:, :, 3]
    assert middle[2:4, 2:22].all() and middle[20:22, 2:22].all() and middle[2:22, 2:4].all()
    assert not middle[4:20, 4:20].any()
    # ... and never a whole axial slice: the top and bottom slices are 3 mm from the outside
    assert rim[:, :, 1].sum() == rim[:, :, 3].sum() and not rim[4:20, 4:20, 1].any()
    assert not (rim & ~brain).any()
    # the same mask on 1 mm voxels: two rings and the top and bottom slices (1 mm away)
    iso = surface_rim(brain, (1.0, 1.0, 1.0), 2.0)
    assert iso[4:20, 4:20, 1].all() and iso[4:20, 4:20, 2].all() and not iso[4:20, 4:20, 3].any()
    assert not iso[9:14, 9:14, 3:5].any()  # no rim around the interior hole
    # a brain that fills the array (cut by the field of view) has no surface
    assert not surface_rim(np.ones((6, 6, 3), bool), (1, 1, 1), 2.0).any()
    with pytest.raises(ValueError, match="voxel sizes"):
        surface_rim(brain, (1.0, 0.0, 1.0))


def test_no_lesion_within_the_surface_margin_of_the_brain():
    flair, _ = blob_volume(shape=(32, 32, 8))
    brain = flair != 0
    settings = {"channels": [0], "image_size": 32, "preprocessing": PREPROCESSING}
    models = [ConstantProbability(0.9)]  # lesion everywhere in the brain
    sizes = (0.7, 0.7, 3.0)
    mask, _ = segment_with_fold_models(flair, models, settings, brain=brain, voxel_sizes=sizes)
    rim = surface_rim(brain, sizes, SURFACE_MARGIN_MM)
    assert rim.any() and not mask[rim].any()
    np.testing.assert_array_equal(mask, (brain & ~rim).astype(np.uint8))
    # the margin is in mm: with 1.5 mm pixels only the outermost ring goes
    wide, _ = segment_with_fold_models(flair, models, settings, brain=brain, voxel_sizes=(1.5, 1.5, 3.0))
    assert wide[4, 3:29, 3].all() and not wide[3, :, 3].any()
    # predict_lesion_mask with the margin off, or without a voxel size, keeps the whole brain
    off, _ = predict_lesion_mask(flair, models, channels=(0,), image_size=32, voxel_sizes=sizes, surface_margin_mm=0)
    np.testing.assert_array_equal(off, brain.astype(np.uint8))
    with pytest.raises(TypeError, match="voxel_sizes"):
        segment_with_fold_models(flair, models, settings, brain=brain)


def test_a_flair_without_zero_background_is_predicted_with_a_warning(tmp_path, write_nifti):
    flair, _ = blob_volume()
    source = write_nifti("in/p9.nii.gz", flair + 10.0, LPS)  # no voxel is 0: not skull-stripped
    with pytest.warns(UserWarning, match=r"subject 'p9', file '.*p9\.nii\.gz': no voxel is 0"):
        summary = predict_patient(
            source, tmp_path / "out", model_paths=write_fold_models(tmp_path / "m"), patient="p9", skull_strip="none"
        )
    assert summary["brain_slices"] == flair.shape[2]


def test_a_stripping_result_without_brain_stops_predict_naming_the_file(tmp_path, write_nifti):
    flair, _ = blob_volume()
    source = write_nifti("in/p9.nii.gz", flair + 10.0, LPS)  # not stripped: auto strips; no head in it
    with pytest.raises(InputError, match=r"subject 'p9', file '.*p9\.nii\.gz': skull stripping found \d+ mL"):
        predict_patient(source, tmp_path / "out", model_paths=write_fold_models(tmp_path / "m"), patient="p9")
    assert not (tmp_path / "out").exists()


def test_predict_patient_writes_the_mask_on_the_lps_input_grid(tmp_path, write_nifti, caplog):
    flair, _ = blob_volume()
    source = write_nifti("in/flair.nii.gz", flair, LPS)
    paths = write_fold_models(tmp_path / "models")
    out = tmp_path / "out" / "patient01"
    with caplog.at_level("WARNING"):
        summary = predict_patient(source, out, model_paths=paths, cv_dice=0.7, threads=1)
    assert "(anisotropic" not in caplog.text and "mm apart" not in caplog.text  # 1.2 x 1.0 x 2.0 mm is fine
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES.values())

    image, written = nib.load(str(source)), nib.load(str(out / OUTPUT_FILES["mask"]))
    assert written.shape == image.shape and nib.aff2axcodes(written.affine) == ("L", "P", "S")
    np.testing.assert_array_equal(written.affine, image.affine)
    assert written.header["sform_code"] == image.header["sform_code"]
    assert written.header["qform_code"] == image.header["qform_code"]
    mask = np.asarray(written.dataobj)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
    assert not (mask.astype(bool) & (flair == 0)).any()
    brain = nib.load(str(out / OUTPUT_FILES["brain"]))  # skull-stripped input: its nonzero voxels
    np.testing.assert_array_equal(brain.affine, image.affine)
    np.testing.assert_array_equal(np.asarray(brain.dataobj), (flair != 0).astype(np.uint8))

    table = pd.read_csv(out / OUTPUT_FILES["summary"])
    assert tuple(table.columns) == SUMMARY_COLUMNS and len(table) == 1
    row = table.iloc[0]
    assert (row["patient"], row["model"], row["input"]) == ("patient01", "resnext_unet", "mri_radiomics")
    assert row["folds"] == 2
    assert row["cv_dice"] == pytest.approx(0.7) and row["brain_slices"] == 6
    unit = abs(np.linalg.det(image.affine[:3, :3])) / 1000  # the header's float32 1.2 mm, as read
    assert unit == pytest.approx(1.2 * 1.0 * 2.0 / 1000, rel=1e-6)
    assert row["voxel_volume_ml"] == pytest.approx(unit, rel=1e-9)
    assert row["lesion_voxels"] == mask.sum()
    assert row["total_volume_ml"] == pytest.approx(mask.sum() * unit, rel=1e-9)
    labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    assert row["lesion_count"] == n
    lesions = pd.read_csv(out / OUTPUT_FILES["lesions"])
    assert tuple(lesions.columns) == LESION_COLUMNS and len(lesions) == n
    assert lesions["volume_ml"].sum() == pytest.approx(row["total_volume_ml"])
    assert summary["lesion_count"] == n
    assert matplotlib.image.imread(out / OUTPUT_FILES["overlay"]).ndim == 3


def test_models_of_different_runs_are_refused(tmp_path, write_nifti):
    flair, _ = blob_volume()
    source = write_nifti("flair.nii.gz", flair, LPS)
    paths = write_fold_models(tmp_path / "a", folds=(1,))
    paths += write_fold_models(tmp_path / "b", input_name="mri", folds=(2,))
    with pytest.raises(InputError, match="fold models differ in input_name"):
        predict_patient(source, tmp_path / "out", model_paths=paths)
    # one run's folds, but one was trained with other CR parameters
    other = {**PREPROCESSING, "cr": {"s": 3, "num": 15, "m": 5}}
    paths = write_fold_models(tmp_path / "c", folds=(1,)) + write_fold_models(tmp_path / "d", folds=(2,), preprocessing=other)
    with pytest.raises(InputError, match="fold models differ in preprocessing.*'s': 3"):
        predict_patient(source, tmp_path / "out", model_paths=paths)
    # one trained on whole slices, one on the brain box
    paths = write_fold_models(tmp_path / "e", folds=(1,)) + write_fold_models(tmp_path / "f", folds=(2,), crop="brain")
    with pytest.raises(InputError, match="fold models differ in crop"):
        predict_patient(source, tmp_path / "out", model_paths=paths)
    # a model file that does not record its preprocessing
    bare = tmp_path / "bare.pt"
    save_model(build_model("resnext_unet", 1), bare, model_name="resnext_unet", input_name="mri", image_size=32)
    with pytest.raises(InputError, match="bare.pt.*records no preprocessing"):
        predict_patient(source, tmp_path / "out", model_paths=[bare])
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    with pytest.raises(InputError, match="bad.pt.*cannot be loaded"):
        predict_patient(source, tmp_path / "out", model_paths=[tmp_path / "bad.pt"])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.write_bytes(b"\x1f\x8b\x08\x00garbage"), "cannot be read as NIfTI"),
        (lambda p: nib.save(nib.Nifti1Image(np.ones((8, 8, 4, 3), np.float32), np.eye(4)), str(p)), "3D"),
        (lambda p: nib.save(nib.Nifti1Image(np.full((8, 8, 4), np.nan, np.float32), np.eye(4)), str(p)), "NaN"),
    ],
)
def test_bad_input_names_the_file_and_writes_nothing(tmp_path, make, message):
    source = tmp_path / "bad_flair.nii.gz"
    make(source)
    paths = write_fold_models(tmp_path / "models", folds=(1,))
    with pytest.raises(InputError, match=message) as info:
        predict_patient(source, tmp_path / "out", model_paths=paths)
    assert "bad_flair.nii.gz" in str(info.value)
    assert not (tmp_path / "out").exists()


def test_dicom_series_error_names_the_dicom_folder(tmp_path):
    folder = shared_data("dicom", "ge_epi_dcm_qa_nih", "in")  # a 4D EPI series: refused
    paths = write_fold_models(tmp_path / "models", folds=(1,))
    with pytest.raises(InputError, match="3D") as info:
        predict_patient(folder, tmp_path / "out", model_paths=paths)
    assert str(folder) in str(info.value) and "radfusion-predict-" not in str(info.value)


# --- lesions -----------------------------------------------------------------------------------


def test_lesion_table_on_a_hand_made_mask():
    mask = np.zeros((12, 10, 8), np.uint8)
    mask[1:4, 1:3, 1:3] = 1  # 12 voxels
    mask[8, 7, 5] = mask[9, 8, 6] = 1  # touch at a corner only: one lesion with 26-, two with 6-connectivity
    mask[6, 2, 6] = 1  # isolated voxel
    affine = np.array([[0, 0, 1.5, -10], [-0.5, 0, 0, 20], [0, 2.0, 0, 5], [0, 0, 0, 1]])
    unit = 1.5 * 0.5 * 2.0 / 1000
    assert voxel_volume_ml(affine) == pytest.approx(unit)
    table = lesion_table(mask, affine)
    assert table["lesion"].tolist() == [1, 2, 3]
    assert table["voxels"].tolist() == [12, 2, 1]
    np.testing.assert_allclose(table["volume_ml"], np.array([12, 2, 1]) * unit)
    assert table.loc[0, ["centroid_i", "centroid_j", "centroid_k"]].tolist() == [2, 2, 2]  # 1.5 rounds to 2
    # the world centroid of the 12-voxel box, centre (2, 1.5, 1.5) in voxels
    centroid_mm = table.loc[0, ["x_mm", "y_mm", "z_mm"]].to_numpy(float)
    np.testing.assert_allclose(centroid_mm, [-10 + 1.5 * 1.5, 20 - 1.0, 5 + 3.0])
    assert lesion_table(mask, affine, connectivity=6)["voxels"].tolist() == [12, 1, 1, 1]
    assert lesion_table(mask, affine, connectivity=18)["voxels"].tolist() == [12, 1, 1, 1]
    empty = lesion_table(np.zeros((4, 4, 4)), np.eye(4))
    assert empty.empty and tuple(empty.columns) == LESION_COLUMNS
    with pytest.raises(ValueError, match="connectivity"):
        lesion_table(mask, affine, connectivity=8)


def test_acquisition_warnings():
    assert acquisition_warnings([0.9, 0.9, 1.0]) == []
    assert acquisition_warnings([0.5, 0.5, 2.5]) == []
    (thick,) = acquisition_warnings([0.9, 0.9, 5.0])
    assert "slice thickness 5 mm" in thick
    (clinical,) = acquisition_warnings([0.72, 0.72, 2.9999971])  # patient04's 3 mm, as its header stores it
    assert "slice thickness 3 mm" in clinical
    (gap,) = acquisition_warnings([0.72, 0.72, 3.3], slice_thickness=3.0)  # DICOM: thickness and spacing
    assert "slice thickness 3 mm, 3.3 mm apart" in gap
    (stretched,) = acquisition_warnings([1.0, 4.0, 1.0])
    assert "anisotropic" in stretched


def test_overlay_shows_the_slices_with_most_lesion():
    flair, blobs = blob_volume(shape=(32, 32, 8))
    brain = brain_mask(flair)
    figure = plot_lesion_overlay(flair / flair.max(), blobs, brain, n_slices=2, title="t")
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == ["slice 0: 16 lesion voxels", "slice 1: 16 lesion voxels"]
    # brain 26 x 28 plus 4 pixels each side (clipped at the volume's edge), transposed for display
    assert figure.axes[0].get_images()[0].get_array().shape == (32, 32)
    figure = plot_lesion_overlay(flair / flair.max(), np.zeros_like(blobs), brain, n_slices=3)
    assert len(figure.axes) == 1 and "0 lesion voxels" in figure.axes[0].get_title()


def test_overlay_crops_to_the_brain_mask_not_to_bright_voxels():
    flair, blobs = blob_volume(shape=(40, 40, 4))
    brain = brain_mask(flair)
    lifted = np.where(brain, flair / flair.max(), 0.05)  # a background above the old 0.02 crop threshold
    figure = plot_lesion_overlay(lifted, blobs, brain, n_slices=1)
    # brain x 3..28, y 2..29 plus 4 pixels: x 0..32, y 0..33; shown transposed (y rows, x columns)
    assert figure.axes[0].get_images()[0].get_array().shape == (34, 33)


def test_patient_sheet(tmp_path):
    sheet = tmp_path / "patients.tsv"
    sheet.write_text("patient\tflair\np1\ta/flair.nii.gz\np2\t dicom/p2 \n")
    patients = read_patient_sheet(sheet)
    assert patients.loc["p2", "flair"] == "dicom/p2"
    for text, message in [
        ("subject\tflair\np1\tx.nii.gz\n", "missing column"),
        ("patient\tflair\np1\tx.nii.gz\np1\ty.nii.gz\n", "duplicate"),
        ("patient\tflair\np 1\tx.nii.gz\n", "letters, digits"),
        ("patient\tflair\np1\t\n", "no FLAIR"),
    ]:
        sheet.write_text(text)
        with pytest.raises(InputError, match=message):
            read_patient_sheet(sheet)


# --- acceptance: a real MS patient, fold models trained by the library --------------------------


@pytest.mark.slow
def test_acceptance_patient07_with_the_quick_runs_fold_models(tmp_path, tiny_run, capsys):
    """Issue acceptance: a real patient through the fold models of a quick-settings workflow run
    (the session's tiny run of the test config, .test/config: 3 folds)."""
    source = shared_data("open_ms_data", "patient07", "FLAIR.nii.gz")
    out = tmp_path / "patient07"
    status = main(
        ["predict", str(source), "--out", str(out), "--models-dir", str(tiny_run / "results" / "models"),
         "--eval-dir", str(tiny_run / "results" / "eval"), "--device", "cpu", "--threads", "2", "-q"]
    )
    assert status == 0
    model, input_name, cv_dice = choose_model_input(tiny_run / "results" / "eval")
    assert f"({model}/{input_name}, 3 fold models, cross-validated Dice {cv_dice:.3f})" in capsys.readouterr().out

    image, written = nib.load(str(source)), nib.load(str(out / OUTPUT_FILES["mask"]))
    assert written.shape == image.shape == (182, 218, 182)
    np.testing.assert_array_equal(written.affine, image.affine)
    assert nib.aff2axcodes(written.affine) == nib.aff2axcodes(image.affine) == ("L", "A", "S")
    mask = np.asarray(written.dataobj)
    assert not (mask.astype(bool) & (np.asarray(image.dataobj) == 0)).any()

    summary = pd.read_csv(out / OUTPUT_FILES["summary"]).iloc[0]
    voxel_ml = abs(np.linalg.det(image.affine[:3, :3])) / 1000
    assert summary["total_volume_ml"] == pytest.approx(np.count_nonzero(mask) * voxel_ml, rel=1e-9)
    assert summary["lesion_count"] == ndimage.label(mask, structure=np.ones((3, 3, 3)))[1]
    assert (summary["model"], summary["input"], summary["folds"]) == (model, input_name, 3)
    assert (out / OUTPUT_FILES["overlay"]).stat().st_size > 0
    assert matplotlib.image.imread(out / OUTPUT_FILES["overlay"]).ndim == 3


def test_dicom_input_gets_the_mask_on_the_conversion_grid(tmp_path):
    folder = shared_data("dicom", "siemens_xa30_t1w_dcm_qa_xa30", "in")
    reference = shared_data("dicom", "siemens_xa30_t1w_dcm_qa_xa30", "ref", "5_anat-T1w_acq-tfl.nii")
    paths = write_fold_models(tmp_path / "models", input_name="mri", folds=(1,))
    out = tmp_path / "out"
    predict_patient(folder, out, model_paths=paths, threads=2)
    written, ref = nib.load(str(out / OUTPUT_FILES["mask"])), nib.load(str(reference))
    assert written.shape == ref.shape
    np.testing.assert_allclose(written.affine, ref.affine, atol=1e-4)
    converted = nib.load(str(out / "flair.nii.gz"))
    np.testing.assert_array_equal(converted.affine, written.affine)
    assert "PatientName" not in (out / "flair.json").read_text()
    shutil.rmtree(out)
