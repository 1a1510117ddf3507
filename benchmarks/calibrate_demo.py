"""How much the synthetic demo cohort's FLAIR contrast and lesion burden resemble real MS scans.

Every measure comes from the same code (:mod:`radfusion.cohort`) for demo subjects and for real
patients, per subject:

- ``flair_auc``: AUC of the normalized FLAIR, lesion voxels vs non-lesion brain voxels;
- ``bright_share`` (%) and ``bright_count``: non-lesion brain voxels brighter than the lesions'
  median normalized FLAIR;
- ``lesion_wm_ratio``, ``gm_wm_ratio``: median FLAIR of lesions and of GM over that of WM
  (probability >= 0.9, outside lesions). Demo tissues: ``{tissues-dir}/{subject}/tissues.nii.gz``
  (4D, last axis csf, gm, wm; NaN without it); real patients (MNI space): the MNI152 template's;
- ``threshold_dice``: the FLAIR-threshold baseline, threshold fit on the other subjects' exported
  lesion slices: from the run's ``eval/baselines.tsv`` for demo subjects (its folds), leave one
  out among the real patients (:func:`radfusion.cohort.threshold_baseline`); ``own_threshold`` and
  ``own_dice``: the best single threshold on the subject's own slices;
- ``cr_auc``, ``re_auc``: AUC of the radiomic maps, lesion vs non-lesion brain voxels;
- ``lesions`` (3D components, 26-connectivity, >= 3 mm^3), ``total_volume_ml``,
  ``median_lesion_mm3``, ``small_share`` (% of lesions < 14 mm^3).

Real patients are taken from the results folder when the workflow's external stage ran on them
(``nifti/``, ``normalized/``, ``features/``); otherwise they are imported, normalized and their
radiomics computed as the workflow's rules do, from ``--real-data/{patient}/{FLAIR,lesion_mask}.nii.gz``,
and cached under ``--cache``. Run from the repository root::

    python benchmarks/calibrate_demo.py --results results --real patient07 patient26

writes ``benchmarks/measurements/demo_calibration_<name>.{tsv,md,png}`` (side-by-side summary and
figure) and ``demo_calibration_<name>_subjects.tsv`` (one row per subject).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "src"))  # this checkout's radfusion

from bench_training import read_config  # noqa: E402  (this folder is on sys.path when run as a script)
from radfusion import cohort  # noqa: E402
from radfusion.io import import_subject, load_volume, save_volume  # noqa: E402
from radfusion.normalize import brain_mask, normalize_intensity, quantize_8bit  # noqa: E402
from radfusion.predict import voxel_volume_ml  # noqa: E402
from radfusion.radiomics import radiomics_volume  # noqa: E402
from radfusion.slices import read_slices  # noqa: E402

MEASURES = (
    "voxel_mm", "flair_auc", "bright_share", "bright_count", "lesion_wm_ratio", "gm_wm_ratio",
    "threshold", "threshold_dice", "own_threshold", "own_dice", "cr_auc", "re_auc",
    "lesions", "total_volume_ml", "median_lesion_mm3", "small_share",
)
VENTRICLE_Z_MM = 18.0  # MNI z of the lateral ventricles' bodies (demo and real grids are MNI-like)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def demo_subjects(results: Path, real: list[str]) -> list[str]:
    """Subjects of ``results/eval/baselines.tsv``, else ``results/normalized/demo*``; minus the real ones."""
    table = results / "eval" / "baselines.tsv"
    if table.is_file():
        names = set(pd.read_csv(table, sep="\t")["subject"].astype(str))
    else:
        names = {p.name for p in (results / "normalized").glob("demo*") if p.is_dir()}
    return sorted(names - set(real))


def demo_tissues(path: Path, flair_shape, flair_affine) -> tuple[np.ndarray | None, np.ndarray | None]:
    """GM and WM of a demo subject's ``tissues.nii.gz`` (last axis csf, gm, wm) on the FLAIR's grid."""
    if not path.is_file():
        print(f"  no tissue maps at {path}: ratios NaN")
        return None, None
    image = nib.as_closest_canonical(nib.load(str(path)))
    if image.shape[:3] != tuple(flair_shape) or not np.allclose(image.affine, flair_affine, atol=1e-3):
        print(f"  tissue maps {path} are not on the FLAIR's grid ({image.shape}): ratios NaN")
        return None, None
    data = np.asarray(image.dataobj, dtype=np.float32)
    return data[..., 1], data[..., 2]


def real_tissues(cache: Path, subject: str, shape, affine) -> tuple[np.ndarray, np.ndarray]:
    """The MNI152 GM and WM resampled onto a real patient's grid (:func:`cohort.mni_tissue_maps`), cached."""
    path = cache / subject / "mni_gm_wm.npz"
    if path.is_file():
        with np.load(path) as data:
            if data["gm"].shape == tuple(shape) and np.allclose(data["affine"], affine):
                return data["gm"], data["wm"]
    gm, wm = cohort.mni_tissue_maps(shape, affine)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, gm=gm, wm=wm, affine=affine)
    return gm, wm


def prepare_real(subject: str, results: Path | None, real_data: Path, cache: Path, config: dict) -> dict[str, Path]:
    """Paths of a real patient's imported mask, normalized FLAIR, brain and CR/RE maps.

    From ``results`` when its external stage processed the patient, else made in ``cache`` as the
    import, normalize_flair and radiomics_maps rules make them (rerun only when the config changed).
    """
    names = {"mask": "nifti/{s}/mask.nii.gz", "flair": "normalized/{s}/flair.nii.gz",
             "brain": "normalized/{s}/brain.nii.gz", "cr": "features/{s}/cr.nii.gz", "re": "features/{s}/re.nii.gz"}
    if results is not None:
        paths = {key: results / name.format(s=subject) for key, name in names.items()}
        if all(p.is_file() for p in paths.values()):
            return paths
    folder = cache / subject
    paths = {key: folder / Path(name).name for key, name in names.items()}
    settings = {key: config[key] for key in ("import", "normalize", "radiomics")}
    stamp = folder / "settings.json"
    if all(p.is_file() for p in paths.values()) and stamp.is_file() and json.loads(stamp.read_text()) == settings:
        return paths
    print(f"  {subject}: import, normalization and radiomics from {real_data / subject} into {folder}")
    folder.mkdir(parents=True, exist_ok=True)
    imported = folder / "imported_flair.nii.gz"
    import_subject(real_data / subject / "FLAIR.nii.gz", real_data / subject / "lesion_mask.nii.gz", imported,
                   paths["mask"], subject=subject, affine_tolerance=config["import"]["affine_tolerance"],
                   mask_threshold=config["import"]["mask_threshold"])
    flair, affine = load_volume(imported)  # as workflow/scripts/normalize_flair.py
    normalized = normalize_intensity(flair, lower_percentile=config["normalize"]["lower_percentile"],
                                     upper_percentile=config["normalize"]["upper_percentile"])
    save_volume(normalized, affine, paths["flair"])
    save_volume(brain_mask(flair).astype(np.uint8), affine, paths["brain"])
    cr, re = radiomics_volume(quantize_8bit(normalized), cr=dict(config["radiomics"]["cr"]),
                              re=dict(config["radiomics"]["re"]), threads=2)  # as workflow/scripts/radiomics_maps.py
    save_volume(cr, affine, paths["cr"])
    save_volume(re, affine, paths["re"])
    stamp.write_text(json.dumps(settings))
    return paths


def figure_views(flair: np.ndarray, mask: np.ndarray, brain: np.ndarray, affine: np.ndarray) -> list[dict]:
    """Two axial slices (most lesion voxels; lateral ventricles level), cropped to the brain, for the figure."""
    k_lesion = int(np.argmax(np.count_nonzero(mask, axis=(0, 1))))
    k_ventricle = (np.linalg.inv(affine) @ [0.0, 0.0, VENTRICLE_Z_MM, 1.0])[2]
    k_ventricle = int(np.clip(np.rint(k_ventricle), 0, mask.shape[2] - 1))
    x, y = (np.flatnonzero(brain.any(axis=axes)) for axes in ((1, 2), (0, 2)))
    crop = (slice(x[0], x[-1] + 1), slice(y[0], y[-1] + 1)) if x.size else (slice(None), slice(None))
    spacing = np.sqrt((np.asarray(affine)[:3, :2] ** 2).sum(axis=0))
    views = []
    for label, k in (("most lesion", k_lesion), ("ventricles", k_ventricle)):
        image, outline = flair[crop + (k,)], mask[crop + (k,)]
        views.append({"label": f"{label}, z{k}", "flair": image.copy(), "mask": outline.copy(),
                      "extent": (0, image.shape[0] * spacing[0], 0, image.shape[1] * spacing[1])})
    return views


def measure(subject: str, group: str, paths: dict[str, Path], tissues, slice_file: Path | None, slice_options: dict):
    """One subject's measures (all but the baseline's), its lesion slices and its figure views.

    ``tissues(shape, affine)`` gives the GM and WM maps (or None, None) on the FLAIR's grid; the
    lesion slices are those of ``slice_file`` when the run exported it, else made as the export does.
    """
    flair, affine = load_volume(paths["flair"])
    mask = load_volume(paths["mask"], dtype=np.uint8)[0] > 0
    brain = load_volume(paths["brain"], dtype=np.uint8)[0] > 0
    gm, wm = tissues(flair.shape, affine)
    voxel_mm3 = voxel_volume_ml(affine) * 1000.0
    row = {"subject": subject, "group": group, "voxel_mm": voxel_mm3 ** (1 / 3)}
    contrast = cohort.lesion_contrast(flair, brain, mask, wm=wm, gm=gm)
    row.update(flair_auc=contrast["auc"], bright_share=contrast["bright_share"], bright_count=contrast["bright_count"],
               lesion_wm_ratio=contrast["lesion_wm_ratio"], gm_wm_ratio=contrast["gm_wm_ratio"])
    for name in ("cr", "re"):
        row[f"{name}_auc"] = (cohort.lesion_auc(load_volume(paths[name])[0], brain, mask)
                              if paths.get(name) is not None and paths[name].is_file() else float("nan"))
    row.update(cohort.lesion_burden(mask, voxel_mm3))
    if slice_file is not None and slice_file.is_file():  # the slices the run exported
        arrays = read_slices(slice_file, subject=subject)
        slices = {"flair": arrays["images"][:, 0], "masks": arrays["masks"], "slice_index": arrays["slice_index"]}
    else:
        slices = cohort.lesion_slices(flair, mask.astype(np.uint8), brain, **slice_options)
    return row, slices, figure_views(flair, mask, brain, affine)


def summarize(subjects: pd.DataFrame, real: list[str]) -> pd.DataFrame:
    """Per measure: demo median, minimum and maximum, and each real patient's value."""
    demo = subjects[subjects["group"] == "demo"].set_index("subject")
    real_rows = subjects[subjects["group"] == "real"].set_index("subject")
    rows = []
    for m in MEASURES:
        values = pd.to_numeric(demo[m], errors="coerce").dropna() if len(demo) else pd.Series(dtype=float)
        row = {"measure": m, "demo_n": int(values.size), "demo_median": values.median() if values.size else np.nan,
               "demo_min": values.min() if values.size else np.nan, "demo_max": values.max() if values.size else np.nan}
        row.update({p: real_rows.loc[p, m] for p in real if p in real_rows.index})
        rows.append(row)
    return pd.DataFrame(rows)


def markdown(summary: pd.DataFrame, real: list[str]) -> str:
    def fmt(v) -> str:
        return "–" if pd.isna(v) else f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"

    lines = ["| measure | demo median (range) | " + " | ".join(real) + " |", "|---|---|" + "---|" * len(real)]
    for _, r in summary.iterrows():
        demo = f"{fmt(r.demo_median)} ({fmt(r.demo_min)}–{fmt(r.demo_max)})" if r.demo_n else "–"
        lines.append(f"| {r.measure} | {demo} | " + " | ".join(fmt(r.get(p, np.nan)) for p in real) + " |")
    return "\n".join(lines) + "\n"


def draw_figure(views: dict[str, list[dict]], path: Path) -> None:
    """Columns: subjects; rows: the most-lesion slice and the ventricle-level slice, each bare and outlined.

    Every panel shows the same field of view in mm (the largest brain), centred on its brain.
    """
    names = list(views)
    width = max(view["extent"][1] for v in views.values() for view in v)
    height = max(view["extent"][3] for v in views.values() for view in v)
    fig, axes = plt.subplots(4, len(names), figsize=(2.4 * max(len(names), 2), 10), squeeze=False)
    for c, name in enumerate(names):
        for v, view in enumerate(views[name]):
            for r, outlined in ((2 * v, False), (2 * v + 1, True)):
                ax = axes[r, c]
                ax.set_facecolor("black")
                ax.imshow(view["flair"].T, cmap="gray", vmin=0.0, vmax=1.0, origin="lower", extent=view["extent"])
                if outlined and view["mask"].any():
                    ax.contour(view["mask"].T.astype(float), levels=[0.5], colors="red", linewidths=0.6,
                               origin="lower", extent=view["extent"])
                cx, cy = view["extent"][1] / 2, view["extent"][3] / 2
                ax.set_xlim(cx - width / 2, cx + width / 2)
                ax.set_ylim(cy - height / 2, cy + height / 2)
                ax.set_xticks([])
                ax.set_yticks([])
                if r % 2 == 0:
                    ax.set_title(f"{name}\n{view['label']}" if r == 0 else view["label"], fontsize=8)
    fig.suptitle("Normalized FLAIR, window 0..1, one mm scale;\nred: lesion outlines", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, help="a workflow results folder (demo, and real patients it holds)")
    parser.add_argument("--tissues-dir", type=Path, default=PROJECT / "resources" / "demo")
    parser.add_argument("--real", nargs="*", default=[], help="real patient names, e.g. patient07 patient26")
    parser.add_argument("--real-data", type=Path, default=PROJECT.parent / "shared" / "data" / "open_ms_data")
    parser.add_argument("--cache", type=Path, default=PROJECT / "resources" / "calibrate_demo")
    parser.add_argument(
        "--configfile", type=Path, nargs="*", default=[],
        help="overlays on config/config.yaml, merged key by key as Snakemake's --configfile (e.g. config/quick.yaml)",
    )
    parser.add_argument("--name", help="output name (default: demo, or real without --results)")
    parser.add_argument("--out", type=Path, default=PROJECT / "benchmarks" / "measurements")
    parser.add_argument("--figure", type=Path, help="PNG (default: OUT/demo_calibration_NAME.png)")
    parser.add_argument("--figure-demo", type=int, default=4, help="demo subjects shown in the figure")
    args = parser.parse_args(argv)
    if args.results is None and not args.real:
        parser.error("give --results and/or --real")
    start = time.perf_counter()
    config = read_config([PROJECT / "config" / "config.yaml", *args.configfile])
    slice_options = {"stride": config["slices"]["stride"], "min_lesion_voxels": config["slices"]["min_lesion_voxels"]}
    name = args.name or ("demo" if args.results is not None else "real")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs")
    rows, slices, views = [], {}, {}
    demo = demo_subjects(args.results, args.real) if args.results is not None else []
    for s in demo:
        print(f"{s} (demo)")
        r = args.results
        paths = {"flair": r / f"normalized/{s}/flair.nii.gz", "brain": r / f"normalized/{s}/brain.nii.gz",
                 "mask": r / f"nifti/{s}/mask.nii.gz", "cr": r / f"features/{s}/cr.nii.gz",
                 "re": r / f"features/{s}/re.nii.gz"}
        tissues = functools.partial(demo_tissues, args.tissues_dir / s / "tissues.nii.gz")
        row, slices[s], subject_views = measure(s, "demo", paths, tissues, r / f"slices/{s}.npz", slice_options)
        rows.append(row)
        if len([v for v in views if v in demo]) < args.figure_demo:
            views[s] = subject_views
    for s in args.real:
        print(f"{s} (real)")
        paths = prepare_real(s, args.results, args.real_data, args.cache, config)
        tissues = functools.partial(real_tissues, args.cache, s)
        row, slices[s], views[s] = measure(s, "real", paths, tissues, None, slice_options)
        rows.append(row)
    subjects = pd.DataFrame(rows)
    # FLAIR-threshold baseline: the run's table for demo subjects, leave one out among the real ones.
    groups = {"demo": demo, "real": list(args.real)}
    baseline_file = args.results / "eval" / "baselines.tsv" if args.results is not None else None
    for group, members in groups.items():
        if not members:
            continue
        table = cohort.threshold_baseline({s: slices[s] for s in members}).set_index("subject")
        source = f"leave one out on lesion slices of stride {slice_options['stride']}"
        if group == "demo" and baseline_file is not None and baseline_file.is_file():
            run = pd.read_csv(baseline_file, sep="\t")
            run = run[run["baseline"] == "flair_threshold"].astype({"subject": str}).set_index("subject")
            common = table.index.intersection(run.index)
            table.loc[common, ["threshold", "dice"]] = run.loc[common, ["threshold", "dice"]]
            source = f"{baseline_file} (its folds) for {len(common)} of {len(members)}; otherwise {source}"
        print(f"FLAIR-threshold baseline of the {group} subjects: {source}")
        for column, target in (("threshold", "threshold"), ("dice", "threshold_dice"),
                               ("own_threshold", "own_threshold"), ("own_dice", "own_dice")):
            subjects.loc[subjects["subject"].isin(members), target] = subjects["subject"].map(table[column])
    subjects = subjects[["subject", "group", *MEASURES]]
    summary = summarize(subjects, list(args.real))
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"demo_calibration_{name}"
    subjects.to_csv(f"{stem}_subjects.tsv", sep="\t", index=False, float_format="%.6g")
    summary.to_csv(f"{stem}.tsv", sep="\t", index=False, float_format="%.6g")
    text = markdown(summary, list(args.real))
    Path(f"{stem}.md").write_text(text)
    draw_figure(views, args.figure or Path(f"{stem}.png"))
    print(subjects.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print()
    print(text)
    figure = args.figure or Path(f"{stem}.png")
    print(f"wrote {stem}.tsv, .md, _subjects.tsv and {figure} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
