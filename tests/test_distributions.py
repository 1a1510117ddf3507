"""Feature distributions inside vs outside lesions: histograms, quantiles, AUC, summary table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from radfusion.distributions import (
    GroupHistograms,
    auc,
    cohort_histograms,
    combine_histograms,
    feature_bin_edges,
    feature_summary,
    group_histograms,
    histogram_auc,
    histogram_quantiles,
    load_histograms,
    save_histograms,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "open_ms_data"


def brute_force_auc(lesion, other):
    lesion = np.asarray(lesion, float)[:, None]
    other = np.asarray(other, float)[None, :]
    return float(((lesion > other) + 0.5 * (lesion == other)).mean())


small_integer_arrays = st.lists(st.integers(0, 12), min_size=1, max_size=40).map(np.array)


@settings(max_examples=80, deadline=None)
@given(lesion=small_integer_arrays, other=small_integer_arrays)
def test_auc_equals_pairwise_count_with_half_ties(lesion, other):
    assert auc(lesion, other) == pytest.approx(brute_force_auc(lesion, other), abs=1e-12)


@settings(max_examples=30, deadline=None)
@given(
    lesion=st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=30).map(np.array),
    other=st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=30).map(np.array),
)
def test_auc_on_real_values(lesion, other):
    assert auc(lesion, other) == pytest.approx(brute_force_auc(lesion, other), abs=1e-12)


def test_auc_extremes_and_symmetry():
    assert auc([5, 6], [1, 2, 3]) == 1.0
    assert auc([1, 2, 3], [5, 6]) == 0.0
    assert auc([4, 4], [4, 4, 4]) == 0.5
    x, y = np.random.default_rng(0).normal(size=(2, 50))
    assert auc(x, y) + auc(y, x) == pytest.approx(1.0)


def test_auc_rejects_empty_or_nan():
    with pytest.raises(ValueError, match="both groups"):
        auc([], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        auc([np.nan], [1.0])


@settings(max_examples=50, deadline=None)
@given(lesion=small_integer_arrays, other=small_integer_arrays)
def test_histogram_statistics_are_exact_for_integer_values_on_unit_bins(lesion, other):
    edges = np.arange(14) - 0.5  # one bin per integer 0..12, as for CR
    lesion_counts = np.bincount(lesion, minlength=13)
    other_counts = np.bincount(other, minlength=13)
    assert histogram_auc(lesion_counts, other_counts) == pytest.approx(auc(lesion, other), abs=1e-12)
    q = [0.0, 0.25, 0.5, 0.75, 1.0]
    np.testing.assert_allclose(histogram_quantiles(edges, lesion_counts, q), np.quantile(lesion, q), atol=1e-12)


def test_histogram_quantiles_of_empty_histogram_are_nan():
    assert np.isnan(histogram_quantiles(np.arange(4.0), np.zeros(3, int), 0.5)).all()


def test_feature_bin_edges():
    cr = feature_bin_edges("cr")
    assert cr[0] == -0.5 and cr[-1] == 255 * 15 + 0.5 and np.all(np.diff(cr) == 1)
    assert feature_bin_edges("cr", num=2)[-1] == 510.5
    re = feature_bin_edges("re")
    assert re[0] == 0 and re[-1] == pytest.approx(12.0) and np.allclose(np.diff(re), 1e-3)
    with pytest.raises(ValueError, match="'cr' or 're'"):
        feature_bin_edges("glcm")


def test_group_histograms_split_lesion_and_other_brain_voxels():
    values = np.array([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])
    lesion = np.array([[0, 0, 1], [0, 1, 0]], bool)
    brain = np.array([[0, 1, 1], [1, 1, 1]], bool)  # voxel (0, 0) is background
    h = group_histograms(values, lesion, brain, np.arange(7) - 0.5)
    np.testing.assert_array_equal(h.lesion, [0, 0, 1, 0, 1, 0])
    np.testing.assert_array_equal(h.other, [0, 1, 0, 1, 0, 1])  # background 0 and lesions excluded


def test_group_histograms_reject_mismatches_and_out_of_range_values():
    edges = np.arange(4.0)
    ones = np.ones((2, 2), bool)
    with pytest.raises(ValueError, match="one shape"):
        group_histograms(np.zeros((2, 3)), ones, ones, edges)
    with pytest.raises(ValueError, match="outside the histogram range"):
        group_histograms(np.full((2, 2), 9.0), ones, ones, edges)
    with pytest.raises(ValueError, match="binary lesion mask"):
        group_histograms(np.zeros((2, 2)), np.full((2, 2), 2), ones, edges)
    with pytest.raises(ValueError, match="NaN"):
        group_histograms(np.full((2, 2), np.nan), ones, ones, edges)


def test_last_bin_is_closed_and_values_on_edges_go_right():
    edges = np.array([0.0, 1.0, 2.0])
    h = group_histograms(np.array([0.0, 1.0, 2.0]), np.ones(3, bool), np.ones(3, bool), edges)
    np.testing.assert_array_equal(h.lesion, [1, 2])


def test_cohort_accumulation_equals_pooled_values_and_roundtrips(tmp_path):
    rng = np.random.default_rng(1)
    edges = {"cr": feature_bin_edges("cr", num=2), "re": feature_bin_edges("re")}
    subjects, pooled = [], {"cr": ([], []), "re": ([], [])}
    for _ in range(3):
        lesion = rng.random((6, 7, 4)) < 0.2
        brain = rng.random((6, 7, 4)) < 0.8
        features = {"cr": rng.integers(0, 511, (6, 7, 4)).astype(np.float32), "re": rng.random((6, 7, 4)) * 6}
        subjects.append((features, lesion, brain))
        for name in pooled:
            pooled[name][0].append(features[name][lesion])
            pooled[name][1].append(features[name][brain & ~lesion])
    totals = cohort_histograms(iter(subjects), edges)
    pooled = {name: (np.concatenate(a), np.concatenate(b)) for name, (a, b) in pooled.items()}
    from_histograms = feature_summary(totals).set_index("feature")
    from_values = feature_summary(pooled).set_index("feature")
    # CR is integer-valued on unit bins: the summary from histograms is exact.
    np.testing.assert_allclose(from_histograms.loc["cr"].to_numpy(float), from_values.loc["cr"].to_numpy(float))
    # RE on 1e-3 bins: quantiles within half a bin, AUC within the ties a bin makes.
    re_h, re_v = from_histograms.loc["re"], from_values.loc["re"]
    for column in ("median_lesion", "q1_lesion", "q3_lesion", "median_nonlesion", "q1_nonlesion", "q3_nonlesion"):
        assert re_h[column] == pytest.approx(re_v[column], abs=1e-3)
    assert re_h["auc"] == pytest.approx(re_v["auc"], abs=1e-2)
    assert re_h["n_lesion"] == re_v["n_lesion"] and re_h["n_nonlesion"] == re_v["n_nonlesion"]

    save_histograms(tmp_path / "h.npz", totals)
    loaded = load_histograms(tmp_path / "h.npz")
    assert set(loaded) == {"cr", "re"}
    for name in totals:
        for a, b in zip(loaded[name], totals[name]):
            np.testing.assert_array_equal(a, b)


def test_combine_histograms_requires_same_edges():
    a = GroupHistograms(np.arange(3.0), np.array([1, 2]), np.array([3, 4]))
    total = combine_histograms([a, a])
    np.testing.assert_array_equal(total.lesion, [2, 4])
    np.testing.assert_array_equal(a.lesion, [1, 2])  # inputs untouched
    with pytest.raises(ValueError, match="different bin edges"):
        combine_histograms([a, GroupHistograms(np.arange(3.0) + 1, a.lesion, a.other)])
    with pytest.raises(ValueError, match="at least one"):
        combine_histograms([])


def test_feature_summary_columns():
    table = feature_summary({"cr": (np.array([3.0, 4.0, 5.0]), np.array([1.0, 2.0]))})
    assert list(table.columns) == [
        "feature", "n_lesion", "n_nonlesion", "median_lesion", "q1_lesion", "q3_lesion",
        "median_nonlesion", "q1_nonlesion", "q3_nonlesion", "auc",
    ]  # fmt: skip
    row = table.iloc[0]
    assert (row.n_lesion, row.n_nonlesion, row.median_lesion, row.q1_lesion, row.auc) == (3, 2, 4.0, 3.5, 1.0)


# ---------------------------------------------------------------------------------------------
# Real patients: CR is higher inside lesions (the paper's Figure 2).
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_patients(tmp_path_factory):
    """The workflow's chain on each real patient: import, brain mask and normalization, CR and RE
    of the 8-bit image, and the subject's lesion / non-lesion histograms."""
    if not (DATA / "patient07" / "FLAIR.nii.gz").exists():
        pytest.skip(f"shared test data absent: {DATA}")
    from radfusion.io import import_subject, load_volume
    from radfusion.normalize import brain_mask, normalize_intensity, quantize_8bit
    from radfusion.radiomics import radiomics_volume

    edges = {"cr": feature_bin_edges("cr"), "re": feature_bin_edges("re")}
    result = {}
    for patient in ("patient07", "patient26"):
        out = tmp_path_factory.mktemp(patient)
        import_subject(
            DATA / patient / "FLAIR.nii.gz", DATA / patient / "lesion_mask.nii.gz",
            out / "flair.nii.gz", out / "mask.nii.gz", subject=patient,
        )
        flair = load_volume(out / "flair.nii.gz")[0]
        lesion = load_volume(out / "mask.nii.gz", dtype=np.uint8)[0] > 0
        brain = brain_mask(flair)
        cr, re = radiomics_volume(quantize_8bit(normalize_intensity(flair)), threads=2)
        histograms = cohort_histograms([({"cr": cr, "re": re}, lesion, brain)], edges)
        result[patient] = {"flair": flair, "lesion": lesion, "table": feature_summary(histograms).set_index("feature")}
    return result


@pytest.mark.parametrize("patient", ["patient07", "patient26"])
def test_real_patients_cr_higher_inside_lesions(real_patients, patient, capsys):
    table = real_patients[patient]["table"]
    with capsys.disabled():  # the AUCs reach CI's log without `-s`
        print(f"\n{patient}\n{table.to_string()}", flush=True)
    cr = table.loc["cr"]
    assert cr.auc > 0.8 and cr.median_lesion > cr.q3_nonlesion
    # README: about 1,300 (patient07) and 8,200 (patient26) lesion voxels in ~1.1 million brain voxels.
    assert cr.n_lesion > 1000 and cr.n_nonlesion > 100 * cr.n_lesion
    # RE is lower inside lesions once the background is out (docs/decisions.md, "RE direction"): with
    # the 99.5th-percentile clipping lesion cores saturate at 255 and flat windows have low entropy.
    assert table.loc["re"].auc < 0.5


@pytest.mark.parametrize("patient", ["patient07", "patient26"])
def test_real_patients_non_lesion_group_is_the_nonzero_input_minus_lesions(real_patients, patient):
    """Issue 16: the background stays out of the non-lesion group, negative edge voxels stay in.

    patient26's 0.5th percentile is negative; a brain taken as "normalized FLAIR > 0" made its
    non-lesion group 7,207,191 voxels (the whole volume) and its RE AUC 0.889.
    """
    flair, lesion, table = (real_patients[patient][key] for key in ("flair", "lesion", "table"))
    expected = np.count_nonzero(flair) - np.count_nonzero(lesion & (flair != 0))
    assert (table["n_nonlesion"] == expected).all()
    assert (table["n_lesion"] == np.count_nonzero(lesion)).all()
    if patient == "patient26":
        assert expected == 1_114_377 and np.count_nonzero(lesion) == 8227
