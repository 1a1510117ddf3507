"""The whole DAG end to end on the test config (.test/config): every table's shape, value ranges
and p-values, the figures and the HTML report. Minutes on two CPU cores. The run itself is the
session fixture ``tiny_run`` (tests/conftest.py), the workflow used as a module of a directory
outside the checkout."""

from __future__ import annotations

import pandas as pd
import pytest

N_FOLDS = 3
N_SUBJECTS = 6
MODELS = ["resnext_unet", "attention_unet"]
INPUTS = ["mri", "mri_radiomics"]
FOLD_TABLE_OF = {"table1": "table2", "table3": "table4"}


def assert_p_values(series: pd.Series) -> None:
    assert series.notna().all() and series.between(0, 1).all(), series.tolist()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["table2", "table4"])
def test_fold_dice_tables(tiny_run, name):
    table = pd.read_csv(tiny_run / f"results/tables/{name}.csv")
    assert list(table.columns) == ["input", "experiment", *[f"fold{k}" for k in range(1, N_FOLDS + 1)]]
    assert list(table["input"]) == INPUTS
    values = table[[f"fold{k}" for k in range(1, N_FOLDS + 1)]]
    assert values.notna().all().all() and ((values >= 0) & (values <= 1)).all().all()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["table1", "table3"])
def test_metric_summary_tables(tiny_run, name):
    table = pd.read_csv(tiny_run / f"results/tables/{name}.csv")
    assert list(table["metric"]) == ["dice", "precision", "sensitivity"]
    assert len(table.columns) == 15
    for input_name in INPUTS:
        assert table[f"{input_name}_mean"].between(0, 1).all()
        assert table[f"{input_name}_sd"].between(0, 0.5).all()
    assert (table["n_folds"] == N_FOLDS).all()
    assert (table["n_pairs"] <= N_SUBJECTS).all() and (table["n_pairs"] >= 1).all()
    assert_p_values(table["p_value"])
    assert_p_values(table["p_bonferroni"])
    assert (table["p_bonferroni"] >= table["p_value"] - 1e-12).all()
    # the fold means of Table 2 / 4 are what Table 1 / 3 averages
    folds = pd.read_csv(tiny_run / f"results/tables/{FOLD_TABLE_OF[name]}.csv")
    mri = folds.set_index("input").loc["mri"].iloc[1:].astype(float)
    assert table.set_index("metric").loc["dice", "mri_mean"] == pytest.approx(mri.mean(), abs=1e-5)


@pytest.mark.slow
def test_sdd_table(tiny_run):
    table = pd.read_csv(tiny_run / "results/tables/sdd.csv")
    assert list(table["model"]) == MODELS
    for input_name in INPUTS:
        assert (table[f"{input_name}_mean"] >= 0).all() and (table[f"{input_name}_sd"] >= 0).all()
    assert (table["n_folds"] == N_FOLDS).all()
    assert_p_values(table["p_value"])
    runs = pd.read_csv(tiny_run / "results/tables/sdd_runs.csv")
    assert len(runs) == len(MODELS) * len(INPUTS) * N_FOLDS
    assert (runs["n_epochs"] == 3).all()


@pytest.mark.slow
def test_figures_and_report(tiny_run):
    figures = [f"figure{n}.{suffix}" for n in (1, 2, 3, 4) for suffix in ("png", "svg")]
    for name in figures:
        assert (tiny_run / "results/figures" / name).stat().st_size > 10_000, name
    page = (tiny_run / "results/report.html").read_text(encoding="utf-8", errors="replace")
    for name in ("table1.csv", "table2.csv", "table3.csv", "table4.csv", "sdd.csv", "features.csv",
                 *[f"figure{n}.png" for n in (1, 2, 3, 4)]):
        assert name in page, name
