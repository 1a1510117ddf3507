"""External validation as a workflow stage: planned only with config external.samples, its subjects
kept out of the training cohort's stages, and (slow) the two real patients of ../shared/data scored
by the fold models of the session's tiny run."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import job_counts, run_snakemake, shared_data

STAGE_RULES = ("external_segmentation", "table5_external", "figure5_external_slices")
RUNS = [(m, i) for m in ("resnext_unet", "attention_unet") for i in ("mri", "mri_radiomics")]


def external_sheet(path, subjects, flair="flair.nii.gz", mask="mask.nii.gz"):
    """A sheet of external subjects whose (empty) files exist: enough for a dry run."""
    rows = []
    for subject in subjects:
        folder = path.parent / "data" / subject
        folder.mkdir(parents=True, exist_ok=True)
        (folder / flair).touch()
        (folder / mask).touch()
        rows.append({"subject": subject, "flair": str(folder / flair), "mask": str(folder / mask)})
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return path


def overlay(tmp_path, sheet):
    path = tmp_path / "external.yaml"
    path.write_text(yaml.safe_dump({"external": {"samples": str(sheet)}}))
    return path


def plan(*targets, overlays=()):
    """A dry run of the quick settings (and overlays) from the project root, every job forced."""
    return run_snakemake(
        [*targets, "-n", "--forceall", "--configfile", "config/quick.yaml", *map(str, overlays)], timeout=600
    )


def test_without_external_samples_nothing_of_the_stage_is_planned():
    result = plan()
    assert result.returncode == 0, result.stderr[-3000:]
    counts = job_counts(result.stdout)
    assert not set(STAGE_RULES) & set(counts)
    assert "results/external/" not in result.stdout and "table5" not in result.stdout and "figure5" not in result.stdout
    assert counts["import_subject"] == counts["radiomics_maps"] == counts["export_slices"] == 12


def test_external_subjects_are_imported_normalized_and_scored_but_never_trained_on(tmp_path):
    sheet = external_sheet(tmp_path / "external.tsv", ["site2_01", "site2_02"])
    result = plan(overlays=[overlay(tmp_path, sheet)])
    assert result.returncode == 0, result.stderr[-3000:]
    counts = job_counts(result.stdout)
    for rule in ("import_subject", "normalize_flair", "radiomics_maps"):
        assert counts[rule] == 14, rule
    assert counts["export_slices"] == 12 and counts["train_model"] == 24
    assert (counts["external_segmentation"], counts["table5_external"], counts["figure5_external_slices"]) == (4, 1, 1)
    # the cohort's stages list the training subjects only
    for rule in ("feature_distributions", "assign_folds", "train_model", "evaluate_models", "figure1_example_slices"):
        jobs = [block.split("\n[")[0] for block in result.stdout.split(f"rule {rule}:")[1:]]
        assert jobs and not any("site2_" in job for job in jobs), rule


def test_an_external_id_of_the_training_cohort_is_refused(tmp_path):
    sheet = external_sheet(tmp_path / "external.tsv", ["demo01"])
    result = plan(overlays=[overlay(tmp_path, sheet)])
    assert result.returncode != 0
    assert "external subject ID(s) ['demo01'] are also in the sample sheet config/samples_quick.tsv" in result.stdout + result.stderr


def test_a_training_image_in_the_external_sheet_is_refused(tmp_path):
    sheet = tmp_path / "external.tsv"
    pd.DataFrame(
        {"subject": ["site2_01"], "flair": ["resources/demo/demo03/flair.nii.gz"], "mask": ["m.nii.gz"]}
    ).to_csv(sheet, sep="\t", index=False)
    result = plan(overlays=[overlay(tmp_path, sheet)])
    assert result.returncode != 0
    assert "site2_01 flair = resources/demo/demo03/flair.nii.gz (training subject demo03)" in result.stdout + result.stderr


@pytest.mark.parametrize("target", ["results/tables/table5.csv", "results/figures/figure5.png"])
def test_a_stage_target_without_external_samples_names_the_key(target):
    result = plan(target)
    assert result.returncode != 0
    assert "no external cohort: set config external.samples" in result.stdout + result.stderr


# --- the real patients, with the fold models of the session's tiny run --------------------------


@pytest.mark.slow
def test_real_patients_as_external_cohort_of_the_tiny_run(tmp_path, tiny_run, hidden_radfusion):
    """Issue acceptance on the tiny config: the two real MS patients of ../shared/data as the
    external cohort of the session's tiny run (a copy, so its results stay as they were): the
    per-subject tables and masks, Table 5, Figure 5 and the report; the masks are what
    `radfusion predict` gives with the same fold models."""
    data = shared_data("open_ms_data")
    root = tmp_path / "run"
    shutil.copytree(tiny_run, root, symlinks=True)
    patients = ["patient07", "patient26"]
    pd.DataFrame(
        {
            "subject": patients,
            "flair": [str(data / p / "FLAIR.nii.gz") for p in patients],
            "mask": [str(data / p / "lesion_mask.nii.gz") for p in patients],
        }
    ).to_csv(root / "config" / "external.tsv", sep="\t", index=False)
    config = ["--config", "external={samples: config/external.tsv}"]
    targets = ["results/tables/table5.csv", "results/figures/figure5.png"]
    result = run_snakemake([*targets, "--cores", "2", *config], cwd=root, timeout=1800, env=hidden_radfusion)
    assert result.returncode == 0, result.stderr[-8000:]
    # nothing of the tiny run was redone: only the external subjects' stages ran
    ran = job_counts(result.stdout + result.stderr)
    assert not {"train_model", "evaluate_models", "export_slices", "assign_folds"} & set(ran), ran

    for model, input_name in RUNS:
        table = pd.read_csv(root / f"results/external/{model}/{input_name}/subjects.tsv", sep="\t")
        assert list(table["subject"]) == patients and (table["folds"] == 3).all()
        assert table["dice"].between(0, 1).all() and (table["true_lesions"] > 0).all()
        for patient in patients:
            mask = nib.load(str(root / f"results/external/{model}/{input_name}/{patient}.nii.gz"))
            reference = nib.load(str(root / f"results/nifti/{patient}/mask.nii.gz"))
            assert mask.shape == reference.shape == (182, 218, 182)
            np.testing.assert_array_equal(mask.affine, reference.affine)
    table5 = pd.read_csv(root / "results/tables/table5.csv")
    assert list(table5["model"].unique()) == ["resnext_unet", "attention_unet"]
    assert {"dice", "ltpr", "lfpr", "avd"} <= set(table5["metric"])
    assert (table5["n_subjects"] == 2).all()
    assert table5["p_bonferroni"].dropna().between(0, 1).all()
    dice = table5[table5["metric"] == "dice"].set_index("model")
    table1 = pd.read_csv(root / "results/tables/table1.csv").set_index("metric")
    assert dice.loc["resnext_unet", "cv_mri_radiomics_mean"] == pytest.approx(table1.loc["dice", "mri_radiomics_mean"])
    assert (root / "results/figures/figure5.png").stat().st_size > 10_000
    assert (root / "results/figures/figure5.svg").stat().st_size > 10_000

    # exactly what radfusion predict delivers with the same fold models
    from radfusion.ensemble import fold_model_paths
    from radfusion.predict import OUTPUT_FILES, canonical_to_original, predict_patient

    model, input_name = "attention_unet", "mri_radiomics"
    source = data / "patient07" / "FLAIR.nii.gz"
    predict_patient(
        source, tmp_path / "predict", model_paths=fold_model_paths(root / "results/models", model, input_name),
        device="cpu", threads=2,
    )
    predicted = np.asarray(nib.load(str(tmp_path / "predict" / OUTPUT_FILES["mask"])).dataobj)
    external = np.asarray(nib.load(str(root / f"results/external/{model}/{input_name}/patient07.nii.gz")).dataobj)
    np.testing.assert_array_equal(canonical_to_original(external, nib.load(str(source)).affine), predicted)

    report = run_snakemake(
        [*targets, *config, "--report", "results/report.html"], cwd=root, timeout=900, env=hidden_radfusion
    )
    assert report.returncode == 0, report.stderr[-5000:]
    page = (root / "results/report.html").read_text(encoding="utf-8", errors="replace")
    for name in ("table5.csv", "table5.html", "figure5.png", "subjects.tsv", "External validation"):
        assert name in page, name
