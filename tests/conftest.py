"""Shared fixtures: paths to the project and to the real public test data."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

PROJECT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT.parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test when the real data are absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real test data not found at {path} (../shared/data is absent on this machine)")
    return path


def snakemake_command() -> list[str]:
    """The snakemake of the interpreter running the tests (the project's environment)."""
    exe = Path(sys.executable).with_name("snakemake")
    return [str(exe)] if exe.exists() else [shutil.which("snakemake") or "snakemake"]


def run_snakemake(args: list[str], cwd: Path = PROJECT, timeout: int = 1800) -> subprocess.CompletedProcess:
    """Run snakemake with the tests' interpreter first on PATH (``script:`` rules need it)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        snakemake_command() + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


#: The tiniest whole DAG: the quick settings plus tests/data/tiny.yaml (6 subjects, 3 folds).
TINY_CONFIG = ["--configfile", "config/quick.yaml", "tests/data/tiny.yaml"]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The default target and the report with the quick settings on the tiny cohort, run once per
    session in a scratch copy of the workflow; its models also serve the prediction tests."""
    root = tmp_path_factory.mktemp("e2e")
    shutil.copy(PROJECT / "Snakefile", root / "Snakefile")
    for folder in ("workflow", "config", "tests/data"):
        shutil.copytree(PROJECT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    result = run_snakemake(["--cores", "2", *TINY_CONFIG], cwd=root, timeout=3600)
    assert result.returncode == 0, result.stderr[-8000:]
    report = run_snakemake(["--report", "results/report.html", *TINY_CONFIG], cwd=root, timeout=600)
    assert report.returncode == 0, report.stderr[-8000:]
    return root


@pytest.fixture
def write_nifti(tmp_path):
    """Write an array as NIfTI under tmp_path and return the path."""

    def write(name: str, data, affine=None) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine), str(path))
        return path

    return write


@pytest.fixture
def small_subject(write_nifti):
    """A small valid FLAIR (bright blob = lesion) and its binary mask."""
    rng = np.random.default_rng(0)
    flair = rng.uniform(50, 100, size=(24, 20, 16)).astype(np.float32)
    mask = np.zeros(flair.shape, np.uint8)
    mask[10:14, 8:12, 6:9] = 1
    flair[mask == 1] += 100
    return write_nifti("flair.nii.gz", flair), write_nifti("mask.nii.gz", mask)
