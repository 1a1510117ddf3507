"""Subject-level folds (SPEC stage 6)."""

from __future__ import annotations

from collections import Counter

import pytest

from radfusion.folds import fold_sizes, read_folds, subject_folds, write_folds
from radfusion.io import InputError

COHORT = [f"sub{i:02d}" for i in range(1, 47)]


def test_paper_cohort_gives_8_8_8_8_7_7():
    folds = subject_folds(COHORT, n_folds=6, seed=42)
    sizes = Counter(folds.values())
    assert [sizes[f] for f in range(1, 7)] == [8, 8, 8, 8, 7, 7]


def test_every_subject_in_exactly_one_fold():
    folds = subject_folds(COHORT, n_folds=6, seed=42)
    assert sorted(folds) == sorted(COHORT)
    assert set(folds.values()) == set(range(1, 7))


def test_deterministic_and_independent_of_row_order():
    first = subject_folds(COHORT, seed=42)
    assert subject_folds(COHORT, seed=42) == first
    assert subject_folds(list(reversed(COHORT)), seed=42) == first


def test_seed_changes_the_assignment():
    assert subject_folds(COHORT, seed=42) != subject_folds(COHORT, seed=7)


def test_assignment_is_shuffled_not_in_sheet_order():
    folds = subject_folds(COHORT, seed=42)
    assert [folds[s] for s in COHORT] != sorted(folds[s] for s in COHORT)


@pytest.mark.parametrize(
    ("n", "k", "expected"),
    [(46, 6, [8, 8, 8, 8, 7, 7]), (12, 6, [2] * 6), (13, 6, [3, 2, 2, 2, 2, 2]), (6, 6, [1] * 6), (10, 3, [4, 3, 3])],
)
def test_fold_sizes_as_equal_as_possible_larger_first(n, k, expected):
    assert fold_sizes(n, k) == expected


def test_fewer_subjects_than_folds_names_the_counts():
    with pytest.raises(ValueError, match=r"5 subject\(s\).*6 folds"):
        subject_folds(COHORT[:5], n_folds=6)


def test_duplicate_subjects_refused():
    with pytest.raises(ValueError, match="sub01"):
        subject_folds(COHORT[:10] + ["sub01"], n_folds=2)


def test_tsv_round_trip(tmp_path):
    folds = subject_folds(COHORT, seed=42)
    path = tmp_path / "folds.tsv"
    write_folds(folds, path)
    assert path.read_text().splitlines()[0] == "subject\tfold"
    assert read_folds(path) == folds


def test_read_folds_rejects_missing_column(tmp_path):
    path = tmp_path / "folds.tsv"
    path.write_text("subject\tsplit\na\t1\n")
    with pytest.raises(InputError, match="fold"):
        read_folds(path)
