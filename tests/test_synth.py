"""The demo cohort synthesizer (SPEC "Demo cohort"; docs/decisions.md "Demo cohort")."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from pathlib import Path

import nibabel as nib

from radfusion.synth import (
    LESION_KINDS,
    LESION_LOCATIONS,
    LIBRARY_DIR,
    MIMICS,
    TEMPLATE_FILES,
    TEST_PATIENTS,
    SyntheticSubject,
    default_template_dir,
    library_names,
    load_template,
    synthesize_subject,
)
from radfusion.synth import warp_tissues
from radfusion.synth.acquire import acquire, noise_sigma
from radfusion.synth.contrast import VESSEL_MM, lesion_levels, smooth_noise, vessel_map
from radfusion.synth.library import lesion_subset, load_lesion_source, tissue_limited, warp_lesion_mask
from radfusion.synth.warp import subject_grid, template_coordinates, voxel_average

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "open_ms_data"

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


def _mni_x(template) -> np.ndarray:
    return (template.affine[0, 0] * np.arange(template.shape[0]) + template.affine[0, 3])[:, None, None]


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
    # FLAIR mimics: in [0, 1], the periventricular band hugging the ventricles, bright CSF small.
    assert template.mimics.shape == (len(MIMICS),) + template.shape
    assert 0 <= template.mimics.min() and template.mimics.max() <= 1
    near = template.ventricle_distance
    band = template.mimics[MIMICS.index("periventricular")]
    assert band[(near > 0) & (near <= 1.5)].mean() > 0.3
    assert not band[(near > 10) & (np.abs(_mni_x(template)) > 5)].any()
    bright_csf = template.mimics[MIMICS.index("bright_csf")] > 0
    assert 500 < bright_csf.sum() < 0.1 * (template.csf > 0.5).sum()
    assert (template.csf[bright_csf] > 0.5).all()
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
    # The listed lesions are the mask's 26-connected components.
    _, n_components = ndi.label(mask, structure=np.ones((3, 3, 3)))
    assert n_components == len(subject.lesions) >= 1
    assert sum(lesion["voxels"] for lesion in subject.lesions) == mask.sum()
    assert subject.source in library_names() and subject.source not in TEST_PATIENTS
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
    # Lesions range from faint (close to grey matter) to bright; most stand out clearly.
    assert np.median(ratios) > 1.15 and np.mean(np.array(ratios) > 1.05) >= 0.8, np.round(ratios, 2)
    # Partial volume: the fringe lies between normal WM and lesion in brightness.
    fringe = (subject.lesion_fraction > 0.2) & (subject.lesion_fraction < 0.5) & (subject.tissues["wm"] > 0.9)
    assert np.median(flair[normal]) < np.median(flair[fringe]) < np.median(flair[mask])


def test_lesions_lie_in_tissue_never_in_csf(subject):
    mask = subject.mask.astype(bool)
    wm, gm, csf = (subject.tissues[k] for k in ("wm", "gm", "csf"))
    # Library lesions replace tissue: a lesion voxel is at least half GM + WM, mostly WM.
    assert (gm[mask] + wm[mask] >= 0.5 - 1e-6).all()
    assert np.mean(wm[mask] >= np.maximum(gm[mask], csf[mask])) > 0.8


def test_drawn_lesions_lie_in_white_matter(template):
    s = synthesize_subject(template, 3, lesions="drawn", voxel_size_range=COARSE)
    mask = s.mask.astype(bool)
    wm, gm, csf = (s.tissues[k] for k in ("wm", "gm", "csf"))
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
        s = synthesize_subject(template, seed, lesions="drawn", voxel_size_range=COARSE, n_lesions_range=n_range)
        assert n_range[0] <= len(s.lesions) <= n_range[1]
        for lesion in s.lesions:
            assert lesion["kind"] in LESION_KINDS and lesion["location"] in LESION_LOCATIONS
            assert len(lesion["centre"]) == 3 and len(lesion["radii"]) == 3
            assert all(r > 0 for r in lesion["radii"])
    empty = synthesize_subject(template, 13, lesions="drawn", voxel_size_range=COARSE, n_lesions_range=(0, 0))
    assert empty.lesions == [] and not empty.mask.any()


def test_location_weights_place_lesions(template):
    only = lambda name: tuple(float(loc == name) for loc in LESION_LOCATIONS)  # noqa: E731
    low = synthesize_subject(
        template, 20, lesions="drawn", voxel_size_range=COARSE, n_lesions_range=(6, 6), location_weights=only("infratentorial")
    )
    assert {lesion["location"] for lesion in low.lesions} == {"infratentorial"}
    world_z = [(low.affine @ np.r_[lesion["centre"], 1.0])[2] for lesion in low.lesions]
    assert max(world_z) < 0  # below the tentorium (MNI z < -8 mm before the random warp)
    near = synthesize_subject(
        template, 21, lesions="drawn", voxel_size_range=COARSE, n_lesions_range=(6, 6),
        location_weights=only("periventricular"),
    )
    fluid = ndi.distance_transform_edt(near.tissues["csf"] <= 0.5) * near.voxel_size
    assert max(fluid[lesion["centre"]] for lesion in near.lesions) < 7.0  # mm to CSF
    # The default mix is mostly periventricular and deep white matter.
    locations = [
        lesion["location"]
        for seed in (30, 31)
        for lesion in synthesize_subject(
            template, seed, lesions="drawn", voxel_size_range=COARSE, n_lesions_range=(30, 30)
        ).lesions
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
        ({"lesions": "ellipsoids"}, "lesions"),
        ({"keep_fraction_range": (0.5, 1.5)}, "keep_fraction_range"),
        ({"mirror_probability": -0.1}, "mirror_probability"),
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


# --- the lesion library ------------------------------------------------------------------------


def test_vendored_library_holds_27_patients_and_no_test_patient():
    names = library_names()
    assert len(names) == 27 and not set(names) & set(TEST_PATIENTS)
    assert (LIBRARY_DIR / "LICENSE.txt").is_file()
    assert "10.1007/s12021-017-9348-7" in (LIBRARY_DIR / "README.md").read_text()
    source = load_lesion_source(names[0])
    assert source.mask.shape == (182, 218, 182) and set(np.unique(source.mask)) <= {0, 1}
    assert np.allclose(np.abs(np.diag(source.affine)[:3]), 1.0)


def test_a_library_with_a_test_patient_is_refused(template, tmp_path):
    good = sorted(LIBRARY_DIR.glob("patient01_*"))[0]
    (tmp_path / good.name).write_bytes(good.read_bytes())
    assert library_names(tmp_path) == ["patient01"]
    for name in TEST_PATIENTS:
        leaked = tmp_path / f"{name}_lesion_mask.nii.gz"
        leaked.write_bytes(good.read_bytes())
        with pytest.raises(ValueError, match=name):
            library_names(tmp_path)
        with pytest.raises(ValueError, match=name):
            synthesize_subject(template, 0, library=tmp_path, voxel_size_range=COARSE)
        with pytest.raises(ValueError, match=name):
            load_lesion_source(name, tmp_path)
        leaked.unlink()
    # Only the library's own patient is ever drawn.
    assert synthesize_subject(template, 0, library=tmp_path, voxel_size_range=(2.0, 2.0)).source == "patient01"


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/open_ms_data is absent")
def test_no_voxel_of_a_test_patient_is_in_the_library():
    """The vendored masks differ from every shared test patient's mask (content, not only name)."""
    test_masks = [np.asarray(nib.load(p).dataobj) > 0 for p in sorted(SHARED.glob("patient*/lesion_mask.nii.gz"))]
    assert test_masks, "no test patient masks found"
    for name in library_names():
        library_mask = load_lesion_source(name).mask.astype(bool)
        for test_mask in test_masks:
            assert not np.array_equal(library_mask, test_mask), name
            # A real patient shares few lesion voxels with another one by chance; a copy shares all.
            assert (library_mask & test_mask).sum() < 0.5 * test_mask.sum(), name


def _cube_library_mask(centre_mm, affine):
    """A 7 mm lesion cube at MNI ``centre_mm`` on the library's grid."""
    mask = np.zeros((182, 218, 182), dtype=np.uint8)
    i, j, k = np.rint(np.linalg.inv(affine) @ np.r_[centre_mm, 1.0])[:3].astype(int)
    mask[i - 3 : i + 4, j - 3 : j + 4, k - 3 : k + 4] = 1
    return mask


def _identity_coords(template):
    return np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in template.shape], indexing="ij"))


def test_mirroring_maps_left_to_right_by_world_coordinates(template):
    affine = load_lesion_source(library_names()[0]).affine
    mask = _cube_library_mask((-40.0, -10.0, 20.0), affine)
    coords = _identity_coords(template)  # the subject grid is the template grid
    world_x = lambda f: (template.affine @ np.r_[ndi.center_of_mass(f >= 0.5), 1.0])[0]  # noqa: E731
    plain = warp_lesion_mask(mask, affine, coords, template.affine)
    mirrored = warp_lesion_mask(mask, affine, coords, template.affine, mirror=True)
    assert world_x(plain) == pytest.approx(-40.0, abs=0.6)  # left hemisphere (MNI x < 0)
    assert world_x(mirrored) == pytest.approx(40.0, abs=0.6)  # the right one
    assert (plain >= 0.5).sum() == pytest.approx(343, rel=0.15) == (mirrored >= 0.5).sum()
    # Another grid for the same world: the lesion stays where MNI says, not at the same index.
    shifted = affine.copy()
    shifted[:3, 3] += [5.0, -3.0, 2.0]
    moved = warp_lesion_mask(_cube_library_mask((-40.0, -10.0, 20.0), shifted), shifted, coords, template.affine)
    assert world_x(moved) == pytest.approx(-40.0, abs=0.6)
    # A coarse subject voxel holds the lesion share of its volume (smoothed first), not one point.
    coarse = warp_lesion_mask(mask, affine, coords[:, ::2, ::2, ::2], template.affine, voxel_size=2.0)
    assert 0 < coarse.max() <= 1 and (coarse >= 0.5).sum() == pytest.approx(343 / 8, rel=0.4)


def test_lesion_subset_keeps_whole_lesions():
    mask = np.zeros((40, 40, 10), dtype=np.uint8)
    for k in range(8):  # 8 separate 2x2x2 lesions
        mask[4 * k + 1 : 4 * k + 3, 5:7, 3:5] = 1
    rng = np.random.default_rng(0)
    assert np.array_equal(lesion_subset(rng, mask, 1.0), mask)
    one = lesion_subset(rng, mask, 0.0)
    assert one.sum() == 8 and ndi.label(one)[1] == 1
    kept = [ndi.label(lesion_subset(np.random.default_rng(s), mask, 0.5))[1] for s in range(40)]
    assert 3 < np.mean(kept) < 5
    for seed in range(3):  # a subset of the mask's voxels, whole lesions only
        subset = lesion_subset(np.random.default_rng(seed), mask, 0.5).astype(bool)
        assert not (subset & ~mask.astype(bool)).any()
        assert subset.sum() % 8 == 0


def test_tissue_limited_removes_lesion_from_csf():
    f = np.array([1.0, 1.0, 0.8, 0.3], dtype=np.float32)
    gm = np.array([0.0, 0.2, 0.0, 0.0], dtype=np.float32)
    wm = np.array([0.0, 0.2, 1.0, 1.0], dtype=np.float32)
    np.testing.assert_allclose(tissue_limited(f, gm, wm), [0.0, 0.4, 0.8, 0.3])


def test_subjects_differ_in_source_and_mirroring(template):
    draws = [synthesize_subject(template, seed, voxel_size_range=(2.0, 2.0)) for seed in range(6)]
    assert len({(s.source, s.mirrored) for s in draws}) >= 5
    assert {s.mirrored for s in draws} == {True, False}


# --- the contrast --------------------------------------------------------------------------------


def test_lesion_levels_vary_per_lesion_and_juxtacortical_are_fainter():
    fraction = np.zeros((60, 12, 12), dtype=np.float32)
    for k in range(10):
        fraction[6 * k + 1 : 6 * k + 4, 4:7, 4:7] = 1.0
    gm = np.zeros_like(fraction)
    rng = np.random.default_rng(1)
    levels = lesion_levels(rng, fraction, gm, median=1.35, spread=0.3)
    per_lesion = [float(levels[6 * k + 2, 5, 5]) for k in range(10)]
    assert len(set(per_lesion)) == 10 and min(per_lesion) > 1.0
    assert (levels[fraction == 0] == 0).all()
    assert 1.2 < np.median(per_lesion) < 1.5
    grey = lesion_levels(np.random.default_rng(1), fraction, gm + 1.0, median=1.35, spread=0.3)
    assert all(grey[6 * k + 2, 5, 5] < per_lesion[k] for k in range(10))


def test_vessels_and_smooth_noise():
    rng = np.random.default_rng(0)
    candidates = np.zeros((40, 40, 40), dtype=bool)
    candidates[20, 20, 20] = True
    v = vessel_map(rng, candidates, voxel_size=1.0, n_vessels=3, length_mm=(10.0, 12.0))
    assert 0 <= v.min() and v.max() <= 1 and v[20, 20, 20] > 0.5
    assert 10 < (v > 0.5).sum() < 200  # thin tubes, not blobs
    n = smooth_noise(rng, (50, 60, 40), 8.0)
    assert n.shape == (50, 60, 40) and 0.5 < n.std() < 1.5
    assert np.corrcoef(n[:-1].ravel(), n[1:].ravel())[0, 1] > 0.8  # correlated over voxels


def test_demo_contrast_has_bright_mimics_outside_lesions(subject):
    """Not only lesions are bright: some non-lesion brain reaches the lesions' median."""
    brain = subject.flair > 0
    lesion = subject.mask.astype(bool)
    median = np.median(subject.flair[lesion])
    share = np.mean(subject.flair[brain & ~lesion] > median)
    assert 0.001 < share < 0.1


def test_noise_sd_falls_with_voxel_volume_above_1mm_only():
    """A voxel coarser than 1 mm averages v^3 1-mm voxels: noise SD / v^1.5 (docs/decisions.md)."""
    assert noise_sigma(0.05, 0.8) == noise_sigma(0.05, 1.0) == 0.05
    assert noise_sigma(0.05, 2.0) == pytest.approx(0.05 / 2**1.5)
    image = np.ones((40, 40, 40), dtype=np.float32)
    brain = np.ones(image.shape, dtype=bool)
    sds = {}
    for v in (1.0, 2.0):
        flair = acquire(np.random.default_rng(0), image.copy(), brain, bias_strength=0.0, noise_range=(0.06, 0.06), voxel_size=v)
        sds[v] = float((flair / 100.0).std())
    assert sds[1.0] == pytest.approx(0.06, rel=0.05)
    assert sds[2.0] == pytest.approx(0.06 / 2**1.5, rel=0.05)


def test_partial_volume_of_maps_and_vessels_on_coarse_grids_only():
    sheet = np.zeros((30, 30, 30), dtype=np.float32)
    sheet[15] = 1.0  # a 1 mm thick bright structure
    assert voxel_average(sheet, 1.0) is sheet and voxel_average(sheet, 0.8) is sheet
    averaged = voxel_average(sheet, 2.0)
    assert averaged.max() < 0.7 and averaged[:, 15, 15].sum() == pytest.approx(1.0, rel=1e-3)  # diluted, not lost
    candidates = np.zeros((40, 40, 40), dtype=bool)
    candidates[20, 20, 20] = True
    fine = vessel_map(np.random.default_rng(0), candidates, voxel_size=1.0, n_vessels=3, length_mm=(20.0, 22.0))
    coarse = vessel_map(np.random.default_rng(0), candidates, voxel_size=2.0, n_vessels=3, length_mm=(20.0, 22.0))
    assert fine.max() == 1.0
    assert coarse.max() == pytest.approx((VESSEL_MM / 2.0) ** 2, rel=1e-5)


def test_warp_tissues_averages_over_coarse_voxels(template):
    shape, affine = subject_grid(template, 2.0)
    coords, _ = template_coordinates(
        np.random.default_rng(0), template, shape, affine, rotation_degrees=0.0, scale_range=(1.0, 1.0),
        translation_mm=0.0, deformation_mm=0.0,
    )
    point, _ = warp_tissues(template, coords, 1.0)
    whole, mimics = warp_tissues(template, coords, 2.0)
    # The thin cortical ribbon is diluted by its neighbours; the tissue volume is kept.
    assert whole["gm"].max() < point["gm"].max() or not np.array_equal(whole["gm"], point["gm"])
    assert whole["csf"].sum() == pytest.approx(point["csf"].sum(), rel=0.02)
    assert np.abs(whole["gm"] - point["gm"]).max() > 0.1
