"""The demo cohort synthesizer (SPEC "Demo cohort")."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from radfusion.synth import (
    LESION_KINDS,
    LESION_LOCATIONS,
    TEMPLATE_FILES,
    SyntheticSubject,
    default_template_dir,
    load_template,
    synthesize_subject,
)

COARSE = (1.8, 2.0)  # mm; about 10x fewer voxels than the paper's grid, keeps tests fast


@pytest.fixture(scope="module")
def template():
    try:
        folder = default_template_dir()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    missing = [name for name in TEMPLATE_FILES.values() if not (folder / name).is_file()]
    if missing:
        pytest.skip(f"nilearn's MNI152 template files are absent from {folder}: {missing}")
    return load_template()


@pytest.fixture(scope="module")
def subject(template) -> SyntheticSubject:
    return synthesize_subject(template, 3, voxel_size_range=COARSE)


def normal_white_matter(subject: SyntheticSubject) -> np.ndarray:
    """Confident WM at least two voxels away from any lesion tissue."""
    near_lesion = ndi.binary_dilation(subject.lesion_fraction > 0.05, iterations=2)
    return (subject.tissues["wm"] > 0.9) & ~near_lesion


def test_template_maps(template):
    assert template.shape == (197, 233, 189)
    np.testing.assert_allclose(np.abs(np.diag(template.affine)[:3]), 1.0)
    for name in ("t1", "gm", "wm", "csf"):
        data = getattr(template, name)
        assert data.dtype == np.float32
        assert data.min() >= 0 and data.max() <= 1
    brain = template.t1 > 0
    np.testing.assert_allclose(template.csf, np.clip(brain - template.gm - template.wm, 0, 1), atol=1e-6)
    assert not (template.gm[~brain].any() or template.wm[~brain].any() or template.csf[~brain].any())
    # Every lesion location has candidate white matter, and only white matter.
    for k, location in enumerate(LESION_LOCATIONS, start=1):
        assert (template.lesion_sites == k).sum() > 1000, location
    assert (template.wm[template.lesion_sites > 0] >= 0.6).all()
    # The cache hands back the same (read-only) object instead of re-reading the files.
    assert load_template() is template
    with pytest.raises(ValueError):
        template.gm[0, 0, 0] = 1.0


def test_lesion_sites_follow_anatomy(template):
    inv = np.linalg.inv(template.affine)
    sites = template.lesion_sites

    def site_at(mni_mm):
        i, j, k = np.rint(inv @ np.r_[mni_mm, 1.0])[:3].astype(int)
        return LESION_LOCATIONS[sites[i, j, k] - 1] if sites[i, j, k] else None

    # Centrum semiovale is deep WM; cerebellar WM is infratentorial.
    assert site_at((-25, -10, 35)) == "deep_wm"
    assert site_at((-18, -60, -30)) == "infratentorial"
    infratentorial_z = np.nonzero(sites == 1 + LESION_LOCATIONS.index("infratentorial"))[2]
    assert (template.affine[2, 2] * infratentorial_z + template.affine[2, 3]).max() < -8
    # Periventricular WM lies closer to the ventricles than any deep WM.
    distance = template.ventricle_distance
    assert distance[sites == 1].max() <= 3.5 < distance[sites == 2].min()


def test_missing_template_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="mni_icbm152_t1_tal_nlin_sym_09a_converted"):
        load_template(tmp_path)


def test_grid_and_affine_encode_the_voxel_size(template):
    for seed in (0, 1):
        s = synthesize_subject(template, seed, voxel_size_range=COARSE, n_lesions_range=(2, 3))
        assert COARSE[0] <= s.voxel_size <= COARSE[1]
        assert s.flair.dtype == np.float32 and s.flair.ndim == 3
        assert s.flair.shape == s.mask.shape == s.lesion_fraction.shape == s.tissues["wm"].shape
        expected = tuple(round(n / s.voxel_size) for n in template.shape)
        assert s.flair.shape == expected
        assert s.affine.shape == (4, 4)
        np.testing.assert_allclose(np.linalg.norm(s.affine[:3, :3], axis=0), s.voxel_size, rtol=1e-12)
        # The grid covers the template's field of view: same world centre.
        centre = lambda a, shape: a[:3, :3] @ ((np.array(shape) - 1) / 2) + a[:3, 3]  # noqa: E731
        np.testing.assert_allclose(centre(s.affine, s.flair.shape), centre(template.affine, template.shape))
    fixed = synthesize_subject(template, 0, voxel_size_range=(2.0, 2.0), n_lesions_range=(2, 3))
    assert fixed.voxel_size == 2.0
    assert fixed.flair.shape == tuple(round(n / 2.0) for n in template.shape)


def test_same_seed_is_bit_identical_and_other_seeds_differ(template, subject):
    again = synthesize_subject(template, 3, voxel_size_range=COARSE)
    for name in ("flair", "mask", "lesion_fraction", "affine"):
        assert np.array_equal(getattr(subject, name), getattr(again, name)), name
    assert subject.lesions == again.lesions and subject.voxel_size == again.voxel_size
    other = synthesize_subject(template, 4, voxel_size_range=COARSE)
    assert other.voxel_size != subject.voxel_size
    # Same voxel size, another seed: anatomy, lesions and noise all differ.
    a = synthesize_subject(template, 5, voxel_size_range=(2.0, 2.0))
    b = synthesize_subject(template, 6, voxel_size_range=(2.0, 2.0))
    assert not np.array_equal(a.tissues["wm"], b.tissues["wm"])
    assert not np.array_equal(a.mask, b.mask)
    assert np.mean(a.flair != b.flair) > 0.1


def test_mask_is_the_lesion_ground_truth(subject):
    mask = subject.mask
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    assert np.array_equal(mask, (subject.lesion_fraction >= 0.5).astype(np.uint8))
    assert 0 <= subject.lesion_fraction.min() and subject.lesion_fraction.max() <= 1
    # Each listed lesion is one connected focus around its centre; lesions may merge.
    _, n_components = ndi.label(mask)
    assert 1 <= n_components <= len(subject.lesions)
    assert all(mask[lesion["centre"]] for lesion in subject.lesions)
    # Soft partial-volume borders: a fringe of fractional lesion tissue around the mask.
    fringe = (subject.lesion_fraction > 0.05) & (subject.lesion_fraction < 0.5)
    assert fringe.sum() > 0.3 * mask.sum()


def test_lesions_are_hyperintense_where_the_mask_says(subject):
    flair, mask = subject.flair, subject.mask.astype(bool)
    normal = normal_white_matter(subject)
    assert np.median(flair[mask]) > np.percentile(flair[normal], 95)
    # Each lesion's core is brighter than the white matter right around it (local contrast,
    # free of the smooth bias field); a mask drawn where no lesion was would fail this.
    labels, n = ndi.label(mask)
    outside = ~ndi.binary_dilation(subject.lesion_fraction > 0.05) & (subject.tissues["wm"] > 0.8)
    ratios = []
    for k in range(1, n + 1):
        component = labels == k
        ring = ndi.binary_dilation(component, iterations=4) & outside
        if ring.sum() >= 5:
            ratios.append(np.median(flair[component]) / np.median(flair[ring]))
    assert len(ratios) >= 0.5 * n
    assert np.mean(np.array(ratios) > 1.15) >= 0.9, np.round(ratios, 2)
    # Partial volume: the fringe lies between normal WM and lesion in brightness.
    fringe = (subject.lesion_fraction > 0.2) & (subject.lesion_fraction < 0.5) & (subject.tissues["wm"] > 0.9)
    assert np.median(flair[normal]) < np.median(flair[fringe]) < np.median(flair[mask])


def test_lesions_lie_in_white_matter(subject):
    mask = subject.mask.astype(bool)
    wm, gm, csf = (subject.tissues[k] for k in ("wm", "gm", "csf"))
    assert np.mean(wm[mask] >= np.maximum(gm[mask], csf[mask])) > 0.95
    assert np.mean(wm[mask] >= 0.5) > 0.95


def test_flair_contrast_ordering(subject):
    flair, mask = subject.flair, subject.mask.astype(bool)
    wm, gm, csf = (subject.tissues[k] for k in ("wm", "gm", "csf"))
    medians = [
        np.median(flair[(csf > 0.9) & ~mask]),
        np.median(flair[normal_white_matter(subject)]),
        np.median(flair[(gm > 0.7) & ~mask]),
        np.median(flair[mask]),
    ]
    assert medians == sorted(medians) and len(set(medians)) == 4, medians
    # Skull-stripped: background exactly 0, brain positive (Rician magnitude).
    brain = (wm + gm + csf) >= 0.5
    assert (flair[~brain] == 0).all() and (flair[brain] > 0).all()


def test_lesion_count_kinds_and_locations(template):
    for seed, n_range in [(10, (5, 7)), (11, (5, 7)), (12, (2, 2))]:
        s = synthesize_subject(template, seed, voxel_size_range=COARSE, n_lesions_range=n_range)
        assert n_range[0] <= len(s.lesions) <= n_range[1]
        for lesion in s.lesions:
            assert lesion["kind"] in LESION_KINDS and lesion["location"] in LESION_LOCATIONS
            assert len(lesion["centre"]) == 3 and len(lesion["radii"]) == 3
            assert all(r > 0 for r in lesion["radii"])
    empty = synthesize_subject(template, 13, voxel_size_range=COARSE, n_lesions_range=(0, 0))
    assert empty.lesions == [] and not empty.mask.any()


def test_location_weights_place_lesions(template):
    only = lambda name: tuple(float(loc == name) for loc in LESION_LOCATIONS)  # noqa: E731
    low = synthesize_subject(
        template, 20, voxel_size_range=COARSE, n_lesions_range=(6, 6), location_weights=only("infratentorial")
    )
    assert {lesion["location"] for lesion in low.lesions} == {"infratentorial"}
    world_z = [(low.affine @ np.r_[lesion["centre"], 1.0])[2] for lesion in low.lesions]
    assert max(world_z) < 0  # below the tentorium (MNI z < -8 mm before the random warp)
    near = synthesize_subject(
        template, 21, voxel_size_range=COARSE, n_lesions_range=(6, 6), location_weights=only("periventricular")
    )
    fluid = ndi.distance_transform_edt(near.tissues["csf"] <= 0.5) * near.voxel_size
    assert max(fluid[lesion["centre"]] for lesion in near.lesions) < 7.0  # mm to CSF
    # The default mix is mostly periventricular and deep white matter.
    locations = [
        lesion["location"]
        for seed in (30, 31)
        for lesion in synthesize_subject(template, seed, voxel_size_range=COARSE, n_lesions_range=(30, 30)).lesions
    ]
    assert sum(loc in ("periventricular", "deep_wm") for loc in locations) > 0.6 * len(locations)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"voxel_size_range": (1.0, 0.5)}, "voxel_size_range"),
        ({"voxel_size_range": 1.0}, "voxel_size_range"),
        ({"n_lesions_range": (3, 2)}, "n_lesions_range"),
        ({"n_lesions_range": (2.5, 4)}, "n_lesions_range"),
        ({"location_weights": (1, 0, 0)}, "location_weights"),
        ({"blob_fraction": 1.5}, "blob_fraction"),
    ],
)
def test_bad_arguments_are_refused(template, kwargs, message):
    with pytest.raises(ValueError, match=message):
        synthesize_subject(template, 0, **kwargs)


def test_bad_seed_or_template_is_refused(template):
    with pytest.raises(ValueError, match="seed"):
        synthesize_subject(template, -1)
    with pytest.raises(TypeError, match="Template"):
        synthesize_subject({"gm": template.gm}, 0)
