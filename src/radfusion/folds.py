"""Subject-level cross-validation folds (SPEC stage 6)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from radfusion.io import InputError, atomic_output

FOLD_COLUMNS = ("subject", "fold")


def fold_sizes(n_subjects: int, n_folds: int = 6) -> list[int]:
    """Sizes of ``n_folds`` folds of ``n_subjects``, as equal as possible, larger folds first.

    Parameters
    ----------
    n_subjects : int
        Cohort size, at least ``n_folds``.
    n_folds : int
        Number of folds, at least 2.

    Returns
    -------
    sizes : list of int
        ``n_folds`` sizes summing to ``n_subjects`` (46, 6 -> [8, 8, 8, 8, 7, 7]).
    """
    if n_folds < 2:
        raise ValueError(f"expected at least 2 folds, got {n_folds}")
    if n_subjects < n_folds:
        raise ValueError(
            f"{n_subjects} subject(s) is fewer than the {n_folds} folds; need at least one subject per fold"
        )
    base, extra = divmod(n_subjects, n_folds)
    return [base + 1] * extra + [base] * (n_folds - extra)


def subject_folds(subjects: Iterable[str], n_folds: int = 6, seed: int = 42) -> dict[str, int]:
    """Assign subjects to cross-validation folds (1-based), seeded.

    Parameters
    ----------
    subjects : iterable of str
        Subject IDs, each once.
    n_folds : int
        Number of folds (the paper: 6).
    seed : int
        Seed of the shuffle.

    Returns
    -------
    folds : dict
        ``subject -> fold`` with folds ``1 .. n_folds``; fold sizes from :func:`fold_sizes`
        (46 subjects -> 8, 8, 8, 8, 7, 7, as in the paper).

    Notes
    -----
    The subjects are sorted before the seeded permutation
    (``numpy.random.default_rng(seed).permutation``), so the assignment depends only on the set
    of IDs, the number of folds and the seed, not on the sample sheet's row order. Consecutive
    runs of the permuted list fill fold 1, 2, ... A subject is never in two folds, so no slice of
    a test subject is ever seen in training.
    """
    subjects = [str(s) for s in subjects]
    duplicated = sorted({s for s in subjects if subjects.count(s) > 1})
    if duplicated:
        raise ValueError(f"duplicate subject ID(s) {duplicated}; each subject must appear once")
    sizes = fold_sizes(len(subjects), n_folds)
    order = np.random.default_rng(seed).permutation(len(subjects))
    ordered = [sorted(subjects)[i] for i in order]
    folds: dict[str, int] = {}
    start = 0
    for fold, size in enumerate(sizes, start=1):
        for subject in ordered[start : start + size]:
            folds[subject] = fold
        start += size
    return folds


def write_folds(folds: dict[str, int], path: str | os.PathLike) -> None:
    """Write the ``subject -> fold`` table as a TSV with columns ``subject, fold`` (atomically)."""
    table = pd.DataFrame(sorted(folds.items(), key=lambda item: (item[1], item[0])), columns=list(FOLD_COLUMNS))
    with atomic_output(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False)


def read_folds(path: str | os.PathLike) -> dict[str, int]:
    """Read a folds TSV (columns ``subject, fold``) back into ``subject -> fold``.

    Raises :class:`radfusion.io.InputError` naming the file when columns are missing, a subject
    is listed twice or a fold is not a positive integer.
    """
    path = Path(path)
    table = pd.read_csv(path, sep="\t", dtype={"subject": str})
    missing = [c for c in FOLD_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"file '{path}': missing column(s) {missing}; expected {list(FOLD_COLUMNS)}")
    if table["subject"].duplicated().any():
        raise InputError(f"file '{path}': subject(s) listed twice: {sorted(set(table.loc[table['subject'].duplicated(), 'subject']))}")
    if not pd.api.types.is_integer_dtype(table["fold"]) or (table["fold"] < 1).any():
        raise InputError(f"file '{path}': folds must be positive integers, got {sorted(table['fold'].unique())}")
    return dict(zip(table["subject"], table["fold"].astype(int)))
