"""Optimizers and learning-rate schedules of the two training protocols.

==================  =====================================  ==============================
                    resnext_unet                           attention_unet
==================  =====================================  ==============================
optimizer           AdamW, lr 1e-4, weight decay 1e-5      RMSprop, lr 1e-4
schedule            ``warmup_cosine``                      ``exponential`` (x0.995/epoch)
==================  =====================================  ==============================

A schedule is a pure function ``lr_at(iteration, epoch)``; the :class:`Scheduler` object
only counts optimizer steps and epochs, writes that learning rate into the optimizer, and
saves its counters for resume.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

OPTIMIZER_NAMES = ("adamw", "rmsprop")
SCHEDULER_NAMES = ("warmup_cosine", "exponential")


def build_optimizer(
    name: str, params: Iterable, *, lr: float, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    """The optimizer of a training protocol by its config name.

    Parameters
    ----------
    name : {"adamw", "rmsprop"}
        ``torch.optim.AdamW`` (betas 0.9, 0.999, eps 1e-8) or ``torch.optim.RMSprop``
        (alpha 0.99, eps 1e-8, no momentum; PyTorch's defaults, as in rondinella2023's code).
    params : iterable
        ``model.parameters()`` or parameter groups.
    lr : float
        Base learning rate (1e-4 in both protocols).
    weight_decay : float
        Decoupled weight decay for AdamW (1e-5 in the resnext_unet protocol), L2 penalty
        for RMSprop (0 in the attention_unet protocol).

    Returns
    -------
    torch.optim.Optimizer

    Notes
    -----
    AdamW runs its fused kernel (``fused=True``, CPU and CUDA): the same update, one kernel per
    step instead of one per parameter tensor; for the 31 M parameters of resnext_unet a step of the
    optimizer takes 43 ms instead of 201 ms on one CPU thread (docs/decisions.md, "Quick settings").
    """
    if not lr > 0:
        raise ValueError(f"lr must be positive; got {lr}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be non-negative; got {weight_decay}")
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; expected one of {', '.join(OPTIMIZER_NAMES)}")


class Scheduler:
    """Sets the optimizer's learning rate from the counts of optimizer steps and epochs.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        Its learning rate at construction (or the ``initial_lr`` a resumed optimizer
        carries) is the base learning rate of each parameter group.

    Notes
    -----
    Call :meth:`step_iteration` after every ``optimizer.step()`` and :meth:`step_epoch`
    after every epoch. ``iteration`` counts optimizer steps taken so far and ``epoch``
    completed epochs, so the step with 0-based global index ``i`` inside 0-based epoch
    ``e`` runs at ``lr_at(i, e)``. Construction sets ``lr_at(0, 0)``.
    """

    name = ""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.iteration = 0
        self.epoch = 0
        self._apply()

    def lr_for(self, base_lr: float, iteration: int, epoch: int) -> float:
        """Learning rate for a group with ``base_lr`` at this iteration and epoch."""
        raise NotImplementedError

    def lr_at(self, iteration: int, epoch: int) -> float:
        """Learning rate of the first parameter group at ``iteration`` steps and ``epoch`` epochs done."""
        if iteration < 0 or epoch < 0:
            raise ValueError(f"iteration and epoch must be non-negative; got {iteration}, {epoch}")
        return self.lr_for(self.base_lrs[0], iteration, epoch)

    @property
    def last_lr(self) -> float:
        """The learning rate the next optimizer step uses (first parameter group)."""
        return self.optimizer.param_groups[0]["lr"]

    def get_last_lr(self) -> list[float]:
        """The learning rate of every parameter group, as ``torch.optim.lr_scheduler`` names it."""
        return [group["lr"] for group in self.optimizer.param_groups]

    def step_iteration(self) -> None:
        """Count one optimizer step and update the learning rate."""
        self.iteration += 1
        self._apply()

    def step_epoch(self) -> None:
        """Count one finished epoch and update the learning rate."""
        self.epoch += 1
        self._apply()

    def settings(self) -> dict[str, Any]:
        """The schedule's hyperparameters (compared on resume)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Counters, base learning rates and settings, for a checkpoint."""
        return {
            "name": self.name,
            "iteration": self.iteration,
            "epoch": self.epoch,
            "base_lrs": list(self.base_lrs),
            "settings": self.settings(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`; the learning rate continues where it stopped.

        Raises ValueError when the checkpoint belongs to another schedule or other settings,
        since continuing it under changed settings would silently change the protocol.
        """
        if state.get("name") != self.name or state.get("settings") != self.settings():
            raise ValueError(
                f"checkpoint schedule {state.get('name')!r} with {state.get('settings')} does "
                f"not match this run's {self.name!r} with {self.settings()}"
            )
        if len(state["base_lrs"]) != len(self.optimizer.param_groups):
            raise ValueError(
                f"checkpoint schedule has {len(state['base_lrs'])} parameter groups; the "
                f"optimizer has {len(self.optimizer.param_groups)}"
            )
        self.iteration = int(state["iteration"])
        self.epoch = int(state["epoch"])
        self.base_lrs = [float(lr) for lr in state["base_lrs"]]
        self._apply()

    def _apply(self) -> None:
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = self.lr_for(base_lr, self.iteration, self.epoch)


class WarmupCosineScheduler(Scheduler):
    """Linear warm-up per iteration, then cosine annealing per epoch (resnext_unet protocol).

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        Base learning rate ``lr`` from its parameter groups (1e-4).
    epochs : int
        Number of training epochs ``E`` (50).
    iters_per_epoch : int
        Optimizer steps per epoch ``n`` (batches per epoch, last partial batch included
        if the loader keeps it).
    warmup_iters : int
        Warm-up length ``W`` in optimizer steps (100).
    warmup_start_lr : float
        Learning rate of the first step (1e-6).
    min_lr : float
        Learning rate of the last epoch (5e-6).

    Notes
    -----
    With ``i`` optimizer steps and ``e`` epochs done:

    - warm-up, ``i < W``: ``lr = warmup_start_lr + (lr - warmup_start_lr) * i / W``
      (``i = 0`` -> 1e-6, ``i = 50`` -> 5.05e-5, ``i = W`` ends warm-up at ``lr``);
    - the rest of the epoch in which warm-up ends stays at ``lr``;
    - cosine, from epoch ``e_w = ceil(W / n)``, the first epoch to start after warm-up:
      ``lr = min_lr + (lr - min_lr) * (1 + cos(pi * e' / E')) / 2`` with
      ``e' = min(e, E - 1) - e_w`` and ``E' = E - 1 - e_w``, so epoch ``e_w`` runs at
      ``lr`` and the last epoch ``E - 1`` at ``min_lr``. The learning rate is constant
      within an epoch. When ``E' <= 0`` (warm-up reaches the last epoch) epochs from
      ``e_w`` on run at ``min_lr``.

    Example: W = 100, n = 29, E = 50 gives e_w = 4: steps 0-99 warm up (epochs 0-3), steps
    100-115 of epoch 3 run at 1e-4, epochs 4..49 anneal from 1e-4 to 5e-6 over E' = 45.
    """

    name = "warmup_cosine"

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        epochs: int,
        iters_per_epoch: int,
        warmup_iters: int = 100,
        warmup_start_lr: float = 1e-6,
        min_lr: float = 5e-6,
    ) -> None:
        _check_positive_int("epochs", epochs)
        _check_positive_int("iters_per_epoch", iters_per_epoch)
        if not isinstance(warmup_iters, int) or warmup_iters < 0:
            raise ValueError(f"warmup_iters must be a non-negative integer; got {warmup_iters!r}")
        if warmup_start_lr < 0 or min_lr < 0:
            raise ValueError(
                f"warmup_start_lr and min_lr must be non-negative; got {warmup_start_lr}, {min_lr}"
            )
        self.epochs = epochs
        self.iters_per_epoch = iters_per_epoch
        self.warmup_iters = warmup_iters
        self.warmup_start_lr = warmup_start_lr
        self.min_lr = min_lr
        self.cosine_start_epoch = math.ceil(warmup_iters / iters_per_epoch)
        super().__init__(optimizer)

    def settings(self) -> dict[str, Any]:
        return {
            "epochs": self.epochs,
            "iters_per_epoch": self.iters_per_epoch,
            "warmup_iters": self.warmup_iters,
            "warmup_start_lr": self.warmup_start_lr,
            "min_lr": self.min_lr,
        }

    def lr_for(self, base_lr: float, iteration: int, epoch: int) -> float:
        if iteration < self.warmup_iters:
            return self.warmup_start_lr + (base_lr - self.warmup_start_lr) * iteration / self.warmup_iters
        if epoch < self.cosine_start_epoch:
            return base_lr
        span = self.epochs - 1 - self.cosine_start_epoch
        if span <= 0:
            return self.min_lr
        progress = (min(epoch, self.epochs - 1) - self.cosine_start_epoch) / span
        return self.min_lr + (base_lr - self.min_lr) * (1.0 + math.cos(math.pi * progress)) / 2.0


class ExponentialScheduler(Scheduler):
    """``lr * gamma ** e`` after ``e`` epochs (attention_unet protocol).

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        Base learning rate ``lr`` from its parameter groups (1e-4).
    gamma : float
        Decay factor applied after every epoch (0.995).

    Notes
    -----
    Epoch 0 runs at ``lr``, epoch 1 at ``0.995 lr``, epoch 39 (the last of 40) at
    ``0.995**39 lr``. Iterations do not change the rate.
    """

    name = "exponential"

    def __init__(self, optimizer: torch.optim.Optimizer, *, gamma: float = 0.995) -> None:
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1]; got {gamma}")
        self.gamma = gamma
        super().__init__(optimizer)

    def settings(self) -> dict[str, Any]:
        return {"gamma": self.gamma}

    def lr_for(self, base_lr: float, iteration: int, epoch: int) -> float:
        return base_lr * self.gamma**epoch


def build_scheduler(
    name: str, optimizer: torch.optim.Optimizer, *, epochs: int, iters_per_epoch: int, **kw
) -> Scheduler:
    """The learning-rate schedule of a training protocol by its config name.

    Parameters
    ----------
    name : {"warmup_cosine", "exponential"}
        :class:`WarmupCosineScheduler` (resnext_unet) or :class:`ExponentialScheduler`
        (attention_unet).
    optimizer : torch.optim.Optimizer
        The optimizer whose learning rate is set; its current lr is the base lr.
    epochs : int
        Training epochs.
    iters_per_epoch : int
        Optimizer steps per epoch.
    **kw
        ``warmup_cosine``: ``warmup_iters`` (100), ``warmup_start_lr`` (1e-6),
        ``min_lr`` (5e-6). ``exponential``: ``gamma`` (0.995).

    Returns
    -------
    Scheduler
        Call ``step_iteration()`` after every optimizer step and ``step_epoch()`` after
        every epoch; ``state_dict()`` / ``load_state_dict()`` for resume.
    """
    _check_positive_int("epochs", epochs)
    _check_positive_int("iters_per_epoch", iters_per_epoch)
    allowed = {
        "warmup_cosine": {"warmup_iters", "warmup_start_lr", "min_lr"},
        "exponential": {"gamma"},
    }
    if name not in allowed:
        raise ValueError(f"unknown scheduler {name!r}; expected one of {', '.join(SCHEDULER_NAMES)}")
    unknown = set(kw) - allowed[name]
    if unknown:
        raise TypeError(
            f"scheduler {name!r} got unknown options {sorted(unknown)}; it takes {sorted(allowed[name])}"
        )
    if name == "warmup_cosine":
        return WarmupCosineScheduler(optimizer, epochs=epochs, iters_per_epoch=iters_per_epoch, **kw)
    return ExponentialScheduler(optimizer, **kw)


def _check_positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
