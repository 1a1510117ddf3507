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
