"""The table, figure and report rules (SPEC stages 9-11) on synthetic upstream outputs, and the
per-model isolation of the table targets (a dry run of the whole workflow)."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from conftest import PROJECT, run_snakemake, shared_data

MODELS = ("resnext_unet", "attention_unet")
INPUTS = ("mri", "mri_radiomics")
SUBJECTS = [f"demo{i:02d}" for i in range(1, 7)]
N_FOLDS = 3
STAGE_RULES = ["fold_dice_table", "metric_summary_table", "sdd_table", "figure1_example_slices", "figure4_validation_curves"]
TABLE_OUTPUTS = [f"results/tables/{name}.csv" for name in ("table1", "table2", "table3", "table4", "sdd")]
FIGURE_OUTPUTS = ["results/figures/figure1.png", "results/figures/figure1.svg", "results/figures/figure4.png",
                  "results/figures/figure4.svg"]


def copy_workflow(destination: Path) -> None:
    """The workflow's code and config (not its results) in a scratch directory."""
    shutil.copy(PROJECT / "Snakefile", destination / "Snakefile")
    shutil.copytree(PROJECT / "workflow", destination / "workflow", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(PROJECT / "config", destination / "config")


def write_tiny_config(directory: Path) -> Path:
    """A sample sheet of six demo subjects, three folds, and the config overlay naming it."""
    sheet = directory / "config" / "samples_test.tsv"
    pd.DataFrame(
        {
            "subject": SUBJECTS,
            "flair": [f"resources/demo/{s}/flair.nii.gz" for s in SUBJECTS],
            "mask": [f"resources/demo/{s}/mask.nii.gz" for s in SUBJECTS],
        }
    ).to_csv(sheet, sep="\t", index=False)
    overlay = directory / "config" / "test.yaml"
    overlay.write_text(f"samples: config/samples_test.tsv\nfolds: {N_FOLDS}\n")
    return overlay


def write_upstream_outputs(root: Path, seed: int = 0) -> None:
    """Synthetic outputs of the import, normalize, training and evaluation stages."""
    rng = np.random.default_rng(seed)
    shape = (24, 28, 10)
    folds = {s: i % N_FOLDS + 1 for i, s in enumerate(SUBJECTS)}
    volumes = {}
    for subject in SUBJECTS:
        mask = np.zeros(shape, np.uint8)
        for z in range(2, 8):
            radius = 1 + rng.integers(0, 4)
            cx, cy = rng.integers(6, 18), rng.integers(6, 22)
            mask[cx - radius : cx + radius, cy - radius : cy + radius, z] = 1
        flair = (0.4 + 0.05 * rng.standard_normal(shape)).clip(0, 1).astype(np.float32)
        flair[mask == 1] = 0.9
        volumes[subject] = mask
        for path, data in ((f"results/nifti/{subject}/mask.nii.gz", mask),
                           (f"results/normalized/{subject}/flair.nii.gz", flair),
                           (f"results/normalized/{subject}/brain.nii.gz", (flair != 0).astype(np.uint8))):
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(data, np.eye(4)), str(root / path))
    for model in MODELS:
        for input_name in INPUTS:
            gain = 0.05 if input_name == "mri_radiomics" else 0.0
            for subject in SUBJECTS:
                prediction = volumes[subject].copy()
                prediction[rng.random(shape) < 0.01] = 1
                path = root / f"results/predictions/{model}/{input_name}/{subject}.nii.gz"
                path.parent.mkdir(parents=True, exist_ok=True)
                nib.save(nib.Nifti1Image(prediction, np.eye(4)), str(path))
            for fold in range(1, N_FOLDS + 1):
                test = [s for s in SUBJECTS if folds[s] == fold]
                subjects = pd.DataFrame(
                    {
                        "subject": test,
                        "fold": fold,
                        "dice": rng.uniform(0.5, 0.7, len(test)) + gain,
                        "precision": rng.uniform(0.5, 0.8, len(test)) + gain,
                        "sensitivity": rng.uniform(0.5, 0.8, len(test)) + gain,
                        "lesion_f1": rng.uniform(0.3, 0.9, len(test)),
                        "n_slices": 6,
                    }
                )
                slices = pd.DataFrame(
                    [
                        {"subject": s, "fold": fold, "slice": z, "dice": rng.uniform(0.4, 0.9),
                         "precision": rng.uniform(0.4, 0.9), "sensitivity": rng.uniform(0.4, 0.9)}
                        for s in test
                        for z in range(2, 8)
                    ]
                )
                directory = root / f"results/eval/{model}/{input_name}/fold{fold}"
                directory.mkdir(parents=True, exist_ok=True)
                subjects.to_csv(directory / "subjects.tsv", sep="\t", index=False)
                slices.to_csv(directory / "slices.tsv", sep="\t", index=False)
                epochs = np.arange(1, 6)
                jitter = 0.02 if input_name == "mri_radiomics" else 0.06
                directory = root / f"results/models/{model}/{input_name}/fold{fold}"
                directory.mkdir(parents=True, exist_ok=True)
                pd.DataFrame(
                    {
                        "epoch": epochs,
                        "train_loss": 1.0 / epochs,
                        "val_dice": 0.6 * (1 - np.exp(-epochs / 2)) + jitter * rng.standard_normal(epochs.size),
                        "lr": 1e-4,
                        "seconds": 1.0,
                    }
                ).to_csv(directory / "history.tsv", sep="\t", index=False)


@pytest.fixture(scope="module")
def stage_run(tmp_path_factory):
    """The stage 9-11 rules run once on synthetic upstream outputs, plus the HTML report."""
    root = tmp_path_factory.mktemp("workflow")
    copy_workflow(root)
    overlay = write_tiny_config(root)
    write_upstream_outputs(root)
    common = ["--configfile", str(overlay.relative_to(root)), "--cores", "2", "--allowed-rules", *STAGE_RULES]
    targets = TABLE_OUTPUTS + FIGURE_OUTPUTS
    result = run_snakemake([*targets, *common], cwd=root, timeout=900)
    assert result.returncode == 0, result.stderr[-5000:]
    report = run_snakemake([*targets, *common, "--report", "results/report.html"], cwd=root, timeout=600)
    assert report.returncode == 0, report.stderr[-5000:]
    return root


@pytest.mark.slow
def test_tables_have_the_contract_shape(stage_run):
    table2 = pd.read_csv(stage_run / "results/tables/table2.csv")
    assert list(table2.columns) == ["input", "experiment", *[f"fold{k}" for k in range(1, N_FOLDS + 1)]]
    assert list(table2["input"]) == list(INPUTS)
    assert table2.iloc[:, 2:].stack().between(0, 1).all()
    for name in ("table1", "table3"):
        table = pd.read_csv(stage_run / f"results/tables/{name}.csv")
        assert list(table["metric"]) == ["dice", "precision", "sensitivity"]
        assert table["p_bonferroni"].between(0, 1).all()
        assert (table["p_bonferroni"] >= table["p_value"]).all()
        assert (table["n_pairs"] == len(SUBJECTS)).all()
        assert table["mri_mean_sd"].str.fullmatch(r"0\.\d{3} ± 0\.\d{3}").all()
    sdd = pd.read_csv(stage_run / "results/tables/sdd.csv")
    assert list(sdd["model"]) == list(MODELS)
    assert sdd["p_value"].between(0, 1).all() and (sdd["n_folds"] == N_FOLDS).all()
    runs = pd.read_csv(stage_run / "results/tables/sdd_runs.csv")
    assert len(runs) == len(MODELS) * len(INPUTS) * N_FOLDS


@pytest.mark.slow
def test_table1_matches_the_library_on_the_same_files(stage_run):
    from radfusion.stats.tables import metric_summary_table, read_metric_tables

    subjects = {
        name: read_metric_tables(sorted((stage_run / f"results/eval/resnext_unet/{name}").glob("fold*/subjects.tsv")))
        for name in INPUTS
    }
    expected = metric_summary_table(subjects)
    table1 = pd.read_csv(stage_run / "results/tables/table1.csv")
    np.testing.assert_allclose(table1["mri_radiomics_mean"], expected["mri_radiomics_mean"], rtol=1e-5)
    np.testing.assert_allclose(table1["p_bonferroni"], expected["p_bonferroni"], rtol=1e-5)


@pytest.mark.slow
def test_figures_and_report_are_written(stage_run):
    for path in FIGURE_OUTPUTS:
        assert (stage_run / path).stat().st_size > 10_000, path
    page = (stage_run / "results/report.html").read_text(encoding="utf-8", errors="replace")
    for name in ("table1.csv", "table2.html", "sdd.csv", "figure1.png", "figure4.png"):
        assert name in page, name
    assert "Figure 4" in page and "Wilcoxon" in page


def planned_jobs(target: str, directory: Path) -> str:
    """The dry-run job listing of ``target`` planned from scratch (every job forced)."""
    result = run_snakemake(
        [target, "-n", "--forceall", "--configfile", "config/test.yaml"], cwd=directory, timeout=600
    )
    assert result.returncode == 0, result.stderr[-5000:] + result.stdout[-5000:]
    return result.stdout + result.stderr


@pytest.mark.parametrize(
    ("table", "model", "other"),
    [
        ("table1", "resnext_unet", "attention_unet"),
        ("table2", "resnext_unet", "attention_unet"),
        ("table3", "attention_unet", "resnext_unet"),
        ("table4", "attention_unet", "resnext_unet"),
    ],
)
def test_table_target_plans_only_its_own_model(tmp_path, table, model, other):
    copy_workflow(tmp_path)
    write_tiny_config(tmp_path)
    listing = planned_jobs(f"results/tables/{table}.csv", tmp_path)
    assert f"results/eval/{model}/" in listing
    assert f"results/models/{model}/" in listing
    assert other not in listing


@pytest.mark.slow
def test_features_table_of_real_patients_counts_the_nonzero_input_minus_lesions(tmp_path):
    """Issue 16 on the workflow: patient26's negative edge voxels make its lower percentile
    negative; its background must stay out of features.csv and of the normalized FLAIR.

    Both real patients, up to the features table (no folds, no training): patient26 (negative
    lower percentile) and patient07 (positive: its brain voxels at or below the percentile, 0 after
    normalization, must stay in the non-lesion group).
    """
    data = shared_data("open_ms_data")
    copy_workflow(tmp_path)
    patients = ["patient26", "patient07"]
    pd.DataFrame(
        {
            "subject": patients,
            "flair": [str(data / p / "FLAIR.nii.gz") for p in patients],
            "mask": [str(data / p / "lesion_mask.nii.gz") for p in patients],
        }
    ).to_csv(tmp_path / "config" / "samples_real.tsv", sep="\t", index=False)
    (tmp_path / "config" / "real.yaml").write_text("samples: config/samples_real.tsv\nfolds: 2\n")
    result = run_snakemake(
        ["results/tables/features.csv", "--cores", "2", "--configfile", "config/real.yaml"], cwd=tmp_path, timeout=900
    )
    assert result.returncode == 0, result.stderr[-5000:]

    expected_lesion, expected_other = 0, 0
    for patient in patients:
        flair = np.asarray(nib.load(tmp_path / f"results/nifti/{patient}/flair.nii.gz").dataobj)
        lesion = np.asarray(nib.load(tmp_path / f"results/nifti/{patient}/mask.nii.gz").dataobj) > 0
        normalized = np.asarray(nib.load(tmp_path / f"results/normalized/{patient}/flair.nii.gz").dataobj)
        u8 = np.asarray(nib.load(tmp_path / f"results/normalized/{patient}/flair_u8.nii.gz").dataobj)
        brain = np.asarray(nib.load(tmp_path / f"results/normalized/{patient}/brain.nii.gz").dataobj)
        np.testing.assert_array_equal(brain, (flair != 0).astype(np.uint8))
        assert (normalized[flair == 0] == 0).all() and (u8[flair == 0] == 0).all()
        expected_lesion += np.count_nonzero(lesion)
        expected_other += np.count_nonzero(flair) - np.count_nonzero(lesion & (flair != 0))
    # patient26: 1,122,604 nonzero voxels, 8,227 lesion voxels, none of them in the background
    assert np.count_nonzero(np.asarray(nib.load(tmp_path / "results/normalized/patient26/brain.nii.gz").dataobj)) == 1_122_604
    table = pd.read_csv(tmp_path / "results/tables/features.csv").set_index("feature")
    assert (table["n_lesion"] == expected_lesion).all() and (table["n_nonlesion"] == expected_other).all()
    assert table.loc["cr", "auc"] > 0.9 and table.loc["re", "auc"] < 0.5
