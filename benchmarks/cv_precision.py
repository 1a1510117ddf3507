"""How much the cross-validated Dice moves when the evaluation runs in float32 instead of the policy's precision.

Re-evaluates a finished run's fold models (``results/models``) on their test folds' exported
slices twice, float32 and the machine's precision policy (:mod:`radfusion.execution`), and prints
each (model, input)'s mean test-subject Dice (Tables 1 and 3) both ways. Run from the repository
root after a workflow run::

    python benchmarks/cv_precision.py --results results
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "src"))

from radfusion import execution  # noqa: E402
from radfusion.evaluate import evaluate_cross_validation  # noqa: E402
from radfusion.folds import read_folds  # noqa: E402
from radfusion.protocol import INPUT_NAMES, MODEL_NAMES  # noqa: E402


def mean_dice(results: Path, model: str, input_name: str, folds: dict, precision: str) -> float:
    os.environ[execution.PRECISION_ENV] = precision
    execution.cpu_precision.cache_clear()
    models = {int(p.parent.name[4:]): p for p in (results / "models" / model / input_name).glob("fold*/model.pt")}
    slices = {s: results / "slices" / f"{s}.npz" for s in folds}
    subjects, _, _ = evaluate_cross_validation(models, slices, folds, device="cpu")
    return float(subjects["dice"].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    args = parser.parse_args()
    policy = execution.cpu_precision()
    folds = read_folds(args.results / "folds.tsv")
    print(f"| model, input | float32 | {policy} | difference |\n|---|---|---|---|")
    for model in MODEL_NAMES:
        for input_name in INPUT_NAMES:
            full = mean_dice(args.results, model, input_name, folds, "float32")
            fast = mean_dice(args.results, model, input_name, folds, policy)
            print(f"| {model}, {input_name} | {full:.4f} | {fast:.4f} | {fast - full:+.4f} |", flush=True)


if __name__ == "__main__":
    main()
