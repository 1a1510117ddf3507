"""The workflow as a Snakemake module of another project, as snakedeploy or a user deploys it: a
directory outside the checkout holds only config/ and a Snakefile that declares workflow/Snakefile
as a module by its local path (conftest.module_project). Code, schemas and envs come from the
module; config, resources/, results/ and logs/ are the user's directory's. Throughout, the
installed radfusion is hidden (conftest.hidden_radfusion): reading the workflow must not import
it and the jobs take it from the module's src/, as they must in the conda envs of workflow/envs/.

The session's tiny run (conftest.tiny_run) is such a module run of the whole DAG; the end-to-end
tests check its tables and figures, the test here where its files went.
"""

from __future__ import annotations

import pytest

from conftest import PROJECT, job_counts, module_project, run_snakemake


def test_module_plans_the_whole_dag_in_the_users_directory(tmp_path, hidden_radfusion):
    root = module_project(tmp_path / "project")
    result = run_snakemake(["-n", "--quiet", "rules"], cwd=root, timeout=300, env=hidden_radfusion)
    assert result.returncode == 0, result.stderr[-5000:]
    counts = job_counts(result.stdout)
    # 6 subjects, 3 folds, 2 models x 2 inputs (.test/config)
    assert counts["all"] == 1 and counts["assign_folds"] == 1
    for rule in ("demo_subject", "import_subject", "normalize_flair", "radiomics_maps", "export_slices"):
        assert counts[rule] == 6, rule
    assert counts["train_model"] == 12 and counts["evaluate_models"] == 4
    assert {"metric_summary_table", "fold_dice_table", "sdd_table", "figure1_example_slices"} <= set(counts)
    assert "fetch_encoder_weights" not in counts
    # a dry run writes no results, and nothing of the user's lands in the checkout
    assert not (root / "results").exists() and not (root / "resources").exists()
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == ["Snakefile", "config"]


def test_module_plans_the_prediction_of_new_patients(tmp_path, hidden_radfusion):
    root = module_project(tmp_path / "project")
    (root / "patients.tsv").write_text("patient\tflair\np1\tnew/p1.nii.gz\np2\tnew/p2.nii.gz\n")
    (root / "new").mkdir()
    for name in ("p1", "p2"):
        (root / "new" / f"{name}.nii.gz").write_bytes(b"a dry run does not read it")
    result = run_snakemake(
        ["predict_all", "-n", "--config", "predict={samples: patients.tsv, model: attention_unet, input: mri}"],
        cwd=root,
        timeout=300,
        env=hidden_radfusion,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    for name in ("lesion_mask.nii.gz", "lesion_summary.csv", "lesions.csv", "overlay.png"):
        assert f"results/predict/p2/{name}" in result.stdout, name
    assert job_counts(result.stdout)["predict"] == 2


def plan_prediction(root, env, predict_section: str) -> dict[str, int]:
    """Jobs of a dry run of predict_all for one patient with the config's predict section set."""
    (root / "patients.tsv").write_text("patient\tflair\np1\tp1.nii.gz\n")
    (root / "p1.nii.gz").write_bytes(b"a dry run does not read it")
    with (root / "config" / "config.yaml").open("a") as config:
        config.write(f"\npredict:\n  samples: patients.tsv\n{predict_section}")
    result = run_snakemake(["predict_all", "-n"], cwd=root, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-5000:]
    return job_counts(result.stdout)


@pytest.mark.parametrize("fraction", ["null", "0.0"])
def test_prediction_reuses_the_cross_validation_models_by_default(tmp_path, hidden_radfusion, fraction):
    """predict.brain_fraction null, or equal to slices.brain_fraction (0): no model is trained again."""
    root = module_project(tmp_path / "project")
    counts = plan_prediction(
        root, hidden_radfusion, f"  model: attention_unet\n  input: mri\n  brain_fraction: {fraction}\n"
    )
    assert counts["predict"] == 1 and counts["choose_predict_run"] == 1
    assert counts["train_model"] == 3  # the named pair's three cross-validation folds (.test/config)
    assert "train_predict_model" not in counts and "export_predict_slices" not in counts


def test_prediction_models_with_lesion_free_slices_train_the_named_pair_only(tmp_path, hidden_radfusion):
    root = module_project(tmp_path / "project")
    counts = plan_prediction(
        root, hidden_radfusion, "  model: attention_unet\n  input: mri\n  brain_fraction: 0.5\n"
    )
    # the named pair's 3 folds trained on their own slices (6 subjects), not the cross-validation
    assert counts["train_predict_model"] == 3 and counts["export_predict_slices"] == 6
    assert "train_model" not in counts and "evaluate_models" not in counts
    assert counts["predict"] == 1


def test_prediction_models_for_best_wait_for_the_choice(tmp_path, hidden_radfusion):
    """With best, the checkpoint choose_predict_run picks the pair from the cross-validation; only
    then are that pair's prediction models planned (not all four pairs')."""
    root = module_project(tmp_path / "project")
    counts = plan_prediction(root, hidden_radfusion, "  brain_fraction: 0.5\n")
    assert counts["choose_predict_run"] == 1 and counts["evaluate_models"] == 4
    assert "train_predict_model" not in counts


def test_module_reports_a_bad_patient_sheet_naming_it(tmp_path, hidden_radfusion):
    root = module_project(tmp_path / "project")
    (root / "patients.tsv").write_text("patient\tflair\np1\ta.nii.gz\np1\tb.nii.gz\n")
    result = run_snakemake(
        ["predict_all", "-n", "--config", "predict={samples: patients.tsv}"], cwd=root, timeout=300, env=hidden_radfusion
    )
    assert result.returncode != 0
    assert "patients.tsv: duplicate patient ID(s) ['p1']" in result.stdout + result.stderr


@pytest.mark.slow
def test_module_run_writes_into_the_users_directory(tiny_run):
    """The tiny run (the whole DAG as a module, training 12 tiny models) kept its files in the
    user's directory: demo subjects under resources/, models, tables and logs under results/ and
    logs/ there, none next to the module's code."""
    assert (tiny_run / "Snakefile").read_text().count("module radfusion:") == 1
    assert (tiny_run / "resources" / "demo" / "demo01" / "flair.nii.gz").is_file()
    for model in ("resnext_unet", "attention_unet"):
        for fold in (1, 2, 3):
            assert (tiny_run / "results" / "models" / model / "mri" / f"fold{fold}" / "model.pt").is_file()
    assert (tiny_run / "results" / "folds.tsv").is_file()
    assert (tiny_run / "logs" / "training" / "attention_unet" / "mri_radiomics" / "fold3.log").is_file()
    assert not (PROJECT / "workflow" / "results").exists() and not (PROJECT / "workflow" / "resources").exists()


@pytest.mark.slow
def test_predict_all_trains_prediction_models_with_lesion_free_slices(tiny_run, hidden_radfusion):
    """predict.brain_fraction on the tiny run: the named pair is trained again (3 folds) on slices
    that include lesion-free ones, and predict segments a patient with those models; the
    cross-validation's models and slices are left as they were."""
    import numpy as np
    import pandas as pd

    root = tiny_run
    cv_model = root / "results/models/attention_unet/mri/fold1/model.pt"
    cv_mtime = cv_model.stat().st_mtime
    (root / "patients.tsv").write_text("patient\tflair\np1\tresources/demo/demo01/flair.nii.gz\n")
    (root / "predict.yaml").write_text(
        "predict:\n  samples: patients.tsv\n  model: attention_unet\n  input: mri\n  brain_fraction: 1.0\n"
    )
    result = run_snakemake(
        ["predict_all", "--cores", "2", "--configfile", "config/config.yaml", "predict.yaml"],
        cwd=root,
        timeout=1800,
        env=hidden_radfusion,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    choice = pd.read_csv(root / "results/predict/chosen_run.tsv", sep="\t").iloc[0]
    assert (choice["model"], choice["input"], choice["models_dir"]) == ("attention_unet", "mri", "results/predict_models")
    assert choice["brain_fraction"] == 1.0
    for fold in (1, 2, 3):
        assert (root / f"results/predict_models/attention_unet/mri/fold{fold}/model.pt").is_file()
    assert not (root / "results/predict_models/resnext_unet").exists()

    def lesion_free_slices(path):
        with np.load(path) as arrays:
            return int((arrays["masks"].reshape(arrays["masks"].shape[0], -1).max(axis=1) == 0).sum())

    cv_slices = sorted((root / "results/slices").glob("demo*.npz"))
    assert sum(lesion_free_slices(p) for p in cv_slices) == 0
    assert sum(lesion_free_slices(root / "results/predict_models/slices" / p.name) for p in cv_slices) > 0
    summary = pd.read_csv(root / "results/predict/p1/lesion_summary.csv").iloc[0]
    assert (summary["model"], summary["input"], summary["folds"]) == ("attention_unet", "mri", 3)
    assert (root / "results/predict/p1/lesion_mask.nii.gz").is_file()
    assert "predict_models" in (root / "logs/predict/p1.log").read_text()
    assert cv_model.stat().st_mtime == cv_mtime
