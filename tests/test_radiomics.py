"""Concentration rate and Rényi entropy maps against straightforward per-window references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view
from skimage.feature import graycomatrix

from radfusion.radiomics import concentration_rate, glcm_offsets, radiomics_volume, renyi_entropy

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "open_ms_data"
SKIMAGE_ANGLES = (0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)
TOLERANCE = 1e-9


# ---------------------------------------------------------------------------------------------
# References: one window at a time, the way the paper describes the features.
# ---------------------------------------------------------------------------------------------


def reference_cr(image, s=2, num=15, m=5):
    """np.sort of every reflect-padded window, then X(N-num-m+1) + ... + X(N-m)."""
    n = 2 * s + 1
    padded = np.pad(image, s, mode="reflect").astype(np.int64)
    windows = np.sort(sliding_window_view(padded, (n, n)).reshape(*image.shape, n * n), axis=-1)
    big_n = n * n
    return windows[..., big_n - num - m : big_n - m].sum(axis=-1).astype(np.float64)


def renyi_from_counts(counts, alpha):
    p = counts.astype(np.float64) / counts.sum()
    return np.log(np.sum(p**alpha)) / (1 - alpha)


def reference_re(image, s=5, alpha=7, distances=(1, 2), angles=SKIMAGE_ANGLES, pixels=None):
    """skimage graycomatrix of each reflect-padded window, summed over distances and angles."""
    n = 2 * s + 1
    padded = np.pad(image, s, mode="reflect")
    out = np.full(image.shape, np.nan)
    if pixels is None:
        pixels = np.ndindex(*image.shape)
    for i, j in pixels:
        glcm = graycomatrix(padded[i : i + n, j : j + n], distances, angles, levels=256, symmetric=False, normed=False)
        out[i, j] = renyi_from_counts(glcm.sum(axis=(2, 3)), alpha)
    return out


def reference_re_chebyshev(image, s=5, alpha=7, distances=(1, 2)):
    """True (d, +-d) diagonals, still counted by skimage: a diagonal of length d*sqrt(2) rounds to (d, d)."""
    n = 2 * s + 1
    padded = np.pad(image, s, mode="reflect")
    straight = [float(d) for d in distances]
    diagonal = [d * np.sqrt(2) for d in distances]
    out = np.empty(image.shape)
    for i, j in np.ndindex(*image.shape):
        window = padded[i : i + n, j : j + n]
        counts = graycomatrix(window, straight, [0, np.pi / 2], levels=256).sum(axis=(2, 3), dtype=np.int64)
        counts += graycomatrix(window, diagonal, [np.pi / 4, 3 * np.pi / 4], levels=256).sum(
            axis=(2, 3), dtype=np.int64
        )
        out[i, j] = renyi_from_counts(counts, alpha)
    return out


def reflect_index(k, size):
    """The padding rule in closed form: mirror about both edges, period 2 (size - 1)."""
    if size == 1:
        return 0
    k = k % (2 * (size - 1))
    return k if k < size else 2 * (size - 1) - k


# ---------------------------------------------------------------------------------------------
# Image strategies: random, constant, stripes, ramps, any size down to 1x1.
# ---------------------------------------------------------------------------------------------


@st.composite
def images(draw, max_side=14):
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    kind = draw(st.sampled_from(["random", "few_levels", "constant", "stripes", "ramp"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "random":
        return rng.integers(0, 256, (h, w), dtype=np.uint8)
    if kind == "few_levels":  # many ties and repeated GLCM pairs
        return rng.choice(np.array([0, 7, 200, 255], np.uint8), (h, w))
    if kind == "constant":
        return np.full((h, w), draw(st.integers(0, 255)), np.uint8)
    if kind == "stripes":
        period = draw(st.integers(1, 4))
        axis = draw(st.integers(0, 1))
        line = ((np.arange((h, w)[axis]) // period) % 2 * 255).astype(np.uint8)
        return np.ascontiguousarray(np.broadcast_to(line[:, None] if axis == 0 else line[None, :], (h, w)))
    step = draw(st.integers(1, 40))
    return ((np.add.outer(np.arange(h), np.arange(w)) * step) % 256).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Concentration rate
# ---------------------------------------------------------------------------------------------


def test_cr_default_is_sum_of_order_statistics_6_to_20():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (9, 11), dtype=np.uint8)
    padded = np.pad(image, 2, mode="reflect").astype(int)
    window = np.sort(padded[3:8, 4:9].ravel())  # the window of pixel (3, 4)
    assert concentration_rate(image)[3, 4] == window[5:20].sum()
    np.testing.assert_array_equal(concentration_rate(image), reference_cr(image))


@settings(max_examples=60, deadline=None)
@given(
    image=images(max_side=20),
    s=st.integers(0, 3),
    data=st.data(),
)
def test_cr_matches_sorted_window_reference(image, s, data):
    big_n = (2 * s + 1) ** 2
    num = data.draw(st.integers(1, big_n))
    m = data.draw(st.integers(0, big_n - num))
    result = concentration_rate(image, s=s, num=num, m=m)
    assert result.dtype == np.float64 and result.shape == image.shape
    np.testing.assert_array_equal(result, reference_cr(image, s, num, m))


@settings(max_examples=30, deadline=None)
@given(h=st.integers(1, 6), w=st.integers(1, 6), s=st.integers(1, 9), seed=st.integers(0, 1000))
def test_padding_rule_repeats_reflection_for_images_smaller_than_the_window(h, w, s, seed):
    # num=1, m=0 makes CR the window maximum: a max filter over the padded image.
    image = np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)
    rows = [reflect_index(k, h) for k in range(-s, h + s)]
    cols = [reflect_index(k, w) for k in range(-s, w + s)]
    padded = image[np.ix_(rows, cols)]
    n = 2 * s + 1
    expected = sliding_window_view(padded, (n, n)).max(axis=(-2, -1))
    np.testing.assert_array_equal(concentration_rate(image, s=s, num=1, m=0), expected)


def test_padding_does_not_repeat_the_edge_pixel():
    image = np.array([[0, 100, 200]], np.uint8)
    # Window of pixel (0, 0) with s=1 sees columns reflect(-1, 0, 1) = (1, 0, 1), never a second 0 column.
    assert concentration_rate(image, s=1, num=1, m=8)[0, 0] == 0  # minimum
    assert concentration_rate(image, s=1, num=1, m=0)[0, 0] == 100  # maximum: the 200 column is not in it
    assert concentration_rate(image, s=1, num=9, m=0)[0, 0] == 3 * (100 + 0 + 100)


def test_cr_of_constant_image_is_num_times_value():
    np.testing.assert_array_equal(concentration_rate(np.full((7, 5), 9, np.uint8)), np.full((7, 5), 9.0 * 15))


def test_cr_excludes_the_m_brightest_outliers():
    image = np.full((9, 9), 10, np.uint8)
    image[4, 4] = 255  # a single outlier is among the m=5 excluded values
    np.testing.assert_array_equal(concentration_rate(image), np.full((9, 9), 150.0))
    assert concentration_rate(image, m=0)[4, 4] == 14 * 10 + 255


# ---------------------------------------------------------------------------------------------
# Rényi entropy
# ---------------------------------------------------------------------------------------------


def test_skimage_offsets_match_graycomatrix_including_rounding_and_sign():
    probe = np.arange(121, dtype=np.uint8).reshape(11, 11)  # unique values: a pair names its offset
    distances = [1, 2, 0.5, 1.5, 2.5, 3]
    angles = [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4, np.pi, 5 * np.pi / 4, -np.pi / 2, np.pi / 6, 1.0]
    expected = []
    for angle in angles:
        for d in distances:
            glcm = graycomatrix(probe, [d], [angle], levels=256)[:, :, 0, 0]
            first, second = np.argwhere(glcm)[0]
            expected.append(tuple(int(v) for v in np.subtract(divmod(int(second), 11), divmod(int(first), 11))))
    assert glcm_offsets(distances, angles) == expected
    # The paper's setting: at distance 2 the diagonals round to (1, +-1); angle pi/2 points down.
    assert glcm_offsets((1, 2), SKIMAGE_ANGLES) == [(0, 1), (0, 2), (1, 1), (1, 1), (1, 0), (2, 0), (1, -1), (1, -1)]
    assert glcm_offsets((1, 2), SKIMAGE_ANGLES, "chebyshev") == [
        (0, 1), (0, 2), (1, 1), (2, 2), (1, 0), (2, 0), (1, -1), (2, -2),
    ]  # fmt: skip


def test_re_default_matches_graycomatrix_reference():
    image = np.random.default_rng(2).integers(0, 256, (13, 16), dtype=np.uint8)
    np.testing.assert_allclose(renyi_entropy(image), reference_re(image), rtol=0, atol=TOLERANCE)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(image=images(max_side=10))
def test_re_matches_graycomatrix_reference_on_varied_images(image):
    np.testing.assert_allclose(renyi_entropy(image), reference_re(image), rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize(
    ("s", "alpha"),
    [(1, 7), (2, 2), (3, 3.0), (2, 0.5), (2, 2.5), (2, 20)],  # 0.5, 2.5, 20: the float path
)
def test_re_parameters_s_and_alpha(s, alpha):
    image = np.random.default_rng(3).choice(np.array([3, 50, 51, 250], np.uint8), (9, 12))
    np.testing.assert_allclose(
        renyi_entropy(image, s=s, alpha=alpha), reference_re(image, s=s, alpha=alpha), rtol=0, atol=TOLERANCE
    )


def test_re_other_distances_and_angles():
    image = np.random.default_rng(4).integers(0, 256, (8, 9), dtype=np.uint8)
    angles = (0, np.pi / 3, 5 * np.pi / 4)
    result = renyi_entropy(image, s=3, distances=(1, 3), angles=angles)
    np.testing.assert_allclose(
        result, reference_re(image, s=3, distances=(1, 3), angles=angles), rtol=0, atol=TOLERANCE
    )


def test_re_chebyshev_offsets_count_true_diagonals():
    image = np.random.default_rng(5).integers(0, 256, (10, 11), dtype=np.uint8)
    chebyshev = renyi_entropy(image, offsets="chebyshev")
    np.testing.assert_allclose(chebyshev, reference_re_chebyshev(image), rtol=0, atol=TOLERANCE)
    assert np.abs(chebyshev - renyi_entropy(image)).max() > 1e-3  # a different GLCM, not a no-op


def test_re_is_zero_for_a_constant_window_and_bounded_by_log_of_pairs():
    assert np.all(renyi_entropy(np.full((6, 6), 77, np.uint8)) == 0.0)
    image = np.random.default_rng(6).integers(0, 256, (12, 12), dtype=np.uint8)
    result = renyi_entropy(image)
    # 818 ordered pairs per 11x11 window: RE <= ln(distinct pairs) <= ln 818.
    assert np.all(result > 0) and np.all(result <= np.log(818) + 1e-12)


def test_re_is_higher_for_texture_than_for_a_flat_region():
    image = np.full((30, 30), 120, np.uint8)
    image[:, 15:] = np.random.default_rng(7).integers(0, 256, (30, 15), dtype=np.uint8)
    result = renyi_entropy(image)
    assert result[15, 2] == 0.0 and result[15, 27] > 5.0


# ---------------------------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("feature", [concentration_rate, renyi_entropy])
def test_features_reject_non_uint8_and_non_2d(feature):
    with pytest.raises(TypeError, match="uint8"):
        feature(np.zeros((8, 8), np.float32))
    with pytest.raises(TypeError, match="got dtype int64"):
        feature(np.zeros((8, 8), np.int64))
    with pytest.raises(ValueError, match="expected a 2D image.*3D"):
        feature(np.zeros((8, 8, 2), np.uint8))
    with pytest.raises(ValueError, match="non-empty"):
        feature(np.zeros((0, 8), np.uint8))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"s": -1}, "s >= 0"),
        ({"s": 1.5}, "integer window half-width"),
        ({"num": 0}, "num >= 1"),
        ({"m": -1}, "m >= 0"),
        ({"num": 20, "m": 6}, r"num \+ m <= N = \(2s \+ 1\)\^2 = 25"),
    ],
)
def test_cr_rejects_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        concentration_rate(np.zeros((5, 5), np.uint8), **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"s": 0}, "s >= 1"),
        ({"alpha": 1}, "alpha > 0 and != 1"),
        ({"alpha": 0}, "alpha > 0 and != 1"),
        ({"alpha": float("nan")}, "alpha > 0 and != 1"),
        ({"alpha": "7"}, "alpha > 0 and != 1"),
        ({"offsets": "euclid"}, "'skimage' or 'chebyshev'"),
        ({"distances": ()}, "non-empty 1D sequence of finite distances"),
        ({"distances": (-1,)}, "distances >= 0"),
        ({"angles": (np.inf,)}, "finite angles"),
        ({"s": 1, "distances": (5,)}, "no GLCM pair fits"),
        ({"distances": (1.5,), "offsets": "chebyshev"}, "integer distances"),
    ],
)
def test_re_rejects_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        renyi_entropy(np.zeros((5, 5), np.uint8), **kwargs)


# ---------------------------------------------------------------------------------------------
# Volumes
# ---------------------------------------------------------------------------------------------


def test_volume_is_per_axial_slice_and_threads_do_not_change_results():
    rng = np.random.default_rng(8)
    volume = rng.integers(0, 256, (12, 10, 5), dtype=np.uint8)
    volume[:, :, 2] = 42  # constant slice: filled without the kernels
    cr, re = radiomics_volume(volume, cr={"s": 1, "num": 5, "m": 2}, re={"alpha": 3}, threads=2)
    assert cr.dtype == re.dtype == np.float32 and cr.shape == re.shape == volume.shape
    for k in range(volume.shape[2]):
        image = volume[:, :, k]
        np.testing.assert_array_equal(cr[:, :, k], concentration_rate(image, s=1, num=5, m=2).astype(np.float32))
        np.testing.assert_array_equal(re[:, :, k], renyi_entropy(image, alpha=3).astype(np.float32))
    assert np.all(cr[:, :, 2] == 42 * 5) and np.all(re[:, :, 2] == 0)
    cr1, re1 = radiomics_volume(volume, cr={"s": 1, "num": 5, "m": 2}, re={"alpha": 3}, threads=1)
    np.testing.assert_array_equal(cr1, cr)
    np.testing.assert_array_equal(re1, re)


def test_volume_rejects_bad_input():
    volume = np.zeros((4, 4, 2), np.uint8)
    with pytest.raises(ValueError, match="3D volume"):
        radiomics_volume(volume[:, :, 0])
    with pytest.raises(TypeError, match="uint8"):
        radiomics_volume(volume.astype(np.float32))
    with pytest.raises(ValueError, match="threads >= 1"):
        radiomics_volume(volume, threads=0)
    with pytest.raises(ValueError, match=r"unknown renyi_entropy options \['sigma'\]"):
        radiomics_volume(volume, re={"sigma": 1})
    with pytest.raises(ValueError, match="unknown concentration_rate options"):
        radiomics_volume(volume, cr={"alpha": 1})
    with pytest.raises(ValueError, match="alpha"):
        radiomics_volume(volume, re={"alpha": 1})


# ---------------------------------------------------------------------------------------------
# A real FLAIR slice (patient26 of the Ljubljana MS database)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def flair_slice():
    path = DATA / "patient26" / "FLAIR.nii.gz"
    if not path.exists():
        pytest.skip(f"shared test data absent: {path}")
    import nibabel as nib

    flair = nib.load(path).get_fdata(dtype=np.float32)
    mask = np.asarray(nib.load(DATA / "patient26" / "lesion_mask.nii.gz").dataobj).astype(bool)
    nonzero = flair[flair > 0]
    low, high = np.percentile(nonzero, [0.5, 99.5])
    quantized = np.rint(255 * np.clip((flair - low) / (high - low), 0, 1)).astype(np.uint8)
    k = int(np.argmax(mask.sum(axis=(0, 1))))  # the slice with the most lesion voxels
    return quantized[:, :, k], mask[:, :, k]


def test_real_flair_slice_cr_exact_everywhere(flair_slice):
    image, _ = flair_slice
    np.testing.assert_array_equal(concentration_rate(image), reference_cr(image))


def test_real_flair_slice_re_exact_on_borders_lesions_and_a_sample(flair_slice):
    image, lesion = flair_slice
    h, w = image.shape
    border = {(i, j) for i in range(h) for j in (0, 1, w - 2, w - 1)}
    border |= {(i, j) for i in (0, 1, h - 2, h - 1) for j in range(w)}
    rng = np.random.default_rng(9)
    lesion_pixels = np.argwhere(lesion)
    lesion_sample = {tuple(p) for p in lesion_pixels[rng.choice(len(lesion_pixels), 150, replace=False)]}
    brain = np.argwhere(image > 0)
    brain_sample = {tuple(p) for p in brain[rng.choice(len(brain), 300, replace=False)]}
    pixels = sorted(border | lesion_sample | brain_sample)
    expected = reference_re(image, pixels=pixels)
    result = renyi_entropy(image)
    rows, cols = np.array(pixels).T
    np.testing.assert_allclose(result[rows, cols], expected[rows, cols], rtol=0, atol=TOLERANCE)


@pytest.mark.slow
def test_real_flair_slice_re_exact_everywhere(flair_slice):
    image, _ = flair_slice
    np.testing.assert_allclose(renyi_entropy(image), reference_re(image), rtol=0, atol=TOLERANCE)
