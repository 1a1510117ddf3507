"""Seconds per slice of the no-gradient passes at several batch sizes: the measurement behind
:data:`radfusion.execution.CPU_INFERENCE_PIXELS`.

For each network and image size (the quick 64 px, 128 px, the full config's 224 px attention_unet
and 256 px resnext_unet), and each CPU path (the machine's precision policy through
:func:`radfusion.evaluate.predict_probabilities`; int8 where the CPU has VNNI, the model
quantized once beforehand), the same slices run at each batch size, interleaved, the best of
``--repeats`` rounds after a warm-up. Untrained weights with batch-norm statistics set on the
slices (the time does not depend on the weights). The policy's own choice is marked.

Run from the repository root::

    python benchmarks/inference_batch.py --out benchmarks/measurements/inference_batch.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "src"))

from predict_speed import cpu_description, int8_probabilities, model_with_statistics, write_report  # noqa: E402  (this folder is on sys.path)
from radfusion import execution  # noqa: E402
from radfusion.evaluate import predict_probabilities  # noqa: E402
from radfusion.quantize import int8_supported, quantize_int8  # noqa: E402

CASES = (("resnext_unet", 64), ("attention_unet", 64), ("attention_unet", 128), ("resnext_unet", 256),
         ("attention_unet", 224))
BATCHES = (1, 2, 4, 8, 16, 32)


def seconds_per_slice(run, images: torch.Tensor, batches, repeats: int) -> dict[int, float]:
    """Best seconds per slice of ``run(images, batch)`` for each batch size, interleaved."""
    run(images, batches[0])  # warm-up: kernel selection, allocations
    best = {batch: float("inf") for batch in batches}
    for _ in range(repeats):
        for batch in batches:
            started = time.perf_counter()
            run(images, batch)
            best[batch] = min(best[batch], (time.perf_counter() - started) / images.shape[0])
    return best


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--slices", type=int, default=8, help="slices per timed pass at 128 px and above (64 px: 32)")
    parser.add_argument("--cases", nargs="+", help="network:size pairs (default: all five)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cases = [(c.split(":")[0], int(c.split(":")[1])) for c in args.cases] if args.cases else CASES
    header = " | ".join(str(b) for b in BATCHES)
    lines = [
        "# Seconds per slice of the no-gradient passes, by batch size",
        "",
        f"CPU: {cpu_description()}; {args.threads} threads; torch {torch.__version__}; precision policy: "
        f"{execution.cpu_precision()}; best of {args.repeats}, interleaved; `python benchmarks/inference_batch.py`",
        "",
        "Milliseconds per slice; **bold**: the batch of `radfusion.execution.inference_batch_size` "
        f"({execution.CPU_INFERENCE_PIXELS} pixels per batch).",
        "",
        f"| network | px | path | {header} |",
        "|---|---|---|" + "---|" * len(BATCHES),
    ]
    for name, size in cases:
        torch.manual_seed(0)
        n = 32 if size <= 64 else args.slices
        images = torch.rand(n, 3, size, size)
        batches = [b for b in BATCHES if b <= n]
        model = model_with_statistics(name, 3, images[:8])
        paths = {execution.cpu_precision(): lambda x, b: predict_probabilities(model, x, batch_size=b)}
        if int8_supported():
            quantized = quantize_int8(model, images[:4])
            paths["int8"] = lambda x, b, quantized=quantized: int8_probabilities(quantized, x, b)
        chosen = execution.inference_batch_size(size, size)
        for path, run in paths.items():
            best = seconds_per_slice(run, images, batches, args.repeats)
            cells = [
                ("**{:.0f}**" if b == chosen else "{:.0f}").format(best[b] * 1000) if b in best else "-" for b in BATCHES
            ]
            lines.append(f"| {name} | {size} | {path} | " + " | ".join(cells) + " |")
            print(lines[-1], flush=True)
    write_report(lines, args.out)


if __name__ == "__main__":
    main()
