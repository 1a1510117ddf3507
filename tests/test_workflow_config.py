"""Config and sample-sheet validation through Snakemake itself, and bad input through the real rule."""

from __future__ import annotations

import shutil
import socket

import numpy as np
import pytest
import yaml

from conftest import PROJECT, WORKFLOW_SNAKEFILE, job_counts, run_snakemake, workdir_with_test_config

from radfusion.weights import IMAGENET_FILE

WEIGHTS_RULE = "fetch_encoder_weights"


def write_sheet(path, rows):
    lines = ["subject\tflair\tmask"] + ["\t".join(row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def dry_run(tmp_path, *extra):
    return run_snakemake(["-n", "--quiet", "rules", "--directory", str(PROJECT), *extra], timeout=300)


def test_default_config_plans_the_dag():
    result = run_snakemake(["-n", "--quiet", "rules"], timeout=300)
    assert result.returncode == 0, result.stderr
    assert "demo_subject" in result.stdout and "normalize_flair" in result.stdout


def test_quick_overlay_plans_a_smaller_cohort():
    result = run_snakemake(["-n", "--forceall", "--configfile", "config/quick.yaml"], timeout=300)
    assert result.returncode == 0, result.stderr
    counts = {line.split()[0]: int(line.split()[1]) for line in result.stdout.splitlines() if line.startswith("demo_subject")}
    assert counts == {"demo_subject": 12}
    assert WEIGHTS_RULE not in result.stdout  # the demo needs no network


def test_quick_dry_run_plans_the_same_jobs_with_stripping_on_auto_and_off(tmp_path):
    # The demo subjects are skull-stripped already: preprocess.skull_strip auto (the default)
    # plans no skull_strip job, and exactly the jobs of skull_strip none.
    plans = {}
    for mode in ("auto", "none"):
        overlay = tmp_path / f"{mode}.yaml"
        overlay.write_text(yaml.safe_dump({"preprocess": {"skull_strip": mode}}))
        result = run_snakemake(
            ["-n", "--quiet", "rules", "--forceall", "--configfile", "config/quick.yaml", str(overlay)],
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        plans[mode] = job_counts(result.stdout)
    assert "skull_strip" not in plans["auto"] and plans["auto"] == plans["none"]
    assert plans["auto"]["normalize_flair"] == 12 and plans["auto"]["train_model"] == 24


# --- ImageNet encoder weights (rule fetch_encoder_weights) ------------------------------------


def weights_overlay(tmp_path, **weights):
    overlay = tmp_path / "weights.yaml"
    overlay.write_text(yaml.safe_dump({"weights": weights}))
    return overlay


def test_full_config_fetches_the_imagenet_weights_once_when_missing(tmp_path):
    overlay = weights_overlay(tmp_path, folder=str(tmp_path / "weights"))
    result = dry_run(tmp_path, "--configfile", "config/config.yaml", str(overlay))
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout)
    assert counts[WEIGHTS_RULE] == 1 and counts["train_model"] == 24


def test_with_a_local_weights_file_the_dry_run_plans_the_24_training_jobs(tmp_path):
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / IMAGENET_FILE).write_bytes(b"placeholder: a dry run does not read it")
    overlay = weights_overlay(tmp_path, folder=str(folder), download=False)
    result = run_snakemake(
        ["results/models/resnext_unet/mri/fold1/model.pt", "-n", "--configfile", "config/config.yaml", str(overlay)],
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert f"folds.tsv, {folder / IMAGENET_FILE}" in result.stdout  # the training job's input
    result = dry_run(tmp_path, "--configfile", "config/config.yaml", str(overlay))
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout)
    assert counts["train_model"] == 24 and WEIGHTS_RULE not in counts


@pytest.mark.parametrize("settings", ["quick", "test"])
def test_quick_settings_plan_no_weights_step(tmp_path, settings):
    if settings == "quick":
        # --forceall: plan every job even where a finished quick run left its results in the checkout.
        result = dry_run(tmp_path, "--forceall", "--configfile", "config/quick.yaml")
    else:  # .test/config as CI runs it: its own working directory, workflow/Snakefile
        root = workdir_with_test_config(tmp_path / "test")
        result = run_snakemake(["-n", "--quiet", "rules", "--snakefile", str(WORKFLOW_SNAKEFILE)], cwd=root, timeout=300)
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout)
    assert counts["train_model"] > 0 and WEIGHTS_RULE not in counts


def test_download_off_without_the_file_stops_before_any_job(tmp_path):
    folder = tmp_path / "weights"
    overlay = weights_overlay(tmp_path, folder=str(folder), download=False)
    result = dry_run(tmp_path, "--configfile", "config/config.yaml", str(overlay))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"ImageNet encoder weights {IMAGENET_FILE} are missing" in output
    assert f"put the file at {folder / IMAGENET_FILE}" in output


def test_without_network_the_full_run_stops_before_any_training_job(tmp_path):
    """Issue acceptance: the full config, no network (a closed port), `snakemake --cores 2`."""
    root = tmp_path / "run"
    root.mkdir()
    shutil.copy(PROJECT / "Snakefile", root / "Snakefile")
    for folder in ("workflow", "config"):
        shutil.copytree(PROJECT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/models/{IMAGENET_FILE}"
    overlay = weights_overlay(tmp_path, url=url)
    result = run_snakemake(["--cores", "2", "--configfile", "config/config.yaml", str(overlay)], cwd=root, timeout=600)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"ImageNet encoder weights {IMAGENET_FILE} are missing from resources/weights/" in output
    assert f"download {url} and put the file at resources/weights/{IMAGENET_FILE}" in output
    assert "rule train_model" not in output
    assert not (root / "results" / "models").exists() and not (root / "logs" / "training").exists()
    assert not (root / "resources" / "weights").exists() or not any((root / "resources" / "weights").iterdir())


@pytest.mark.parametrize(
    "override, message",
    [
        (["--config", "bogus=1"], "'bogus' was unexpected"),
        (["--config", "folds=1"], "folds"),
        (["--config", "models=[unet]"], "unet"),
        (["--config", "weights={url: https://mirror.example.org/resnext50_32x4d.pth}"], "does not match"),
    ],
)
def test_unknown_or_invalid_config_is_named(tmp_path, override, message):
    result = dry_run(tmp_path, *override)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


def test_invalid_nested_value_is_named(tmp_path):
    overlay = tmp_path / "bad.yaml"
    overlay.write_text(yaml.safe_dump({"radiomics": {"re": {"offsets": "diagonal"}}}))
    result = dry_run(tmp_path, "--configfile", str(overlay))
    assert result.returncode != 0
    assert "'diagonal' is not one of" in result.stdout + result.stderr


def test_duplicate_subjects_stop_the_run(tmp_path):
    sheet = write_sheet(tmp_path / "s.tsv", [("a", "x.nii.gz", "m.nii.gz")] * 2 + [(c, "x", "m") for c in "bcdefg"])
    result = dry_run(tmp_path, "--config", f"samples={sheet}")
    assert result.returncode != 0
    assert "duplicate subject ID(s) ['a']" in result.stdout + result.stderr


def demo_sheet(path, subjects):
    return write_sheet(
        path, [(s, f"resources/demo/{s}/flair.nii.gz", f"resources/demo/{s}/mask.nii.gz") for s in subjects]
    )


def test_a_target_without_folds_plans_with_fewer_subjects_than_folds(tmp_path):
    # One subject's feature maps need no folds: the fold count is checked by assign_folds only.
    sheet = demo_sheet(tmp_path / "s.tsv", ["demo01", "demo02", "demo03"])
    result = run_snakemake(
        ["results/features/demo01/cr.nii.gz", "-n", "--quiet", "rules", "--directory", str(tmp_path / "run"),
         "--configfile", str(PROJECT / "config" / "config.yaml"), "--config", f"samples={sheet}"],
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert job_counts(result.stdout) == {"demo_subject": 1, "import_subject": 1, "normalize_flair": 1, "radiomics_maps": 1}


def test_fewer_subjects_than_folds_fails_assign_folds_naming_the_sheet(tmp_path):
    """The project's own command line (profiles/default: show-failed-logs) puts the failed job's
    message, which names the sheet, on the console, and no folds file is left."""
    sheet = demo_sheet(tmp_path / "s.tsv", ["demo01", "demo02", "demo03"])
    workdir = tmp_path / "run"
    result = run_snakemake(
        ["results/folds.tsv", "--cores", "1", "--directory", str(workdir),
         "--configfile", str(PROJECT / "config" / "config.yaml"), "--config", f"samples={sheet}"],
        timeout=300,
    )
    assert result.returncode != 0
    assert f"{sheet}: 3 subject(s) is fewer than the 6 folds" in result.stdout + result.stderr
    assert "rule assign_folds" in result.stdout + result.stderr
    assert not (workdir / "results" / "folds.tsv").exists()


def test_bad_file_fails_the_import_rule_and_leaves_nothing(tmp_path, write_nifti):
    """A corrupt FLAIR fed through the real rule: the job fails, its log names subject and file."""
    good = write_nifti("good.nii.gz", np.ones((8, 8, 8), np.float32))
    mask = write_nifti("mask.nii.gz", np.zeros((8, 8, 8), np.uint8))
    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(good.read_bytes()[:60])
    rows = [("bad", str(corrupt), str(mask))] + [(f"ok{i}", str(good), str(mask)) for i in range(5)]
    sheet = write_sheet(tmp_path / "s.tsv", rows)
    workdir = tmp_path / "run"
    result = run_snakemake(
        ["results/nifti/bad/flair.nii.gz", "--snakefile", str(PROJECT / "Snakefile"),
         "--directory", str(workdir), "--cores", "1",
         "--configfile", str(PROJECT / "config" / "config.yaml"), "--config", f"samples={sheet}"],
        timeout=300,
    )
    assert result.returncode != 0
    log = (workdir / "logs" / "import" / "bad.log").read_text()
    assert "InputError" in log and "subject 'bad'" in log and "corrupt.nii.gz" in log
    # ... and on the console too (profiles/default: show-failed-logs)
    console = result.stdout + result.stderr
    assert "subject 'bad'" in console and "corrupt.nii.gz" in console
    assert not (workdir / "results" / "nifti" / "bad").exists() or not any((workdir / "results" / "nifti" / "bad").iterdir())


@pytest.mark.slow
def test_training_reads_the_fetched_weights_file(tmp_path):
    """fetch_encoder_weights (from a file:// mirror) -> train_model: the job's encoder starts from
    the file's weights (one epoch of a few steps moves them by far less than a random init would)."""
    import hashlib

    import torch
    import torchvision

    from radfusion.train import load_trained_model

    torch.manual_seed(5)
    source = torchvision.models.resnext50_32x4d(weights=None)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    torch.save(source.state_dict(), mirror / "w.pth")
    name = f"resnext50_32x4d-{hashlib.sha256((mirror / 'w.pth').read_bytes()).hexdigest()[:8]}.pth"
    (mirror / "w.pth").rename(mirror / name)

    root = tmp_path / "run"
    root.mkdir()
    shutil.copy(PROJECT / "Snakefile", root / "Snakefile")
    for folder in ("workflow", "config"):
        shutil.copytree(PROJECT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    lines = (PROJECT / "config" / "samples.tsv").read_text().splitlines()
    (root / "config" / "samples_two.tsv").write_text("\n".join(lines[:3]) + "\n")
    overlay = tmp_path / "two.yaml"
    overlay.write_text(
        yaml.safe_dump(
            {
                "samples": "config/samples_two.tsv",
                "folds": 2,
                "demo": {"voxel_size_range": [3.0, 3.0], "n_lesions_range": [6, 8]},
                "slices": {"stride": 2},
                "training": {"resnext_unet": {"image_size": 32, "epochs": 1, "batch_size": 4, "warmup_iters": 2}},
                "weights": {"url": (mirror / name).as_uri()},
            }
        )
    )
    target = "results/models/resnext_unet/mri/fold1/model.pt"
    result = run_snakemake([target, "--cores", "2", "--configfile", "config/config.yaml", str(overlay)], cwd=root)
    assert result.returncode == 0, result.stderr[-5000:]
    fetched = root / "resources" / "weights" / name
    assert fetched.read_bytes() == (mirror / name).read_bytes()
    assert f"encoder weights: resources/weights/{name}" in (root / "logs/training/resnext_unet/mri/fold1.log").read_text()
    model, _ = load_trained_model(root / target)
    trained = model.encoder.layer3[0].conv2.weight.detach()
    start = source.layer3[0].conv2.weight.detach()
    other = torchvision.models.resnext50_32x4d(weights=None).layer3[0].conv2.weight.detach()  # another init
    assert (trained - start).abs().max() < 1e-2 < (trained - other).abs().max()
