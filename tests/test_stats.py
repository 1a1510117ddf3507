"""Tests of radfusion.stats: hand-computed SD, SDD, Wilcoxon and Bonferroni cases, and the tables."""

import math

import numpy as np
import pandas as pd
import pytest

from radfusion.stats.display import fold_display_table, mean_sd_text, p_value_text, summary_display_table, table_html
from radfusion.stats.tables import (
    fold_dice_table,
    fold_means,
    metric_summary_table,
    paired_values,
    read_histories,
    read_metric_tables,
    sdd_per_run,
    sdd_table,
)
from radfusion.stats.tests import (
    bonferroni_adjust,
    population_sd,
    standard_deviation_of_derivatives,
    wilcoxon_signed_rank,
)

# Table 2 of the paper (ResNeXt-UNet fold means); Table 1 reports 0.680 ± 0.041 for the MRI row
# (from unrounded fold means), which only the population SD reproduces.
PAPER_TABLE2_MRI = [0.67, 0.60, 0.74, 0.68, 0.69, 0.69]


# --- population SD ---------------------------------------------------------------------------


def test_population_sd_hand_computed():
    # mean 2, squared deviations 1, 0, 1 -> variance 2/3 (ddof=1 would give 1)
    assert population_sd([1.0, 2.0, 3.0]) == pytest.approx(math.sqrt(2 / 3))


def test_population_sd_reproduces_paper_table1_sd():
    assert population_sd(PAPER_TABLE2_MRI) == pytest.approx(0.0414, abs=5e-5)
    assert np.std(PAPER_TABLE2_MRI, ddof=1) == pytest.approx(0.0454, abs=5e-5)  # not what the paper has


def test_population_sd_of_one_value_is_zero():
    assert population_sd([0.7]) == 0.0


@pytest.mark.parametrize("bad", [[], [1.0, np.nan], [[1.0, 2.0]]])
def test_population_sd_rejects_bad_input(bad):
    with pytest.raises(ValueError, match="values"):
        population_sd(bad)


# --- SDD (Equations 4-5) -----------------------------------------------------------------------


def test_sdd_hand_made_curve():
    # d = 0.2, 0.1, 0.0, 0.2; mean 0.125; squared deviations .005625 .000625 .015625 .005625
    assert standard_deviation_of_derivatives([0.1, 0.3, 0.4, 0.4, 0.6]) == pytest.approx(math.sqrt(0.0275 / 4))


def test_sdd_constant_slope_is_zero_and_sign_of_change_matters():
    assert standard_deviation_of_derivatives([0.1, 0.2, 0.3, 0.4]) == pytest.approx(0.0, abs=1e-15)
    # a zig-zag: d = +0.2, -0.2, +0.2 -> mean 0.0667, SD 0.1886
    assert standard_deviation_of_derivatives([0.2, 0.4, 0.2, 0.4]) == pytest.approx(math.sqrt(8) / 15)


def test_sdd_needs_two_epochs():
    with pytest.raises(ValueError, match="at least 2"):
        standard_deviation_of_derivatives([0.5])


# --- Bonferroni ------------------------------------------------------------------------------


def test_bonferroni_multiplies_by_family_size_and_caps_at_one():
    np.testing.assert_allclose(bonferroni_adjust([0.01, 0.2, 0.5]), [0.03, 0.6, 1.0])
    np.testing.assert_allclose(bonferroni_adjust([0.3], n_tests=3), [0.9])
    np.testing.assert_allclose(bonferroni_adjust([0.4], n_tests=3), [1.0])


@pytest.mark.parametrize("bad", [[-0.1], [1.2], [np.nan]])
def test_bonferroni_rejects_non_probabilities(bad):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bonferroni_adjust(bad)


# --- Wilcoxon signed-rank ----------------------------------------------------------------------


def test_wilcoxon_exact_all_positive_six_pairs():
    # all 6 differences positive: P(R- = 0) = 1/64, two-sided 2/64 (the paper's SDD p = 0.03)
    result = wilcoxon_signed_rank(np.zeros(6), [1, 2, 3, 4, 5, 6])
    assert result.method == "exact"
    assert result.pvalue == pytest.approx(2 / 64)
    assert result.statistic == 0.0


def test_wilcoxon_exact_one_negative():
    # R- = 2: subsets of ranks {1..6} summing to <= 2 are {}, {1}, {2} -> 3/64, two-sided 6/64
    result = wilcoxon_signed_rank(np.zeros(6), [1, -2, 3, 4, 5, 6])
    assert result.pvalue == pytest.approx(6 / 64)
    assert result.statistic == 2.0


def test_wilcoxon_is_symmetric_in_its_arguments():
    a, b = [0.61, 0.70, 0.55, 0.72, 0.66], [0.65, 0.69, 0.60, 0.80, 0.70]
    assert wilcoxon_signed_rank(a, b).pvalue == pytest.approx(wilcoxon_signed_rank(b, a).pvalue)


def test_wilcoxon_drops_zero_differences():
    # zero_method "wilcox": two zero differences are removed, leaving the six-pair case above
    result = wilcoxon_signed_rank(np.zeros(8), [0, 0, 1, 2, 3, 4, 5, 6])
    assert result.n_pairs == 8 and result.n_nonzero == 6
    assert result.method == "exact"
    assert result.pvalue == pytest.approx(2 / 64)


def test_wilcoxon_zero_method_changes_large_sample_p():
    # 18 non-zero differences (exact after dropping zeros) vs Pratt's ranking of 20 (asymptotic)
    differences = np.r_[0.0, 0.0, np.arange(1, 19) * np.where(np.arange(18) % 4 == 0, -1, 1)]
    wilcox = wilcoxon_signed_rank(np.zeros(20), differences)
    pratt = wilcoxon_signed_rank(np.zeros(20), differences, zero_method="pratt")
    assert wilcox.method == "exact" and pratt.method == "asymptotic"
    assert wilcox.pvalue != pytest.approx(pratt.pvalue, abs=1e-4)


def test_wilcoxon_ties_use_exact_enumeration():
    # |d| = 1, 1, 2, 3, 4, 5 -> ranks 1.5, 1.5, 3, 4, 5, 6; R- = 5 (the -4).
    # Sign patterns with R- <= 5: {}, {a}, {b}, {a,b}, {3}, {4}, {5}, {a,3}, {b,3} = 9 of 64.
    result = wilcoxon_signed_rank(np.zeros(6), [1, 1, 2, 3, -4, 5])
    assert result.method == "permutation"
    assert result.statistic == 5.0
    assert result.pvalue == pytest.approx(18 / 64)


def test_wilcoxon_all_differences_zero_gives_p_one():
    result = wilcoxon_signed_rank([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert result.pvalue == 1.0
    assert result.n_nonzero == 0 and result.method == "all-zero"


def test_wilcoxon_large_sample_matches_hand_normal_approximation():
    n = 60
    differences = np.arange(1, n + 1) * np.where(np.arange(n) % 3 == 0, -1.0, 1.0)
    r_plus = differences[differences > 0].sum()
    z = (r_plus - n * (n + 1) / 4) / math.sqrt(n * (n + 1) * (2 * n + 1) / 24)
    result = wilcoxon_signed_rank(np.zeros(n), differences)
    assert result.method == "asymptotic"
    assert result.pvalue == pytest.approx(math.erfc(abs(z) / math.sqrt(2)), rel=1e-9)


def test_wilcoxon_rejects_unpaired_or_nan_input():
    with pytest.raises(ValueError, match="pair up"):
        wilcoxon_signed_rank([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="fusion"):
        wilcoxon_signed_rank([1, 2, 3], [1, np.nan, 2])
    with pytest.raises(ValueError, match="zero_method"):
        wilcoxon_signed_rank([1, 2], [2, 3], zero_method="drop")


# --- tables ------------------------------------------------------------------------------------


def make_subjects(fold_values: dict[int, list[float]], *, shift: float = 0.0) -> pd.DataFrame:
    """Per-subject rows: subject s{fold}{i}; precision and sensitivity derived from Dice."""
    rows = []
    for fold, values in fold_values.items():
        for i, dice in enumerate(values):
            rows.append(
                {
                    "subject": f"s{fold}{i}",
                    "fold": fold,
                    "dice": dice + shift,
                    "precision": dice + 2 * shift,
                    "sensitivity": dice - shift,
                    "lesion_f1": 0.5,
                    "n_slices": 3,
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture
def two_inputs():
    base = {1: [0.6, 0.7], 2: [0.5, 0.7, 0.9], 3: [0.8, 0.8]}
    return {"mri": make_subjects(base), "mri_radiomics": make_subjects(base, shift=0.05)}


def test_fold_means_average_subjects_within_each_fold(two_inputs):
    means = fold_means(two_inputs["mri"], folds=[1, 2, 3])
    np.testing.assert_allclose(means.to_numpy(), [0.65, 0.7, 0.8])
    with pytest.raises(ValueError, match=r"missing \[4\]"):
        fold_means(two_inputs["mri"], folds=[1, 2, 3, 4])


def test_fold_dice_table_one_column_per_fold(two_inputs):
    table = fold_dice_table(two_inputs, folds=[1, 2, 3])
    assert list(table.columns) == ["input", "experiment", "fold1", "fold2", "fold3"]
    assert list(table["experiment"]) == ["MRI", "MRI+radiomics"]
    np.testing.assert_allclose(table.iloc[1, 2:].to_numpy(dtype=float), [0.70, 0.75, 0.85])
    assert list(fold_display_table(table).columns) == ["Experiment", "1", "2", "3"]


def test_fold_dice_table_rejects_inputs_on_different_folds(two_inputs):
    fewer = two_inputs["mri_radiomics"][two_inputs["mri_radiomics"]["fold"] != 3]
    with pytest.raises(ValueError, match="different folds"):
        fold_dice_table({"mri": two_inputs["mri"], "mri_radiomics": fewer})


def test_metric_summary_table_mean_sd_over_fold_means_and_p_values(two_inputs):
    table = metric_summary_table(two_inputs, folds=[1, 2, 3])
    assert list(table["metric"]) == ["dice", "precision", "sensitivity"]
    dice = table.set_index("metric").loc["dice"]
    fold_means_mri = [0.65, 0.7, 0.8]
    assert dice["mri_mean"] == pytest.approx(np.mean(fold_means_mri))
    assert dice["mri_sd"] == pytest.approx(np.std(fold_means_mri))
    assert dice["mri_radiomics_mean"] == pytest.approx(np.mean(fold_means_mri) + 0.05)
    assert dice["mri_mean_sd"] == mean_sd_text(dice["mri_mean"], dice["mri_sd"])
    # 7 subjects, every one improved by 0.05 -> ties in |d|: enumeration gives 2/128 exactly;
    # Bonferroni x3
    assert dice["n_pairs"] == 7 and dice["wilcoxon_method"] == "permutation"
    assert dice["p_value"] == pytest.approx(2 / 128)
    assert dice["p_bonferroni"] == pytest.approx(3 * 2 / 128)
    assert dice["n_folds"] == 3
    assert table["p_bonferroni"].between(0, 1).all()


def test_metric_summary_table_matches_paper_rounding():
    folds = {k: [v - 0.01, v + 0.01] for k, v in enumerate(PAPER_TABLE2_MRI, start=1)}
    subjects = {"mri": make_subjects(folds), "mri_radiomics": make_subjects(folds, shift=0.02)}
    row = metric_summary_table(subjects).set_index("metric").loc["dice"]
    assert row["mri_mean_sd"] == "0.678 ± 0.041"


def test_metric_summary_table_pairs_slices_when_asked(two_inputs):
    slices = {
        name: pd.DataFrame(
            [
                {"subject": r.subject, "fold": r.fold, "slice": k, "dice": r.dice + 0.01 * k, "precision": r.precision,
                 "sensitivity": r.sensitivity}
                for r in table.itertuples()
                for k in range(2)
            ]
        )
        for name, table in two_inputs.items()
    }
    table = metric_summary_table(two_inputs, slices, paired_unit="slice")
    assert (table["n_pairs"] == 14).all()
    assert (table["paired_unit"] == "slice").all()


def test_paired_values_align_by_subject_and_drop_nan():
    a = pd.DataFrame({"subject": ["b", "a", "c"], "dice": [0.2, 0.1, np.nan]})
    b = pd.DataFrame({"subject": ["a", "c", "b"], "dice": [0.3, 0.5, 0.4]})
    x, y = paired_values(a, b, metric="dice")
    np.testing.assert_allclose(x, [0.1, 0.2])
    np.testing.assert_allclose(y, [0.3, 0.4])


def test_paired_values_reject_unpaired_units():
    a = pd.DataFrame({"subject": ["a", "b"], "dice": [0.2, 0.1]})
    b = pd.DataFrame({"subject": ["a", "z"], "dice": [0.3, 0.5]})
    with pytest.raises(ValueError, match="only one input"):
        paired_values(a, b, metric="dice")


def test_metric_summary_table_needs_both_inputs(two_inputs):
    with pytest.raises(ValueError, match="mri_radiomics"):
        metric_summary_table({"mri": two_inputs["mri"]})


def test_summary_display_table_reads_like_the_paper(two_inputs):
    display = summary_display_table(metric_summary_table(two_inputs))
    assert list(display.columns) == ["Metrics", "MRI", "MRI+radiomics", "p-value (Bonferroni)"]
    assert list(display["Metrics"]) == ["Dice score", "Precision", "Sensitivity"]
    page = table_html(display, title="Table 1", note="note & more")
    assert "<caption>Table 1</caption>" in page and "note &amp; more" in page


def test_p_value_text():
    assert p_value_text(0.0004) == "< 0.001"
    assert p_value_text(0.03125) == "0.031"


# --- SDD tables --------------------------------------------------------------------------------


def make_histories(n_folds: int = 6) -> pd.DataFrame:
    rows = []
    for model in ("resnext_unet", "attention_unet"):
        for input_name, jitter in (("mri", 0.08), ("mri_radiomics", 0.02)):
            for fold in range(1, n_folds + 1):
                for epoch in range(1, 6):
                    zigzag = jitter * (1 + 0.1 * fold) * (-1) ** epoch
                    rows.append({"model": model, "input": input_name, "fold": fold, "epoch": epoch,
                                 "val_dice": 0.1 * epoch + zigzag})
    return pd.DataFrame(rows)


def test_sdd_per_run_one_row_per_training_run():
    runs = sdd_per_run(make_histories())
    assert len(runs) == 2 * 2 * 6
    assert (runs["n_epochs"] == 5).all()
    # zigzag amplitude a: d_i alternate 0.1 - 2a, 0.1 + 2a (four of them) -> population SD 2a
    first = runs[(runs["model"] == "attention_unet") & (runs["input"] == "mri") & (runs["fold"] == 1)]
    assert first["sdd"].item() == pytest.approx(2 * 0.08 * 1.1)


def test_sdd_per_run_orders_epochs():
    shuffled = make_histories().sample(frac=1.0, random_state=0)
    pd.testing.assert_frame_equal(sdd_per_run(shuffled), sdd_per_run(make_histories()))


def test_sdd_table_mean_sd_and_paired_fold_test():
    table = sdd_table(sdd_per_run(make_histories()), models=["resnext_unet", "attention_unet"])
    assert list(table["model"]) == ["resnext_unet", "attention_unet"]
    row = table.iloc[0]
    expected_mri = [2 * 0.08 * (1 + 0.1 * f) for f in range(1, 7)]
    assert row["mri_mean"] == pytest.approx(np.mean(expected_mri))
    assert row["mri_sd"] == pytest.approx(np.std(expected_mri))
    # radiomics smoother in all six folds -> smallest exact two-sided p, 2/64
    assert row["p_value"] == pytest.approx(2 / 64)
    assert row["n_folds"] == 6 and row["wilcoxon_method"] == "exact"


def test_sdd_table_rejects_unpaired_folds():
    runs = sdd_per_run(make_histories())
    runs = runs[~((runs["input"] == "mri") & (runs["fold"] == 6))]
    with pytest.raises(ValueError, match="folds"):
        sdd_table(runs)


# --- readers -----------------------------------------------------------------------------------


def test_read_metric_tables_concatenates_and_checks_columns(tmp_path, two_inputs):
    paths = []
    for fold, part in two_inputs["mri"].groupby("fold"):
        path = tmp_path / f"fold{fold}.tsv"
        part.to_csv(path, sep="\t", index=False)
        paths.append(path)
    table = read_metric_tables(paths)
    assert len(table) == len(two_inputs["mri"]) and table["fold"].dtype.kind == "i"
    pd.DataFrame({"subject": ["a"], "fold": [1]}).to_csv(tmp_path / "bad.tsv", sep="\t", index=False)
    with pytest.raises(ValueError, match=r"bad\.tsv.*dice"):
        read_metric_tables([tmp_path / "bad.tsv"])


def test_read_histories_tags_runs(tmp_path):
    path = tmp_path / "history.tsv"
    pd.DataFrame({"epoch": [1, 2], "train_loss": [0.9, 0.8], "val_dice": [0.2, 0.3], "lr": [1e-4, 1e-4]}).to_csv(
        path, sep="\t", index=False
    )
    histories = read_histories([path], [{"model": "resnext_unet", "input": "mri", "fold": 2}])
    assert list(histories.columns[:3]) == ["model", "input", "fold"]
    assert histories["fold"].tolist() == [2, 2]


# --- Table 5: external validation ------------------------------------------------------------


def external_rows(values):
    """External subjects tables of several runs: {(model, input): {subject: {metric: value}}}."""
    return pd.DataFrame(
        [
            {"subject": subject, "model": model, "input": input_name, **metrics}
            for (model, input_name), subjects in values.items()
            for subject, metrics in subjects.items()
        ]
    )


def test_sample_sd_hand_computed_and_undefined_for_one_value():
    from radfusion.stats.tests import sample_sd

    # mean 2, squared deviations 1, 0, 1 -> variance 2 / (3 - 1) = 1
    assert sample_sd([1.0, 2.0, 3.0]) == pytest.approx(1.0)
    assert math.isnan(sample_sd([0.4]))


def test_external_metrics_are_score_volume_keys_and_cv_columns_are_the_evaluations():
    from radfusion.evaluate import CV_LESION_COLUMNS, SUBJECT_COLUMNS, VOLUME_SCORE_COLUMNS
    from radfusion.stats.tables import CV_METRIC_COLUMNS, EXTERNAL_METRICS

    assert set(EXTERNAL_METRICS) <= set(VOLUME_SCORE_COLUMNS)
    for metric in EXTERNAL_METRICS:
        column = CV_METRIC_COLUMNS.get(metric, metric)
        assert column == CV_LESION_COLUMNS.get(metric, metric)
        assert column in SUBJECT_COLUMNS, metric


def test_external_summary_table_mean_sample_sd_paired_test_and_bonferroni():
    from radfusion.stats.tables import external_summary_table
    from radfusion.stats.tests import sample_sd

    dice = {"mri": [0.2, 0.3, 0.5, 0.1], "mri_radiomics": [0.4, 0.6, 0.7, 0.5]}
    lfpr = {"mri": [0.5, float("nan"), 0.2, 0.1], "mri_radiomics": [0.3, 0.1, 0.4, 0.0]}
    values = {
        ("attention_unet", name): {
            f"p{i}": {"dice": dice[name][i], "lfpr": lfpr[name][i]} for i in range(4)
        }
        for name in ("mri", "mri_radiomics")
    }
    table = external_summary_table(external_rows(values), metrics=("dice", "lfpr"))
    assert list(table["model"]) == ["attention_unet"] * 2 and list(table["metric"]) == ["dice", "lfpr"]
    row = table.set_index("metric").loc["dice"]
    assert row["mri_mean"] == pytest.approx(0.275) and row["mri_sd"] == pytest.approx(sample_sd(dice["mri"]))
    assert row["mri_radiomics_mean_sd"] == "0.550 ± 0.129"
    test = wilcoxon_signed_rank(dice["mri"], dice["mri_radiomics"])
    assert (row["n_pairs"], row["p_value"]) == (4, pytest.approx(test.pvalue))
    assert row["p_bonferroni"] == pytest.approx(min(1.0, 2 * test.pvalue))
    # LFPR: p1 has no predicted lesion under MRI (NaN): left out of its mean and of the pairs
    row = table.set_index("metric").loc["lfpr"]
    assert (row["mri_n"], row["mri_radiomics_n"], row["n_pairs"], row["n_subjects"]) == (3, 4, 3, 4)
    assert row["mri_mean"] == pytest.approx(0.8 / 3)
    # no cross-validation given: its columns are empty
    assert np.isnan(row["cv_mri_mean"]) and row["cv_mri_mean_sd"] == "n/a" and row["cv_mri_folds"] == 0


def test_external_summary_table_puts_the_cross_validated_numbers_next_to_it(two_inputs):
    from radfusion.stats.tables import external_summary_table

    values = {
        ("resnext_unet", name): {"p1": {"dice": 0.3, "ltpr": 0.5}, "p2": {"dice": 0.4, "ltpr": 0.7}}
        for name in ("mri", "mri_radiomics")
    }
    cross_validated = pd.concat(
        [
            frame.assign(model="resnext_unet", input=name, ltpr_3d=frame["dice"] / 2)
            for name, frame in two_inputs.items()
        ]
    )
    table = external_summary_table(external_rows(values), cross_validated, metrics=("dice", "ltpr"))
    tables13 = metric_summary_table(two_inputs, metrics=("dice",)).iloc[0]
    row = table.set_index("metric").loc["dice"]
    for name in ("mri", "mri_radiomics"):
        assert row[f"cv_{name}_mean"] == pytest.approx(tables13[f"{name}_mean"])
        assert row[f"cv_{name}_sd"] == pytest.approx(tables13[f"{name}_sd"])
        assert row[f"cv_{name}_mean_sd"] == tables13[f"{name}_mean_sd"]
    assert row["cv_mri_folds"] == row["cv_mri_radiomics_folds"] == two_inputs["mri"]["fold"].nunique()
    # the external LTPR sits next to the cross-validation's ltpr_3d column
    row = table.set_index("metric").loc["ltpr"]
    assert row["cv_mri_mean"] == pytest.approx(tables13["mri_mean"] / 2)
    # identical inputs: every difference zero, p = 1
    assert row["wilcoxon_method"] == "all-zero" and row["p_bonferroni"] == 1.0


def test_external_summary_table_with_one_subject_gives_the_mean_alone():
    from radfusion.stats.tables import external_summary_table

    values = {("resnext_unet", name): {"p1": {"dice": d}} for name, d in (("mri", 0.25), ("mri_radiomics", 0.5))}
    row = external_summary_table(external_rows(values), metrics=("dice",)).iloc[0]
    assert np.isnan(row["mri_sd"]) and row["mri_mean_sd"] == "0.250"
    assert row["n_pairs"] == 1 and row["p_value"] == 1.0


def test_external_summary_table_without_a_pair_has_no_p_value():
    from radfusion.stats.tables import external_summary_table

    values = {
        ("resnext_unet", "mri"): {"p1": {"dice": 0.2, "lfpr": float("nan")}, "p2": {"dice": 0.3, "lfpr": 0.5}},
        ("resnext_unet", "mri_radiomics"): {"p1": {"dice": 0.4, "lfpr": 0.1}, "p2": {"dice": 0.6, "lfpr": float("nan")}},
    }
    table = external_summary_table(external_rows(values), metrics=("dice", "lfpr")).set_index("metric")
    assert table.loc["lfpr", "n_pairs"] == 0 and np.isnan(table.loc["lfpr", "p_bonferroni"])
    # the Bonferroni family is the metrics tested: Dice alone
    assert table.loc["dice", "p_bonferroni"] == pytest.approx(table.loc["dice", "p_value"])


def test_external_summary_table_needs_both_inputs_of_every_model():
    from radfusion.stats.tables import external_summary_table

    values = {("resnext_unet", "mri"): {"p1": {"dice": 0.2}}}
    with pytest.raises(ValueError, match="model 'resnext_unet' with input 'mri_radiomics'"):
        external_summary_table(external_rows(values), metrics=("dice",))


def test_external_display_table_reads_like_tables_1_and_3():
    from radfusion.stats.display import external_display_table
    from radfusion.stats.tables import external_summary_table

    values = {
        (model, name): {"p1": {"dice": 0.2, "avd": 40.0}, "p2": {"dice": 0.3, "avd": 55.5}}
        for model in ("resnext_unet", "attention_unet")
        for name in ("mri", "mri_radiomics")
    }
    table = external_summary_table(
        external_rows(values), metrics=("dice", "avd"), models=["resnext_unet", "attention_unet"]
    )
    display = external_display_table(table)
    assert list(display.columns) == [
        "Model", "Metric", "MRI, external", "MRI+radiomics, external", "p-value (Bonferroni)",
        "MRI, cross-validated", "MRI+radiomics, cross-validated",
    ]
    assert list(display["Model"]) == ["ResNeXt-UNet", "ResNeXt-UNet", "Attention U-Net", "Attention U-Net"]
    assert display.loc[1, "Metric"] == "Volume difference (AVD, %)" and display.loc[1, "MRI, external"] == "47.8 ± 11.0"
    assert display.loc[0, "MRI, cross-validated"] == "n/a"
