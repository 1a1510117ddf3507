"""Axial slice export and in-memory loading (SPEC stage 5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from conftest import PROJECT

from radfusion.io import InputError
from radfusion.protocol import INPUT_CHANNELS
from radfusion.slices import (
    brain_box,
    crop_to_box,
    export_slices,
    load_slices,
    minmax_scale,
    read_slices,
    resize_images,
    resize_masks,
    save_slices,
    select_slices,
    subject_seed,
)

SHAPE = (20, 24, 16)


def lesion_mask(slices_and_counts: dict[int, int]) -> np.ndarray:
    """A mask with the given number of lesion voxels on the given axial slices."""
    mask = np.zeros(SHAPE, np.uint8)
    for k, count in slices_and_counts.items():
        mask.reshape(-1, SHAPE[2])[:count, k] = 1
    return mask


def whole_brain() -> np.ndarray:
    brain = np.zeros(SHAPE, bool)
    brain[2:-2, 2:-2, 1:-1] = True  # slices 0 and 15 hold no brain
    return brain


@pytest.fixture
def subject():
    """FLAIR, CR, RE, mask and brain volumes with lesions on slices 4, 5 (3 voxels), 9 (1 voxel)."""
    rng = np.random.default_rng(1)
    flair = np.where(whole_brain(), rng.uniform(0.1, 0.8, SHAPE), 0).astype(np.float32)
    mask = lesion_mask({4: 30, 5: 3, 9: 1})
    flair[mask == 1] = 1.0
    cr = rng.uniform(0, 3000, SHAPE).astype(np.float32)
    re = rng.uniform(0, 5, SHAPE).astype(np.float32)
    return flair, cr, re, mask, whole_brain()


def test_lesion_slices_selected_by_min_lesion_voxels():
    mask = lesion_mask({4: 30, 5: 3, 9: 1})
    assert select_slices(mask, whole_brain()).tolist() == [4, 5, 9]
    assert select_slices(mask, whole_brain(), min_lesion_voxels=3).tolist() == [4, 5]
    assert select_slices(mask, whole_brain(), min_lesion_voxels=31).tolist() == []


def test_stride_keeps_non_adjacent_slices_on_the_phase_with_most_lesions():
    mask = lesion_mask({k: 5 for k in (3, 4, 5, 6, 7, 9)})
    chosen = select_slices(mask, whole_brain(), stride=2)
    assert chosen.tolist() == [3, 5, 7, 9]  # odd phase holds 4 lesion slices, even phase 2
    assert np.all(np.diff(chosen) >= 2)
    assert select_slices(mask, whole_brain(), stride=3).tolist() == [3, 6, 9]


def test_full_config_exports_non_adjacent_slices_about_a_third_of_the_lesion_slices():
    """The paper's 1102 non-adjacent slices from 46 patients (docs/decisions.md, "Slice selection")."""
    settings = yaml.safe_load((PROJECT / "config" / "config.yaml").read_text())["slices"]
    schema = yaml.safe_load((PROJECT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    assert schema["properties"]["slices"]["properties"]["stride"]["default"] == settings["stride"] == 3
    # Lesions on every slice but the first, and a lesion-free gap: 14 lesion slices.
    mask = lesion_mask({k: 5 for k in range(1, 16) if k != 8})
    chosen = select_slices(mask, whole_brain(), **settings, seed=42)
    assert np.all(np.diff(chosen) >= 2)  # no two exported slices adjacent
    # Phases 0 and 1 keep 5 lesion slices, phase 2 keeps 4 (slice 8 is lesion-free); ties: phase 0.
    assert chosen.tolist() == [3, 6, 9, 12, 15]
    assert chosen.tolist() == select_slices(mask, whole_brain(), **settings, seed=7).tolist()


def test_brain_fraction_adds_seeded_lesion_free_brain_slices():
    mask = lesion_mask({k: 5 for k in (4, 5, 6, 7)})
    brain = whole_brain()
    chosen = select_slices(mask, brain, brain_fraction=0.5, seed=3)
    extra = sorted(set(chosen) - {4, 5, 6, 7})
    assert len(extra) == 2  # half as many as the 4 lesion slices
    assert all(brain[:, :, k].any() and not mask[:, :, k].any() for k in extra)
    assert chosen.tolist() == select_slices(mask, brain, brain_fraction=0.5, seed=3).tolist()
    draws = {tuple(select_slices(mask, brain, brain_fraction=0.5, seed=s)) for s in range(10)}
    assert len(draws) > 1


def test_brain_fraction_never_takes_slices_without_brain_and_caps_at_available():
    mask = lesion_mask({k: 5 for k in range(1, 14)})
    chosen = select_slices(mask, whole_brain(), brain_fraction=1.0, seed=0)
    assert chosen.tolist() == list(range(1, 15))  # only slice 14 is lesion-free brain


def test_subject_seed_differs_between_subjects_and_is_stable():
    assert subject_seed(42, "demo01") == subject_seed(42, "demo01")
    assert subject_seed(42, "demo01") != subject_seed(42, "demo02")


def test_minmax_scale_maps_to_unit_range_and_constant_to_zeros():
    image = np.array([[2.0, 4.0], [6.0, 10.0]])
    np.testing.assert_allclose(minmax_scale(image), [[0.0, 0.25], [0.5, 1.0]])
    assert minmax_scale(np.full((3, 3), 7.0)).tolist() == np.zeros((3, 3)).tolist()
    assert minmax_scale(image).dtype == np.float32


def test_export_keeps_original_size_channels_and_masks(subject):
    flair, cr, re, mask, brain = subject
    arrays = export_slices(flair, cr, re, mask, brain)
    assert arrays["slice_index"].tolist() == [4, 5, 9]
    assert arrays["images"].shape == (3, 3, SHAPE[0], SHAPE[1])
    assert arrays["images"].dtype == np.float32 and arrays["masks"].dtype == np.uint8
    assert arrays["shape"].tolist() == list(SHAPE)
    for i, k in enumerate([4, 5, 9]):
        np.testing.assert_array_equal(arrays["masks"][i], mask[:, :, k])
        for c, volume in enumerate((flair, cr, re)):
            np.testing.assert_allclose(arrays["images"][i, c], minmax_scale(volume[:, :, k]))
            assert arrays["images"][i, c].min() == 0.0 and arrays["images"][i, c].max() == 1.0


def test_export_refuses_mismatched_shapes_and_non_binary_masks(subject):
    flair, cr, re, mask, brain = subject
    with pytest.raises(ValueError, match="cr of shape"):
        export_slices(flair, cr[:-1], re, mask, brain)
    with pytest.raises(ValueError, match="brain of shape"):
        export_slices(flair, cr, re, mask, brain[:, :, :-1])
    with pytest.raises(ValueError, match="binary mask"):
        export_slices(flair, cr, re, mask * 2, brain)
    with pytest.raises(ValueError, match="binary brain mask"):
        export_slices(flair, cr, re, mask, flair)
    bad = cr.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        export_slices(flair, bad, re, mask, brain)


def test_export_takes_lesion_free_slices_from_the_brain_mask_not_the_normalized_flair(subject):
    """Issue 16: a normalized FLAIR whose background is above 0 (as a negative lower percentile made
    it) must not turn brain-free slices into brain slices; a brain slice whose voxels all
    normalize to 0 is still brain."""
    flair, cr, re, _, brain = subject
    mask = lesion_mask({k: 5 for k in range(1, 13)})  # lesion-free: 0, 13, 14 (brain), 15
    lifted = np.where(brain, flair, np.float32(0.0007))
    lifted[:, :, 14] = np.where(brain[:, :, 14], 0.0, 0.0007)  # dark brain slice, bright background
    arrays = export_slices(lifted, cr, re, mask, brain, brain_fraction=1.0, seed=0)
    assert arrays["slice_index"].tolist() == list(range(1, 15))  # 13 and 14 added; 0 and 15 hold no brain


def test_npz_round_trip(subject, tmp_path):
    arrays = export_slices(*subject)
    path = tmp_path / "s.npz"
    save_slices(arrays, path)
    back = read_slices(path)
    for key in arrays:
        np.testing.assert_array_equal(back[key], arrays[key])


def test_read_slices_names_the_file_when_corrupt(tmp_path):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(InputError, match="broken.npz"):
        read_slices(path, subject="demo01")


def test_load_slices_resizes_once_and_selects_channels(subject, tmp_path):
    paths = []
    for name in ("a", "b"):
        paths.append(tmp_path / f"{name}.npz")
        save_slices(export_slices(*subject), paths[-1])
    images, masks, subject_of = load_slices(paths, channels=INPUT_CHANNELS["mri"], image_size=32)
    assert images.shape == (6, 1, 32, 32) and masks.shape == (6, 1, 32, 32)
    assert subject_of == [0, 0, 0, 1, 1, 1]
    assert set(torch.unique(masks).tolist()) <= {0.0, 1.0}
    images3, _, _ = load_slices(paths, channels=INPUT_CHANNELS["mri_radiomics"], image_size=32)
    torch.testing.assert_close(images3[:, :1], images)


def test_brain_box_holds_every_brain_voxel_of_every_slice_plus_margin():
    brain = np.zeros(SHAPE, bool)
    brain[5:9, 6:10, 3] = True
    brain[7:12, 4:7, 10] = True  # another slice widens the box
    assert brain_box(brain, margin=0).tolist() == [5, 12, 4, 10]
    assert brain_box(brain).tolist() == [3, 14, 2, 12]  # 2 pixels each side
    assert brain_box(brain, margin=30).tolist() == [0, SHAPE[0], 0, SHAPE[1]]  # clipped to the slice
    assert brain_box(np.zeros(SHAPE, bool)).tolist() == [0, SHAPE[0], 0, SHAPE[1]]
    x0, x1, y0, y1 = brain_box(brain)
    assert crop_to_box(brain, brain_box(brain)).sum() == brain.sum() == brain[x0:x1, y0:y1].sum()


def test_export_stores_the_box_and_old_files_read_as_whole_slices(subject, tmp_path):
    arrays = export_slices(*subject)
    assert arrays["box"].tolist() == [0, 20, 0, 24]  # brain 2:-2 plus 2 pixels: the whole slice
    old = {key: value for key, value in arrays.items() if key != "box"}
    save_slices(old, tmp_path / "old.npz")
    assert read_slices(tmp_path / "old.npz")["box"].tolist() == [0, 20, 0, 24]
    save_slices({**arrays, "box": np.array([0, 21, 0, 24])}, tmp_path / "bad.npz")
    with pytest.raises(InputError, match="brain box"):
        read_slices(tmp_path / "bad.npz", subject="demo01")


def test_load_slices_crops_to_the_brain_box_before_resizing(subject, tmp_path):
    flair, cr, re, mask, _ = subject
    brain = np.zeros(SHAPE, bool)
    brain[0:14, 4:20, 1:-1] = True
    arrays = export_slices(np.where(brain, flair, 0), cr, re, mask * brain, brain)
    assert arrays["box"].tolist() == [0, 16, 2, 22] and arrays["slice_index"].size > 0
    save_slices(arrays, tmp_path / "s.npz")
    images, masks, _ = load_slices([tmp_path / "s.npz"], image_size=32, crop="brain")
    box = torch.from_numpy(crop_to_box(arrays["images"], arrays["box"]).copy())
    torch.testing.assert_close(images, resize_images(box, 32))
    whole, _, _ = load_slices([tmp_path / "s.npz"], image_size=32)
    assert not torch.equal(images, whole)
    assert masks.sum() > 0
    with pytest.raises(ValueError, match="crop"):
        load_slices([tmp_path / "s.npz"], image_size=32, crop="head")


def test_resize_bilinear_keeps_constants_and_nearest_doubles_pixels():
    constant = torch.full((1, 2, 5, 7), 0.3)
    torch.testing.assert_close(resize_images(constant, 32), torch.full((1, 2, 32, 32), 0.3))
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    doubled = resize_masks(mask, 4)[0, 0].numpy()
    np.testing.assert_array_equal(doubled, np.kron([[1, 0], [0, 1]], np.ones((2, 2))))
    back = resize_masks(resize_masks(mask, 4), (2, 2))
    torch.testing.assert_close(back, mask)
