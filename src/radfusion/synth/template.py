"""The MNI152 2009 template the demo cohort is drawn from, and where lesions and FLAIR mimics lie in it."""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

TEMPLATE_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
LESION_LOCATIONS = ("periventricular", "deep_wm", "juxtacortical", "infratentorial")


def _mni_coordinates(shape: tuple[int, ...], affine: np.ndarray) -> list[np.ndarray]:
    """World (MNI mm) coordinate of every voxel, one broadcastable array per axis.

    Zero affine terms are skipped, so an axis-aligned affine gives sparse (1D-like) arrays.
    """
    grids = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij", sparse=True)
    coordinates = []
    for d in range(3):
        world = np.full((1, 1, 1), affine[d, 3], dtype=np.float32)
        for e in range(3):
            if affine[d, e] != 0:
                world = world + np.float32(affine[d, e]) * grids[e]
        coordinates.append(world)
    return coordinates


def _brain_box(brain: np.ndarray, affine: np.ndarray) -> tuple[tuple[slice, ...], np.ndarray]:
    """The brain's bounding box plus a 2-voxel background margin, and the affine of that box.

    The distance transforms of the template maps cost about half as much there, with the same
    values (the margin keeps the brain's edge inside).
    """
    corners = np.argwhere(brain)
    box = tuple(slice(max(int(a) - 2, 0), int(b) + 3) for a, b in zip(corners.min(0), corners.max(0)))
    box_affine = affine.copy()
    box_affine[:3, 3] = affine[:3, :3] @ [b.start for b in box] + affine[:3, 3]
    return box, box_affine


def lesion_site_map(
    gm: np.ndarray, wm: np.ndarray, csf: np.ndarray, affine: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Label the template's white matter by where MS lesions occur.

    Parameters
    ----------
    gm, wm, csf : ndarray of float32, shape (X, Y, Z)
        Tissue probabilities of the MNI152 template.
    affine : ndarray, shape (4, 4)
        Voxel-to-MNI affine (mm).

    Returns
    -------
    sites : ndarray of uint8
        0 where no lesion centre may lie, else ``1 + LESION_LOCATIONS.index(location)``.
    ventricle_distance : ndarray of float32
        Distance (mm) to the lateral ventricles (inf outside the brain's bounding box); its
        gradient orients periventricular lesions.

    Notes
    -----
    Candidate centres are confident white matter (``wm >= 0.6``).

    - Lateral ventricles: CSF (``csf > 0.5``) deeper than 8 mm inside the brain, midline
      (|x| < 3 mm, interhemispheric fissure and third ventricle) excluded, largest connected
      component in each hemisphere.
    - infratentorial: cerebellar white matter (y < -35, z < -22, |x| < 38 mm) and brainstem
      (|x| < 14, -45 < y < -10, z < -8 mm), MNI coordinates.
    - periventricular: supratentorial, within 3.5 mm of a lateral ventricle (the lesion then
      abuts the ventricular wall).
    - juxtacortical: supratentorial, within 2 mm of cortical grey matter (``gm > 0.5`` outside
      the deep grey nuclei box |x| < 32, -40 < y < 28, -12 < z < 22 mm) and over 10 mm from
      the ventricles.
    - deep_wm: supratentorial, over 5 mm from the ventricles and over 4 mm from the cortex.
    """
    gm, wm, csf = (np.asarray(a, dtype=np.float32) for a in (gm, wm, csf))
    if not gm.shape == wm.shape == csf.shape or gm.ndim != 3:
        raise ValueError(f"expected three 3D maps of one shape, got {gm.shape}, {wm.shape}, {csf.shape}")
    affine = np.asarray(affine, dtype=np.float64)
    sites = np.zeros(gm.shape, dtype=np.uint8)
    ventricle_distance = np.full(gm.shape, np.inf, dtype=np.float32)
    brain = (gm + wm + csf) >= 0.5
    if not brain.any():
        return sites, ventricle_distance
    # Work in the brain's bounding box (plus a background margin): the distance transforms
    # dominate the cost and the box is about half the template.
    box, box_affine = _brain_box(brain, affine)
    gm, wm, csf, brain = gm[box], wm[box], csf[box], brain[box]
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    x, y, z = _mni_coordinates(gm.shape, box_affine)

    ventricles = lateral_ventricles(csf, brain, x, spacing)
    to_ventricle = ndi.distance_transform_edt(~ventricles, sampling=spacing) if ventricles.any() else np.inf

    deep_grey_box = (np.abs(x) < 32) & (y > -40) & (y < 28) & (z > -12) & (z < 22)
    cortex = (gm > 0.5) & ~deep_grey_box
    to_cortex = ndi.distance_transform_edt(~cortex, sampling=spacing) if cortex.any() else np.inf

    white = wm >= 0.6
    infratentorial = ((y < -35) & (z < -22) & (np.abs(x) < 38)) | ((np.abs(x) < 14) & (y > -45) & (y < -10) & (z < -8))
    supra = white & ~infratentorial
    box_sites = sites[box]
    box_sites[supra & (to_ventricle > 5) & (to_cortex > 4)] = 2
    box_sites[supra & (to_cortex <= 2) & (to_ventricle > 10)] = 3
    box_sites[supra & (to_ventricle <= 3.5)] = 1
    box_sites[white & infratentorial] = 4
    ventricle_distance[box] = to_ventricle
    return sites, ventricle_distance


def lateral_ventricles(csf: np.ndarray, brain: np.ndarray, x: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """The lateral ventricles: CSF deeper than 8 mm in the brain, off the midline, largest per hemisphere."""
    depth = ndi.distance_transform_edt(brain, sampling=spacing)
    deep_csf = (csf > 0.5) & (depth > 8.0) & (np.abs(x) >= 3.0)
    ventricles = np.zeros(csf.shape, dtype=bool)
    for hemisphere in (x < 0, x > 0):
        labels, n = ndi.label(deep_csf & hemisphere)
        if n:
            sizes = np.bincount(labels.ravel())[1:]
            ventricles |= labels == 1 + int(np.argmax(sizes))
    return ventricles


MIMICS = ("periventricular", "bright_csf")


def mimic_maps(gm: np.ndarray, wm: np.ndarray, csf: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Where normal FLAIR is bright without a lesion, in template space.

    Parameters
    ----------
    gm, wm, csf : ndarray of float32, shape (X, Y, Z)
        Tissue probabilities of the MNI152 template.
    affine : ndarray, shape (4, 4)
        Voxel-to-MNI affine (mm).

    Returns
    -------
    mimics : ndarray of float32, shape (2, X, Y, Z)
        In [0, 1], one map per :data:`MIMICS`:

        - ``periventricular``: the ependymal band around the lateral ventricles, ``exp(-d / w)``
          in tissue at distance ``d`` mm from the ventricle, ``w`` = 1 mm along the bodies and
          up to 3.5 mm at the frontal (y > 10) and occipital (y < -35) horns, the caps; and the
          septum pellucidum (tissue within 2 mm of the midline and 4 mm of a lateral ventricle).
        - ``bright_csf``: CSF that is not nulled, the choroid plexus in the ventricular atria
          (-48 < y < -18, -5 < z < 25 mm) and the inflow of the third (|x| < 4, -32 < y < 5,
          -12 < z < 15 mm) and fourth (|x| < 10, -55 < y < -32, -48 < z < -20 mm) ventricles.

    Notes
    -----
    Periventricular caps and bands, the septum, choroid plexus and CSF flow artefacts are the
    classic FLAIR hyperintensities that are not MS lesions (Filippi et al. 2019; Bakshi et al.,
    "Fluid-attenuated inversion recovery magnetic resonance imaging detects cortical and
    juxtacortical multiple sclerosis lesions", Arch Neurol 58 (2001) 742-748). The subject's
    contrast step scales each map by its own random level.
    """
    gm, wm, csf = (np.asarray(a, dtype=np.float32) for a in (gm, wm, csf))
    affine = np.asarray(affine, dtype=np.float64)
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    maps = np.zeros((2,) + gm.shape, dtype=np.float32)
    brain = (gm + wm + csf) >= 0.5
    if not brain.any():
        return maps
    # The brain's bounding box (plus a margin) holds everything and halves the distance transform.
    box, box_affine = _brain_box(brain, affine)
    gm, wm, csf, brain = gm[box], wm[box], csf[box], brain[box]
    x, y, z = _mni_coordinates(gm.shape, box_affine)
    out = maps[(slice(None),) + box]
    ventricles = lateral_ventricles(csf, brain, x, spacing)
    if not ventricles.any():
        return maps
    distance = ndi.distance_transform_edt(~ventricles, sampling=spacing).astype(np.float32)
    tissue = np.clip(gm + wm, 0.0, 1.0)
    cap = np.clip((y - 10.0) / 10.0, 0, 1) + np.clip((-35.0 - y) / 10.0, 0, 1)
    width = 1.0 + 2.5 * np.minimum(cap, 1.0)
    band = np.exp(-distance / width) * (distance > 0) * (distance < 10) * tissue
    septum = (np.abs(x) < 2.0) & (distance <= 4.0) & (z > -5)
    out[0] = np.maximum(band, septum * tissue)
    atria = ventricles & (y > -48) & (y < -18) & (z > -5) & (z < 25)
    fluid = (csf > 0.5) & ~ventricles
    third = (np.abs(x) < 4) & (y > -32) & (y < 5) & (z > -12) & (z < 15)
    fourth = (np.abs(x) < 10) & (y > -55) & (y < -32) & (z > -48) & (z < -20)
    out[1] = atria | (fluid & (third | fourth))
    return maps


@dataclass(eq=False)
class Template:
    """The MNI152 2009 template: T1, tissue probabilities and lesion sites.

    Attributes
    ----------
    t1, gm, wm, csf : ndarray of float32, shape (197, 233, 189)
        T1 intensities scaled to [0, 1] and tissue probabilities in [0, 1]; 0 outside the brain.
    affine : ndarray, shape (4, 4)
        Voxel-to-MNI affine (1 mm).
    lesion_sites, ventricle_distance : ndarray
        From :func:`lesion_site_map`, computed on first use (only drawn lesions need them).
    mimics : ndarray of float32, shape (2, X, Y, Z)
        From :func:`mimic_maps` (computed on first use).
    """

    t1: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    affine: np.ndarray

    def __post_init__(self) -> None:
        shapes = {name: np.shape(getattr(self, name)) for name in ("t1", "gm", "wm", "csf")}
        if len(set(shapes.values())) != 1 or len(shapes["t1"]) != 3:
            raise ValueError(f"expected 3D t1, gm, wm, csf maps of one shape, got {shapes}")
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.affine.shape != (4, 4):
            raise ValueError(f"expected a 4x4 affine, got shape {self.affine.shape}")

    @functools.cached_property
    def _sites(self) -> tuple[np.ndarray, np.ndarray]:
        sites, distance = lesion_site_map(self.gm, self.wm, self.csf, self.affine)
        sites.flags.writeable = False
        distance.flags.writeable = False
        return sites, distance

    @property
    def lesion_sites(self) -> np.ndarray:
        return self._sites[0]

    @property
    def ventricle_distance(self) -> np.ndarray:
        return self._sites[1]

    @functools.cached_property
    def mimics(self) -> np.ndarray:
        maps = mimic_maps(self.gm, self.wm, self.csf, self.affine)
        maps.flags.writeable = False
        return maps

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.gm.shape)


def default_template_dir() -> Path:
    """Folder of the MNI152 2009 files inside the installed nilearn package (no import of nilearn)."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("nilearn is not installed; the demo cohort needs its bundled MNI152 template")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


@functools.lru_cache(maxsize=2)
def _load_template_cached(template_dir: Path) -> Template:
    missing = [name for name in TEMPLATE_FILES.values() if not (template_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"MNI152 template files missing from {template_dir}: {', '.join(missing)} "
            "(expected the files nilearn ships in nilearn/datasets/data)"
        )
    images = {key: nib.load(template_dir / name) for key, name in TEMPLATE_FILES.items()}
    affine = images["t1"].affine
    for key, image in images.items():
        if image.shape != images["t1"].shape or not np.allclose(image.affine, affine, atol=1e-4):
            raise ValueError(f"template file {template_dir / TEMPLATE_FILES[key]} is not on the T1 grid")
    maps = {}
    for key, image in images.items():
        data = np.asanyarray(image.dataobj).astype(np.float32)
        top = 255.0 if image.get_data_dtype() == np.uint8 else max(float(data.max()), 1e-12)
        maps[key] = np.clip(data / top, 0.0, 1.0)
    # The T1 template is skull-stripped: its nonzero voxels are the brain.
    brain = (maps["t1"] > 0).astype(np.float32)
    gm = maps["gm"] * brain
    wm = maps["wm"] * brain
    csf = np.clip(brain - gm - wm, 0.0, 1.0)
    template = Template(t1=maps["t1"], gm=gm, wm=wm, csf=csf, affine=affine)
    for name in ("t1", "gm", "wm", "csf"):
        getattr(template, name).flags.writeable = False  # shared by the cache
    template.affine.flags.writeable = False
    return template


def load_template(template_dir: str | Path | None = None) -> Template:
    """Load the MNI152 2009 template that nilearn ships inside its package.

    Parameters
    ----------
    template_dir : str or Path, optional
        Folder holding ``mni_icbm152_{t1,gm,wm}_tal_nlin_sym_09a_converted.nii.gz``; default
        the installed nilearn package's ``datasets/data`` folder.

    Returns
    -------
    template : Template
        Read-only arrays (cached per folder: loading twice costs nothing).

    Notes
    -----
    Nothing is downloaded and no nilearn fetcher is called. CSF is brain minus GM and WM,
    clipped to [0, 1], with brain = the nonzero voxels of the skull-stripped T1 template.

    References
    ----------
    Fonov V. et al., "Unbiased average age-appropriate atlases for pediatric studies",
    NeuroImage 54 (2011) 313-327 (ICBM 2009 nonlinear symmetric template).
    """
    folder = default_template_dir() if template_dir is None else Path(template_dir)
    return _load_template_cached(folder.resolve())


