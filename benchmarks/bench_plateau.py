"""How fast the ResNeXt-UNet leaves the all-background start, for variants of its decoder and init.

Trains one cross-validation fold's training subjects (minus a held-out 15 %, as
``training.validation: holdout``) through the project's own loop
(:func:`radfusion.train.train_epochs`: flips, bfloat16 autocast where the CPU has it, the loss,
AdamW and the warmup-cosine schedule of the protocol) for a fixed number of optimizer steps, and
reports for each variant:

- ``init_spread``: standard deviation of the logits at initialization (one batch, training mode);
- ``first_step_0.3``: the first step at which the soft Dice of the training batch,
  ``2 sum(p y) / (sum p + sum y)``, averaged over the last 10 steps, exceeds 0.3;
- ``dead_50`` / ``dead_end``: fraction of the head's first-layer channels (after their ReLU)
  that are zero for every pixel of the step-50 / last batch;
- ``holdout_dice`` / ``holdout_dice_bn``: pooled Dice (threshold 0.5, model resolution) on the
  held-out training subjects in evaluation mode, with the BN running statistics as trained /
  re-estimated over the training slices (a cumulative average, one pass).

Nothing is scored on the test fold: the held-out subjects are training subjects
(docs/decisions.md, "ResNeXt-UNet start").

Run (after ``snakemake --cores 2 --configfile config/quick.yaml --until export_slices assign_folds``)::

    python benchmarks/bench_plateau.py --variants as_is prior_fraction batchnorm lr1e-3 --threads 1

``--help`` lists the variants. Per-step traces go to ``--out`` (TSV).
"""

from __future__ import annotations

import argparse
import copy
import math
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from radfusion.losses import build_loss
from radfusion.models.resnext_unet import ResNeXtUNet
from radfusion.optim import build_optimizer, build_scheduler
from radfusion.protocol import INPUT_CHANNELS
from radfusion.slices import load_slices
from radfusion.train import iterations_per_epoch, pooled_dice, seed_everything, split_subjects, train_epochs

# rai2021's plain decoder with PyTorch's default initialization: the network before the fix.
AS_IS = {"decoder_batchnorm": False, "he_init": False, "zero_init_residual": False, "output_prior": None}
BN, HE, ZERO = {"decoder_batchnorm": True}, {"he_init": True}, {"zero_init_residual": True}
# name -> (constructor options, learning rate or None for --lr). output_prior "fraction" is the
# training masks' lesion fraction; "prior" in a name without it is the default prior 0.01.
VARIANTS = {
    "as_is": (AS_IS, None),
    "prior_fraction": ({**AS_IS, "output_prior": "fraction"}, None),
    "batchnorm": ({**AS_IS, **BN}, None),
    "lr1e-3": (AS_IS, 1e-3),
    "he": ({**AS_IS, **HE}, None),
    "zero_residual": ({**AS_IS, **ZERO}, None),
    "batchnorm+he": ({**AS_IS, **BN, **HE}, None),
    "batchnorm+he+zero": ({**AS_IS, **BN, **HE, **ZERO}, None),
    "batchnorm+he+zero+prior_fraction": ({**AS_IS, **BN, **HE, **ZERO, "output_prior": "fraction"}, None),
    "batchnorm+he+zero+prior": ({**AS_IS, **BN, **HE, **ZERO, "output_prior": 0.01}, None),
    "batchnorm+he+prior": ({**AS_IS, **BN, **HE, "output_prior": 0.01}, None),
    "he+zero+prior": ({**AS_IS, **HE, **ZERO, "output_prior": 0.01}, None),
    "batchnorm+zero+prior": ({**AS_IS, **BN, **ZERO, "output_prior": 0.01}, None),
    # ResNeXtUNet's defaults (batchnorm+zero+prior, as the last line).
    "default": ({}, None),
}


def soft_dice(logits: torch.Tensor, masks: torch.Tensor) -> float:
    """Soft Dice of one batch, ``2 sum(p y) / (sum p + sum y)`` with ``p = sigmoid(logits)``."""
    p = torch.sigmoid(logits.detach().float())
    return float(2 * (p * masks).sum() / (p.sum() + masks.sum()).clamp_min(1e-8))


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, images: torch.Tensor, batch_size: int) -> nn.Module:
    """A copy of ``model`` whose BN running statistics are the cumulative average over ``images``."""
    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    for start in range(0, images.shape[0], batch_size):
        model(images[start : start + batch_size].contiguous(memory_format=torch.channels_last))
    return model.eval()


def run_variant(name: str, data: dict, args) -> tuple[dict, pd.DataFrame]:
    options, lr = VARIANTS[name]
    options = dict(options)
    if options.get("output_prior") == "fraction":
        options["output_prior"] = data["lesion_fraction"]
    lr = lr or args.lr
    seed_everything(args.seed)
    model = ResNeXtUNet(in_channels=data["train_images"].shape[1], **options)
    probe = data["train_images"][: args.batch_size]
    with torch.no_grad():
        init_spread = float(copy.deepcopy(model).train()(probe).std())

    trace: list[dict] = []
    dead: list[float] = []
    hook = model.head[-2].register_forward_hook(  # the ReLU after the head's first convolution
        lambda module, inputs, output: dead.append(
            float((output.detach().amax(dim=(0, 2, 3)) <= 0).float().mean())
        )
        if module.training
        else None
    )
    loss = build_loss(args.loss)

    def recording_loss(logits, masks):
        value = loss(logits, masks)
        trace.append({"step": len(trace) + 1, "loss": float(value.detach()), "soft_dice": soft_dice(logits, masks)})
        return value

    n_train = data["train_images"].shape[0]
    per_epoch = iterations_per_epoch(n_train, args.batch_size)
    epochs = math.ceil(args.steps / per_epoch)
    optimizer = build_optimizer("adamw", model.parameters(), lr=lr, weight_decay=args.weight_decay)
    scheduler = build_scheduler(
        "warmup_cosine", optimizer, epochs=epochs, iters_per_epoch=per_epoch,
        warmup_iters=args.warmup_iters, warmup_start_lr=1e-6, min_lr=5e-6,
    )
    started = time.perf_counter()
    train_epochs(
        model, optimizer, scheduler, recording_loss,
        data["train_images"], data["train_masks"], data["val_images"], data["val_masks"],
        epochs=epochs, batch_size=args.batch_size, hflip=0.5, seed=args.seed, device="cpu",
    )
    seconds = time.perf_counter() - started
    hook.remove()
    frame = pd.DataFrame(trace)
    frame["dead_head_channels"] = dead[: len(frame)]
    frame["variant"] = name
    smooth = frame["soft_dice"].rolling(10, min_periods=10).mean()
    above = frame.loc[smooth > 0.3, "step"]
    recalibrated = reestimate_batchnorm(model, data["train_images"], args.batch_size)
    row = {
        "variant": name,
        "lr": lr,
        "steps": len(frame),
        "init_spread": init_spread,
        "first_step_0.3": int(above.iloc[0]) if len(above) else None,
        "soft_dice_100": float(smooth.iloc[min(99, len(smooth) - 1)]),
        "soft_dice_end": float(smooth.iloc[-1]),
        "dead_50": float(frame["dead_head_channels"].iloc[min(49, len(frame) - 1)]),
        "dead_end": float(frame["dead_head_channels"].iloc[-1]),
        "holdout_dice": pooled_dice(model, data["val_images"], data["val_masks"]),
        "holdout_dice_bn": pooled_dice(recalibrated, data["val_images"], data["val_masks"]),
        "seconds": seconds,
    }
    return row, frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=Path, default=Path("results/slices"), help="folder of {subject}.npz")
    parser.add_argument("--folds", type=Path, default=Path("results/folds.tsv"))
    parser.add_argument("--fold", type=int, default=1)
    parser.add_argument("--input", default="mri_radiomics", choices=sorted(INPUT_CHANNELS))
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--lr", type=float, default=1e-4, help="the paper's rate")
    parser.add_argument("--weight-decay", type=float, default=1e-5)
    parser.add_argument("--warmup-iters", type=int, default=10)
    parser.add_argument("--loss", default="dice_bce")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variants", nargs="+", default=["as_is", "default"], choices=sorted(VARIANTS))
    parser.add_argument("--out", type=Path, default=None, help="per-step traces (TSV)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    folds = pd.read_csv(args.folds, sep="\t", dtype={"subject": str}).set_index("subject")["fold"].to_dict()
    train, held_out = split_subjects(folds, args.fold, validation="holdout", seed=args.seed)
    channels = INPUT_CHANNELS[args.input]

    def load(subjects):
        images, masks, _ = load_slices(
            [args.slices / f"{s}.npz" for s in subjects], channels=channels, image_size=args.image_size, subjects=subjects
        )
        return images, masks

    train_images, train_masks = load(train)
    val_images, val_masks = load(held_out)
    data = {
        "train_images": train_images, "train_masks": train_masks, "val_images": val_images, "val_masks": val_masks,
        "lesion_fraction": float(train_masks.mean()),
    }
    print(
        f"# fold {args.fold}, {args.input}, {args.image_size} px, batch {args.batch_size}, lr {args.lr}, "
        f"{args.steps} steps; {len(train)} training subjects ({train_images.shape[0]} slices), held out "
        f"{held_out} ({val_images.shape[0]} slices); lesion fraction {data['lesion_fraction']:.4f}; "
        f"{platform.processor() or platform.machine()}, {args.threads} thread(s), torch {torch.__version__}",
        flush=True,
    )
    rows, traces = [], []
    for name in args.variants:
        row, frame = run_variant(name, data, args)
        rows.append(row)
        traces.append(frame)
        print(pd.DataFrame([row]).to_string(index=False, float_format=lambda v: f"{v:.4g}"), flush=True)
    print()
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3g") if _has_tabulate() else pd.DataFrame(rows))
    if args.out is not None:
        pd.concat(traces).to_csv(args.out, sep="\t", index=False, float_format="%.6g")


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
