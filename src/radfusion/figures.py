"""The study's figures (SPEC stage 10), one independent function per figure.

- Figures 2 and 3: :func:`plot_feature_distribution`, the concentration rate and Rényi entropy
  inside vs outside lesions.
- Figure 1: :func:`plot_example_slices` (slices chosen by :func:`select_example_slices`),
  FLAIR with the ground truth and each model's MRI and MRI+radiomics predictions.
- Figure 4: :func:`plot_validation_curves`, validation Dice per epoch, all folds.

Every function draws with matplotlib's Agg backend (no display needed), takes the data as
arrays, and returns the ``matplotlib.figure.Figure``; saving is the caller's job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from radfusion.distributions import auc as values_auc  # noqa: E402
from radfusion.distributions import histogram_auc, histogram_quantiles  # noqa: E402
from radfusion.protocol import INPUT_LABELS, MODEL_LABELS  # noqa: E402

__all__ = [
    "plot_feature_distribution",
    "ExampleSlice",
    "lesion_voxels_per_slice",
    "select_example_slices",
    "plot_example_slices",
    "plot_validation_curves",
    "save_figure",
]

_LESION_COLOUR = "#d62728"
_OTHER_COLOUR = "#1f77b4"


def _display_bins(edges: np.ndarray, lesion: np.ndarray, other: np.ndarray, bins: int):
    """Merge adjacent fine bins into about ``bins`` display bins over the occupied range."""
    occupied = np.nonzero((lesion + other) > 0)[0]
    first, last = occupied[0], occupied[-1] + 1
    factor = max(1, int(np.ceil((last - first) / bins)))
    n_groups = int(np.ceil((last - first) / factor))
    stop = first + n_groups * factor
    pad = max(0, stop - lesion.size)
    lesion = np.pad(lesion, (0, pad))[first:stop].reshape(n_groups, factor).sum(axis=1)
    other = np.pad(other, (0, pad))[first:stop].reshape(n_groups, factor).sum(axis=1)
    fine_width = np.diff(edges)
    widths = np.pad(fine_width, (0, pad), mode="edge")[first:stop].reshape(n_groups, factor).sum(axis=1)
    display_edges = edges[first] + np.concatenate([[0.0], np.cumsum(widths)])
    return display_edges, lesion, other


def plot_feature_distribution(
    lesion: np.ndarray,
    other: np.ndarray,
    feature_name: str,
    units: str,
    ax=None,
    *,
    edges: np.ndarray | None = None,
    bins: int = 60,
) -> Figure:
    """Figure 2 / Figure 3: a feature's distribution inside vs outside lesions.

    Parameters
    ----------
    lesion, other : ndarray
        Values of lesion voxels and of non-lesion brain voxels, or, when ``edges`` is given,
        their counts per bin (e.g. ``GroupHistograms.lesion`` and ``.other``).
    feature_name : str
        E.g. "Concentration rate" or "Rényi entropy".
    units : str
        Unit of the feature axis, e.g. "a.u. (sum of 8-bit grey levels)" or "nats".
    ax : matplotlib Axes, optional
        Axes to draw in; a new figure is made when omitted.
    edges : ndarray, optional
        Bin edges when ``lesion`` and ``other`` are histogram counts.
    bins : int, optional
        About how many bins to display (fine bins are merged).

    Returns
    -------
    fig : matplotlib.figure.Figure

    Notes
    -----
    Each group is drawn as a density (area 1), because non-lesion voxels outnumber lesion
    voxels by about 1000:1; dashed lines mark the group medians. The title gives the AUC of
    the feature separating lesion from non-lesion voxels (Mann-Whitney U / (n1 n0)).
    """
    if edges is None:
        lesion_values = np.asarray(lesion, dtype=np.float64).ravel()
        other_values = np.asarray(other, dtype=np.float64).ravel()
        if lesion_values.size == 0 or other_values.size == 0:
            raise ValueError(
                f"expected values in both groups, got {lesion_values.size} lesion and {other_values.size} non-lesion"
            )
        low = min(lesion_values.min(), other_values.min())
        high = max(lesion_values.max(), other_values.max())
        if high <= low:
            high = low + 1.0
        edges = np.linspace(low, high, int(bins) + 1)
        lesion_counts = np.histogram(lesion_values, edges)[0]
        other_counts = np.histogram(other_values, edges)[0]
        separation = values_auc(lesion_values, other_values)
        medians = (np.median(lesion_values), np.median(other_values))
    else:
        edges = np.asarray(edges, dtype=np.float64)
        lesion_counts = np.asarray(lesion, dtype=np.int64)
        other_counts = np.asarray(other, dtype=np.int64)
        if lesion_counts.shape != (edges.size - 1,) or other_counts.shape != (edges.size - 1,):
            raise ValueError(
                f"expected counts on {edges.size - 1} bins, got shapes {lesion_counts.shape}, {other_counts.shape}"
            )
        separation = histogram_auc(lesion_counts, other_counts)
        medians = (
            histogram_quantiles(edges, lesion_counts, 0.5)[0],
            histogram_quantiles(edges, other_counts, 0.5)[0],
        )
    n_lesion, n_other = int(lesion_counts.sum()), int(other_counts.sum())
    display_edges, lesion_counts, other_counts = _display_bins(edges, lesion_counts, other_counts, bins)
    widths = np.diff(display_edges)

    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    else:
        fig = ax.figure
    densities = (other_counts / (n_other * widths), lesion_counts / (n_lesion * widths))
    for density, n, colour, label, median in (
        (densities[0], n_other, _OTHER_COLOUR, "outside lesions (brain)", medians[1]),
        (densities[1], n_lesion, _LESION_COLOUR, "inside lesions", medians[0]),
    ):
        ax.stairs(density, display_edges, fill=True, alpha=0.35, color=colour)
        ax.stairs(density, display_edges, color=colour, linewidth=1.5, label=f"{label}, n = {n:,} voxels")
        ax.axvline(median, color=colour, linestyle="--", linewidth=1.2, label=f"median {median:.4g}")
    ax.set_xlabel(f"{feature_name} [{units}]")
    ax.set_ylabel(f"density per group [1 / {units.split(' ')[0]}]")
    ax.set_title(f"{feature_name}: inside vs outside lesions (AUC = {separation:.3f})")
    # Headroom so the legend does not cover the peaks.
    ax.set_ylim(0, 1.35 * max(densities[0].max(), densities[1].max()))
    ax.set_xlim(display_edges[0], display_edges[-1])
    ax.legend(frameon=False, fontsize="small")
    return fig


# --- Figure 1: example slices ----------------------------------------------------------------

_TRUE_POSITIVE = "#ffd400"
_FALSE_POSITIVE = "#ff3df2"
_FALSE_NEGATIVE = "#00c8ff"
_GROUND_TRUTH = "#ff5a1f"
_INPUT_COLOURS = {"mri": "#1f77b4", "mri_radiomics": "#d62728"}


class ExampleSlice(NamedTuple):
    """One row of Figure 1: an axial slice with its ground truth and the predictions."""

    subject: str
    slice_index: int
    flair: np.ndarray
    """Normalized FLAIR slice, shape (x, y), values in [0, 1]."""
    brain: np.ndarray
    """Brain mask slice (:func:`radfusion.normalize.brain_mask`), shape (x, y); the crop."""
    mask: np.ndarray
    """Ground-truth lesion mask, shape (x, y)."""
    predictions: Mapping[tuple[str, str], np.ndarray]
    """(model, input) -> predicted mask, shape (x, y); drawn in this order."""


def read_example_slice(
    subject: str,
    slice_index: int,
    *,
    flair: str,
    brain: str,
    mask: str,
    predictions: Mapping[tuple[str, str], str],
) -> ExampleSlice:
    """One row of Figure 1 or 5 from files: axial slice ``slice_index`` of the normalized FLAIR,
    the brain mask, the ground truth and each (model, input)'s predicted volume (NIfTI paths)."""
    from radfusion.io import load_volume

    def axial(path, dtype=np.float32):
        return load_volume(path, dtype=dtype)[0][:, :, slice_index]

    return ExampleSlice(
        subject=subject,
        slice_index=slice_index,
        flair=axial(flair),
        brain=axial(brain, np.uint8) > 0,
        mask=axial(mask, np.uint8),
        predictions={run: axial(path, np.uint8) for run, path in predictions.items()},
    )


def lesion_voxels_per_slice(mask: np.ndarray) -> np.ndarray:
    """Number of lesion voxels in each axial slice ``mask[:, :, k]`` of a 3D mask."""
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"mask: expected a 3D volume (x, y, z), got shape {mask.shape}")
    return np.count_nonzero(mask, axis=(0, 1))


def select_example_slices(lesion_voxels: pd.DataFrame, *, n_examples: int = 3) -> list[tuple[str, int]]:
    """Pick Figure 1's slices: the most lesion voxels, one slice per subject, deterministic.

    Parameters
    ----------
    lesion_voxels : DataFrame
        Candidate slices (the evaluated test slices) with columns ``subject``, ``slice``
        and ``lesion_voxels``.
    n_examples : int
        Number of slices wanted (fewer when fewer subjects have lesions).

    Returns
    -------
    examples : list of (subject, slice)
        Ordered by lesion voxels, descending.

    Notes
    -----
    Each subject contributes at most its largest slice, so the figure shows different
    patients. Ties go to the subject ID, then the lower slice index.
    """
    missing = [c for c in ("subject", "slice", "lesion_voxels") if c not in lesion_voxels.columns]
    if missing:
        raise ValueError(f"lesion_voxels: missing column(s) {missing}; it has {list(lesion_voxels.columns)}")
    if n_examples < 1:
        raise ValueError(f"n_examples: expected a positive integer, got {n_examples}")
    ranked = lesion_voxels[lesion_voxels["lesion_voxels"] > 0].assign(subject=lambda t: t["subject"].astype(str))
    ranked = ranked.sort_values(["lesion_voxels", "subject", "slice"], ascending=[False, True, True])
    best = ranked.drop_duplicates("subject").head(n_examples)
    if best.empty:
        raise ValueError("lesion_voxels: no candidate slice has a lesion voxel")
    return [(str(s), int(k)) for s, k in zip(best["subject"], best["slice"])]


def _dice(truth: np.ndarray, prediction: np.ndarray) -> float:
    denominator = truth.sum() + prediction.sum()
    return 1.0 if denominator == 0 else 2.0 * np.logical_and(truth, prediction).sum() / denominator


def brain_box(brain: np.ndarray, *, margin: int = 4) -> tuple[slice, slice]:
    """Bounding box of a slice's brain mask, with a margin (the whole slice when it holds none)."""
    inside = np.asarray(brain, dtype=bool)
    if not inside.any():
        return slice(None), slice(None)
    xs, ys = np.nonzero(inside)
    return (
        slice(max(xs.min() - margin, 0), xs.max() + margin + 1),
        slice(max(ys.min() - margin, 0), ys.max() + margin + 1),
    )


def draw_axial_slice(
    ax,
    image: np.ndarray,
    layers: Sequence[tuple[np.ndarray, str]] = (),
    *,
    alpha: float = 0.85,
    outline: bool = False,
    mark_sides: bool = False,
) -> None:
    """Draw an axial slice ``volume[:, :, k]`` of a RAS+ volume, with coloured mask layers.

    Parameters
    ----------
    ax : matplotlib Axes
    image : ndarray, shape (x, y)
        FLAIR in [0, 1], grey.
    layers : sequence of (mask, colour)
        Masks of the slice's shape, tinted in their colour, in order.
    alpha : float
        Opacity of the tint.
    outline : bool
        Also draw each layer's outline in its colour.
    mark_sides : bool
        Write R and L on the patient's right and left.

    Notes
    -----
    Radiological convention, as on clinical viewers, in every figure of the project (Figure 1,
    Figure 5 and the predict overlay): anterior up, the patient's right (RAS+ x growing) on
    the viewer's left.
    """
    ax.imshow(image.T, cmap="gray", vmin=0.0, vmax=1.0, origin="lower", interpolation="nearest")
    for layer, colour in layers:
        layer = np.asarray(layer, dtype=bool)
        if not layer.any():
            continue
        rgba = np.zeros((*layer.T.shape, 4))
        rgba[layer.T] = matplotlib.colors.to_rgba(colour, alpha=alpha)
        ax.imshow(rgba, origin="lower", interpolation="nearest")
        if outline:
            ax.contour(layer.T.astype(float), levels=[0.5], colors=colour, linewidths=0.8, origin="lower")
    ax.invert_xaxis()
    if mark_sides:
        for text, x in (("R", 0.03), ("L", 0.97)):
            ax.text(x, 0.5, text, transform=ax.transAxes, color="yellow", fontsize="small", ha="center", va="center")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_example_slices(examples: Sequence[ExampleSlice], *, panel_size: float = 2.1) -> Figure:
    """Figure 1: FLAIR slices with the ground truth and each model's MRI and MRI+radiomics masks.

    Parameters
    ----------
    examples : sequence of ExampleSlice
        One row each; every example must hold the same (model, input) predictions.
    panel_size : float
        Width of one panel in inches.

    Returns
    -------
    fig : matplotlib.figure.Figure
        Rows: the example slices. Columns: FLAIR, ground truth, then one column per
        (model, input) with true positives, false positives and false negatives coloured
        and the slice Dice in the corner.

    Notes
    -----
    Axial slices ``volume[:, :, k]`` in the canonical RAS+ orientation, drawn as
    :func:`draw_axial_slice` does (radiological convention: the patient's right on the
    viewer's left, marked R and L in the first panel), cropped to the bounding box of the
    brain mask plus 4 pixels. Masks are compared on the subject's grid at the original resolution, as
    the evaluation scores them.
    """
    if not examples:
        raise ValueError("examples: expected at least one slice, got none")
    keys = list(examples[0].predictions)
    for example in examples:
        if list(example.predictions) != keys:
            raise ValueError(
                f"example {example.subject} slice {example.slice_index}: predictions {list(example.predictions)}, "
                f"expected {keys} as in the first example"
            )
        shapes = {
            np.shape(example.flair),
            np.shape(example.brain),
            np.shape(example.mask),
            *(np.shape(p) for p in example.predictions.values()),
        }
        if len(shapes) != 1 or len(next(iter(shapes))) != 2:
            raise ValueError(
                f"example {example.subject} slice {example.slice_index}: expected 2D arrays of one shape, got {shapes}"
            )
    n_rows, n_cols = len(examples), 2 + len(keys)
    boxes = [brain_box(e.brain) for e in examples]
    aspect = np.mean([(b[1].stop or e.flair.shape[1]) - (b[1].start or 0) for b, e in zip(boxes, examples)]) / np.mean(
        [(b[0].stop or e.flair.shape[0]) - (b[0].start or 0) for b, e in zip(boxes, examples)]
    )
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(panel_size * n_cols + 0.4, panel_size * aspect * n_rows + 1.3),
        layout="constrained",
        squeeze=False,
    )
    for row, (example, box) in enumerate(zip(examples, boxes)):
        flair = np.asarray(example.flair, dtype=np.float64)[box]
        truth = np.asarray(example.mask)[box] > 0
        draw_axial_slice(axes[row, 0], flair, [], mark_sides=row == 0)
        draw_axial_slice(axes[row, 1], flair, [(truth, _GROUND_TRUTH)])
        axes[row, 0].set_ylabel(f"{example.subject}\nslice {example.slice_index}", fontsize="small")
        for col, key in enumerate(keys, start=2):
            predicted = np.asarray(example.predictions[key])[box] > 0
            draw_axial_slice(
                axes[row, col],
                flair,
                [
                    (predicted & truth, _TRUE_POSITIVE),
                    (predicted & ~truth, _FALSE_POSITIVE),
                    (~predicted & truth, _FALSE_NEGATIVE),
                ],
            )
            axes[row, col].text(
                0.03,
                0.97,
                f"Dice {_dice(truth, predicted):.2f}",
                transform=axes[row, col].transAxes,
                va="top",
                ha="left",
                fontsize="x-small",
                color="white",
                bbox={"facecolor": "black", "alpha": 0.6, "pad": 1.5, "linewidth": 0},
            )
    titles = ["FLAIR", "Ground truth"] + [
        f"{MODEL_LABELS.get(model, model)}\n{INPUT_LABELS.get(input_name, input_name)}" for model, input_name in keys
    ]
    for col, title in enumerate(titles):
        axes[0, col].set_title(title, fontsize="small")
    handles = [
        matplotlib.patches.Patch(color=_GROUND_TRUTH, label="ground-truth lesion"),
        matplotlib.patches.Patch(color=_TRUE_POSITIVE, label="predicted, in ground truth (TP)"),
        matplotlib.patches.Patch(color=_FALSE_POSITIVE, label="predicted, not in ground truth (FP)"),
        matplotlib.patches.Patch(color=_FALSE_NEGATIVE, label="missed lesion (FN)"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=4, frameon=False, fontsize="small")
    return fig


# --- Figure 4: validation curves -------------------------------------------------------------


def plot_validation_curves(
    histories: pd.DataFrame,
    *,
    models: Sequence[str] | None = None,
    inputs: Sequence[str] | None = None,
    score: str = "val_dice",
) -> Figure:
    """Figure 4: validation Dice per epoch, MRI vs MRI+radiomics, one panel per model.

    Parameters
    ----------
    histories : DataFrame
        One row per epoch of every training run with ``model``, ``input``, ``fold``,
        ``epoch`` and ``score`` (``radfusion.stats.tables.read_histories``).
    models, inputs : sequence of str, optional
        Panel order and line order; default those present, sorted.
    score : str
        The validation column plotted.

    Returns
    -------
    fig : matplotlib.figure.Figure
        Thin lines: single folds; bold line: the mean over folds at each epoch. The legend
        gives each input's SDD (Equations 4-5) as mean ± population SD over folds.
    """
    from radfusion.stats.tables import sdd_per_run

    missing = [c for c in ("model", "input", "fold", "epoch", score) if c not in histories.columns]
    if missing:
        raise ValueError(f"histories: missing column(s) {missing}; it has {list(histories.columns)}")
    if histories.empty:
        raise ValueError("histories: expected at least one epoch, got an empty table")
    models = sorted(histories["model"].unique()) if models is None else list(models)
    inputs = sorted(histories["input"].unique()) if inputs is None else list(inputs)
    runs = (
        sdd_per_run(histories, score=score) if histories.groupby(["model", "input", "fold"]).size().min() > 1 else None
    )

    fig, axes = plt.subplots(
        1, len(models), figsize=(5.2 * len(models), 4.6), sharey=True, squeeze=False, layout="constrained"
    )
    for ax, model in zip(axes[0], models):
        for index, input_name in enumerate(inputs):
            colour = _INPUT_COLOURS.get(input_name, f"C{index}")
            curves = histories[(histories["model"] == model) & (histories["input"] == input_name)]
            if curves.empty:
                raise ValueError(f"histories: no run of model {model!r} with input {input_name!r}")
            for _, run in curves.groupby("fold"):
                run = run.sort_values("epoch")
                ax.plot(run["epoch"], run[score], color=colour, linewidth=0.8, alpha=0.35)
            mean = curves.groupby("epoch")[score].mean()
            label = f"{INPUT_LABELS.get(input_name, input_name)}: mean of {curves['fold'].nunique()} folds"
            if runs is not None:
                sdd = runs[(runs["model"] == model) & (runs["input"] == input_name)]["sdd"].to_numpy()
                label += f"\nSDD {sdd.mean():.3f} ± {sdd.std():.3f}"
            ax.plot(mean.index, mean.to_numpy(), color=colour, linewidth=2.4, label=label)
        ax.plot([], [], color="grey", linewidth=0.8, alpha=0.6, label="single folds (thin)")
        ax.set_title(MODEL_LABELS.get(model, model))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        # below the panel: jagged curves leave no reliably empty corner inside it
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=2, fontsize="small", frameon=False)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axes[0, 0].set_ylabel("validation Dice")
    return fig


def save_figure(figure: Figure, png_path, vector_path=None, *, dpi: int = 150) -> None:
    """Write ``figure`` as PNG (and SVG/PDF at ``vector_path``), atomically, then close it."""
    from radfusion.io import atomic_output

    for path, kwargs in ((png_path, {"dpi": dpi}), (vector_path, {})):
        if path is not None:
            with atomic_output(path) as tmp:
                figure.savefig(tmp, **kwargs)
    plt.close(figure)


# --- the predict overlay ---------------------------------------------------------------------


def plot_lesion_overlay(
    flair: np.ndarray,
    mask: np.ndarray,
    brain: np.ndarray,
    *,
    n_slices: int = 4,
    title: str | None = None,
    panel_size: float = 2.6,
) -> Figure:
    """The axial slices with the most predicted lesion: FLAIR grey, lesions tinted and outlined.

    Parameters
    ----------
    flair : ndarray, shape (X, Y, Z)
        FLAIR in the canonical RAS+ orientation (normalized to [0, 1]).
    mask : ndarray, shape (X, Y, Z)
        Predicted lesion mask on the same grid.
    brain : ndarray, shape (X, Y, Z)
        Brain mask on the same grid (:func:`radfusion.normalize.brain_mask` of the FLAIR as
        imported); each panel is cropped to it (:func:`brain_box`).
    n_slices : int
        Number of slices shown: those with the most lesion voxels, in order from inferior to
        superior. Without any lesion, the slice with the most brain.
    title : str, optional
        Figure title.
    panel_size : float
        Width of one panel in inches.

    Returns
    -------
    fig : matplotlib.figure.Figure

    Notes
    -----
    Drawn by :func:`draw_axial_slice`, as Figure 1: radiological convention, R and L marked.
    """
    flair = np.asarray(flair, dtype=np.float64)
    mask = np.asarray(mask) != 0
    brain = np.asarray(brain) != 0
    if flair.ndim != 3 or mask.shape != flair.shape or brain.shape != flair.shape:
        raise ValueError(
            f"expected 3D FLAIR, mask and brain mask of one shape, got {flair.shape}, {mask.shape} and {brain.shape}"
        )
    if n_slices < 1:
        raise ValueError(f"expected n_slices >= 1, got {n_slices}")
    per_slice = mask.sum(axis=(0, 1))
    if per_slice.any():
        ranked = np.argsort(-per_slice, kind="stable")
        chosen = np.sort([k for k in ranked[:n_slices] if per_slice[k] > 0])
    else:
        chosen = np.array([int(np.argmax(brain.sum(axis=(0, 1))))])
    # at least two panels wide, so that a title of two short lines fits above a single slice
    width = panel_size * max(len(chosen), 2)
    fig, axes = plt.subplots(1, len(chosen), figsize=(width, panel_size * 1.35), squeeze=False, layout="constrained")
    for ax, k in zip(axes[0], chosen):
        box = brain_box(brain[:, :, k])
        draw_axial_slice(
            ax, flair[:, :, k][box], [(mask[:, :, k][box], "#ff3b30")], alpha=0.35, outline=True, mark_sides=True
        )
        ax.set_title(f"slice {k}: {int(per_slice[k])} lesion voxels", fontsize="small")
    if title:
        fig.suptitle(title, fontsize="medium")
    return fig
