"""Figures of the study; each figure function gets its own tests.

Figures 2 and 3: feature distributions inside vs outside lesions.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.patches import StepPatch

from radfusion.distributions import auc, feature_bin_edges, group_histograms
from radfusion.figures import plot_feature_distribution


def step_areas(ax):
    """Area under each outlined (unfilled) density curve, in drawing order."""
    areas = []
    for patch in ax.patches:
        if isinstance(patch, StepPatch) and not patch.get_fill():
            values, edges, _ = patch.get_data()
            areas.append(float(np.sum(values * np.diff(edges))))
    return areas


@pytest.fixture
def feature_values():
    rng = np.random.default_rng(0)
    # ~1000:1 imbalance, lesions brighter: as for CR on real FLAIR
    other = np.clip(rng.normal(2700, 250, 200_000), 0, 3825).round()
    lesion = np.clip(rng.normal(3300, 250, 200), 0, 3825).round()
    return lesion, other


def test_feature_distribution_from_values(feature_values):
    lesion, other = feature_values
    fig = plot_feature_distribution(lesion, other, "Concentration rate", "a.u. (sum of 8-bit grey levels)")
    ax = fig.axes[0]
    assert f"AUC = {auc(lesion, other):.3f}" in ax.get_title()
    assert ax.get_xlabel() == "Concentration rate [a.u. (sum of 8-bit grey levels)]"
    assert "density" in ax.get_ylabel()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("inside lesions, n = 200 voxels" in t for t in labels)
    assert any("outside lesions (brain), n = 200,000 voxels" in t for t in labels)
    # Each group is normalized on its own, so the 200 lesion voxels are as visible as the rest.
    np.testing.assert_allclose(step_areas(ax), [1.0, 1.0])
    plt.close(fig)


def test_feature_distribution_from_histograms_matches_values(feature_values, tmp_path):
    lesion, other = feature_values
    values = np.concatenate([lesion, other])
    is_lesion = np.arange(values.size) < lesion.size
    h = group_histograms(values, is_lesion, np.ones(values.size, bool), feature_bin_edges("cr"))
    fig, ax = plt.subplots()
    returned = plot_feature_distribution(h.lesion, h.other, "Rényi entropy", "nats", ax=ax, edges=h.edges)
    assert returned is fig
    assert f"AUC = {auc(lesion, other):.3f}" in ax.get_title()  # exact for integer values
    np.testing.assert_allclose(step_areas(ax), [1.0, 1.0])
    lines = [line.get_xdata()[0] for line in ax.get_lines()]
    assert lines == [np.median(other), np.median(lesion)]
    fig.savefig(tmp_path / "figure.png")
    assert (tmp_path / "figure.png").stat().st_size > 10_000
    plt.close(fig)


def test_feature_distribution_rejects_bad_input():
    with pytest.raises(ValueError, match="both groups"):
        plot_feature_distribution(np.array([]), np.array([1.0]), "CR", "a.u.")
    with pytest.raises(ValueError, match="counts on 3 bins"):
        plot_feature_distribution(np.ones(2), np.ones(3), "CR", "a.u.", edges=np.arange(4.0))


# --- Figure 1: example slices ----------------------------------------------------------------

import pandas as pd  # noqa: E402

from radfusion.figures import (  # noqa: E402
    ExampleSlice,
    lesion_voxels_per_slice,
    plot_example_slices,
    plot_validation_curves,
    select_example_slices,
)

RUNS = [
    ("resnext_unet", "mri"),
    ("resnext_unet", "mri_radiomics"),
    ("attention_unet", "mri"),
    ("attention_unet", "mri_radiomics"),
]


def assert_no_clipped_text(fig):
    """Everything drawn (titles, labels, legends) lies inside the figure's canvas."""
    fig.canvas.draw()
    drawn = fig.get_tightbbox(fig.canvas.get_renderer())  # inches
    width, height = fig.get_size_inches()
    tolerance = 0.02
    assert drawn.x0 >= -tolerance and drawn.y0 >= -tolerance, drawn
    assert drawn.x1 <= width + tolerance and drawn.y1 <= height + tolerance, (drawn, width, height)


def test_lesion_voxels_per_slice_counts_axial_slices():
    mask = np.zeros((4, 5, 3), np.uint8)
    mask[0, 0, 1] = mask[1, 2, 1] = mask[3, 4, 2] = 1
    np.testing.assert_array_equal(lesion_voxels_per_slice(mask), [0, 2, 1])
    with pytest.raises(ValueError, match="3D"):
        lesion_voxels_per_slice(mask[:, :, 0])


def test_select_example_slices_most_lesion_one_per_subject_deterministic():
    table = pd.DataFrame(
        {
            "subject": ["a", "a", "b", "c", "c", "d"],
            "slice": [3, 7, 1, 4, 9, 2],
            "lesion_voxels": [50, 90, 40, 40, 10, 0],
        }
    )
    # a's best slice first; b and c tie at 40 -> subject order; d has no lesion
    assert select_example_slices(table, n_examples=3) == [("a", 7), ("b", 1), ("c", 4)]
    assert select_example_slices(table.sample(frac=1.0, random_state=1), n_examples=3) == [("a", 7), ("b", 1), ("c", 4)]
    assert select_example_slices(table, n_examples=10) == [("a", 7), ("b", 1), ("c", 4)]
    with pytest.raises(ValueError, match="no candidate"):
        select_example_slices(table[table["subject"] == "d"])


def make_example(subject="sub-01", k=5, seed=0):
    rng = np.random.default_rng(seed)
    flair = np.zeros((40, 48))
    flair[4:36, 4:44] = 0.4 + 0.05 * rng.standard_normal((32, 40))
    mask = np.zeros((40, 48), np.uint8)
    mask[15:22, 18:26] = 1
    flair[mask == 1] = 0.9
    prediction = np.zeros_like(mask)
    prediction[16:22, 18:30] = 1  # 48 TP, 24 FP (columns 26-29), 8 FN (row 15)
    return ExampleSlice(subject, k, flair, flair != 0, mask, {run: prediction for run in RUNS})


def test_plot_example_slices_layout_titles_and_dice(tmp_path):
    fig = plot_example_slices([make_example(), make_example("sub-02", 9, seed=1)])
    axes = np.array(fig.axes).reshape(2, 6)
    titles = [ax.get_title() for ax in axes[0]]
    assert titles == [
        "FLAIR",
        "Ground truth",
        "ResNeXt-UNet\nMRI",
        "ResNeXt-UNet\nMRI+radiomics",
        "Attention U-Net\nMRI",
        "Attention U-Net\nMRI+radiomics",
    ]
    assert axes[1, 0].get_ylabel() == "sub-02\nslice 9"
    # Dice = 2 * 48 / (56 + 72) = 0.75
    assert axes[0, 2].texts[0].get_text() == "Dice 0.75"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("FP" in t for t in legend) and any("FN" in t for t in legend)
    assert_no_clipped_text(fig)
    fig.savefig(tmp_path / "figure1.png", dpi=80)
    fig.savefig(tmp_path / "figure1.svg")
    assert (tmp_path / "figure1.png").stat().st_size > 5_000
    assert (tmp_path / "figure1.svg").read_text().lstrip().startswith("<?xml")
    plt.close(fig)


def test_plot_example_slices_crops_to_the_brain():
    fig = plot_example_slices([make_example()])
    image = fig.axes[0].get_images()[0].get_array()
    # brain 32 x 40 plus a 4-pixel margin each side, transposed for display (y rows, x columns)
    assert image.shape == (48, 40)
    plt.close(fig)


def test_plot_example_slices_crops_to_the_brain_mask_whatever_the_intensities():
    """The crop is the brain mask's box, not a threshold on the normalized FLAIR: a lifted
    background (0.03) and a dark brain rim (0, normalized below the lower percentile) change
    nothing."""
    example = make_example()
    flair = np.where(example.brain, example.flair, 0.03)
    flair[4:36, 4:6] = 0.0
    fig = plot_example_slices([example._replace(flair=flair)])
    assert fig.axes[0].get_images()[0].get_array().shape == (48, 40)
    plt.close(fig)


def test_plot_example_slices_rejects_mismatched_input():
    example = make_example()
    with pytest.raises(ValueError, match="at least one"):
        plot_example_slices([])
    other = example._replace(predictions={RUNS[0]: example.predictions[RUNS[0]]})
    with pytest.raises(ValueError, match="expected"):
        plot_example_slices([example, other])
    with pytest.raises(ValueError, match="one shape"):
        plot_example_slices([example._replace(mask=np.zeros((3, 3)))])
    with pytest.raises(ValueError, match="one shape"):
        plot_example_slices([example._replace(brain=np.ones((3, 3), bool))])


# --- Figure 4: validation curves -------------------------------------------------------------


def make_histories(n_folds=3, n_epochs=6):
    rows = []
    for model in ("resnext_unet", "attention_unet"):
        for input_name, jitter in (("mri", 0.06), ("mri_radiomics", 0.01)):
            for fold in range(1, n_folds + 1):
                for epoch in range(1, n_epochs + 1):
                    rows.append(
                        {
                            "model": model,
                            "input": input_name,
                            "fold": fold,
                            "epoch": epoch,
                            "val_dice": 0.1 * epoch + jitter * (-1) ** epoch * fold,
                        }
                    )
    return pd.DataFrame(rows)


def test_plot_validation_curves_panels_lines_and_legend(tmp_path):
    histories = make_histories()
    fig = plot_validation_curves(histories, models=["resnext_unet", "attention_unet"], inputs=["mri", "mri_radiomics"])
    assert [ax.get_title() for ax in fig.axes] == ["ResNeXt-UNet", "Attention U-Net"]
    ax = fig.axes[0]
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "validation Dice"
    # 2 inputs x 3 folds thin lines, 2 bold means, 1 legend proxy
    widths = sorted(line.get_linewidth() for line in ax.get_lines())
    assert len(widths) == 9 and widths.count(2.4) == 2
    bold = [line for line in ax.get_lines() if line.get_linewidth() == 2.4]
    mri = histories[(histories["model"] == "resnext_unet") & (histories["input"] == "mri")]
    np.testing.assert_allclose(bold[0].get_ydata(), mri.groupby("epoch")["val_dice"].mean())
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[0].startswith("MRI: mean of 3 folds\nSDD ")
    assert legend[1].startswith("MRI+radiomics: mean of 3 folds")
    assert legend[2] == "single folds (thin)"
    assert_no_clipped_text(fig)
    fig.savefig(tmp_path / "figure4.png", dpi=80)
    fig.savefig(tmp_path / "figure4.svg")
    assert (tmp_path / "figure4.svg").stat().st_size > 10_000
    plt.close(fig)


def test_plot_validation_curves_legend_sdd_matches_stats():
    from radfusion.stats.tables import sdd_per_run

    histories = make_histories()
    fig = plot_validation_curves(histories)
    runs = sdd_per_run(histories)
    expected = runs[(runs["model"] == "attention_unet") & (runs["input"] == "mri")]["sdd"]
    legend = fig.axes[0].get_legend().get_texts()[0].get_text()  # sorted: attention_unet first
    assert f"SDD {expected.mean():.3f} ± {np.std(expected):.3f}" in legend
    plt.close(fig)


def test_plot_validation_curves_rejects_missing_runs():
    histories = make_histories()
    with pytest.raises(ValueError, match="no run of model 'resnext_unet' with input 'mri'"):
        plot_validation_curves(
            histories[~((histories["model"] == "resnext_unet") & (histories["input"] == "mri"))],
            inputs=["mri", "mri_radiomics"],
        )
    with pytest.raises(ValueError, match="val_dice"):
        plot_validation_curves(histories.drop(columns="val_dice"))


def test_figure1_and_the_predict_overlay_show_left_and_right_the_same_way():
    """Radiological convention in both: the patient's right (RAS+ x high) on the viewer's left."""
    from radfusion.figures import plot_lesion_overlay

    example = make_example()
    volume = np.repeat(example.flair[:, :, None], 3, axis=2)
    overlay = plot_lesion_overlay(volume, np.repeat(example.mask[:, :, None], 3, axis=2), volume != 0, n_slices=1)
    figure1 = plot_example_slices([example])
    for ax in [*figure1.axes[:6], overlay.axes[0]]:
        width = ax.get_images()[0].get_array().shape[1]
        left_of_patient, right_of_patient = ax.transData.transform([(0, 0), (width - 1, 0)])[:, 0]
        assert right_of_patient < left_of_patient, ax.get_title()
    for ax in (figure1.axes[0], overlay.axes[0]):
        marks = {t.get_text(): t.get_position()[0] for t in ax.texts if t.get_text() in ("R", "L")}
        assert marks["R"] < marks["L"]
    plt.close(figure1)
    plt.close(overlay)
