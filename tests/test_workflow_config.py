"""Config and sample-sheet validation through Snakemake itself, and bad input through the real rule."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from conftest import PROJECT, run_snakemake


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


@pytest.mark.parametrize(
    "override, message",
    [
        (["--config", "bogus=1"], "'bogus' was unexpected"),
        (["--config", "folds=1"], "folds"),
        (["--config", "models=[unet]"], "unet"),
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


def test_fewer_subjects_than_folds_stops_the_run(tmp_path):
    sheet = write_sheet(tmp_path / "s.tsv", [(c, "x.nii.gz", "m.nii.gz") for c in "abc"])
    result = dry_run(tmp_path, "--config", f"samples={sheet}")
    assert result.returncode != 0
    assert "3 subject(s) is fewer than the 6 folds" in result.stdout + result.stderr


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
    assert not (workdir / "results" / "nifti" / "bad").exists() or not any((workdir / "results" / "nifti" / "bad").iterdir())
