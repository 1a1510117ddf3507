"""Training of one (model, input, fold): the epoch loop, checkpoints and resume (SPEC stage 7).

:func:`fit_one_fold` assembles one cross-validation job from the exported slices and the
folds table; :func:`train_epochs` is the loop itself, independent of the networks and losses
(any ``nn.Module``, optimizer and scheduler object), so it can be checked with small models.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from radfusion.execution import autocast_precision, inference_batch_size, resolve_device
from radfusion.io import atomic_output
from radfusion.protocol import INPUT_CHANNELS, TrainingProtocol
from radfusion.slices import load_slices

log = logging.getLogger(__name__)

HISTORY_COLUMNS = ("epoch", "train_loss", "val_dice", "lr", "seconds")
MODEL_FORMAT = "radfusion-model-2"
CHECKPOINT_FORMAT = "radfusion-checkpoint-1"


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's (CPU and CUDA) global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure_determinism(device: torch.device) -> None:
    """Make training reproducible: deterministic kernels on the CPU, deterministic cuDNN on CUDA.

    Notes
    -----
    On the CPU ``torch.use_deterministic_algorithms(True)`` holds for every operation the two
    networks use, so two runs with the same seed and thread count give identical weights. On
    CUDA, cuDNN is made deterministic, but some kernels (e.g. the backward pass of transposed
    convolutions and of interpolation) may still accumulate in varying order, so GPU reruns
    agree only to rounding.
    """
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    else:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def restore_grad_scaler(scaler: torch.amp.GradScaler, state: Mapping) -> bool:
    """Load a checkpoint's gradient-scaler state into ``scaler`` where it applies.

    Parameters
    ----------
    scaler : torch.amp.GradScaler
        The scaler of the resumed run.
    state : mapping
        ``scaler.state_dict()`` of the run that wrote the checkpoint; empty when that scaler was
        disabled (a CPU or float32 run).

    Returns
    -------
    loaded : bool
        False when ``scaler`` is disabled (the state is not needed) or ``state`` is empty (the
        scaler starts from its initial scale, which it adjusts within a few steps).

    Notes
    -----
    ``GradScaler.load_state_dict`` refuses the empty state of a disabled scaler, so without
    this a checkpoint written on the CPU could not resume on CUDA.
    """
    if not scaler.is_enabled() or not state:
        return False
    scaler.load_state_dict(dict(state))
    return True


#: Tensor axis of a slice batch (N, C, H, W) that runs along the patient's left-right (RAS+ x):
#: exported slices are ``volume[:, :, k]`` of canonical RAS+ volumes, so H is x (left-right) and
#: W is y (posterior-anterior).
LEFT_RIGHT_AXIS = -2


def flip_left_right(
    images: torch.Tensor, masks: torch.Tensor, flip: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror the chosen samples of a batch across the patient's mid-sagittal plane.

    Parameters
    ----------
    images : Tensor (N, C, H, W)
    masks : Tensor (N, 1, H, W)
    flip : Tensor of bool (N,)
        Which samples to mirror.

    Returns
    -------
    images, masks : Tensor
        The samples with ``flip`` true reversed along :data:`LEFT_RIGHT_AXIS` (H, the RAS+ x
        axis), the others unchanged.

    Notes
    -----
    The paper's "random horizontal flip" is the left-right mirror, under which a brain stays a
    plausible brain; reversing W instead would swap the frontal and occipital horns.
    """
    chosen = flip.reshape(-1, 1, 1, 1)
    images = torch.where(chosen, images.flip(LEFT_RIGHT_AXIS), images)
    masks = torch.where(chosen, masks.flip(LEFT_RIGHT_AXIS), masks)
    return images, masks


def epoch_batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Shuffle ``0 .. n-1`` and cut it into batches of ``batch_size``.

    Notes
    -----
    A last batch of a single sample is merged into the one before it, because batch
    normalization cannot train on one sample whose deepest feature map is 1x1.
    """
    if n == 0:
        return []
    order = torch.randperm(n, generator=generator)
    batches = list(torch.split(order, batch_size))
    if len(batches) > 1 and batches[-1].numel() == 1:
        batches[-2] = torch.cat(batches[-2:])
        batches.pop()
    return batches


def iterations_per_epoch(n: int, batch_size: int) -> int:
    """Number of optimizer steps per epoch for ``n`` samples (see :func:`epoch_batches`)."""
    if n == 0:
        return 0
    full, rest = divmod(n, batch_size)
    return full + (1 if rest > 1 or (rest == 1 and full == 0) else 0)


@torch.no_grad()
def pooled_dice(
    model: nn.Module,
    images: torch.Tensor,
    masks: torch.Tensor,
    *,
    threshold: float = 0.5,
    autocast: bool = False,
) -> float:
    """Dice of a model's thresholded predictions, pooled over all pixels of all images.

    Parameters
    ----------
    model : nn.Module
        Returns logits (B, 1, H, W).
    images : Tensor (N, C, H, W)
    masks : Tensor (N, 1, H, W) in {0, 1}
    threshold : float
        On the sigmoid probability.

    Returns
    -------
    dice : float
        ``2 TP / (2 TP + FP + FN)`` with the counts summed over every pixel of every image
        (one pooled score, not a mean of per-image scores); 1.0 when both the masks and the
        predictions are empty, NaN when there are no images.

    Notes
    -----
    This is the per-epoch validation Dice of the training history (the paper's Figure 4),
    computed at the network's input resolution on the resized masks. The model is put in
    evaluation mode and back into its previous mode afterwards.
    """
    if images.shape[0] == 0:
        return float("nan")
    was_training = model.training
    model.eval()
    tp = fp = fn = 0
    batch = inference_batch_size(*images.shape[-2:], images.device)
    for start in range(0, images.shape[0], batch):
        x = images[start : start + batch].contiguous(memory_format=torch.channels_last)
        y = masks[start : start + batch] > 0.5
        with torch.autocast(device_type=x.device.type, enabled=autocast):
            logits = model(x)
        predicted = torch.sigmoid(logits.float()) > threshold
        tp += int((predicted & y).sum())
        fp += int((predicted & ~y).sum())
        fn += int((~predicted & y).sum())
    model.train(was_training)
    denominator = 2 * tp + fp + fn
    return 1.0 if denominator == 0 else 2 * tp / denominator


def _rng_states(generator: torch.Generator) -> dict:
    states = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "data": generator.get_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _restore_rng_states(states: dict, generator: torch.Generator) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    generator.set_state(states["data"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    scaler: torch.amp.GradScaler,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    masks: torch.Tensor,
    *,
    batch_size: int,
    hflip: float,
    generator: torch.Generator,
    autocast: bool,
) -> tuple[float, float]:
    """One pass over the training slices in shuffled batches, each sample flipped with ``hflip``.

    Returns
    -------
    train_loss : float
        Mean loss over the epoch's samples.
    lr : float
        The learning rate of the epoch's last optimizer step.

    Notes
    -----
    The order and the flips are drawn from ``generator`` (order first, then one flip per
    sample), so a resumed run draws what an uninterrupted one would. The loss runs in float32
    even under autocast (Dice sums are precision-sensitive).
    """
    device = images.device
    batches = epoch_batches(images.shape[0], batch_size, generator)
    flips = torch.rand(images.shape[0], generator=generator) < hflip
    loss_sum, seen, lr = 0.0, 0, float("nan")
    for batch in batches:
        x, y = flip_left_right(images[batch.to(device)], masks[batch.to(device)], flips[batch].to(device))
        x = x.contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, enabled=autocast):
            logits = model(x)
        loss = loss_fn(logits.float(), y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss.item()}")
        scaler.scale(loss).backward()
        lr = float(optimizer.param_groups[0]["lr"])  # the rate this step uses
        scaler.step(optimizer)
        scaler.update()
        scheduler.step_iteration()
        loss_sum += float(loss.detach()) * batch.numel()
        seen += batch.numel()
    scheduler.step_epoch()
    return loss_sum / seen, lr


def save_checkpoint(
    path: str | os.PathLike,
    settings: Mapping,
    state: Mapping,
    generator: torch.Generator,
    history: list[dict],
    *,
    device: torch.device,
    precision: str,
) -> None:
    """Write the epoch checkpoint atomically.

    ``state`` maps ``model``, ``optimizer``, ``scheduler`` and ``scaler`` to the objects whose
    ``state_dict()`` is saved; with them go the generator states, the history, the ``settings``
    that identify the run and the ``device`` type and ``precision`` it was made with.
    """
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "settings": dict(settings),
        "epoch": len(history),
        "device": device.type,
        "precision": precision,
        **{name: obj.state_dict() for name, obj in state.items()},
        "rng": _rng_states(generator),
        "history": history,
    }
    with atomic_output(path) as tmp:
        torch.save(checkpoint, tmp)


def resume_checkpoint(
    path: str | os.PathLike | None,
    settings: Mapping,
    state: Mapping,
    generator: torch.Generator,
    *,
    device: torch.device,
    precision: str,
) -> list[dict]:
    """Load a checkpoint of :func:`save_checkpoint` into ``state`` and return its history.

    Returns an empty history (training starts over) when there is no checkpoint or it was made
    with other ``settings`` (with a warning). A checkpoint made on another device or precision
    resumes on this one (see :func:`restore_grad_scaler`).
    """
    if path is None or not Path(path).exists():
        return []
    # On the CPU: generator states must be CPU tensors; load_state_dict moves the rest.
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if checkpoint.get("format") != CHECKPOINT_FORMAT or checkpoint.get("settings") != dict(settings):
        log.warning("checkpoint %s was made with other settings; training starts over", path)
        return []
    for name, obj in state.items():
        if name == "scaler":
            restore_grad_scaler(obj, checkpoint["scaler"])
        else:
            obj.load_state_dict(checkpoint[name])
    _restore_rng_states(checkpoint["rng"], generator)
    log.info(
        "resuming from %s after epoch %d (written on %s in %s; continuing on %s in %s)",
        path, checkpoint["epoch"], checkpoint.get("device", "?"), checkpoint.get("precision", "?"),
        device.type, precision,
    )
    return list(checkpoint["history"])


def train_epochs(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    train_images: torch.Tensor,
    train_masks: torch.Tensor,
    val_images: torch.Tensor,
    val_masks: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    hflip: float = 0.5,
    seed: int = 42,
    checkpoint_path: str | os.PathLike | None = None,
    settings: Mapping | None = None,
    device: str | torch.device | None = None,
    threshold: float = 0.5,
    mixed_precision: bool = True,
) -> pd.DataFrame:
    """Train ``model`` for ``epochs`` epochs, checkpointing after each; resume from a checkpoint.

    Parameters
    ----------
    model, optimizer
        The network (logits out) and its optimizer.
    scheduler
        Object with ``step_iteration()`` (after every optimizer step), ``step_epoch()`` (after
        every epoch), ``state_dict()`` and ``load_state_dict()``.
    loss_fn : callable
        ``loss_fn(logits, masks) -> scalar tensor``.
    train_images, train_masks, val_images, val_masks : Tensor
        In-memory data at the network's size: images (N, C, H, W), masks (N, 1, H, W).
        They are moved to ``device`` once.
    epochs, batch_size : int
    hflip : float
        Probability of flipping a training sample left-right, drawn per sample and epoch.
    seed : int
        Seeds the data order, the flips and every global generator (dropout).
    checkpoint_path : path-like, optional
        Written atomically after every epoch (model, optimizer, scheduler, gradient scaler,
        generator states, history, and the ``device`` type and ``precision`` it was made
        with). When it exists at the start and its ``settings`` match, training resumes after
        its last epoch, on this run's device and precision (a CPU checkpoint resumes on CUDA
        and the other way round; see :func:`restore_grad_scaler`).
    settings : mapping, optional
        What identifies the run (model, input, fold, hyperparameters); a checkpoint made with
        other settings is ignored (with a warning) and training starts over.
    device : str or torch.device, optional
        ``None``: CUDA when present, else the CPU.
    threshold : float
        Probability threshold of the validation Dice.
    mixed_precision : bool
        Forward passes under ``torch.autocast`` (see :func:`uses_autocast`): float16 with a
        ``GradScaler`` on CUDA, bfloat16 on CPUs with native bfloat16 (~1.4x faster on this
        project's CPU machine); the loss is always computed in float32.

    Returns
    -------
    history : DataFrame
        One row per epoch: ``epoch`` (1-based), ``train_loss`` (mean over the epoch's samples),
        ``val_dice`` (:func:`pooled_dice` on the validation data), ``lr`` (learning rate of the
        epoch's last optimizer step), ``seconds`` (wall time of the epoch; the only column that
        differs between two identical runs).

    Notes
    -----
    Restoring every generator state from the checkpoint makes an interrupted and resumed run
    identical, on the CPU, to an uninterrupted one. The model is left in evaluation mode.
    """
    device = resolve_device(device)
    if train_images.shape[0] == 0:
        raise ValueError("no training slices: every training subject exported zero slices")
    if not 0.0 <= hflip <= 1.0:
        raise ValueError(f"expected hflip in [0, 1], got {hflip}")
    settings = dict(settings or {})
    precision = autocast_precision(device, mixed_precision)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "float16")
    generator = torch.Generator().manual_seed(seed)
    # channels_last: 15-25 % faster convolutions on CPU (oneDNN) and tensor cores alike.
    model.to(device, memory_format=torch.channels_last)
    train_images, train_masks = train_images.to(device), train_masks.to(device)
    val_images, val_masks = val_images.to(device), val_masks.to(device)

    state = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler}
    history = resume_checkpoint(checkpoint_path, settings, state, generator, device=device, precision=precision)
    model.train()
    for epoch in range(len(history) + 1, epochs + 1):
        started = time.perf_counter()
        train_loss, lr = train_one_epoch(
            model, optimizer, scheduler, scaler, loss_fn, train_images, train_masks,
            batch_size=batch_size, hflip=hflip, generator=generator, autocast=precision != "float32",
        )
        val_dice = pooled_dice(model, val_images, val_masks, threshold=threshold, autocast=precision != "float32")
        history.append(
            {"epoch": epoch, "train_loss": train_loss, "val_dice": val_dice, "lr": lr, "seconds": time.perf_counter() - started}
        )
        log.info(
            "epoch %d/%d: train loss %.5f, validation Dice %.4f, lr %.3g, %.1f s",
            epoch, epochs, train_loss, val_dice, lr, history[-1]["seconds"],
        )
        if checkpoint_path is not None:
            save_checkpoint(checkpoint_path, settings, state, generator, history, device=device, precision=precision)
    model.eval()
    return pd.DataFrame(history, columns=list(HISTORY_COLUMNS))


def split_subjects(
    folds: Mapping[str, int],
    fold: int,
    *,
    validation: str = "test_fold",
    holdout_fraction: float = 0.15,
    seed: int = 42,
) -> tuple[list[str], list[str]]:
    """Training and validation subjects of one cross-validation fold.

    Parameters
    ----------
    folds : mapping
        ``subject -> fold`` (from :func:`radfusion.folds.subject_folds`).
    fold : int
        The test fold.
    validation : {"test_fold", "holdout"}
        ``"test_fold"``: validate on the test fold (monitoring only, as in the paper's
        Figure 4; the final-epoch model is kept, nothing is selected on it). ``"holdout"``:
        hold out ``holdout_fraction`` of the training subjects instead.
    holdout_fraction : float in (0, 1)
    seed : int

    Returns
    -------
    train, validation : list of str
        Sorted subject IDs.

    Notes
    -----
    The held-out count is ``max(1, round(holdout_fraction * n_train))``, at most
    ``n_train - 1``; the draw uses ``numpy.random.default_rng([seed, fold])``.
    """
    if fold not in set(folds.values()):
        raise ValueError(f"fold {fold} has no subjects; folds present: {sorted(set(folds.values()))}")
    train = sorted(s for s, f in folds.items() if f != fold)
    test = sorted(s for s, f in folds.items() if f == fold)
    if validation == "test_fold":
        return train, test
    if validation != "holdout":
        raise ValueError(f"expected validation 'test_fold' or 'holdout', got {validation!r}")
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(f"expected holdout_fraction in (0, 1), got {holdout_fraction}")
    if len(train) < 2:
        raise ValueError(f"holdout validation needs at least 2 training subjects, got {len(train)}")
    n_holdout = min(max(1, round(holdout_fraction * len(train))), len(train) - 1)
    held = set(np.random.default_rng([seed, fold]).choice(train, size=n_holdout, replace=False).tolist())
    return [s for s in train if s not in held], sorted(held)


def fit_one_fold(
    slice_paths: Mapping[str, str | os.PathLike],
    folds: Mapping[str, int],
    *,
    fold: int,
    model_name: str,
    input_name: str,
    protocol: TrainingProtocol,
    model_path: str | os.PathLike,
    history_path: str | os.PathLike,
    checkpoint_path: str | os.PathLike,
    preprocessing: Mapping | None = None,
    validation: str = "test_fold",
    holdout_fraction: float = 0.15,
    seed: int = 42,
    device: str | torch.device | None = None,
    mixed_precision: bool = True,
    keep_checkpoint: bool = False,
) -> pd.DataFrame:
    """Train one (model, input, fold) of the cross-validation and save the final-epoch model.

    Parameters
    ----------
    slice_paths : mapping
        ``subject -> results/slices/{subject}.npz`` for every subject of ``folds``.
    folds : mapping
        ``subject -> fold``.
    fold : int
        The test fold; its subjects are never trained on.
    model_name : {"resnext_unet", "attention_unet"}
    input_name : {"mri", "mri_radiomics"}
        ``mri``: FLAIR only (channel 0); ``mri_radiomics``: FLAIR, CR, RE (channels 0-2).
    protocol : TrainingProtocol
        The network's training protocol (config section ``training.<model>``).
    model_path, history_path : path-like
        Outputs: the final model (see :func:`save_model`) and the per-epoch history TSV.
    checkpoint_path : path-like
        Written after every epoch; an existing one from the same settings is resumed.
    preprocessing : mapping, optional
        How the slices were made (normalization percentiles, CR/RE parameters, threshold;
        see :func:`save_model`); stored in the model file so that prediction uses the same.
    validation, holdout_fraction
        See :func:`split_subjects`.
    seed : int
        Seeds model initialization, data order, flips and dropout.
    device : optional
        ``None``: CUDA when present, else the CPU.
    mixed_precision : bool
        See :func:`train_epochs` and :func:`uses_autocast`.
    keep_checkpoint : bool
        Keep the checkpoint after success (by default it is removed once the outputs exist;
        it is as large as the model and its optimizer state together).

    Returns
    -------
    history : DataFrame
        Columns ``epoch, train_loss, val_dice, lr, seconds`` (see :func:`train_epochs`).

    Notes
    -----
    SPEC stage 7. The model evaluated later is the final-epoch model: no epoch is chosen on the
    validation (test-fold) Dice. Slices are read once into memory and resized once
    (:func:`radfusion.slices.load_slices`). Outputs are written atomically, after training.
    """
    from radfusion.losses import build_loss
    from radfusion.models import build_model

    if input_name not in INPUT_CHANNELS:
        raise ValueError(f"unknown input {input_name!r}; expected one of {sorted(INPUT_CHANNELS)}")
    device = resolve_device(device)
    configure_determinism(device)
    train_subjects, val_subjects = split_subjects(
        folds, fold, validation=validation, holdout_fraction=holdout_fraction, seed=seed
    )
    (train_images, train_masks), (val_images, val_masks) = load_fold_slices(
        slice_paths, (train_subjects, val_subjects), input_name=input_name, image_size=protocol.image_size,
        crop=protocol.crop,
    )
    log.info(
        "%s/%s fold %d on %s: %d training slices (%d subjects), %d validation slices (%d subjects, %s)",
        model_name, input_name, fold, device, train_images.shape[0], len(train_subjects),
        val_images.shape[0], len(val_subjects), validation,
    )
    settings = {
        "model_name": model_name,
        "input_name": input_name,
        "fold": fold,
        "train_subjects": train_subjects,
        "val_subjects": val_subjects,
        **protocol.as_dict(),
        "seed": seed,
        "mixed_precision": mixed_precision,
    }
    seed_everything(seed)
    if protocol.encoder_weights is not None:
        log.info("encoder weights: %s", protocol.encoder_weights)
    model = build_model(model_name, len(INPUT_CHANNELS[input_name]), encoder_weights=protocol.encoder_weights)
    optimizer, scheduler = build_optimization(protocol, model, n_train=train_images.shape[0])
    history = train_epochs(
        model,
        optimizer,
        scheduler,
        build_loss(protocol.loss),
        train_images,
        train_masks,
        val_images,
        val_masks,
        epochs=protocol.epochs,
        batch_size=protocol.batch_size,
        hflip=protocol.hflip,
        seed=seed,
        checkpoint_path=checkpoint_path,
        settings=settings,
        device=device,
        mixed_precision=mixed_precision,
    )
    save_model(
        model,
        model_path,
        model_name=model_name,
        input_name=input_name,
        image_size=protocol.image_size,
        crop=protocol.crop,
        preprocessing=preprocessing,
        metadata={
            "fold": fold,
            "epochs": protocol.epochs,
            "train_subjects": train_subjects,
            "seed": seed,
            "protocol": protocol.as_dict(),
        },
    )
    write_history(history, history_path)
    if not keep_checkpoint:
        Path(checkpoint_path).unlink(missing_ok=True)
    return history


def load_fold_slices(
    slice_paths: Mapping[str, str | os.PathLike],
    groups: Sequence[Sequence[str]],
    *,
    input_name: str,
    image_size: int,
    crop: str = "none",
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The (images, masks) of each group of subjects (e.g. training and validation), resized.

    See :func:`radfusion.slices.load_slices` (``crop`` too); a subject without a slice file is
    an error.
    """
    missing = sorted({s for group in groups for s in group} - set(slice_paths))
    if missing:
        raise ValueError(f"no slice file given for subject(s) {missing}")
    loaded = []
    for subjects in groups:
        images, masks, _ = load_slices(
            [slice_paths[s] for s in subjects],
            channels=INPUT_CHANNELS[input_name],
            image_size=image_size,
            subjects=list(subjects),
            crop=crop,
        )
        loaded.append((images, masks))
    return loaded


def build_optimization(protocol: TrainingProtocol, model: nn.Module, *, n_train: int):
    """The protocol's optimizer and learning-rate schedule for ``model`` and ``n_train`` slices.

    Returns
    -------
    optimizer : torch.optim.Optimizer
        See :func:`radfusion.optim.build_optimizer`.
    scheduler : radfusion.optim.Scheduler
        See :func:`radfusion.optim.build_scheduler`; it counts the steps of
        :func:`iterations_per_epoch` batches per epoch.
    """
    from radfusion.optim import build_optimizer, build_scheduler

    optimizer = build_optimizer(
        protocol.optimizer, model.parameters(), lr=protocol.lr, weight_decay=protocol.weight_decay
    )
    scheduler = build_scheduler(
        protocol.scheduler,
        optimizer,
        epochs=protocol.epochs,
        iters_per_epoch=iterations_per_epoch(n_train, protocol.batch_size),
        **protocol.schedule_options(),
    )
    return optimizer, scheduler


def write_history(history: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a training history as TSV (atomically), full float precision."""
    with atomic_output(path) as tmp:
        history.to_csv(tmp, sep="\t", index=False, float_format="%.10g")


def save_model(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    model_name: str,
    input_name: str,
    image_size: int,
    crop: str = "none",
    preprocessing: Mapping | None = None,
    metadata: Mapping | None = None,
) -> None:
    """Save a trained network with what inference needs to rebuild and feed it (atomically).

    Parameters
    ----------
    crop : {"none", "brain"}
        Of the training protocol: prediction cuts slices to the brain's box as training did.
    preprocessing : mapping, optional
        How the training slices were made, which prediction must repeat: ``lower_percentile``,
        ``upper_percentile`` (normalization), ``cr`` and ``re`` (feature-map parameters) and
        ``threshold`` (on the probability). ``radfusion predict`` reads it from the file.

    Notes
    -----
    The file is a ``torch.save`` dict: ``format`` ("radfusion-model-2"), ``version`` (of
    radfusion), ``model_name``, ``input_name``, ``in_channels``, ``channels`` (indices into
    the exported FLAIR, CR, RE), ``image_size``, ``crop``, ``preprocessing``, ``state_dict`` (on the
    CPU) and ``metadata``. Read it with :func:`load_trained_model`.
    """
    from radfusion import __version__

    channels = INPUT_CHANNELS[input_name]
    payload = {
        "format": MODEL_FORMAT,
        "version": __version__,
        "model_name": model_name,
        "input_name": input_name,
        "in_channels": len(channels),
        "channels": list(channels),
        "image_size": int(image_size),
        "crop": str(crop),
        "preprocessing": None if preprocessing is None else _plain(preprocessing),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metadata": dict(metadata or {}),
    }
    with atomic_output(path) as tmp:
        torch.save(payload, tmp)


def _plain(value):
    """Mappings as plain dicts, sequences as lists (comparable and printable settings)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def load_trained_model(path: str | os.PathLike, *, device: str | torch.device | None = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild a network saved by :func:`save_model`, in evaluation mode.

    Returns
    -------
    model : nn.Module
        On ``device`` (``None``: CUDA when present), evaluation mode.
    info : dict
        The saved fields except the weights: ``version``, ``model_name``, ``input_name``,
        ``in_channels``, ``channels``, ``image_size``, ``crop`` ("none" in files saved before
        it was recorded), ``preprocessing``, ``metadata``.
    """
    from radfusion.models import build_model

    path = Path(path)
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(payload, dict) and payload.get("format") == "radfusion-model-1":
        raise ValueError(
            f"file '{path}': made by an older radfusion that did not record its preprocessing; "
            "train it again (delete it and rerun the workflow)"
        )
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise ValueError(f"file '{path}': not a radfusion model (expected format {MODEL_FORMAT})")
    model = build_model(payload["model_name"], payload["in_channels"])
    model.load_state_dict(payload["state_dict"])
    model.to(resolve_device(device)).eval()
    info = {k: v for k, v in payload.items() if k not in ("state_dict", "format")}
    info.setdefault("crop", "none")
    return model, info
