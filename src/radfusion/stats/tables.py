"""Tables 1-5 and the SDD table as numeric DataFrames (SPEC stage 9; Table 5: external validation).

- a fold's score is the mean over its test subjects; Tables 1 and 3 report the mean and the
  *population* standard deviation (``ddof=0``) of the fold scores;
- MRI and MRI+radiomics are compared with the two-sided Wilcoxon signed-rank test over paired
  per-subject (or, optionally, per-slice) values, Bonferroni-adjusted for the three metrics;
- training stability is the SDD of each validation-Dice curve (Equations 4-5), compared over
  the paired folds with the same test (one test per model, not adjusted);
- Table 5 (:func:`external_summary_table`): the whole-volume scores of an external cohort, mean
  and *sample* SD (``ddof=1``) over its subjects, the same paired test over subjects,
  Bonferroni-adjusted over the metrics tested, next to the cross-validated numbers.

Numeric columns stay numeric (CSV for machines); :mod:`radfusion.stats.display` gives the
paper-style text.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from radfusion.protocol import INPUT_LABELS
from radfusion.stats.display import mean_sd_text
from radfusion.stats.tests import (
    bonferroni_adjust,
    population_sd,
    sample_sd,
    standard_deviation_of_derivatives,
    wilcoxon_signed_rank,
)

METRICS = ("dice", "precision", "sensitivity")
PAIRED_UNIT_KEYS = {"subject": ("subject",), "slice": ("subject", "slice")}
SUBJECT_COLUMNS = ("subject", "fold", *METRICS)
SLICE_COLUMNS = ("subject", "fold", "slice", *METRICS)
HISTORY_COLUMNS = ("epoch", "val_dice")
# Table 5: the whole-volume scores of the external cohort summarized (of
# radfusion.evaluate.VOLUME_SCORE_COLUMNS), and the columns of the cross-validation subjects
# tables that hold the same metric where the name differs (radfusion.evaluate.CV_LESION_COLUMNS:
# the 3D lesion metrics carry "_3d" next to the 2D per-slice ones).
EXTERNAL_METRICS = ("dice", "precision", "sensitivity", "ltpr", "lfpr", "lesion_f1", "avd")
CV_METRIC_COLUMNS = {"ltpr": "ltpr_3d", "lfpr": "lfpr_3d", "lesion_f1": "lesion_f1_3d"}


def read_metric_tables(paths: Sequence[str | os.PathLike], *, required: Sequence[str] = SUBJECT_COLUMNS) -> pd.DataFrame:
    """Concatenate evaluation TSVs (``subjects.tsv`` or ``slices.tsv`` of several folds).

    Parameters
    ----------
    paths : sequence of path
        Tab-separated files with a header row.
    required : sequence of str
        Columns each file must have.

    Returns
    -------
    table : DataFrame
        The rows of all files, in order, ``subject`` as str and ``fold`` as int.
    """
    if not paths:
        raise ValueError("paths: expected at least one evaluation table, got none")
    frames = []
    for path in paths:
        frame = pd.read_csv(path, sep="\t", dtype={"subject": str})
        missing = [c for c in required if c not in frame.columns]
        if missing:
            raise ValueError(f"file '{path}': missing column(s) {missing}; it has {list(frame.columns)}")
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    if "fold" in table.columns:
        table["fold"] = table["fold"].astype(int)
    return table


def read_histories(paths: Sequence[str | os.PathLike], runs: Sequence[Mapping[str, object]]) -> pd.DataFrame:
    """Stack training histories with the run each came from.

    Parameters
    ----------
    paths : sequence of path
        ``history.tsv`` files (one row per epoch, at least ``epoch`` and ``val_dice``).
    runs : sequence of mapping
        For each path, the run's ``model``, ``input`` and ``fold``.

    Returns
    -------
    histories : DataFrame
        Columns ``model``, ``input``, ``fold`` and the history's own columns, one row per
        epoch of every run.
    """
    if len(paths) != len(runs):
        raise ValueError(f"expected one run description per history file, got {len(paths)} files and {len(runs)} runs")
    frames = []
    for path, run in zip(paths, runs):
        frame = pd.read_csv(path, sep="\t")
        missing = [c for c in HISTORY_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"file '{path}': missing column(s) {missing}; it has {list(frame.columns)}")
        frames.append(frame.assign(model=str(run["model"]), input=str(run["input"]), fold=int(run["fold"])))
    histories = pd.concat(frames, ignore_index=True)
    return histories[["model", "input", "fold", *[c for c in histories.columns if c not in ("model", "input", "fold")]]]


def _check_columns(table: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing}; it has {list(table.columns)}")


def fold_means(subjects: pd.DataFrame, *, metric: str = "dice", folds: Sequence[int] | None = None) -> pd.Series:
    """Mean of a per-subject metric over the test subjects of each fold.

    Parameters
    ----------
    subjects : DataFrame
        One row per test subject with columns ``fold`` and ``metric``.
    metric : str
        The column to average.
    folds : sequence of int, optional
        The folds expected (``1 .. k``); an error names any missing one. Default: the folds
        present.

    Returns
    -------
    means : Series
        Indexed by fold (ascending). Subjects whose metric is NaN are left out of their
        fold's mean; a fold with no finite value is an error.
    """
    _check_columns(subjects, ("fold", metric), "subjects")
    means = subjects.groupby("fold")[metric].mean().sort_index()
    if folds is not None:
        missing = sorted(set(folds) - set(means.index))
        extra = sorted(set(means.index) - set(folds))
        if missing or extra:
            raise ValueError(f"subjects: expected folds {list(folds)}, missing {missing}, unexpected {extra}")
        means = means.loc[list(folds)]
    empty = means.index[means.isna()].tolist()
    if empty:
        raise ValueError(f"subjects: no finite '{metric}' value in fold(s) {empty}")
    return means


def fold_dice_table(
    subjects: Mapping[str, pd.DataFrame], *, metric: str = "dice", folds: Sequence[int] | None = None
) -> pd.DataFrame:
    """Tables 2 and 4: mean Dice of the test subjects in each fold, one row per input.

    Parameters
    ----------
    subjects : mapping of str to DataFrame
        Input name (``mri``, ``mri_radiomics``) -> per-subject evaluation rows of all folds.
    metric : str
        Per-subject column averaged (the paper: Dice).
    folds : sequence of int, optional
        The folds expected, ``1 .. k``.

    Returns
    -------
    table : DataFrame
        Columns ``input``, ``experiment`` (display name), ``fold1 .. foldk`` (float).
    """
    if not subjects:
        raise ValueError("subjects: expected the evaluation rows of at least one input, got none")
    rows = []
    for input_name, table in subjects.items():
        means = fold_means(table, metric=metric, folds=folds)
        row = {"input": input_name, "experiment": INPUT_LABELS.get(input_name, input_name)}
        row.update({f"fold{fold}": float(value) for fold, value in means.items()})
        rows.append(row)
    fold_sets = {name: sorted(set(row) - {"input", "experiment"}) for name, row in zip(subjects, rows)}
    if len({tuple(columns) for columns in fold_sets.values()}) > 1:
        raise ValueError(f"inputs cover different folds: {fold_sets}")
    return pd.DataFrame(rows)


def paired_values(
    baseline: pd.DataFrame, fusion: pd.DataFrame, *, metric: str, paired_unit: str = "subject"
) -> tuple[np.ndarray, np.ndarray]:
    """Align two evaluation tables on their subjects (or slices) and return paired values.

    Parameters
    ----------
    baseline, fusion : DataFrame
        Per-subject (``subject``) or per-slice (``subject``, ``slice``) rows with ``metric``.
    metric : str
        Column to pair.
    paired_unit : {"subject", "slice"}
        Unit of pairing.

    Returns
    -------
    baseline_values, fusion_values : ndarray
        Values of the units present in both tables with a finite metric in both, sorted by
        the unit key. Units present in only one table are an error (the inputs were
        evaluated on the same subjects and slices).
    """
    if paired_unit not in PAIRED_UNIT_KEYS:
        raise ValueError(f"paired_unit: expected one of {list(PAIRED_UNIT_KEYS)}, got {paired_unit!r}")
    keys = list(PAIRED_UNIT_KEYS[paired_unit])
    for name, table in (("baseline", baseline), ("fusion", fusion)):
        _check_columns(table, [*keys, metric], name)
        duplicated = table.duplicated(keys)
        if duplicated.any():
            raise ValueError(f"{name}: duplicate {paired_unit} rows {table.loc[duplicated, keys].values.tolist()[:5]}")
    merged = baseline[[*keys, metric]].merge(
        fusion[[*keys, metric]], on=keys, how="outer", suffixes=("_baseline", "_fusion"), indicator=True
    )
    unpaired = merged[merged["_merge"] != "both"]
    if len(unpaired):
        raise ValueError(
            f"{len(unpaired)} {paired_unit}(s) evaluated for only one input, e.g. "
            f"{unpaired[keys].values.tolist()[:5]}; both inputs must be evaluated on the same units"
        )
    merged = merged.sort_values(keys)
    a = merged[f"{metric}_baseline"].to_numpy(dtype=np.float64)
    b = merged[f"{metric}_fusion"].to_numpy(dtype=np.float64)
    finite = np.isfinite(a) & np.isfinite(b)
    return a[finite], b[finite]


def metric_summary_table(
    subjects: Mapping[str, pd.DataFrame],
    paired: Mapping[str, pd.DataFrame] | None = None,
    *,
    metrics: Sequence[str] = METRICS,
    paired_unit: str = "subject",
    baseline: str = "mri",
    fusion: str = "mri_radiomics",
    folds: Sequence[int] | None = None,
    zero_method: str = "wilcox",
) -> pd.DataFrame:
    """Tables 1 and 3: metrics as mean ± SD across fold means, with Bonferroni-adjusted p-values.

    Parameters
    ----------
    subjects : mapping of str to DataFrame
        Input name -> per-subject evaluation rows of all folds (``subject``, ``fold`` and the
        metrics); must hold ``baseline`` and ``fusion``.
    paired : mapping of str to DataFrame, optional
        Input name -> the rows the test pairs (per-slice rows for ``paired_unit="slice"``).
        Default: ``subjects``.
    metrics : sequence of str
        Metric columns, one table row each; also the Bonferroni family size.
    paired_unit : {"subject", "slice"}
        Unit of the paired test (config ``stats.paired_unit``).
    baseline, fusion : str
        The two inputs compared (MRI, MRI+radiomics).
    folds : sequence of int, optional
        Folds expected, ``1 .. k``.
    zero_method : str
        Passed to :func:`wilcoxon_signed_rank`.

    Returns
    -------
    table : DataFrame
        One row per metric with columns ``metric``, ``{input}_mean``, ``{input}_sd``,
        ``{input}_mean_sd`` for baseline then fusion, ``n_folds``, ``paired_unit``,
        ``n_pairs``, ``n_nonzero``, ``wilcoxon_statistic``, ``wilcoxon_method``, ``p_value``
        (raw) and ``p_bonferroni``.

    Notes
    -----
    SPEC stage 9. Fold score = mean over the fold's test subjects (:func:`fold_means`);
    mean and population SD (``ddof=0``) over the k fold scores. The test pairs each unit's
    value under both inputs over all folds together (46 subjects in the paper); units with a
    NaN metric under either input are dropped (``n_pairs`` counts the rest). p-values are
    multiplied by ``len(metrics)`` and capped at 1.
    """
    paired = subjects if paired is None else paired
    for name, mapping in (("subjects", subjects), ("paired", paired)):
        missing = [i for i in (baseline, fusion) if i not in mapping]
        if missing:
            raise ValueError(f"{name}: expected tables for inputs {[baseline, fusion]}, missing {missing}")
    rows = []
    for metric in metrics:
        row: dict[str, object] = {"metric": metric}
        for input_name in (baseline, fusion):
            means = fold_means(subjects[input_name], metric=metric, folds=folds)
            mean, sd = float(means.mean()), population_sd(means.to_numpy())
            row.update({f"{input_name}_mean": mean, f"{input_name}_sd": sd, f"{input_name}_mean_sd": mean_sd_text(mean, sd)})
        row["n_folds"] = len(means)
        a, b = paired_values(paired[baseline], paired[fusion], metric=metric, paired_unit=paired_unit)
        if a.size == 0:
            raise ValueError(f"no {paired_unit} has a finite '{metric}' under both inputs")
        test = wilcoxon_signed_rank(a, b, zero_method=zero_method)
        row.update(
            paired_unit=paired_unit,
            n_pairs=test.n_pairs,
            n_nonzero=test.n_nonzero,
            wilcoxon_statistic=test.statistic,
            wilcoxon_method=test.method,
            p_value=test.pvalue,
        )
        rows.append(row)
    table = pd.DataFrame(rows)
    table["p_bonferroni"] = bonferroni_adjust(table["p_value"].to_numpy(), n_tests=len(metrics))
    return table


def sdd_per_run(histories: pd.DataFrame, *, score: str = "val_dice") -> pd.DataFrame:
    """SDD (Equations 4-5) of every training run's validation curve.

    Parameters
    ----------
    histories : DataFrame
        One row per epoch with ``model``, ``input``, ``fold``, ``epoch`` and ``score``
        (:func:`read_histories`).
    score : str
        The validation score column.

    Returns
    -------
    runs : DataFrame
        Columns ``model``, ``input``, ``fold``, ``n_epochs``, ``sdd``, one row per run,
        sorted by model, input and fold.
    """
    _check_columns(histories, ("model", "input", "fold", "epoch", score), "histories")
    rows = []
    for (model, input_name, fold), run in histories.groupby(["model", "input", "fold"], sort=True):
        run = run.sort_values("epoch")
        if run["epoch"].duplicated().any():
            raise ValueError(f"history of {model}/{input_name}/fold{fold}: duplicate epochs")
        try:
            sdd = standard_deviation_of_derivatives(run[score].to_numpy())
        except ValueError as error:
            raise ValueError(f"history of {model}/{input_name}/fold{fold}: {error}") from None
        rows.append({"model": model, "input": input_name, "fold": int(fold), "n_epochs": len(run), "sdd": sdd})
    return pd.DataFrame(rows, columns=["model", "input", "fold", "n_epochs", "sdd"])


def sdd_table(
    runs: pd.DataFrame, *, baseline: str = "mri", fusion: str = "mri_radiomics", models: Sequence[str] | None = None
) -> pd.DataFrame:
    """``sdd.csv``: SDD per model and input as mean ± SD over folds, with the paired fold test.

    Parameters
    ----------
    runs : DataFrame
        :func:`sdd_per_run` output.
    baseline, fusion : str
        The inputs compared.
    models : sequence of str, optional
        Row order; default the models in ``runs`` in sorted order.

    Returns
    -------
    table : DataFrame
        One row per model: ``model``, ``{input}_mean``, ``{input}_sd``, ``{input}_mean_sd``
        for baseline then fusion, ``n_folds``, ``n_nonzero``, ``wilcoxon_statistic``,
        ``wilcoxon_method``, ``p_value``.

    Notes
    -----
    Mean and population SD over the folds; two-sided Wilcoxon signed-rank test of the fold
    SDDs paired by fold (six pairs in the paper, whose smallest possible exact p is 0.031).
    One test per model, so no multiplicity adjustment.
    """
    _check_columns(runs, ("model", "input", "fold", "sdd"), "runs")
    models = sorted(runs["model"].unique()) if models is None else list(models)
    rows = []
    for model in models:
        per_input = {}
        for input_name in (baseline, fusion):
            values = runs[(runs["model"] == model) & (runs["input"] == input_name)].set_index("fold")["sdd"].sort_index()
            if values.empty:
                raise ValueError(f"runs: no SDD for model {model!r}, input {input_name!r}")
            per_input[input_name] = values
        if list(per_input[baseline].index) != list(per_input[fusion].index):
            raise ValueError(
                f"runs: model {model!r} has folds {list(per_input[baseline].index)} for {baseline} "
                f"but {list(per_input[fusion].index)} for {fusion}"
            )
        row: dict[str, object] = {"model": model}
        for input_name, values in per_input.items():
            mean, sd = float(values.mean()), population_sd(values.to_numpy())
            row.update({f"{input_name}_mean": mean, f"{input_name}_sd": sd, f"{input_name}_mean_sd": mean_sd_text(mean, sd, digits=3)})
        test = wilcoxon_signed_rank(per_input[baseline].to_numpy(), per_input[fusion].to_numpy())
        row.update(
            n_folds=test.n_pairs,
            n_nonzero=test.n_nonzero,
            wilcoxon_statistic=test.statistic,
            wilcoxon_method=test.method,
            p_value=test.pvalue,
        )
        rows.append(row)
    return pd.DataFrame(rows)


def _cross_validated_mean_sd(rows: pd.DataFrame, column: str) -> tuple[float, float, int]:
    """Mean and population SD over folds of the fold means of ``column`` (NaN subjects skipped,
    folds without a finite value left out), and the number of folds used; NaN, NaN, 0 when the
    column is absent or has no finite value."""
    if column not in rows.columns:
        return float("nan"), float("nan"), 0
    means = fold_means(rows.dropna(subset=[column]), metric=column)
    if means.empty:
        return float("nan"), float("nan"), 0
    return float(means.mean()), population_sd(means.to_numpy()), len(means)


def _spread_text(mean: float, sd: float, digits: int) -> str:
    """``mean ± sd`` text; the mean alone when the SD is undefined, "n/a" without a mean."""
    if not np.isfinite(mean):
        return "n/a"
    return f"{mean:.{digits}f}" if not np.isfinite(sd) else mean_sd_text(mean, sd, digits=digits)


def external_summary_table(
    external: pd.DataFrame,
    cross_validated: pd.DataFrame | None = None,
    *,
    metrics: Sequence[str] = EXTERNAL_METRICS,
    models: Sequence[str] | None = None,
    baseline: str = "mri",
    fusion: str = "mri_radiomics",
    cv_columns: Mapping[str, str] = CV_METRIC_COLUMNS,
    zero_method: str = "wilcox",
) -> pd.DataFrame:
    """Table 5: external-cohort scores per model and input, MRI vs MRI+radiomics, next to the
    cross-validated ones.

    Parameters
    ----------
    external : DataFrame
        One row per (model, input, external subject): ``subject``, ``model``, ``input`` and the
        metric columns (``results/external/{model}/{input}/subjects.tsv`` of every run,
        :func:`radfusion.external.segment_external_cohort`).
    cross_validated : DataFrame, optional
        The cross-validation's per-subject rows of the same runs (``subjects.tsv`` of every fold)
        with ``model``, ``input`` and ``fold`` added; their numbers go next to the external ones.
    metrics : sequence of str
        Metric columns, one row each per model; every one is tested, so the Bonferroni family
        of a model is the metrics with a test.
    models : sequence of str, optional
        Row order; default the models of ``external`` in sorted order.
    baseline, fusion : str
        The two inputs compared; each model needs both.
    cv_columns : mapping
        Metric -> its column in ``cross_validated`` where the names differ (default
        ``CV_METRIC_COLUMNS``).
    zero_method : str
        Passed to :func:`wilcoxon_signed_rank`.

    Returns
    -------
    table : DataFrame
        One row per (model, metric), columns ``model``, ``metric``; for the baseline then the
        fusion input ``{input}_mean``, ``{input}_sd``, ``{input}_mean_sd`` and ``{input}_n``
        (subjects with a finite value); ``n_subjects``, ``n_pairs``, ``n_nonzero``,
        ``wilcoxon_statistic``, ``wilcoxon_method``, ``p_value``, ``p_bonferroni``; then for
        each input ``cv_{input}_mean``, ``cv_{input}_sd``, ``cv_{input}_mean_sd`` and
        ``cv_{input}_folds``.

    Notes
    -----
    External: mean and *sample* SD (``ddof=1``, :func:`sample_sd`; NaN for one subject) over
    the external subjects with a finite value (LTPR is undefined without a reference lesion,
    LFPR without a predicted one). The two-sided Wilcoxon signed-rank test pairs each subject's
    value under both inputs (subjects with a NaN under either left out); p is NaN when no pair
    is left. p-values are multiplied by the number of the model's metrics with a test, capped
    at 1. Two subjects give at best p = 0.5 before adjustment.

    Cross-validated: as Tables 1 and 3, the mean and population SD of the fold means (for Dice,
    precision and sensitivity Tables 1 and 3's numbers); folds whose subjects have no finite
    value are left out (``cv_{input}_folds`` counts the folds used; LFPR is undefined in a fold
    where the model predicted no lesion on the test slices).
    The cross-validation scores lesion slices only, so its precision and false-positive rates
    are not comparable one to one with the whole-volume external ones.
    """
    _check_columns(external, ("subject", "model", "input", *metrics), "external")
    if cross_validated is not None:
        _check_columns(cross_validated, ("subject", "model", "input", "fold"), "cross_validated")
    models = sorted(external["model"].unique()) if models is None else list(models)
    rows = []
    for model in models:
        per_input = {}
        for input_name in (baseline, fusion):
            runs = external[(external["model"] == model) & (external["input"] == input_name)]
            if runs.empty:
                raise ValueError(f"external: no subject scored by model {model!r} with input {input_name!r}")
            per_input[input_name] = runs
        model_rows = []
        for metric in metrics:
            digits = 1 if metric == "avd" else 3
            row: dict[str, object] = {"model": model, "metric": metric}
            for input_name, runs in per_input.items():
                values = pd.to_numeric(runs[metric], errors="coerce").to_numpy(dtype=np.float64)
                values = values[np.isfinite(values)]
                mean = float(values.mean()) if values.size else float("nan")
                sd = sample_sd(values) if values.size else float("nan")
                row.update(
                    {
                        f"{input_name}_mean": mean,
                        f"{input_name}_sd": sd,
                        f"{input_name}_mean_sd": _spread_text(mean, sd, digits),
                        f"{input_name}_n": int(values.size),
                    }
                )
            row["n_subjects"] = int(per_input[baseline]["subject"].nunique())
            a, b = paired_values(per_input[baseline], per_input[fusion], metric=metric, paired_unit="subject")
            if a.size:
                test = wilcoxon_signed_rank(a, b, zero_method=zero_method)
                row.update(
                    n_pairs=test.n_pairs,
                    n_nonzero=test.n_nonzero,
                    wilcoxon_statistic=test.statistic,
                    wilcoxon_method=test.method,
                    p_value=test.pvalue,
                )
            else:
                row.update(n_pairs=0, n_nonzero=0, wilcoxon_statistic=np.nan, wilcoxon_method="none", p_value=np.nan)
            model_rows.append(row)
        tested = [row for row in model_rows if np.isfinite(row["p_value"])]
        adjusted = bonferroni_adjust([row["p_value"] for row in tested]) if tested else []
        for row in model_rows:
            row["p_bonferroni"] = np.nan
        for row, p in zip(tested, adjusted):
            row["p_bonferroni"] = float(p)
        for row in model_rows:
            metric = row["metric"]
            column = cv_columns.get(metric, metric)
            for input_name in (baseline, fusion):
                if cross_validated is None:
                    mean, sd, n_folds = float("nan"), float("nan"), 0
                else:
                    cv = cross_validated[(cross_validated["model"] == model) & (cross_validated["input"] == input_name)]
                    mean, sd, n_folds = _cross_validated_mean_sd(cv, column)
                row.update(
                    {
                        f"cv_{input_name}_mean": mean,
                        f"cv_{input_name}_sd": sd,
                        f"cv_{input_name}_mean_sd": _spread_text(mean, sd, 1 if metric == "avd" else 3),
                        f"cv_{input_name}_folds": n_folds,
                    }
                )
        rows.extend(model_rows)
    return pd.DataFrame(rows)
