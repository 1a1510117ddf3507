"""The SLURM profile on a real single-node SLURM cluster started by the test.

What it shows: with profiles/slurm/config.yaml, changing only the partition and account names,
the workflow runs every job of a training target through sbatch; the training job is submitted to
the GPU partition with a GPU request (and SLURM allocates it one), CPU rules go to the CPU
partition without one; and the results are identical to a local run of the same target.

The cluster: Debian's slurmctld, slurmd, slurm-client and munge (apt-get install slurmctld slurmd
slurm-client munge). The test starts a private munged (own key and socket), writes slurm.conf and
gres.conf from tests/slurm/*.in into /etc/slurm/ (the path compiled into the SLURM tools: the
plugin's job step drops SLURM_* variables, SLURM_CONF included, before calling srun, so a config
elsewhere is not found inside jobs), and runs slurmctld and slurmd in the foreground on loopback
ports it picked, one node with a fake GPU (gres on /dev/null), select/cons_tres, no accounting.
Everything it started is stopped and the files it wrote are removed when the module ends.

The profile's documented GRES alternative is checked without a cluster, through the plugin's
own sbatch-line builder.

The cluster test is skipped, with the reason, where the packages are absent, the test does not
run as root (slurmd must), /etc/slurm/slurm.conf belongs to a real cluster, or the daemons do not
come up.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

PROJECT = Path(__file__).resolve().parents[1]
TEMPLATES = Path(__file__).resolve().parent / "slurm"
SLURM_CONF_DIR = Path("/etc/slurm")
MARKER = "radfusion-test-cluster"  # first line of the files this test writes into /etc/slurm

TRAINING_RULE = "train_model"
TARGET = "results/models/resnext_unet/mri/fold1/model.pt"
CPU_PARTITION = "rf_test_cpu"
GPU_PARTITION = "rf_test_gpu"
ACCOUNT = "rf_test_account"

# The smallest run that still goes through every stage the training job needs: two demo subjects
# (the minimum for two folds) at 3 mm, one epoch at 32x32; no ImageNet weights (no network here).
TINY_CONFIG = {
    "samples": "config/samples_slurm_test.tsv",
    "folds": 2,
    "demo": {"voxel_size_range": [3.0, 3.0], "n_lesions_range": [6, 8]},
    "slices": {"stride": 2},
    "training": {
        "resnext_unet": {"image_size": 32, "epochs": 1, "batch_size": 4, "warmup_iters": 2, "encoder_weights": None}
    },
}
TINY_SUBJECTS = ["demo01", "demo02"]

REQUIRED_PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol", "scancel", "srun")


def find_program(name: str) -> str | None:
    """A SLURM or munge program on PATH, or in the sbin folders (daemons live there; CI shells
    do not always have them on PATH)."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/local/sbin"])
    return shutil.which(name, path=search)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition, timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return False


def stop(process: subprocess.Popen) -> None:
    """SIGTERM a daemon this test started (by its own process), SIGKILL if it lingers."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def our_file(path: Path) -> bool:
    """Whether a file in /etc/slurm was written by this test (its first line names the marker)."""
    if not path.exists():
        return False
    first_line = (path.read_text(errors="replace").splitlines() or [""])[0]
    return MARKER in first_line


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A running single-node SLURM cluster (CPU and GPU partition, one fake GPU), torn down after."""
    programs = {name: find_program(name) for name in REQUIRED_PROGRAMS}
    missing = [name for name, path in programs.items() if path is None]
    if missing:
        pytest.skip(f"SLURM packages absent (missing {', '.join(missing)}): apt-get install slurmctld slurmd slurm-client munge")
    if os.geteuid() != 0:
        pytest.skip("starting slurmd needs root")
    conf, gres = SLURM_CONF_DIR / "slurm.conf", SLURM_CONF_DIR / "gres.conf"
    for path in (conf, gres):
        if path.exists() and not our_file(path):
            pytest.skip(f"{path} exists and was not written by this test (a real cluster?); not touching it")

    base = tmp_path_factory.mktemp("slurm")
    dirs = {name: base / name for name in ("state", "spool", "log", "munge")}
    for path in dirs.values():
        path.mkdir()
    dirs["munge"].chmod(0o711)  # munged wants its socket's folder searchable by all
    key = dirs["munge"] / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    socket_path = dirs["munge"] / "munge.sock"
    node = socket.gethostname().split(".")[0]
    settings = {
        "hostname": node,
        "node": node,
        "user": getpass.getuser(),
        "slurmctld_port": free_port(),
        "slurmd_port": free_port(),
        "munge_socket": socket_path,
        "state_dir": dirs["state"],
        "spool_dir": dirs["spool"],
        "log_dir": dirs["log"],
        # Enough CPUs and memory for the profile's requests (config_overrides: not checked
        # against the machine); the tiny jobs run fine oversubscribed.
        "cpus": max(4, os.cpu_count() or 1),
        "memory_mb": 64000,
        "cpu_partition": CPU_PARTITION,
        "gpu_partition": GPU_PARTITION,
        "sbatch": programs["sbatch"],
    }

    processes: dict[str, subprocess.Popen] = {}
    written: list[Path] = []

    def start(name: str, command: list[str]) -> subprocess.Popen:
        out = open(dirs["log"] / f"{name}.out", "w")
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        processes[name] = process
        return process

    def teardown():
        # Cancel what is left of our jobs first, so no slurmstepd outlives its slurmd.
        if "slurmctld" in processes and processes["slurmctld"].poll() is None:
            ids = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout.split()
            if ids:
                subprocess.run(["scancel", *ids], capture_output=True)
                wait_for(lambda: not subprocess.run(["squeue", "-h", "-t", "R,CG"], capture_output=True, text=True).stdout.strip(), 20)
        for name in reversed(list(processes)):  # slurmd, slurmctld, munged
            stop(processes[name])
        for path in written:
            if our_file(path):
                path.unlink()

    try:
        start(
            "munged",
            [
                programs["munged"], "--foreground", "--force",
                f"--socket={socket_path}", f"--key-file={key}",
                f"--log-file={dirs['munge'] / 'munged.log'}", f"--pid-file={dirs['munge'] / 'munged.pid'}",
                f"--seed-file={dirs['munge'] / 'munged.seed'}",
            ],
        )
        if not wait_for(socket_path.exists, 15):
            raise RuntimeError(f"munged did not start:\n{tail(dirs['log'] / 'munged.out')}")
        SLURM_CONF_DIR.mkdir(parents=True, exist_ok=True)
        for template, path in ((TEMPLATES / "slurm.conf.in", conf), (TEMPLATES / "gres.conf.in", gres)):
            path.write_text(template.read_text().format(**settings))
            written.append(path)
        start("slurmctld", [programs["slurmctld"], "-D", "-i"])
        if not wait_for(lambda: subprocess.run(["scontrol", "ping"], capture_output=True, text=True).stdout.count("UP") > 0, 30):
            raise RuntimeError(f"slurmctld did not answer:\n{tail(dirs['log'] / 'slurmctld.out')}\n{tail(dirs['log'] / 'slurmctld.log')}")
        start("slurmd", [programs["slurmd"], "-D", "-N", node])

        def node_idle() -> bool:
            states = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True).stdout.split()
            return bool(states) and all(state == "idle" for state in states)

        if not wait_for(node_idle, 45):
            raise RuntimeError(f"the node did not become idle:\n{tail(dirs['log'] / 'slurmd.out')}\n{tail(dirs['log'] / 'slurmd.log')}")
    except Exception as error:  # noqa: BLE001 - any failure to bring SLURM up is a skip, with its cause
        teardown()
        pytest.skip(f"could not start a local SLURM cluster: {error}")

    yield settings
    teardown()


# ---------------------------------------------------------------------------------------------


def copy_workflow(destination: Path) -> Path:
    """A fresh copy of the workflow (Snakefile, workflow/, config/) with the tiny config added."""
    destination.mkdir()
    shutil.copy2(PROJECT / "Snakefile", destination)
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(PROJECT / "workflow", destination / "workflow", ignore=ignore)
    shutil.copytree(PROJECT / "config", destination / "config", ignore=ignore)
    rows = ["subject\tflair\tmask"] + [
        f"{s}\tresources/demo/{s}/flair.nii.gz\tresources/demo/{s}/mask.nii.gz" for s in TINY_SUBJECTS
    ]
    (destination / TINY_CONFIG["samples"]).write_text("\n".join(rows) + "\n")
    (destination / "config" / "slurm_test.yaml").write_text(yaml.safe_dump(TINY_CONFIG))
    return destination


def flatten(mapping: dict, prefix: str = "") -> dict[str, object]:
    flat = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def site_profile(destination: Path) -> Path:
    """profiles/slurm with only the three lines marked `<- SITE` edited, as a user would."""
    text = (PROJECT / "profiles" / "slurm" / "config.yaml").read_text()
    lines = text.splitlines()
    site_lines = [i for i, line in enumerate(lines) if "# <- SITE" in line]
    assert len(site_lines) == 3, "the profile should mark exactly account, CPU and GPU partition"
    for i in site_lines:
        key, rest = lines[i].split(":", 1)
        if key.strip() == "slurm_account":
            value = ACCOUNT
        else:
            value = GPU_PARTITION if "&gpu_partition" in rest else CPU_PARTITION
        lines[i] = re.sub(r'"[^"]*"', f'"{value}"', lines[i], count=1)
    edited_text = "\n".join(lines) + "\n"
    original, edited = flatten(yaml.safe_load(text)), flatten(yaml.safe_load(edited_text))
    changed = {key for key in edited if edited[key] != original.get(key)}
    assert changed and all(key.endswith((".slurm_partition", ".slurm_account")) for key in changed), changed
    assert edited[f"set-resources.{TRAINING_RULE}.slurm_partition"] == GPU_PARTITION
    assert edited["default-resources.slurm_partition"] == CPU_PARTITION
    destination.mkdir()
    (destination / "config.yaml").write_text(edited_text)
    return destination


def snakemake(args: list[str], cwd: Path, env: dict, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "snakemake", TARGET, "--configfile", "config/slurm_test.yaml", *args]
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)


def finish(process: subprocess.Popen, log: Path, timeout: float, what: str) -> None:
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)  # snakemake cancels its SLURM jobs on SIGINT
        process.wait(timeout=60)
        pytest.fail(f"{what} did not finish in {timeout} s:\n{tail(log, 40)}")
    assert process.returncode == 0, f"{what} failed:\n{tail(log, 60)}"


def job_records() -> dict[str, dict[str, str]]:
    """Every job slurmctld still knows (MinJobAge=600), as scontrol's key=value fields."""
    out = subprocess.run(["scontrol", "-o", "show", "job"], capture_output=True, text=True).stdout
    records = {}
    for line in out.splitlines():
        fields = dict(token.split("=", 1) for token in shlex.split(line) if "=" in token)
        if "JobId" in fields:
            records[fields["JobId"]] = fields
    return records


def option(argv: list[str], *names: str) -> str | None:
    """The value of an sbatch option given as `--name value`, `--name=value` or `-n value`."""
    for i, arg in enumerate(argv):
        for name in names:
            if arg == name and i + 1 < len(argv):
                return argv[i + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def compare_nifti(a: Path, b: Path) -> None:
    image_a, image_b = nib.load(a), nib.load(b)
    np.testing.assert_array_equal(image_a.affine, image_b.affine, err_msg=str(a))
    np.testing.assert_array_equal(np.asanyarray(image_a.dataobj), np.asanyarray(image_b.dataobj), err_msg=str(a))


@pytest.mark.slurm
@pytest.mark.slow
def test_training_target_runs_through_slurm_like_locally(slurm_cluster, tmp_path, capsys):
    def show(text: str) -> None:
        """Print past pytest's capture, so CI's log carries the sbatch lines without `-s`."""
        with capsys.disabled():
            print(text, flush=True)

    started = time.monotonic()
    slurm_dir = copy_workflow(tmp_path / "slurm_run")
    local_dir = copy_workflow(tmp_path / "local_run")
    profile = site_profile(tmp_path / "profile")

    wrapper_dir = tmp_path / "bin"
    wrapper_dir.mkdir()
    wrapper = wrapper_dir / "sbatch"
    wrapper.write_text((TEMPLATES / "sbatch").read_text().replace("#!/usr/bin/env python3", f"#!{sys.executable}", 1))
    wrapper.chmod(0o755)
    call_log = tmp_path / "sbatch_calls.jsonl"
    env = dict(os.environ)
    # script: rules run the `python` on PATH: the interpreter running the tests.
    env["PATH"] = os.pathsep.join([str(wrapper_dir), str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(SBATCH_CALL_LOG=str(call_log), REAL_SBATCH=slurm_cluster["sbatch"])

    # The local run goes alongside: the SLURM run spends most of its time waiting for status polls.
    local = snakemake(["--cores", "2"], local_dir, env, tmp_path / "local.log")
    cluster = snakemake(
        [
            "--profile", str(profile),
            # Without an accounting database sacct knows nothing: ask squeue (MinJobAge=600 keeps
            # finished jobs visible), and poll early because the jobs are short.
            "--slurm-status-command", "squeue",
            "--slurm-init-seconds-before-status-checks", "2",
        ],
        slurm_dir, env, tmp_path / "slurm.log",
    )
    finish(cluster, tmp_path / "slurm.log", 900, "the SLURM run")
    slurm_seconds = time.monotonic() - started
    finish(local, tmp_path / "local.log", 600, "the local run")
    elapsed = time.monotonic() - started

    # --- what was submitted -------------------------------------------------------------------
    calls = [json.loads(line) for line in call_log.read_text().splitlines()]
    show(f"\n{len(calls)} sbatch calls seen (SLURM run {slurm_seconds:.0f} s, both runs {elapsed:.0f} s):")
    for argv in calls:
        show("sbatch " + shlex.join(argv[: next(i for i, a in enumerate(argv) if a.startswith("--wrap"))]))
    by_rule: dict[str, list[list[str]]] = {}
    for argv in calls:
        rule = option(argv, "--comment").removeprefix("rule_").split("_wildcards_")[0]
        by_rule.setdefault(rule, []).append(argv)
    assert TRAINING_RULE in by_rule and len(by_rule[TRAINING_RULE]) == 1
    assert {"demo_subject", "import_subject", "normalize_flair"} <= set(by_rule), sorted(by_rule)
    for rule, argvs in by_rule.items():
        for argv in argvs:
            assert option(argv, "-A", "--account") == ACCOUNT
            gpu_request = option(argv, "--gpus") or option(argv, "--gres")
            if rule == TRAINING_RULE:
                assert option(argv, "-p", "--partition") == GPU_PARTITION
                assert gpu_request in ("1", "gpu:1"), f"training job submitted without a GPU request: {argv}"
            else:
                assert option(argv, "-p", "--partition") == CPU_PARTITION, rule
                assert gpu_request is None, f"CPU rule {rule} asked for a GPU: {argv}"

    # --- what SLURM did with it ---------------------------------------------------------------
    run_id = option(calls[0], "--job-name")
    jobs = [job for job in job_records().values() if job.get("JobName") == run_id]
    assert len(jobs) == len(calls)
    assert all(job["JobState"] == "COMPLETED" for job in jobs), [(j["JobId"], j["JobState"]) for j in jobs]
    training = [job for job in jobs if job.get("Comment", "").startswith(f"rule_{TRAINING_RULE}")]
    assert len(training) == 1 and training[0]["Partition"] == GPU_PARTITION
    assert "gpu" in training[0].get("TresPerJob", "") + training[0].get("TresPerNode", ""), training[0]
    show(f"training job {training[0]['JobId']}: partition {training[0]['Partition']}, "
          f"TresPerJob={training[0].get('TresPerJob')}, state {training[0]['JobState']}")

    # --- same results as the local run --------------------------------------------------------
    # Compared: every NIfTI's voxels and affine (the .gz bytes carry a timestamp), the slice
    # arrays, the fold table, the model's weights and the history without its wall-time column
    # (`seconds`). Both runs train on the CPU with the rule's threads and precision, so the numbers are equal.
    niftis = sorted(p.relative_to(local_dir) for p in local_dir.glob("res*/**/*.nii.gz"))
    assert niftis == sorted(p.relative_to(slurm_dir) for p in slurm_dir.glob("res*/**/*.nii.gz"))
    # per subject: demo flair+mask, imported flair+mask, normalized flair+flair_u8, CR, RE
    assert len(niftis) >= 8 * len(TINY_SUBJECTS)
    for relative in niftis:
        compare_nifti(local_dir / relative, slurm_dir / relative)
    for subject in TINY_SUBJECTS:
        relative = f"results/slices/{subject}.npz"
        with np.load(local_dir / relative) as a, np.load(slurm_dir / relative) as b:
            assert sorted(a.files) == sorted(b.files)
            for name in a.files:
                np.testing.assert_array_equal(a[name], b[name], err_msg=f"{relative}:{name}")
    assert (local_dir / "results/folds.tsv").read_text() == (slurm_dir / "results/folds.tsv").read_text()
    history = Path(TARGET).with_name("history.tsv")
    local_history = pd.read_csv(local_dir / history, sep="\t")
    slurm_history = pd.read_csv(slurm_dir / history, sep="\t")
    deterministic = [c for c in local_history.columns if c != "seconds"]
    assert {"epoch", "train_loss", "val_dice", "lr"} <= set(deterministic)
    pd.testing.assert_frame_equal(local_history[deterministic], slurm_history[deterministic], check_exact=True)

    local_model = torch.load(local_dir / TARGET, map_location="cpu", weights_only=False)
    slurm_model = torch.load(slurm_dir / TARGET, map_location="cpu", weights_only=False)
    assert local_model["state_dict"].keys() == slurm_model["state_dict"].keys()
    for name, tensor in local_model["state_dict"].items():
        assert torch.equal(tensor, slurm_model["state_dict"][name]), name
    show(f"identical: {len(niftis)} NIfTI volumes, {len(TINY_SUBJECTS)} slice files, folds.tsv, "
          f"history.tsv ({', '.join(deterministic)}), {len(local_model['state_dict'])} weight tensors")

    # The two models are 120 MB each; keep the temporary directory small once they agree.
    for directory in (local_dir, slurm_dir):
        shutil.rmtree(directory / "results" / "models")


# ---------------------------------------------------------------------------------------------
# The profile's resources -> sbatch options, for both documented GPU requests (no cluster needed)
# ---------------------------------------------------------------------------------------------


class JobResources(dict):
    """Resources as the plugin reads them (.get() and attribute access)."""

    __getattr__ = dict.__getitem__


def training_sbatch_options(profile_text: str) -> list[str]:
    """The sbatch options the SLURM plugin builds for a train_model job under a profile."""
    submit_string = pytest.importorskip("snakemake_executor_plugin_slurm.submit_string")
    plugin_utils = pytest.importorskip("snakemake_executor_plugin_slurm.utils")
    profile = yaml.safe_load(profile_text)
    rule_resources = {"gpu": 1, "mem_mb": 16000, "runtime": 240}  # what workflow/rules/training.smk declares
    resources = JobResources(
        {**profile["default-resources"], **rule_resources, **profile["set-resources"][TRAINING_RULE]}
    )
    job = type("TrainingJob", (), {"resources": resources, "threads": 2, "name": TRAINING_RULE})()
    params = {
        "run_uuid": "run",
        "slurm_logfile": "log",
        "comment_str": f"rule_{TRAINING_RULE}",
        "account": f" -A {resources['slurm_account']}",
        "partition": f" -p {resources['slurm_partition']}",
        "workdir": None,
    }
    call = submit_string.get_submit_command(job, params) + plugin_utils.set_gres_string(job)
    return shlex.split(call)[1:]


def test_profile_requests_one_gpu_for_training_with_gpus():
    argv = training_sbatch_options((PROJECT / "profiles" / "slurm" / "config.yaml").read_text())
    assert option(argv, "--gpus") == "1"
    assert option(argv, "--gres") is None
    assert option(argv, "-p") == yaml.safe_load((PROJECT / "profiles" / "slurm" / "config.yaml").read_text())[
        "set-resources"
    ][TRAINING_RULE]["slurm_partition"]


def test_profile_gres_alternative_requests_the_gpu_with_gres():
    # Follow the profile's own instructions: replace `gpu: 1` by the two commented lines.
    text = (PROJECT / "profiles" / "slurm" / "config.yaml").read_text()
    lines = text.splitlines()
    gpu_line = next(i for i, line in enumerate(lines) if line.strip() == "gpu: 1")
    indent = lines[gpu_line][: len(lines[gpu_line]) - len(lines[gpu_line].lstrip())]
    alternative = [i for i, line in enumerate(lines) if line.strip() in ("# gpu: 0", '# gres: "gpu:1"')]
    assert len(alternative) == 2, "the profile no longer documents the gres alternative"
    for i in alternative:
        lines[i] = indent + lines[i].strip().removeprefix("# ")
    del lines[gpu_line]
    argv = training_sbatch_options("\n".join(lines))
    assert option(argv, "--gres") == "gpu:1"
    assert option(argv, "--gpus") is None
