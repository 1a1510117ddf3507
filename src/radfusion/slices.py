"""Axial slice export and in-memory slice loading (SPEC stage 5).

A subject's exported slices live in one ``.npz`` (``results/slices/{subject}.npz``) at the
volume's original in-plane size; the training and evaluation code reads the files once into
memory and resizes there (bilinear images, nearest masks), so no NIfTI is decoded per epoch.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from radfusion.io import InputError, atomic_output
from radfusion.protocol import CROPS

CHANNELS = ("flair", "cr", "re")
BOX_MARGIN = 2  # pixels kept around the brain's in-plane bounding box (brain_box)


def subject_seed(seed: int, subject: str) -> int:
    """A per-subject seed from the workflow seed and the subject ID (stable across runs and machines)."""
    return int(seed) * 1_000_003 + zlib.crc32(str(subject).encode("utf-8"))


def select_slices(
    mask: np.ndarray,
    brain: np.ndarray,
    *,
    min_lesion_voxels: int = 1,
    brain_fraction: float = 0.0,
    stride: int = 1,
    seed: int = 0,
) -> np.ndarray:
    """Choose the axial slices to export from a lesion mask.

    Parameters
    ----------
    mask : ndarray, shape (X, Y, Z)
        Lesion mask (nonzero = lesion).
    brain : ndarray of bool, shape (X, Y, Z)
        Brain voxels (:func:`radfusion.normalize.brain_mask` of the imported FLAIR).
    min_lesion_voxels : int
        A slice is a lesion slice when it holds at least this many lesion voxels.
    brain_fraction : float in [0, 1]
        Lesion-free brain slices added, as a fraction of the number of lesion slices (0.2: one
        lesion-free slice per five lesion slices), drawn at random from those on the stride grid.
    stride : int
        Keep only slice indices ``k`` with ``k % stride == phase``, so that no two exported slices
        are adjacent when ``stride >= 2`` (the paper's slices are non-adjacent).
    seed : int
        Seed of the draw of lesion-free slices.

    Returns
    -------
    indices : ndarray of int
        Sorted axial indices ``k`` (slices ``volume[:, :, k]``).

    Notes
    -----
    The stride grid's phase (``0 .. stride - 1``) is the one that keeps the most lesion slices
    (ties: the smallest phase), so a subject whose lesions span fewer than ``stride`` slices
    still exports them. A lesion-free slice has no lesion voxel and at least one brain voxel;
    slices with ``1 .. min_lesion_voxels - 1`` lesion voxels are neither lesion slices nor
    lesion-free, and are never exported. ``min(round(brain_fraction * n_lesion_slices),
    n_lesion_free)`` lesion-free slices are drawn without replacement by
    ``numpy.random.default_rng(seed)``.
    """
    mask = np.asarray(mask)
    brain = np.asarray(brain, dtype=bool)
    if mask.ndim != 3 or brain.shape != mask.shape:
        raise ValueError(f"expected 3D mask and brain of one shape, got {mask.shape} and {brain.shape}")
    if min_lesion_voxels < 1:
        raise ValueError(f"expected min_lesion_voxels >= 1, got {min_lesion_voxels}")
    if not 0.0 <= brain_fraction <= 1.0:
        raise ValueError(f"expected brain_fraction in [0, 1], got {brain_fraction}")
    if stride < 1:
        raise ValueError(f"expected stride >= 1, got {stride}")
    lesion_voxels = np.count_nonzero(mask, axis=(0, 1))
    has_brain = brain.any(axis=(0, 1))
    is_lesion_slice = lesion_voxels >= min_lesion_voxels
    k = np.arange(mask.shape[2])
    phase = int(np.argmax([np.count_nonzero(is_lesion_slice & (k % stride == p)) for p in range(stride)]))
    on_grid = k % stride == phase
    lesion_slices = k[on_grid & is_lesion_slice]
    lesion_free = k[on_grid & (lesion_voxels == 0) & has_brain]
    n_extra = min(int(round(brain_fraction * lesion_slices.size)), lesion_free.size)
    extra = np.random.default_rng(seed).choice(lesion_free, size=n_extra, replace=False) if n_extra else []
    return np.sort(np.concatenate([lesion_slices, np.asarray(extra, dtype=int)])).astype(int)


def minmax_scale(image: np.ndarray) -> np.ndarray:
    """Scale one 2D slice to [0, 1] by its own minimum and maximum (a constant slice -> zeros).

    Parameters
    ----------
    image : ndarray, shape (H, W)
        Finite values.

    Returns
    -------
    scaled : ndarray of float32, shape (H, W)

    Notes
    -----
    ``x' = (x - min x) / (max x - min x)``, per slice, as in the paper ("intensity normalization
    was applied per slice using min-max scaling"), computed in float64.
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"expected a 2D slice, got shape {image.shape}")
    lo, hi = image.min(), image.max()
    if hi <= lo:
        return np.zeros(image.shape, dtype=np.float32)
    return ((image - lo) / (hi - lo)).astype(np.float32)


def brain_box(brain: np.ndarray, margin: int = BOX_MARGIN) -> np.ndarray:
    """In-plane bounding box ``(x0, x1, y0, y1)`` of a brain mask over all its axial slices.

    The box holds every brain voxel of every slice plus ``margin`` pixels (clipped to the
    volume), so one box serves all of a subject's slices; without brain voxels it is the whole
    slice. Half-open: ``slice[x0:x1, y0:y1]``.
    """
    brain = np.asarray(brain, dtype=bool)
    if brain.ndim != 3:
        raise ValueError(f"expected a 3D brain mask, got shape {brain.shape}")
    shape = brain.shape[:2]
    rows, cols = np.flatnonzero(brain.any(axis=(1, 2))), np.flatnonzero(brain.any(axis=(0, 2)))
    if rows.size == 0:
        return np.array([0, shape[0], 0, shape[1]], dtype=np.int64)
    return np.array(
        [
            max(rows[0] - margin, 0), min(rows[-1] + 1 + margin, shape[0]),
            max(cols[0] - margin, 0), min(cols[-1] + 1 + margin, shape[1]),
        ],
        dtype=np.int64,
    )


def crop_to_box(images, box):
    """The ``box`` (:func:`brain_box`) of the last two axes of an array or tensor (a view)."""
    x0, x1, y0, y1 = (int(v) for v in box)
    return images[..., x0:x1, y0:y1]


def network_box(crop: str, box):
    """The part of a slice a network trained with ``crop`` sees: ``box`` for "brain", ``None``
    (the whole slice) for "none" (:data:`radfusion.protocol.CROPS`)."""
    if crop not in CROPS:
        raise ValueError(f"expected crop in {CROPS}, got {crop!r}")
    return box if crop == "brain" else None


def export_slices(
    flair: np.ndarray,
    cr: np.ndarray,
    re: np.ndarray,
    mask: np.ndarray,
    brain: np.ndarray,
    *,
    min_lesion_voxels: int = 1,
    brain_fraction: float = 0.0,
    stride: int = 1,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Export a subject's selected axial slices as per-slice min-max scaled channels and masks.

    Parameters
    ----------
    flair : ndarray, shape (X, Y, Z)
        Normalized FLAIR in [0, 1] (background 0).
    cr, re : ndarray, shape (X, Y, Z)
        Concentration-rate and Rényi-entropy maps on the FLAIR's grid.
    mask : ndarray, shape (X, Y, Z)
        Lesion mask in {0, 1}.
    brain : ndarray of bool or {0, 1}, shape (X, Y, Z)
        Brain mask (:func:`radfusion.normalize.brain_mask` of the imported FLAIR; the normalized
        FLAIR is also 0 on dark brain voxels, so it is not the brain).
    min_lesion_voxels, brain_fraction, stride, seed
        Slice selection, see :func:`select_slices`.

    Returns
    -------
    arrays : dict
        ``images`` (n, 3, X, Y) float32, channels FLAIR, CR, RE each min-max scaled per slice
        (:func:`minmax_scale`); ``masks`` (n, X, Y) uint8; ``slice_index`` (n,) int64 axial
        indices; ``shape`` (3,) int64 the volume's shape; ``box`` (4,) int64 the brain's
        in-plane bounding box (:func:`brain_box`), for networks trained with ``crop: brain``.

    Notes
    -----
    SPEC stage 5. Slices keep the volume's original in-plane size; resizing to the network's
    input happens once at load time (:func:`load_slices`).
    """
    volumes = {"flair": flair, "cr": cr, "re": re, "mask": mask, "brain": brain}
    shape = np.shape(flair)
    if len(shape) != 3:
        raise ValueError(f"expected 3D volumes, got FLAIR of shape {shape}")
    for name, volume in volumes.items():
        if np.shape(volume) != shape:
            raise ValueError(f"expected {name} of shape {shape} (the FLAIR's), got {np.shape(volume)}")
        if not np.isfinite(volume).all():
            raise ValueError(f"{name} holds NaN or infinite values")
    mask = np.asarray(mask)
    if not np.isin(np.unique(mask), (0, 1)).all():
        raise ValueError(f"expected a binary mask in {{0, 1}}, got values {np.unique(mask)[:8]}")
    brain = np.asarray(brain)
    if brain.dtype != bool and not np.isin(np.unique(brain), (0, 1)).all():
        raise ValueError(f"expected a binary brain mask (bool or 0/1), got values {np.unique(brain)[:8]}")
    index = select_slices(
        mask,
        brain.astype(bool),
        min_lesion_voxels=min_lesion_voxels,
        brain_fraction=brain_fraction,
        stride=stride,
        seed=seed,
    )
    images = np.zeros((index.size, len(CHANNELS), shape[0], shape[1]), dtype=np.float32)
    for i, k in enumerate(index):
        for c, volume in enumerate((flair, cr, re)):
            images[i, c] = minmax_scale(np.asarray(volume)[:, :, k])
    masks = np.ascontiguousarray(np.moveaxis(mask[:, :, index], 2, 0)).astype(np.uint8)
    return {
        "images": images,
        "masks": masks,
        "slice_index": index.astype(np.int64),
        "shape": np.asarray(shape, dtype=np.int64),
        "box": brain_box(brain),
    }


def save_slices(arrays: dict[str, np.ndarray], path: str | os.PathLike) -> None:
    """Write exported slices (from :func:`export_slices`) as one uncompressed ``.npz``, atomically.

    Uncompressed, so that loading is a plain read (no decoding) when training starts.
    """
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)


def read_slices(path: str | os.PathLike, *, subject: str | None = None) -> dict[str, np.ndarray]:
    """Read one subject's ``.npz`` of exported slices, checking its keys and shapes.

    Returns
    -------
    arrays : dict
        ``images`` (n, 3, H0, W0) float32, ``masks`` (n, H0, W0) uint8, ``slice_index`` (n,),
        ``shape`` (3,), ``box`` (4,) (the whole slice in files exported before boxes were stored).
    """
    path = Path(path)
    where = f"subject '{subject}', file '{path}'" if subject else f"file '{path}'"
    try:
        with np.load(path) as data:
            arrays = {key: data[key] for key in ("images", "masks", "slice_index", "shape")}
            arrays["box"] = data["box"] if "box" in data else None
    except (OSError, KeyError, ValueError, zlib.error) as err:
        raise InputError(f"{where}: cannot be read as exported slices ({err})") from err
    n, channels = arrays["images"].shape[:2]
    if channels != len(CHANNELS) or arrays["masks"].shape != (n, *arrays["images"].shape[2:]):
        raise InputError(
            f"{where}: expected images (n, 3, H, W) and masks (n, H, W), "
            f"got {arrays['images'].shape} and {arrays['masks'].shape}"
        )
    height, width = arrays["images"].shape[2:]
    if arrays["box"] is None:
        arrays["box"] = np.array([0, height, 0, width], dtype=np.int64)
    x0, x1, y0, y1 = (int(v) for v in arrays["box"])
    if not (0 <= x0 < x1 <= height and 0 <= y0 < y1 <= width):
        raise InputError(f"{where}: brain box {arrays['box'].tolist()} outside the {height}x{width} slices")
    return arrays


def resize_images(images, size: int):
    """Resize a batch of images (N, C, H, W) to (N, C, size, size), bilinear (torch tensors).

    Notes
    -----
    ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)`` without
    anti-aliasing, the convention of OpenCV's ``INTER_LINEAR`` that the paper's 2D pipeline
    would use. The aspect ratio is not kept (the paper resizes slices to 256x256).
    """
    import torch.nn.functional as F

    if images.shape[-2:] == (size, size):
        return images.clone()
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


def resize_masks(masks, size: int | tuple[int, int]):
    """Resize a batch of masks (N, 1, H, W) with nearest neighbour (torch tensors).

    Notes
    -----
    ``mode="nearest-exact"`` samples the pixel whose centre is nearest (``floor((i + 0.5) *
    scale)``), so a resize there and back again is symmetric; PyTorch's legacy ``"nearest"``
    shifts by half a pixel.
    """
    import torch.nn.functional as F

    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(masks.shape[-2:]) == size:
        return masks.clone()
    return F.interpolate(masks, size=size, mode="nearest-exact")


def load_slices(
    paths: Sequence[str | os.PathLike],
    *,
    channels: Sequence[int] = (0, 1, 2),
    image_size: int = 256,
    subjects: Sequence[str] | None = None,
    crop: str = "none",
):
    """Load several subjects' exported slices into two in-memory tensors at the model's size.

    Parameters
    ----------
    paths : sequence of path-like
        ``.npz`` files from :func:`save_slices`.
    channels : sequence of int
        Channels to keep (:data:`radfusion.protocol.INPUT_CHANNELS`; ``(0,)``: FLAIR only).
    image_size : int
        Side of the square the slices are resized to.
    subjects : sequence of str, optional
        Subject IDs for error messages and the returned ``subject_of`` list.
    crop : {"none", "brain"}
        "brain": each subject's slices are cut to its brain box (:func:`brain_box`) before the
        resize, so the network's pixels go to the brain, not the background around it.

    Returns
    -------
    images : torch.Tensor, shape (N, len(channels), image_size, image_size), float32
        Bilinear resize (:func:`resize_images`).
    masks : torch.Tensor, shape (N, 1, image_size, image_size), float32 in {0, 1}
        Nearest-neighbour resize (:func:`resize_masks`).
    subject_of : list of int
        For each slice, the position of its file in ``paths``.

    Notes
    -----
    Each file is read once and resized once here, never per epoch (SPEC "Performance targets":
    training reads slices from memory).
    """
    import torch

    network_box(crop, None)  # an unknown crop is an error before any file is read
    subjects = list(subjects) if subjects is not None else [None] * len(paths)
    channels = list(channels)
    image_parts, mask_parts, subject_of = [], [], []
    for position, (path, subject) in enumerate(zip(paths, subjects)):
        arrays = read_slices(path, subject=subject)
        if arrays["images"].shape[0] == 0:
            continue
        images, masks = arrays["images"][:, channels], arrays["masks"]
        box = network_box(crop, arrays["box"])
        if box is not None:
            images, masks = crop_to_box(images, box), crop_to_box(masks, box)
        images = torch.from_numpy(np.ascontiguousarray(images))
        masks = torch.from_numpy(masks.astype(np.float32))[:, None]
        image_parts.append(resize_images(images, image_size))
        mask_parts.append(resize_masks(masks, image_size))
        subject_of.extend([position] * images.shape[0])
    if not image_parts:
        empty = torch.zeros((0, len(channels), image_size, image_size))
        return empty, torch.zeros((0, 1, image_size, image_size)), []
    return torch.cat(image_parts), torch.cat(mask_parts), subject_of
