"""Tests of radfusion.optim: optimizer settings and the two learning-rate schedules."""

from __future__ import annotations

import io
import math

import pytest
import torch

from radfusion.optim import (
    ExponentialScheduler,
    WarmupCosineScheduler,
    build_optimizer,
    build_scheduler,
)

BASE_LR = 1e-4


def make_optimizer(name: str = "adamw", **kw) -> torch.optim.Optimizer:
    return build_optimizer(name, [torch.nn.Parameter(torch.zeros(3))], lr=BASE_LR, **kw)


def run_schedule(optimizer, scheduler, epochs: int, iters_per_epoch: int) -> list[float]:
    """The lr of every optimizer step, called as the training loop calls it."""
    lrs = []
    for _ in range(epochs):
        for _ in range(iters_per_epoch):
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step_iteration()
        scheduler.step_epoch()
    return lrs


# --- optimizers ------------------------------------------------------------------------


def test_adamw_has_the_configured_hyperparameters():
    optimizer = make_optimizer("adamw", weight_decay=1e-5)
    assert isinstance(optimizer, torch.optim.AdamW)
    group = optimizer.param_groups[0]
    assert group["lr"] == 1e-4 and group["weight_decay"] == 1e-5
    assert group["betas"] == (0.9, 0.999) and group["eps"] == 1e-8


def test_rmsprop_has_the_configured_hyperparameters():
    optimizer = make_optimizer("rmsprop")
    assert isinstance(optimizer, torch.optim.RMSprop)
    group = optimizer.param_groups[0]
    assert group["lr"] == 1e-4 and group["weight_decay"] == 0.0
    assert group["alpha"] == 0.99 and group["momentum"] == 0 and group["eps"] == 1e-8


def test_build_optimizer_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown optimizer 'sgd'"):
        make_optimizer("sgd")
    with pytest.raises(ValueError, match="lr must be positive"):
        build_optimizer("adamw", [torch.nn.Parameter(torch.zeros(1))], lr=0.0)


# --- warm-up + cosine ------------------------------------------------------------------


def test_warmup_cosine_learning_rates_by_hand():
    # 29 steps per epoch: warm-up (100 steps) ends inside epoch 3, cosine from epoch 4.
    scheduler = build_scheduler("warmup_cosine", make_optimizer(), epochs=50, iters_per_epoch=29)
    assert isinstance(scheduler, WarmupCosineScheduler)
    assert scheduler.cosine_start_epoch == 4
    assert scheduler.lr_at(0, 0) == pytest.approx(1e-6, rel=1e-12)
    assert scheduler.lr_at(50, 1) == pytest.approx(1e-6 + (1e-4 - 1e-6) / 2, rel=1e-12)  # 5.05e-5
    assert scheduler.lr_at(99, 3) == pytest.approx(1e-6 + (1e-4 - 1e-6) * 0.99, rel=1e-12)
    assert scheduler.lr_at(100, 3) == pytest.approx(1e-4, rel=1e-12)
    assert scheduler.lr_at(115, 3) == pytest.approx(1e-4, rel=1e-12)
    assert scheduler.lr_at(116, 4) == pytest.approx(1e-4, rel=1e-12)
    # epoch 19: e' = 15 of E' = 45, cos(pi / 3) = 1/2 -> 5e-6 + 9.5e-5 * 3/4
    assert scheduler.lr_at(19 * 29, 19) == pytest.approx(7.625e-5, rel=1e-12)
    # epoch 4 + 22.5 would be the midpoint; epoch 49 is the last: min_lr
    assert scheduler.lr_at(49 * 29, 49) == pytest.approx(5e-6, rel=1e-12)
    assert scheduler.lr_at(50 * 29, 50) == pytest.approx(5e-6, rel=1e-12)


def test_warmup_cosine_driven_by_the_training_loop():
    optimizer = make_optimizer()
    scheduler = build_scheduler("warmup_cosine", optimizer, epochs=10, iters_per_epoch=25)
    lrs = run_schedule(optimizer, scheduler, epochs=10, iters_per_epoch=25)
    assert lrs[0] == pytest.approx(1e-6)
    assert lrs[50] == pytest.approx(5.05e-5)
    assert lrs[100] == pytest.approx(1e-4)  # 100 = 4 * 25: warm-up ends at an epoch boundary
    assert scheduler.cosine_start_epoch == 4
    # epoch 4 .. 9: min + (lr - min)(1 + cos(pi e'/5))/2, constant within each epoch
    for epoch in range(4, 10):
        expected = 5e-6 + (1e-4 - 5e-6) * (1 + math.cos(math.pi * (epoch - 4) / 5)) / 2
        assert lrs[epoch * 25 : (epoch + 1) * 25] == pytest.approx([expected] * 25)
    assert lrs[-1] == pytest.approx(5e-6)
    warmup, rest = lrs[:101], lrs[100:]
    assert all(a < b for a, b in zip(warmup, warmup[1:]))
    assert all(a >= b for a, b in zip(rest, rest[1:]))


def test_warmup_longer_than_training_never_reaches_the_cosine():
    optimizer = make_optimizer()
    scheduler = build_scheduler("warmup_cosine", optimizer, epochs=3, iters_per_epoch=10)
    lrs = run_schedule(optimizer, scheduler, epochs=3, iters_per_epoch=10)
    assert lrs[-1] == pytest.approx(1e-6 + (1e-4 - 1e-6) * 29 / 100)


def test_warmup_cosine_without_warmup_spans_all_epochs():
    scheduler = build_scheduler(
        "warmup_cosine", make_optimizer(), epochs=3, iters_per_epoch=10, warmup_iters=0
    )
    assert [scheduler.lr_at(10 * e, e) for e in range(3)] == pytest.approx(
        [1e-4, 5e-6 + (1e-4 - 5e-6) / 2, 5e-6]
    )


# --- exponential -----------------------------------------------------------------------


def test_exponential_decays_by_0995_after_every_epoch():
    optimizer = make_optimizer("rmsprop")
    scheduler = build_scheduler("exponential", optimizer, epochs=40, iters_per_epoch=7)
    assert isinstance(scheduler, ExponentialScheduler)
    lrs = run_schedule(optimizer, scheduler, epochs=40, iters_per_epoch=7)
    assert lrs[:7] == pytest.approx([1e-4] * 7)  # iterations do not change the rate
    assert lrs[7] == pytest.approx(9.95e-5)
    assert lrs[14] == pytest.approx(1e-4 * 0.995 * 0.995)
    assert lrs[-1] == pytest.approx(1e-4 * 0.995**39)
    assert scheduler.last_lr == pytest.approx(1e-4 * 0.995**40)
    assert scheduler.lr_at(0, 2) == pytest.approx(1e-4 * 0.995**2)


# --- resume ----------------------------------------------------------------------------


@pytest.mark.parametrize("name, optimizer_name", [("warmup_cosine", "adamw"), ("exponential", "rmsprop")])
def test_state_dict_round_trip_resumes_the_same_lr_sequence(name, optimizer_name):
    epochs, n = 8, 30
    optimizer = make_optimizer(optimizer_name)
    scheduler = build_scheduler(name, optimizer, epochs=epochs, iters_per_epoch=n)
    uninterrupted = run_schedule(optimizer, scheduler, epochs=epochs, iters_per_epoch=n)

    optimizer = make_optimizer(optimizer_name)
    scheduler = build_scheduler(name, optimizer, epochs=epochs, iters_per_epoch=n)
    first = run_schedule(optimizer, scheduler, epochs=3, iters_per_epoch=n)  # stops inside warm-up
    buffer = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)

    optimizer = make_optimizer(optimizer_name)
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler = build_scheduler(name, optimizer, epochs=epochs, iters_per_epoch=n)
    scheduler.load_state_dict(checkpoint["scheduler"])
    assert (scheduler.iteration, scheduler.epoch) == (3 * n, 3)
    rest = run_schedule(optimizer, scheduler, epochs=epochs - 3, iters_per_epoch=n)
    assert first + rest == pytest.approx(uninterrupted, rel=1e-12)


def test_resume_with_other_settings_is_refused():
    scheduler = build_scheduler("warmup_cosine", make_optimizer(), epochs=50, iters_per_epoch=10)
    other = build_scheduler("warmup_cosine", make_optimizer(), epochs=40, iters_per_epoch=10)
    with pytest.raises(ValueError, match="does not match"):
        other.load_state_dict(scheduler.state_dict())
    exponential = build_scheduler("exponential", make_optimizer(), epochs=50, iters_per_epoch=10)
    with pytest.raises(ValueError, match="does not match"):
        exponential.load_state_dict(scheduler.state_dict())


def test_build_scheduler_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown scheduler 'step'"):
        build_scheduler("step", make_optimizer(), epochs=5, iters_per_epoch=5)
    with pytest.raises(TypeError, match="unknown options \\['gamma'\\]"):
        build_scheduler("warmup_cosine", make_optimizer(), epochs=5, iters_per_epoch=5, gamma=0.9)
    with pytest.raises(ValueError, match="iters_per_epoch must be a positive integer"):
        build_scheduler("exponential", make_optimizer(), epochs=5, iters_per_epoch=0)
