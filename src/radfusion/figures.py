"""The study's figures (SPEC stage 10), one independent function per figure.

- Figures 2 and 3: :func:`plot_feature_distribution`, the concentration rate and Rényi entropy
  inside vs outside lesions.

Every function draws with matplotlib's Agg backend (no display needed), takes the data as
arrays, and returns the ``matplotlib.figure.Figure``; saving is the caller's job.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from radfusion.distributions import auc as values_auc  # noqa: E402
from radfusion.distributions import histogram_auc, histogram_quantiles  # noqa: E402

__all__ = ["plot_feature_distribution"]

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
