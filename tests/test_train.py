"""Training loop, checkpoints and resume (SPEC stage 7)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from radfusion.execution import autocast_precision, cpu_precision, uses_autocast
from radfusion.losses import build_loss
from radfusion.optim import build_optimizer, build_scheduler
from radfusion.slices import save_slices
from radfusion.train import (
    HISTORY_COLUMNS,
    LEFT_RIGHT_AXIS,
    epoch_batches,
    iterations_per_epoch,
    load_trained_model,
    pooled_dice,
    restore_grad_scaler,
    split_subjects,
    train_epochs,
)


class TinyNet(nn.Module):
    """A small network with batch norm and dropout (dropout exercises the global generator)."""

    def __init__(self, in_channels: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout2d(0.2), nn.Conv2d(4, 1, 1)
        )

    def forward(self, x):
        return self.body(x)


def toy_data(n: int = 10, size: int = 16, seed: int = 0):
    """Images with a bright square and the square as the mask."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 0.4, (n, 1, size, size)).astype(np.float32)
    masks = np.zeros((n, 1, size, size), np.float32)
    for i in range(n):
        r, c = rng.integers(0, size - 4, 2)
        masks[i, 0, r : r + 4, c : c + 4] = 1
        images[i, 0, r : r + 4, c : c + 4] = 0.9
    return torch.from_numpy(images), torch.from_numpy(masks)


def run_toy(
    epochs: int = 3,
    checkpoint=None,
    loss_fn=None,
    seed: int = 0,
    warmup_iters: int = 2,
    mixed_precision: bool = True,
    device: str = "cpu",
):
    torch.manual_seed(seed)
    model = TinyNet()
    optimizer = build_optimizer("adamw", model.parameters(), lr=1e-2, weight_decay=1e-5)
    images, masks = toy_data()
    scheduler = build_scheduler(
        "warmup_cosine", optimizer, epochs=epochs, iters_per_epoch=iterations_per_epoch(8, 3), warmup_iters=warmup_iters
    )
    history = train_epochs(
        model,
        optimizer,
        scheduler,
        loss_fn or build_loss("dice_bce"),
        images[:8],
        masks[:8],
        images[8:],
        masks[8:],
        epochs=epochs,
        batch_size=3,
        hflip=0.5,
        seed=seed,
        checkpoint_path=checkpoint,
        settings={"toy": 1},
        device=device,
        mixed_precision=mixed_precision,
    )
    return model, history


def test_history_columns_and_one_row_per_epoch():
    _, history = run_toy(epochs=3)
    assert tuple(history.columns) == HISTORY_COLUMNS
    assert history["epoch"].tolist() == [1, 2, 3]
    assert np.isfinite(history[["train_loss", "val_dice", "lr", "seconds"]].to_numpy()).all()
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]


def test_history_lr_is_the_rate_of_the_epochs_last_step():
    # 3 steps per epoch, warm-up over 3 steps: epoch 1's last step (index 2) runs at 2/3 of the
    # way from 1e-6 to 1e-2; the base rate applies only from the next step on.
    _, history = run_toy(epochs=3, warmup_iters=3)
    assert history["lr"].iloc[0] == pytest.approx(1e-6 + (1e-2 - 1e-6) * 2 / 3)
    assert history["lr"].iloc[1] == pytest.approx(1e-2)
    assert history["lr"].iloc[2] == pytest.approx(5e-6)


def test_two_runs_give_identical_histories_and_weights():
    model_a, history_a = run_toy()
    model_b, history_b = run_toy()
    columns = [c for c in HISTORY_COLUMNS if c != "seconds"]
    pd.testing.assert_frame_equal(history_a[columns], history_b[columns])
    for a, b in zip(model_a.state_dict().values(), model_b.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    _, history_c = run_toy(seed=1)
    assert not history_c["train_loss"].equals(history_a["train_loss"])


def test_bfloat16_autocast_changes_the_numbers_and_stays_reproducible(monkeypatch):
    monkeypatch.setenv("RADFUSION_PRECISION", "bfloat16")
    cpu_precision.cache_clear()
    _, mixed_a = run_toy(mixed_precision=True)
    _, mixed_b = run_toy(mixed_precision=True)
    _, full = run_toy(mixed_precision=False)
    pd.testing.assert_series_equal(mixed_a["train_loss"], mixed_b["train_loss"])
    # bfloat16 keeps 8 bits of mantissa: the losses differ from float32, but only a little.
    assert not mixed_a["train_loss"].equals(full["train_loss"])
    np.testing.assert_allclose(mixed_a["train_loss"], full["train_loss"], rtol=0.05)


class Interrupt(Exception):
    pass


def test_interrupted_run_resumes_to_identical_weights(tmp_path):
    reference, reference_history = run_toy(epochs=3)
    checkpoint = tmp_path / "checkpoint.pt"
    calls = {"n": 0}
    real_loss = build_loss("dice_bce")

    def failing_loss(logits, target):
        calls["n"] += 1
        if calls["n"] == 5:  # inside epoch 2 (3 batches per epoch)
            raise Interrupt
        return real_loss(logits, target)

    with pytest.raises(Interrupt):
        run_toy(epochs=3, checkpoint=checkpoint, loss_fn=failing_loss)
    assert torch.load(checkpoint, weights_only=False)["epoch"] == 1
    resumed, history = run_toy(epochs=3, checkpoint=checkpoint)
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    columns = [c for c in HISTORY_COLUMNS if c != "seconds"]
    pd.testing.assert_frame_equal(history[columns], reference_history[columns])


class RecordingNet(nn.Module):
    """A 1x1 convolution that keeps a copy of every training input it sees."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        if self.training:
            self.seen.append(x.detach().float().clone())
        return self.conv(x)


@pytest.mark.parametrize("hflip", [0.0, 1.0])
def test_training_step_mirrors_the_patients_left_right_axis(hflip):
    # A slice volume[:, :, k] of a RAS+ volume: rows (H) run left-right (x), columns (W) run
    # posterior-anterior (y). The image is asymmetric in both, so every mirror is distinguishable.
    x, y = np.meshgrid(np.arange(8), np.arange(6), indexing="ij")
    image = torch.from_numpy((x * 10 + y + 1).astype(np.float32))[None, None] / 100
    mask = (image > 0.5).float()
    model = RecordingNet()
    optimizer = build_optimizer("adamw", model.parameters(), lr=1e-3)
    scheduler = build_scheduler("exponential", optimizer, epochs=1, iters_per_epoch=1, gamma=1.0)
    train_epochs(
        model, optimizer, scheduler, build_loss("dice_bce"), image, mask, image, mask,
        epochs=1, batch_size=1, hflip=hflip, device="cpu", mixed_precision=False,
    )
    (seen,) = model.seen
    left_right_mirror = image.flip(2)  # reverses x: the patient's left and right swap
    assert LEFT_RIGHT_AXIS % 4 == 2
    if hflip:
        assert torch.equal(seen, left_right_mirror)
        assert not torch.equal(seen, image.flip(3))  # not the anterior-posterior mirror
    else:
        assert torch.equal(seen, image)


def test_empty_scaler_state_of_a_cpu_checkpoint_resumes_into_an_enabled_scaler():
    cpu_state = torch.amp.GradScaler("cuda", enabled=False).state_dict()  # what a CPU run saves
    assert cpu_state == {}
    enabled = torch.amp.GradScaler("cpu", init_scale=128.0)
    with pytest.raises(RuntimeError):
        enabled.load_state_dict(cpu_state)  # the failure restore_grad_scaler avoids
    assert restore_grad_scaler(enabled, cpu_state) is False
    assert enabled.get_scale() == 128.0
    # A populated state (a CUDA float16 run) is restored; a disabled scaler ignores it.
    assert restore_grad_scaler(enabled, torch.amp.GradScaler("cpu", init_scale=4.0).state_dict())
    assert enabled.get_scale() == 4.0
    assert not restore_grad_scaler(torch.amp.GradScaler("cuda", enabled=False), enabled.state_dict())


def test_checkpoint_records_device_and_precision(tmp_path):
    checkpoint = tmp_path / "checkpoint.pt"
    run_toy(epochs=1, checkpoint=checkpoint)
    payload = torch.load(checkpoint, weights_only=False)
    assert payload["device"] == "cpu"
    assert payload["precision"] == autocast_precision(torch.device("cpu"))
    assert payload["precision"] == ("bfloat16" if uses_autocast(torch.device("cpu")) else "float32")
    assert autocast_precision(torch.device("cpu"), mixed_precision=False) == "float32"
    assert autocast_precision(torch.device("cuda")) == "float16"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("first, second", [("cpu", "cuda"), ("cuda", "cpu")])
def test_checkpoint_resumes_across_devices(tmp_path, first, second):
    checkpoint = tmp_path / "checkpoint.pt"

    calls = {"n": 0}

    def failing_loss(logits, masks):
        calls["n"] += 1
        if calls["n"] > iterations_per_epoch(8, 3):  # inside epoch 2
            raise Interrupt
        return build_loss("dice_bce")(logits, masks)

    with pytest.raises(Interrupt):
        run_toy(epochs=2, checkpoint=checkpoint, loss_fn=failing_loss, device=first)
    assert torch.load(checkpoint, weights_only=False)["device"] == first
    _, history = run_toy(epochs=2, checkpoint=checkpoint, device=second)
    assert list(history["epoch"]) == [1, 2]
    assert torch.load(checkpoint, weights_only=False)["device"] == second


def test_checkpoint_of_other_settings_is_ignored(tmp_path):
    checkpoint = tmp_path / "checkpoint.pt"
    run_toy(epochs=2, checkpoint=checkpoint)
    payload = torch.load(checkpoint, weights_only=False)
    payload["settings"] = {"toy": 2}
    torch.save(payload, checkpoint)
    _, history = run_toy(epochs=2, checkpoint=checkpoint)
    assert history["epoch"].tolist() == [1, 2]
    assert torch.load(checkpoint, weights_only=False)["settings"] == {"toy": 1}


def test_model_file_records_the_crop_and_older_files_read_as_whole_slices(tmp_path):
    from radfusion.models import build_model
    from radfusion.train import save_model

    save_model(build_model("resnext_unet", 1), tmp_path / "m.pt", model_name="resnext_unet", input_name="mri",
               image_size=32, crop="brain")
    assert load_trained_model(tmp_path / "m.pt")[1]["crop"] == "brain"
    payload = torch.load(tmp_path / "m.pt", weights_only=False)
    del payload["crop"]
    torch.save(payload, tmp_path / "old.pt")
    assert load_trained_model(tmp_path / "old.pt")[1]["crop"] == "none"


@pytest.mark.parametrize("n", [0, 1, 2, 7, 8, 9, 10, 31, 33])
def test_batches_cover_every_sample_once_and_count_matches(n):
    batches = epoch_batches(n, 4, torch.Generator().manual_seed(0))
    assert len(batches) == iterations_per_epoch(n, 4)
    assert sorted(torch.cat(batches).tolist() if batches else []) == list(range(n))
    assert n < 2 or min(b.numel() for b in batches) >= 2


def test_pooled_dice_pools_pixels_over_images():
    class Identity(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(()))

        def forward(self, x):
            return (x - 0.5) * 20 * self.w

    masks = torch.zeros(2, 1, 4, 4)
    masks[0, 0, :2, :2] = 1
    masks[1, 0, :, :] = 1
    predictions = masks.clone()
    predictions[0] = 0
    assert pooled_dice(Identity(), predictions, masks) == pytest.approx(32 / 36)
    assert pooled_dice(Identity(), torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)) == 1.0


def test_split_subjects_test_fold_and_holdout():
    folds = {f"s{i}": 1 + i % 3 for i in range(12)}
    train, val = split_subjects(folds, 2)
    assert set(val) == {s for s, f in folds.items() if f == 2} and not set(train) & set(val)
    train_h, val_h = split_subjects(folds, 2, validation="holdout", holdout_fraction=0.25, seed=1)
    assert len(val_h) == 2 and not set(val_h) & set(train_h)
    assert set(train_h) | set(val_h) == set(train)
    assert split_subjects(folds, 2, validation="holdout", holdout_fraction=0.25, seed=1) == (train_h, val_h)
    with pytest.raises(ValueError, match="fold 4"):
        split_subjects(folds, 4)


# --- the real networks, end to end -----------------------------------------------------------
def write_cohort(root: Path, n_subjects: int = 4, n_slices: int = 3) -> tuple[dict, dict]:
    """Small exported-slice files: bright blobs in noise, 40x36 slices."""
    rng = np.random.default_rng(0)
    paths, folds = {}, {}
    for s in range(n_subjects):
        images = rng.uniform(0, 0.5, (n_slices, 3, 40, 36)).astype(np.float32)
        masks = np.zeros((n_slices, 40, 36), np.uint8)
        for i in range(n_slices):
            r, c = rng.integers(4, 28, 2)
            masks[i, r : r + 6, c : c + 5] = 1
            images[i, :, masks[i] == 1] = 1.0
        subject = f"sub{s}"
        paths[subject] = root / f"{subject}.npz"
        save_slices(
            {"images": images, "masks": masks, "slice_index": np.arange(n_slices) * 2, "shape": np.array([40, 36, 8])},
            paths[subject],
        )
        folds[subject] = 1 + s % 2
    return paths, folds


PROTOCOL = dict(
    image_size=32, epochs=3, batch_size=3, loss="dice", optimizer="rmsprop", lr=1e-4, weight_decay=0.0,
    scheduler="exponential", gamma=0.995, hflip=0.5,
)
PREPROCESSING = {"lower_percentile": 0.5, "upper_percentile": 99.5, "cr": {"s": 2, "num": 15, "m": 5}, "threshold": 0.5}

TRAIN_SCRIPT = textwrap.dedent(
    """
    import json, sys, logging
    import torch
    logging.basicConfig(level=logging.INFO)
    torch.set_num_threads(1)
    from radfusion.protocol import TrainingProtocol
    from radfusion.train import fit_one_fold
    args = json.loads(sys.argv[1])
    protocol = TrainingProtocol.from_config(args.pop("protocol"))
    fit_one_fold(args.pop("paths"), args.pop("folds"), fold=1, protocol=protocol, **args)
    """
)


def start_training(out: Path, paths: dict, folds: dict) -> subprocess.Popen:
    import json

    args = {
        "paths": {k: str(v) for k, v in paths.items()},
        "folds": folds,
        "model_path": str(out / "model.pt"),
        "history_path": str(out / "history.tsv"),
        "checkpoint_path": str(out / "checkpoint.pt"),
        "model_name": "attention_unet",
        "input_name": "mri_radiomics",
        "seed": 3,
        "protocol": PROTOCOL,
        "preprocessing": PREPROCESSING,
    }
    return subprocess.Popen(
        [sys.executable, "-c", TRAIN_SCRIPT, json.dumps(args)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@pytest.mark.slow
def test_sigkilled_training_resumes_to_the_uninterrupted_weights(tmp_path):
    paths, folds = write_cohort(tmp_path)
    reference = tmp_path / "reference"
    assert start_training(reference, paths, folds).wait(timeout=600) == 0

    killed = tmp_path / "killed"
    process = start_training(killed, paths, folds)
    deadline = time.monotonic() + 600
    while not (killed / "checkpoint.pt").exists():
        assert process.poll() is None, "training ended before its first checkpoint could be seen"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / "model.pt").exists(), "killed too late: the run had already finished"
    assert torch.load(killed / "checkpoint.pt", weights_only=False)["epoch"] < PROTOCOL["epochs"]

    resumed = start_training(killed, paths, folds)
    log = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, log
    assert "resuming from" in log
    assert not (killed / "checkpoint.pt").exists()  # removed after success

    reference_model, info = load_trained_model(reference / "model.pt")
    resumed_model, _ = load_trained_model(killed / "model.pt")
    for (name, a), b in zip(reference_model.state_dict().items(), resumed_model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    columns = ["epoch", "train_loss", "val_dice", "lr"]
    pd.testing.assert_frame_equal(
        pd.read_csv(reference / "history.tsv", sep="\t")[columns], pd.read_csv(killed / "history.tsv", sep="\t")[columns]
    )
    assert info["channels"] == [0, 1, 2] and info["image_size"] == 32
    assert info["preprocessing"] == PREPROCESSING and info["metadata"]["protocol"]["gamma"] == 0.995
    assert info["metadata"]["train_subjects"] == sorted(s for s, f in folds.items() if f != 1)
