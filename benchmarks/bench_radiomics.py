"""Benchmark of the radiomic feature maps against the per-window reference (SPEC targets).

Times, in one run and on the same 256x256 8-bit slice, the project's CR + RE kernels on one
CPU core (median of repeats after a warm-up compile) and the straightforward reference: one
``np.sort`` (CR) and one ``skimage.feature.graycomatrix`` (RE) per window. The reference is
timed on a random subset of pixels and scaled to the whole slice. Then times a whole
182x218x182 volume with several threads.

Targets (SPEC "Performance targets"): CR + RE <= 30 ms per 256x256 slice on one core, >= 200x
faster than the reference, exact to 1e-9; the volume in < 5 s with 2 threads.

Run: ``python benchmarks/bench_radiomics.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
from skimage.feature import graycomatrix
from skimage.transform import resize

from radfusion.radiomics import concentration_rate, radiomics_volume, renyi_entropy

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "open_ms_data"
ANGLES = (0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)


def normalized_flair(path: Path) -> np.ndarray:
    """SPEC stage 2: clip to the 0.5-99.5th percentile of nonzero voxels, scale to [0, 1]."""
    import nibabel as nib

    flair = nib.load(path).get_fdata(dtype=np.float32)
    low, high = np.percentile(flair[flair > 0], [0.5, 99.5])
    return np.clip((flair - low) / (high - low), 0, 1)


def quantize(x: np.ndarray) -> np.ndarray:
    return np.rint(255 * x).astype(np.uint8)


def benchmark_inputs(seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """A 256x256 slice and a 182x218x182 volume, real when the shared data is present."""
    path = DATA / "patient26" / "FLAIR.nii.gz"
    if path.exists():
        normalized = normalized_flair(path)
        k = normalized.shape[2] // 2 + 10  # a supratentorial slice through the ventricles
        image = quantize(resize(normalized[:, :, k], (256, 256), order=1, anti_aliasing=False))
        source = f"real FLAIR: {path} axial slice {k} resized bilinearly 182x218 -> 256x256; volume = the whole scan"
        return image, quantize(normalized), source
    rng = np.random.default_rng(seed)
    # Synthetic: smooth brain-like blobs plus noise, background zero around an ellipse.
    from scipy.ndimage import gaussian_filter

    volume = gaussian_filter(rng.random((182, 218, 182)), 3)
    volume = (volume - volume.min()) / np.ptp(volume)
    volume = np.clip(volume + 0.05 * rng.standard_normal(volume.shape), 0, 1)
    x, y, z = np.ogrid[-1:1:182j, -1:1:218j, -1:1:182j]
    volume[x**2 + y**2 + z**2 > 0.9] = 0
    image = quantize(resize(volume[:, :, 91], (256, 256), order=1))
    return image, quantize(volume), "synthetic (shared data absent): smoothed noise in an ellipsoid"


def reference_pixels(image: np.ndarray, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """CR and RE at ``pixels`` the slow way, one window at a time; seconds per pixel for each."""
    cr_padded = np.pad(image, 2, mode="reflect")
    re_padded = np.pad(image, 5, mode="reflect")
    cr = np.empty(len(pixels))
    re = np.empty(len(pixels))
    start = time.perf_counter()
    for t, (i, j) in enumerate(pixels):
        window = np.sort(cr_padded[i : i + 5, j : j + 5].ravel().astype(np.int64))
        cr[t] = window[5:20].sum()
    cr_seconds = (time.perf_counter() - start) / len(pixels)
    start = time.perf_counter()
    for t, (i, j) in enumerate(pixels):
        counts = graycomatrix(re_padded[i : i + 11, j : j + 11], (1, 2), ANGLES, levels=256).sum(axis=(2, 3))
        p = counts / counts.sum()
        re[t] = np.log(np.sum(p**7)) / (1 - 7)
    re_seconds = (time.perf_counter() - start) / len(pixels)
    return cr, re, cr_seconds, re_seconds


def median_seconds(function, repeats: int, clock=time.perf_counter) -> float:
    times = []
    for _ in range(repeats):
        start = clock()
        function()
        times.append(clock() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21, help="timed repeats per kernel (median reported)")
    parser.add_argument(
        "--reference-pixels",
        type=int,
        default=4096,
        help="pixels the per-window reference is timed on (scaled to 65536); 0 or >= 65536 = whole slice",
    )
    parser.add_argument("--threads", type=int, default=2, help="threads for the volume")
    parser.add_argument("--volume-repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--pin-core",
        action="store_true",
        help="pin the process to one CPU while timing the slice (the kernels are single-threaded either way)",
    )
    parser.add_argument("--json", type=Path, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)

    image, volume, source = benchmark_inputs(args.seed)
    print(f"input: {source}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs")

    # The slice kernels run single-threaded in the calling thread: one core. Pinning is optional
    # because on a shared machine it can tie the process to the busier core.
    affinity = os.sched_getaffinity(0) if args.pin_core and hasattr(os, "sched_getaffinity") else None
    if affinity:
        os.sched_setaffinity(0, {min(affinity)})
    concentration_rate(image), renyi_entropy(image)  # warm-up: numba compiles or loads its cache
    cr_seconds = median_seconds(lambda: concentration_rate(image), args.repeats)
    re_seconds = median_seconds(lambda: renyi_entropy(image), args.repeats)
    both_seconds = median_seconds(lambda: (concentration_rate(image), renyi_entropy(image)), args.repeats)
    # CPU time of this thread: what the kernels cost when other processes share the core.
    both_cpu_seconds = median_seconds(
        lambda: (concentration_rate(image), renyi_entropy(image)), args.repeats, clock=time.thread_time
    )
    cr_map, re_map = concentration_rate(image), renyi_entropy(image)

    n_pixels = image.size
    if 0 < args.reference_pixels < n_pixels:
        rng = np.random.default_rng(args.seed)
        flat = rng.choice(n_pixels, args.reference_pixels, replace=False)
        pixels = np.column_stack(np.unravel_index(np.sort(flat), image.shape))
        scaled = f"timed on {len(pixels)} random pixels, scaled to all {n_pixels}"
    else:
        pixels = np.argwhere(np.ones(image.shape, bool))
        scaled = f"timed on all {n_pixels} pixels"
    ref_cr, ref_re, ref_cr_pixel, ref_re_pixel = reference_pixels(image, pixels)
    if affinity:
        os.sched_setaffinity(0, affinity)
    ref_seconds = (ref_cr_pixel + ref_re_pixel) * n_pixels
    rows, cols = pixels.T
    cr_error = float(np.abs(cr_map[rows, cols] - ref_cr).max())
    re_error = float(np.abs(re_map[rows, cols] - ref_re).max())
    speedup = ref_seconds / both_seconds

    radiomics_volume(volume[:, :, :4], threads=args.threads)  # warm the thread pool path
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    volume_seconds = median_seconds(lambda: radiomics_volume(volume, threads=args.threads), args.volume_repeats)

    print(f"\n256x256 slice, one core, median of {args.repeats} after warm-up:")
    print(f"  concentration rate (s=2, num=15, m=5)      {cr_seconds * 1e3:8.2f} ms")
    print(f"  Renyi entropy (s=5, alpha=7, d=1,2, 4 ang) {re_seconds * 1e3:8.2f} ms")
    print(f"  CR + RE                                    {both_seconds * 1e3:8.2f} ms   (target <= 30 ms)")
    print(f"  CR + RE, thread CPU time                   {both_cpu_seconds * 1e3:8.2f} ms   (load average {load})")
    print(f"reference, one window at a time (np.sort / skimage graycomatrix), {scaled}:")
    print(f"  CR {ref_cr_pixel * n_pixels:8.2f} s   RE {ref_re_pixel * n_pixels:8.2f} s   CR + RE {ref_seconds:8.2f} s")
    print(f"  speed-up {speedup:,.0f}x   (target >= 200x)")
    print(f"  max |difference| on the reference pixels: CR {cr_error:.3g}, RE {re_error:.3g}   (target <= 1e-9)")
    print(
        f"volume {'x'.join(map(str, volume.shape))}, {args.threads} threads, median of {args.volume_repeats}: "
        f"{volume_seconds:.2f} s   (target < 5 s)"
    )
    checks = {
        "slice_ms_le_30": both_seconds * 1e3 <= 30,
        "speedup_ge_200": speedup >= 200,
        "exact_1e-9": max(cr_error, re_error) <= 1e-9,
        "volume_lt_5s": volume_seconds < 5,
    }
    print("targets: " + ", ".join(f"{name} {'PASS' if ok else 'FAIL'}" for name, ok in checks.items()))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "input": source,
                    "cr_ms": cr_seconds * 1e3,
                    "re_ms": re_seconds * 1e3,
                    "cr_re_ms": both_seconds * 1e3,
                    "cr_re_cpu_ms": both_cpu_seconds * 1e3,
                    "reference_s": ref_seconds,
                    "reference_pixels": int(len(pixels)),
                    "speedup": speedup,
                    "max_abs_difference_cr": cr_error,
                    "max_abs_difference_re": re_error,
                    "volume_s": volume_seconds,
                    "threads": args.threads,
                    "checks": checks,
                },
                indent=2,
            )
        )
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
