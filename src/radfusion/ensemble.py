"""The fold-model ensemble of one (model, input): choose the run, find, select and load its folds.

``radfusion predict``, the workflow's predict rule and the external validation segment with the
fold models of one training run; the run is chosen by cross-validated Dice
(:func:`choose_model_input`), its ``fold{k}/model.pt`` files found (:func:`fold_model_paths`),
optionally a subset kept (:func:`select_folds`), and loaded with a check that they share the
settings prediction repeats (:func:`load_fold_models`).
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from radfusion.io import InputError
from radfusion.protocol import INPUT_NAMES, MODEL_NAMES

# What the fold models of one run must share, read from their files (radfusion.train.save_model).
PREDICTION_SETTINGS = ("model_name", "input_name", "channels", "image_size", "crop", "preprocessing")


def cross_validated_dice(eval_dir: str | os.PathLike) -> pd.DataFrame:
    """Cross-validated Dice of every (model, input) evaluated under ``eval_dir``.

    Parameters
    ----------
    eval_dir : path-like
        ``results/eval``, holding ``{model}/{input}/fold{fold}/subjects.tsv``.

    Returns
    -------
    runs : DataFrame
        One row per (model, input) with columns ``model``, ``input``, ``folds`` (number of
        folds with subjects), ``subjects`` and ``cv_dice``, sorted by ``cv_dice`` descending
        (ties: the project's model and input order).

    Notes
    -----
    ``cv_dice`` is the mean over folds of each fold's mean test-subject Dice
    (:func:`radfusion.stats.tables.fold_means`): the "mean" of the study's Tables 1 and 3, so
    the pair chosen is the one those tables rank first.
    """
    from radfusion.stats.tables import fold_means, read_metric_tables

    eval_dir = Path(eval_dir)
    rows = []
    for run in sorted(p for p in eval_dir.glob("*/*") if p.is_dir()):
        tables = [p for p in sorted(run.glob("fold*/subjects.tsv")) if re.fullmatch(r"fold\d+", p.parent.name)]
        if not tables:
            continue
        try:  # the fold is the folder's (fold{k}/subjects.tsv)
            subjects = pd.concat(
                [read_metric_tables([t], required=("subject", "dice")).assign(fold=int(t.parent.name[4:])) for t in tables]
            )
        except (OSError, ValueError, pd.errors.ParserError) as err:
            raise InputError(f"evaluation table under '{run}': {err}") from err
        subjects = subjects.dropna(subset=["dice"])
        if subjects.empty:
            continue
        means = fold_means(subjects, metric="dice")
        rows.append(
            {
                "model": run.parent.name,
                "input": run.name,
                "folds": len(means),
                "subjects": len(subjects),
                "cv_dice": float(means.mean()),
            }
        )
    runs = pd.DataFrame(rows, columns=["model", "input", "folds", "subjects", "cv_dice"])
    order = {name: i for i, name in enumerate(MODEL_NAMES + INPUT_NAMES)}
    runs["_model_order"] = runs["model"].map(lambda m: order.get(m, len(order)))
    runs["_input_order"] = runs["input"].map(lambda i: order.get(i, len(order)))
    runs = runs.sort_values(["cv_dice", "_model_order", "_input_order"], ascending=[False, True, True], kind="stable")
    return runs.drop(columns=["_model_order", "_input_order"]).reset_index(drop=True)


def choose_model_input(
    eval_dir: str | os.PathLike | None,
    *,
    model: str = "best",
    input_name: str = "best",
    candidates: Sequence[tuple[str, str]] | None = None,
) -> tuple[str, str, float]:
    """The (model, input) pair to predict with: named, or the best cross-validated one.

    Parameters
    ----------
    eval_dir : path-like or None
        ``results/eval`` of the training run; read only when ``model`` or ``input_name`` is
        ``"best"`` (and for the reported Dice when it exists).
    model : str
        ``"best"`` or a model name (``resnext_unet``, ``attention_unet``).
    input_name : str
        ``"best"`` or an input name (``mri``, ``mri_radiomics``).
    candidates : sequence of (model, input), optional
        The pairs ``"best"`` may choose from (e.g. the config's models and inputs); default:
        every pair evaluated under ``eval_dir``.

    Returns
    -------
    model, input_name : str
    cv_dice : float
        The pair's cross-validated Dice (:func:`cross_validated_dice`); NaN when not evaluated.

    Notes
    -----
    ``"best"`` picks, among the evaluated pairs that match the named part (a named model with
    ``input_name="best"`` picks that model's best input), the highest cross-validated mean
    subject Dice (config keys ``predict.model`` and ``predict.input``).
    """
    wants_best = model == "best" or input_name == "best"
    runs = None
    if eval_dir is not None and Path(eval_dir).is_dir():
        runs = cross_validated_dice(eval_dir)
    if wants_best:
        if runs is None or runs.empty:
            raise InputError(
                f"folder '{eval_dir}': no evaluation results (*/*/fold*/subjects.tsv) to choose the best "
                f"model and input from; run the evaluation first or name --model and --input"
            )
        allowed = runs
        if candidates is not None:
            pairs = {(str(m), str(i)) for m, i in candidates}
            allowed = allowed[[(m, i) in pairs for m, i in zip(allowed["model"], allowed["input"])]]
        if model != "best":
            allowed = allowed[allowed["model"] == model]
        if input_name != "best":
            allowed = allowed[allowed["input"] == input_name]
        if allowed.empty:
            evaluated = ", ".join(f"{m}/{i}" for m, i in zip(runs["model"], runs["input"]))
            raise InputError(
                f"folder '{eval_dir}': no evaluation results for model '{model}', input '{input_name}'; "
                f"evaluated: {evaluated}"
            )
        best = allowed.iloc[0]
        return str(best["model"]), str(best["input"]), float(best["cv_dice"])
    cv_dice = float("nan")
    if runs is not None:
        match = runs[(runs["model"] == model) & (runs["input"] == input_name)]
        if not match.empty:
            cv_dice = float(match["cv_dice"].iloc[0])
    return model, input_name, cv_dice


def fold_model_paths(models_dir: str | os.PathLike, model: str, input_name: str) -> list[Path]:
    """The ``fold{k}/model.pt`` files of one (model, input) under ``models_dir``, in fold order.

    Raises :class:`InputError` naming the folder when there are none.
    """
    run = Path(models_dir) / model / input_name
    paths = [p for p in run.glob("fold*/model.pt") if re.fullmatch(r"fold\d+", p.parent.name)]
    if not paths:
        raise InputError(
            f"folder '{run}': no trained fold models (fold*/model.pt); train the {model}/{input_name} run first"
        )
    return sorted(paths, key=lambda p: int(p.parent.name[len("fold") :]))


def load_fold_models(model_paths: Sequence[str | os.PathLike], *, device=None) -> tuple[list, dict]:
    """Load the fold models of one run and the settings they were trained with.

    Parameters
    ----------
    model_paths : sequence of path-like
        ``model.pt`` files of :func:`radfusion.train.save_model`.
    device : optional
        ``None``: CUDA when present, else the CPU.

    Returns
    -------
    models : list of nn.Module
        In evaluation mode, on ``device``.
    settings : dict
        What every file records alike: ``model_name``, ``input_name``, ``channels``,
        ``image_size`` and ``preprocessing`` (normalization percentiles, ``cr``, ``re``,
        ``threshold``).

    Raises
    ------
    InputError
        A file that is not a trained model, one that does not record its preprocessing, or
        fold models whose settings disagree (naming the setting and each file's value).
    """
    from radfusion.train import load_trained_model

    if not model_paths:
        raise InputError("expected at least one fold model, got none")
    models, settings = [], []
    for path in model_paths:
        try:
            model, info = load_trained_model(path, device=device)
        except (OSError, ValueError, KeyError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
            raise InputError(f"file '{path}': cannot be loaded as a trained model ({err})") from err
        if not info.get("preprocessing"):
            raise InputError(
                f"file '{path}': records no preprocessing (normalization, CR/RE, threshold); "
                "use models trained by the workflow"
            )
        models.append(model)
        settings.append({key: info[key] for key in PREDICTION_SETTINGS})
    for key in PREDICTION_SETTINGS:
        values = [setting[key] for setting in settings]
        if any(value != values[0] for value in values[1:]):
            listing = "; ".join(f"{path}: {value}" for path, value in zip(model_paths, values))
            raise InputError(f"fold models differ in {key} ({listing}); give the folds of one training run")
    return models, settings[0]


def select_folds(paths: Sequence[Path], folds: Sequence[int]) -> list[Path]:
    """The ``fold{k}/model.pt`` of :func:`fold_model_paths` for the fold numbers ``folds``, in fold order.

    Fewer folds: proportionally less time in ``radfusion predict``; the cost in Dice is measured
    in the README ("Prediction speed"). Raises :class:`InputError` naming the missing folds.
    """
    by_fold = {int(Path(path).parent.name[len("fold") :]): Path(path) for path in paths}
    missing = sorted(set(folds) - set(by_fold))
    if missing:
        raise InputError(
            f"--folds: no model for fold {', '.join(map(str, missing))} in '{Path(paths[0]).parent.parent}' "
            f"(it has folds {', '.join(map(str, sorted(by_fold)))})"
        )
    return [by_fold[k] for k in sorted(set(folds))]
