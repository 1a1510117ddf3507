"""The ``radfusion`` command line: subcommands, settings precedence, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from radfusion.cli import main
from radfusion.models import build_model
from radfusion.predict import OUTPUT_FILES
from radfusion.train import save_model

from conftest import PROJECT


def radfusion_command() -> list[str]:
    """The installed ``radfusion`` entry point of the tests' environment (else ``python -m``)."""
    exe = Path(sys.executable).with_name("radfusion")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "radfusion.cli"]


def run_cli(*args: str, cwd: Path = PROJECT) -> subprocess.CompletedProcess:
    return subprocess.run(radfusion_command() + list(args), cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture
def patient(tmp_path):
    """A small FLAIR-like NIfTI (LPS axes) and fold models of resnext_unet/mri under models/."""
    rng = np.random.default_rng(0)
    flair = np.zeros((32, 32, 5), np.float32)
    flair[3:29, 2:30] = rng.uniform(100, 200, (26, 28, 5))
    flair[8:12, 8:12, 1:4] = 600
    path = tmp_path / "flair.nii.gz"
    nib.save(nib.Nifti1Image(flair, np.diag([-1.0, -1.0, 1.5, 1.0])), str(path))
    for fold in (1, 2):
        torch.manual_seed(fold)
        save_model(
            build_model("resnext_unet", 1),
            tmp_path / "models" / "resnext_unet" / "mri" / f"fold{fold}" / "model.pt",
            model_name="resnext_unet",
            input_name="mri",
            image_size=32,
            preprocessing=PREPROCESSING,
        )
    return path


# What the fold models were trained with; predict takes it from their files (threshold 0.4 here).
PREPROCESSING = {
    "lower_percentile": 0.5, "upper_percentile": 99.5, "cr": {"s": 2, "num": 15, "m": 5},
    "re": {"s": 5, "alpha": 7, "offsets": "skimage"}, "threshold": 0.4,
}


def test_help_lists_the_predict_command():
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    assert "predict" in result.stdout and "usage: radfusion" in result.stdout
    result = run_cli("predict", "--help")
    assert result.returncode == 0
    for flag in ("--out", "--models", "--models-dir", "--model", "--input", "--eval-dir", "--threshold", "--device"):
        assert flag in result.stdout


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "usage: radfusion" in capsys.readouterr().err


def test_missing_flair_is_one_line_without_traceback(tmp_path):
    result = run_cli("predict", str(tmp_path / "nowhere" / "FLAIR.nii.gz"), "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith("radfusion predict: error: file '") and "FLAIR.nii.gz': does not exist" in lines[0]
    assert not (tmp_path / "out").exists()


def test_corrupt_flair_is_one_line_naming_the_file(tmp_path, patient):
    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(patient.read_bytes()[:200])
    result = run_cli(
        "predict", str(corrupt), "--out", str(tmp_path / "out"), "--models-dir", str(tmp_path / "models"),
        "--model", "resnext_unet", "--input", "mri", "-q",
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "corrupt.nii.gz" in line and "cannot be read as NIfTI" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--model", "resnext_unet", "--input", "mri_radiomics"], "no trained fold models"),
        ([], "no evaluation results"),
        (["--model", "resnext_unet", "--input", "mri", "--threshold", "1.5"], "--threshold"),
    ],
)
def test_unusable_models_or_settings_are_one_line_errors(tmp_path, patient, capsys, monkeypatch, flags, message):
    monkeypatch.chdir(tmp_path)  # no config/config.yaml here
    status = main(["predict", str(patient), "--out", "out", "--models-dir", "models", "-q", *flags])
    assert status == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("radfusion predict: error:") and message in line


def test_predict_takes_its_settings_from_the_model_files_of_a_run_folder(tmp_path, patient, capsys, monkeypatch):
    """``--models RUN_DIR`` needs no config: threshold (and normalization, CR/RE) from the files;
    a config in the working directory is not read; ``--threshold`` overrides explicitly."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text("evaluation: {threshold: 0.9}\nnormalize: {lower_percentile: 40}\n")
    run = tmp_path / "models" / "resnext_unet" / "mri"
    assert main(["predict", str(patient), "--out", "a", "--models", str(run), "--threads", "1", "-q"]) == 0
    assert "(resnext_unet/mri, 2 fold models)" in capsys.readouterr().out
    assert pd.read_csv(tmp_path / "a" / OUTPUT_FILES["summary"]).iloc[0]["threshold"] == 0.4
    assert main(["predict", str(patient), "--out", "b", "--models", str(run), "--threshold", "0.3", "-q"]) == 0
    assert pd.read_csv(tmp_path / "b" / OUTPUT_FILES["summary"]).iloc[0]["threshold"] == 0.3


def test_predict_end_to_end_with_best_run(tmp_path, patient, capsys):
    for model, input_name, dice in (("resnext_unet", "mri", 0.8), ("attention_unet", "mri", 0.6)):
        table = tmp_path / "eval" / model / input_name / "fold1" / "subjects.tsv"
        table.parent.mkdir(parents=True)
        pd.DataFrame({"subject": ["a"], "dice": [dice]}).to_csv(table, sep="\t", index=False)
    out = tmp_path / "results" / "p01"
    status = main(
        ["predict", str(patient), "--out", str(out), "--models-dir", str(tmp_path / "models"),
         "--eval-dir", str(tmp_path / "eval"), "--device", "cpu", "--threads", "1", "-q"]
    )
    assert status == 0
    stdout = capsys.readouterr().out
    assert stdout.startswith("p01: ") and "(resnext_unet/mri, 2 fold models, cross-validated Dice 0.800)" in stdout
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES.values())
    summary = pd.read_csv(out / OUTPUT_FILES["summary"]).iloc[0]
    assert summary["threshold"] == 0.4 and summary["patient"] == "p01"
    written = nib.load(str(out / OUTPUT_FILES["mask"]))
    np.testing.assert_array_equal(written.affine, nib.load(str(patient)).affine)


def test_folds_and_precision_choose_the_ensemble_and_arithmetic(tmp_path, patient, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "models" / "resnext_unet" / "mri"
    assert main(["predict", str(patient), "--out", "one", "--models", str(run), "--folds", "2", "-q",
                 "--precision", "float32"]) == 0
    assert "(resnext_unet/mri, 1 fold models)" in capsys.readouterr().out
    assert pd.read_csv(tmp_path / "one" / OUTPUT_FILES["summary"]).iloc[0]["folds"] == 1
    assert main(["predict", str(patient), "--out", "bad", "--models", str(run), "--folds", "1", "7", "-q"]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "--folds: no model for fold 7" in line and "it has folds 1, 2" in line
    assert not (tmp_path / "bad").exists()


def test_precision_reaches_the_inference_path(tmp_path, patient, monkeypatch):
    import radfusion.evaluate

    seen = []
    original = radfusion.evaluate.predict_probabilities

    def recording(model, images, *, precision=None, **kwargs):
        seen.append(precision)
        return original(model, images, precision="float32" if precision == "int8" else precision, **kwargs)

    monkeypatch.setattr(radfusion.evaluate, "predict_probabilities", recording)
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "models" / "resnext_unet" / "mri"
    assert main(["predict", str(patient), "--out", "auto", "--models", str(run), "-q"]) == 0
    assert seen == [None, None]  # the machine's policy, for each of the two fold models
    seen.clear()
    monkeypatch.setattr("radfusion.quantize.int8_supported", lambda: True)
    assert main(["predict", str(patient), "--out", "int8", "--models", str(run), "-q", "--precision", "int8"]) == 0
    assert seen == ["int8", "int8"]
    monkeypatch.setattr("radfusion.quantize.int8_supported", lambda: False)
    assert main(["predict", str(patient), "--out", "no", "--models", str(run), "-q", "--precision", "int8"]) == 1
    assert not (tmp_path / "no").exists()
