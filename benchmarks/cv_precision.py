"""How much the cross-validated Dice moves when the evaluation runs in float32 instead of a faster arithmetic.

Re-evaluates a finished run's fold models (``results/models``) on their test folds' exported
slices in float32, in the machine's precision policy (:mod:`radfusion.execution`) and, where the
CPU has VNNI, in int8 (each fold model quantized with ranges from each test subject's own slices,
as ``radfusion predict --precision int8`` calibrates on the scan), and prints each (model,
input)'s mean test-subject Dice (Tables 1 and 3) each way. Run from the repository root after a
workflow run::

    python benchmarks/cv_precision.py --results results
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "src"))

from radfusion import execution  # noqa: E402
from radfusion.evaluate import evaluate_cross_validation  # noqa: E402
from radfusion.folds import read_folds  # noqa: E402
from radfusion.protocol import INPUT_NAMES, MODEL_NAMES  # noqa: E402
from radfusion.quantize import int8_supported  # noqa: E402


def mean_dice(results: Path, model: str, input_name: str, folds: dict, precision: str) -> float:
    models = {int(p.parent.name[4:]): p for p in (results / "models" / model / input_name).glob("fold*/model.pt")}
    slices = {s: results / "slices" / f"{s}.npz" for s in folds}
    subjects, _, _ = evaluate_cross_validation(models, slices, folds, device="cpu", precision=precision)
    return float(subjects["dice"].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    args = parser.parse_args()
    policy = execution.cpu_precision()
    fast = ([] if policy == "float32" else [policy]) + (["int8"] if int8_supported() else [])
    folds = read_folds(args.results / "folds.tsv")
    print("| model, input | float32 | " + " | ".join(f"{p} | difference" for p in fast) + " |")
    print("|---|---|" + "---|---|" * len(fast))
    for model in MODEL_NAMES:
        for input_name in INPUT_NAMES:
            full = mean_dice(args.results, model, input_name, folds, "float32")
            cells = []
            for precision in fast:
                dice = mean_dice(args.results, model, input_name, folds, precision)
                cells.append(f"{dice:.4f} | {dice - full:+.4f}")
            print(f"| {model}, {input_name} | {full:.4f} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
