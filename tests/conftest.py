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


@pytest.fixture(autouse=True)
def _precision_choice_per_test(tmp_path_factory, monkeypatch):
    """The CPU precision choice (radfusion.execution) cached in the test session, never in ~/.cache,
    and chosen afresh for each test, so that a test that forces or mocks it leaves no trace."""
    from radfusion.execution import CACHE_ENV, cpu_precision

    if not os.environ.get(CACHE_ENV):
        monkeypatch.setenv(CACHE_ENV, str(tmp_path_factory.getbasetemp() / "radfusion-cache"))
    cpu_precision.cache_clear()
    yield
    cpu_precision.cache_clear()


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


def job_counts(stdout: str) -> dict[str, int]:
    """The dry run's job stats table: rule -> number of jobs."""
    counts = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            counts[parts[0]] = int(parts[1])
    return counts


def run_snakemake(
    args: list[str], cwd: Path = PROJECT, timeout: int = 1800, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run snakemake with the tests' interpreter first on PATH (``script:`` rules need it) and
    ``env`` added to the environment."""
    env = {**os.environ, **(env or {})}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        snakemake_command() + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


#: The workflow's Snakefile (the root Snakefile only includes it).
WORKFLOW_SNAKEFILE = PROJECT / "workflow" / "Snakefile"
#: The test config, .test/config: the tiniest whole DAG (6 demo subjects, 3 folds, quick settings
#: made smaller). Its paths are relative to the working directory, as CI runs it:
#: `snakemake --snakefile workflow/Snakefile --directory .test`.
TEST_CONFIG_DIR = PROJECT / ".test" / "config"


def workdir_with_test_config(root: Path) -> Path:
    """A scratch working directory laid out as .test/ is: the test config in root/config."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(TEST_CONFIG_DIR, root / "config")
    return root


#: A user's Snakefile that uses the workflow as a module (README, "Use as a module").
MODULE_SNAKEFILE = """\
configfile: "config/config.yaml"


module radfusion:
    snakefile:
        "{snakefile}"
    config:
        config


use rule * from radfusion
"""


def module_project(root: Path) -> Path:
    """A user's project outside the checkout: config/ (the test config) and a Snakefile that
    declares this checkout's workflow/Snakefile as module radfusion by its local path."""
    workdir_with_test_config(root)
    (root / "Snakefile").write_text(MODULE_SNAKEFILE.format(snakefile=WORKFLOW_SNAKEFILE))
    return root


@pytest.fixture(scope="session")
def hidden_radfusion(tmp_path_factory) -> dict[str, str]:
    """Environment under which an installed radfusion cannot be imported, as in a conda env of
    workflow/envs/ or a Snakemake without radfusion: a radfusion package that refuses to import,
    first on PYTHONPATH. Reading the workflow must not import radfusion, and the jobs' scripts
    must take it from the workflow's own src/, which they put before PYTHONPATH."""
    folder = tmp_path_factory.mktemp("hidden") / "radfusion"
    folder.mkdir()
    (folder / "__init__.py").write_text(
        "raise ImportError('the installed radfusion is hidden from this test: the workflow must not import "
        "radfusion while it is read, and its scripts must take it from the workflow src/ (docs/architecture.md)')\n"
    )
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(folder.parent), os.environ.get("PYTHONPATH")]))}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, hidden_radfusion):
    """The default target and the report with the test config (.test/config), run once per
    session as a user would use the workflow: as a module of a project outside the checkout
    (module_project), with the installed radfusion hidden (hidden_radfusion). Its models also
    serve the prediction tests."""
    root = module_project(tmp_path_factory.mktemp("e2e"))
    result = run_snakemake(["--cores", "2"], cwd=root, timeout=3600, env=hidden_radfusion)
    assert result.returncode == 0, result.stderr[-8000:]
    report = run_snakemake(["--report", "results/report.html"], cwd=root, timeout=600, env=hidden_radfusion)
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
