"""The ``radfusion`` command: ``radfusion predict FLAIR_OR_DICOM_DIR --out DIR`` (SPEC stage 12).

Settings come, in increasing priority, from the library defaults (the paper's protocol), the
workflow config (``--configfile``, default ``config/config.yaml`` when it exists in the current
folder: keys ``predict``, ``evaluation.threshold``, ``normalize`` and ``radiomics``, which must
match the training run) and the command-line flags.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from radfusion.io import InputError

DEFAULT_CONFIG = Path("config/config.yaml")


def read_config(paths: Sequence[str | Path]) -> dict:
    """Read workflow config files and merge them in order (later files override, key by key).

    Raises :class:`~radfusion.io.InputError` naming a file that is missing or not a YAML mapping.
    """
    import yaml

    def merge(base: dict, overlay: Mapping) -> dict:
        merged = dict(base)
        for key, value in overlay.items():
            if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
                merged[key] = merge(dict(merged[key]), value)
            else:
                merged[key] = value
        return merged

    config: dict = {}
    for path in paths:
        path = Path(path)
        try:
            loaded = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as err:
            raise InputError(f"file '{path}': cannot be read as a YAML config ({err})") from err
        if loaded is None:
            continue
        if not isinstance(loaded, Mapping):
            raise InputError(f"file '{path}': expected a YAML mapping of config keys, got {type(loaded).__name__}")
        config = merge(config, loaded)
    return config


def prediction_settings(config: Mapping, args: argparse.Namespace) -> dict:
    """Model, input, threshold, normalization and radiomics settings: flags over config over defaults."""
    predict = config.get("predict") or {}
    normalize = config.get("normalize") or {}
    radiomics = config.get("radiomics") or {}
    threshold = args.threshold if args.threshold is not None else (config.get("evaluation") or {}).get("threshold", 0.5)
    return {
        "model": args.model or predict.get("model", "best"),
        "input_name": args.input or predict.get("input", "best"),
        "threshold": float(threshold),
        "lower_percentile": float(normalize.get("lower_percentile", 0.5)),
        "upper_percentile": float(normalize.get("upper_percentile", 99.5)),
        "cr": dict(radiomics.get("cr") or {}),
        "re": dict(radiomics.get("re") or {}),
    }


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``radfusion`` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="radfusion",
        description="Radiomics-fused MS lesion segmentation: apply the trained fold models to new patients.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    predict = commands.add_parser(
        "predict",
        help="lesion mask, lesion count and volume, and an overlay picture for a new FLAIR",
        description=(
            "Predict a new patient's MS lesions with the fold models of one (model, input) pair: the fold "
            "models' probabilities are averaged. Writes lesion_mask.nii.gz (on the input's grid), "
            "lesion_summary.csv (count, total volume in mL), lesions.csv (one row per lesion) and overlay.png."
        ),
    )
    add = predict.add_argument
    add("flair", metavar="FLAIR_OR_DICOM_DIR", help="FLAIR as a NIfTI file or a folder with one DICOM series")
    add("--out", required=True, metavar="DIR", help="output folder")
    add(
        "--models-dir",
        default="results/models",
        metavar="DIR",
        help="trained models, DIR/{model}/{input}/fold*/model.pt (default: %(default)s)",
    )
    add(
        "--eval-dir",
        default="results/eval",
        metavar="DIR",
        help="evaluation results, to pick the best model and input (default: %(default)s)",
    )
    add("--model", choices=["best", "resnext_unet", "attention_unet"], help="network (default: config, else best)")
    add("--input", choices=["best", "mri", "mri_radiomics"], help="input channels (default: config, else best)")
    add("--threshold", type=float, help="probability threshold (default: config evaluation.threshold, else 0.5)")
    add("--device", choices=["cpu", "cuda"], help="default: CUDA when present, else the CPU")
    add("--patient", help="patient ID in the summary and messages (default: the output folder's name)")
    add("--threads", type=int, default=2, help="CPU threads (default: %(default)s)")
    add(
        "--configfile",
        action="append",
        metavar="FILE",
        help=f"workflow config of the training run, repeatable like snakemake's (default: {DEFAULT_CONFIG} if present)",
    )
    add("-q", "--quiet", action="store_true", help="log warnings only")
    return parser


def run_predict(args: argparse.Namespace) -> int:
    """``radfusion predict``: resolve the fold models and settings, predict, print the summary."""
    import torch

    from radfusion.predict import OUTPUT_FILES, choose_model_input, fold_model_paths, predict_patient

    config_files = args.configfile or ([DEFAULT_CONFIG] if DEFAULT_CONFIG.is_file() else [])
    settings = prediction_settings(read_config(config_files), args)
    if not 0.0 < settings["threshold"] < 1.0:
        raise InputError(f"--threshold: expected a probability in (0, 1), got {settings['threshold']}")
    if args.threads < 1:
        raise InputError(f"--threads: expected at least 1, got {args.threads}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: CUDA is not available on this machine; use --device cpu")
    flair = Path(args.flair)
    if not flair.exists():
        raise InputError(f"file '{flair}': does not exist")
    torch.set_num_threads(args.threads)
    model, input_name, cv_dice = choose_model_input(
        args.eval_dir, model=settings["model"], input_name=settings["input_name"]
    )
    paths = fold_model_paths(args.models_dir, model, input_name)
    summary = predict_patient(
        flair,
        args.out,
        model_paths=paths,
        patient=args.patient,
        cv_dice=cv_dice,
        threshold=settings["threshold"],
        lower_percentile=settings["lower_percentile"],
        upper_percentile=settings["upper_percentile"],
        cr=settings["cr"],
        re=settings["re"],
        device=args.device,
        threads=args.threads,
    )
    dice = "" if math.isnan(cv_dice) else f", cross-validated Dice {cv_dice:.3f}"
    count = summary["lesion_count"]
    print(
        f"{summary['patient']}: {count} lesion{'s' if count != 1 else ''}, {summary['total_volume_ml']:.3f} mL "
        f"({model}/{input_name}, {summary['folds']} fold models{dice})"
    )
    print("wrote " + ", ".join(str(Path(args.out) / name) for name in OUTPUT_FILES.values()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``radfusion`` command; returns the exit status.

    A problem with the user's input (file, folder, config, flag value) prints one line,
    ``radfusion <command>: error: <message>``, to stderr and returns 1, without a traceback.
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return run_predict(args)
    except InputError as err:
        message = " ".join(str(err).splitlines())
        print(f"radfusion {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
