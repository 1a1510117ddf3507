"""Tune the quick settings on held-out training subjects (never on a test fold).

Runs :func:`radfusion.train.fit_one_fold` with ``validation="holdout"`` (15 % of the fold's
training subjects held out, the rest trained on; the fold's test subjects are not read) for the
quick cohort's exported slices, and prints the per-epoch held-out Dice (pooled, at the model's
resolution), the wall time of each job, and the held-out subjects' mean subject Dice at the
slices' original size (as Tables 1 and 3 score) next to the FLAIR-threshold baseline's on the same
subjects (threshold fit on the subjects trained on, as ``evaluate_baselines`` does per fold). The quick settings in ``config/quick.yaml`` were chosen
from these numbers (docs/decisions.md, "Quick settings").

Run (after ``snakemake --cores 2 --configfile config/quick.yaml --until export_slices assign_folds``)::

    python benchmarks/tune_quick.py --model resnext_unet --input mri_radiomics --folds 1 2 \\
        --set image_size=64 batch_size=2 epochs=5

Each ``--set key=value`` overrides the quick protocol of ``--model`` (config/config.yaml +
config/quick.yaml).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

from bench_training import read_config  # this folder is on sys.path when run as a script
from radfusion.protocol import INPUT_NAMES, MODEL_NAMES, TrainingProtocol
from radfusion.evaluate import best_flair_threshold, dice_score, predict_slice_masks
from radfusion.protocol import INPUT_CHANNELS
from radfusion.slices import network_box, read_slices
from radfusion.train import fit_one_fold, load_trained_model, split_subjects

PROJECT = Path(__file__).resolve().parents[1]


def quick_protocol(model: str, overrides: dict) -> TrainingProtocol:
    """The model's training protocol of config/config.yaml with config/quick.yaml and ``overrides`` on top."""
    section = read_config([PROJECT / "config/config.yaml", PROJECT / "config/quick.yaml"])["training"][model]
    return TrainingProtocol.from_config({**section, **overrides})


def held_out_scores(model_path: Path, slice_paths: dict, trained: list[str], held: list[str], channels) -> tuple[float, float]:
    """Mean subject Dice (original size) of the model and of the FLAIR threshold on ``held``."""
    model, info = load_trained_model(model_path)
    arrays = {s: read_slices(slice_paths[s], subject=s) for s in [*trained, *held]}
    threshold, _ = best_flair_threshold([arrays[s]["images"][:, 0] for s in trained], [arrays[s]["masks"] for s in trained])
    network, baseline = [], []
    for subject in held:
        images, truth = arrays[subject]["images"], arrays[subject]["masks"]
        box = network_box(info["crop"], arrays[subject]["box"])
        predicted = predict_slice_masks(model, images, image_size=info["image_size"], channels=channels, box=box)
        network.append(dice_score(predicted, truth))
        baseline.append(dice_score(images[:, 0] >= threshold, truth))
    return float(sum(network) / len(network)), float(sum(baseline) / len(baseline))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, choices=MODEL_NAMES)
    parser.add_argument("--input", default="mri_radiomics", choices=INPUT_NAMES)
    parser.add_argument("--folds", type=int, nargs="+", default=[1])
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="protocol overrides")
    parser.add_argument("--slices", type=Path, default=Path("results/slices"))
    parser.add_argument("--folds-file", type=Path, default=Path("results/folds.tsv"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    overrides = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.set)}
    protocol = quick_protocol(args.model, overrides)
    folds = pd.read_csv(args.folds_file, sep="\t", dtype={"subject": str}).set_index("subject")["fold"].to_dict()
    slice_paths = {s: args.slices / f"{s}.npz" for s in folds}
    print(f"# {args.model}/{args.input} holdout; protocol {protocol}", flush=True)
    for fold in args.folds:
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            history = fit_one_fold(
                slice_paths, folds, fold=fold, model_name=args.model, input_name=args.input,
                model_path=Path(tmp) / "model.pt", history_path=Path(tmp) / "history.tsv",
                checkpoint_path=Path(tmp) / "checkpoint.pt", protocol=protocol, validation="holdout",
                seed=args.seed, device="cpu",
            )
            seconds = time.perf_counter() - started
            trained, held = split_subjects(folds, fold, validation="holdout", seed=args.seed)
            network, baseline = held_out_scores(
                Path(tmp) / "model.pt", slice_paths, trained, held, INPUT_CHANNELS[args.input]
            )
        curve = " ".join(f"{v:.3f}" for v in history["val_dice"])
        print(
            f"fold {fold}: held-out Dice per epoch {curve}; {seconds:.0f} s; held-out {','.join(held)}: "
            f"mean subject Dice {network:.3f}, FLAIR threshold {baseline:.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
