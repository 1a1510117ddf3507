"""The ``radfusion`` command: ``radfusion predict FLAIR_OR_DICOM_DIR --out DIR`` (SPEC stage 12).

The fold models are one run's folder (``--models results/models/attention_unet/mri_radiomics``)
or the best cross-validated run under ``--models-dir`` (``--model``/``--input`` ``best``, from
``--eval-dir``). Normalization, CR/RE parameters, channels, image size and threshold come from
the model files, which record what they were trained with: no workflow config is read, so a
prediction cannot silently use other settings (``--threshold`` overrides the threshold).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from radfusion.io import InputError
from radfusion.protocol import INPUT_NAMES, MODEL_NAMES
from radfusion.skullstrip import SKULL_STRIP_MODES

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
            "models' probabilities are averaged. A whole-head FLAIR is skull-stripped first (deepbet). "
            "Writes lesion_mask.nii.gz and brain_mask.nii.gz (on the input's grid), "
            "lesion_summary.csv (count, total volume in mL), lesions.csv (one row per lesion) and overlay.png."
        ),
    )
    add = predict.add_argument
    add("flair", nargs="?", metavar="FLAIR_OR_DICOM_DIR", help="FLAIR as a NIfTI file or a folder with one DICOM series")
    add(
        "--bids",
        metavar="DATASET",
        help="segment every FLAIR of a BIDS dataset (sub-*/[ses-*/]anat/*_FLAIR.nii.gz) instead; --out is then "
        "a new BIDS derivatives dataset (masks, lesion tables, lesion_summary.tsv)",
    )
    add("--out", required=True, metavar="DIR", help="output folder")
    add(
        "--models",
        metavar="RUN_DIR",
        help="the fold models of one run, RUN_DIR/fold*/model.pt (e.g. results/models/attention_unet/mri_radiomics); "
        "default: the run of --model and --input under --models-dir",
    )
    add(
        "--models-dir",
        default="results/models",
        metavar="DIR",
        help="trained models, DIR/{model}/{input}/fold*/model.pt (default: %(default)s; "
        "results/predict_models for those of config predict.brain_fraction)",
    )
    add(
        "--eval-dir",
        default="results/eval",
        metavar="DIR",
        help="evaluation results, to pick the best model and input (default: %(default)s)",
    )
    add("--model", choices=["best", *MODEL_NAMES], default="best", help="network (default: %(default)s)")
    add("--input", choices=["best", *INPUT_NAMES], default="best", help="input channels (default: %(default)s)")
    add("--threshold", type=float, help="probability threshold (default: the one the models were trained with)")
    add("--device", choices=["cpu", "cuda"], help="default: CUDA when present, else the CPU")
    add("--patient", help="patient ID in the summary and messages (default: the output folder's name)")
    add("--threads", type=int, default=2, help="CPU threads (default: %(default)s)")
    add(
        "--folds",
        type=int,
        nargs="+",
        metavar="K",
        help="average only these fold models (e.g. --folds 1 2 3: half the time; its cost in Dice is in the "
        "README, 'Prediction speed'); default: all folds of the run",
    )
    add(
        "--precision",
        choices=["auto", "float32", "bfloat16", "int8"],
        default="auto",
        help="arithmetic of the networks: auto (CUDA: float16; CPU: bfloat16 only where it is measured "
        "faster, float32 elsewhere), forced, or int8 (CPUs with VNNI: each fold model quantized on the "
        "scan's slices; faster, masks differ slightly; README, 'Prediction speed') (default: %(default)s)",
    )
    add(
        "--skull-strip",
        choices=SKULL_STRIP_MODES,
        default="auto",
        help="brain mask: auto (strip unless the FLAIR is already skull-stripped), always, or none (the "
        "FLAIR's nonzero voxels); as the workflow's preprocess.skull_strip (default: %(default)s)",
    )
    add("-q", "--quiet", action="store_true", help="log warnings only")
    return parser


def run_predict(args: argparse.Namespace) -> int:
    """``radfusion predict``: resolve the fold models, predict, print the summary.

    Normalization, CR/RE parameters, channels, image size and threshold come from the model
    files (:func:`radfusion.ensemble.load_fold_models`); only ``--threshold`` overrides one.
    """
    import torch

    from radfusion.ensemble import choose_model_input, fold_model_paths, select_folds
    from radfusion.predict import OUTPUT_FILES, predict_patient

    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        raise InputError(f"--threshold: expected a probability in (0, 1), got {args.threshold}")
    if args.threads < 1:
        raise InputError(f"--threads: expected at least 1, got {args.threads}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: CUDA is not available on this machine; use --device cpu")
    if (args.flair is None) == (args.bids is None):
        raise InputError("give either a FLAIR (file or DICOM folder) or --bids DATASET")
    flair = Path(args.flair or args.bids)
    if not flair.exists():
        raise InputError(f"{'folder' if args.bids else 'file'} '{flair}': does not exist")
    torch.set_num_threads(args.threads)
    if args.precision == "int8":
        from radfusion.quantize import int8_supported

        if args.device == "cuda" or not int8_supported():
            raise InputError("--precision int8: runs on a CPU with VNNI (AVX512-VNNI or AVX-VNNI), not on CUDA")
        args.device = "cpu"
    precision = None if args.precision == "auto" else args.precision
    if args.models:
        run = Path(args.models)
        paths = fold_model_paths(run.parent.parent, run.parent.name, run.name)
        # the run's cross-validated Dice, when --eval-dir has it (the folder names model and input)
        _, _, cv_dice = choose_model_input(args.eval_dir, model=run.parent.name, input_name=run.name)
    else:
        model, input_name, cv_dice = choose_model_input(args.eval_dir, model=args.model, input_name=args.input)
        paths = fold_model_paths(args.models_dir, model, input_name)
    if args.folds:
        paths = select_folds(paths, args.folds)
    if args.bids:
        return _predict_bids(args, flair, paths, cv_dice, precision)
    summary = predict_patient(
        flair,
        args.out,
        model_paths=paths,
        patient=args.patient,
        cv_dice=cv_dice,
        threshold=args.threshold,
        device=args.device,
        threads=args.threads,
        skull_strip=args.skull_strip,
        precision=precision,
    )
    dice = "" if math.isnan(cv_dice) else f", cross-validated Dice {cv_dice:.3f}"
    count = summary["lesion_count"]
    print(
        f"{summary['patient']}: {count} lesion{'s' if count != 1 else ''}, {summary['total_volume_ml']:.3f} mL "
        f"({summary['model']}/{summary['input']}, {summary['folds']} fold models{dice})"
    )
    print("wrote " + ", ".join(str(Path(args.out) / name) for name in OUTPUT_FILES.values()))
    return 0


def _predict_bids(args: argparse.Namespace, root: Path, paths, cv_dice: float, precision: str | None) -> int:
    """``radfusion predict --bids``: every FLAIR of the dataset into a derivatives dataset."""
    from radfusion.bids import COHORT_TABLE, predict_bids

    cohort = predict_bids(
        root, args.out, model_paths=paths, cv_dice=cv_dice, threshold=args.threshold, device=args.device,
        threads=args.threads, skull_strip=args.skull_strip, precision=precision,
    )
    for row in cohort.itertuples():
        session = "" if row.session_id == "n/a" else f" {row.session_id}"
        print(f"{row.participant_id}{session}: {row.lesion_count} lesions, {row.total_volume_ml:.3f} mL")
    print(f"wrote the BIDS derivatives dataset {args.out} ({len(cohort)} scans, {Path(args.out) / COHORT_TABLE})")
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
