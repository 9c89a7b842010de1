"""Does bf16 (the fast mode) learn as well as fp32? Test accuracy over seeds, side by side.

    .venv/bin/python benchmarks/precision_accuracy.py [--models seed/model-2] [--seeds 0,1,2]
        [--epochs 12] [--threads 2] [--json out.json]

Each (model, seed, precision) is one ordinary `train_model` run of the seed study's recipe
(batch 128, validation on the test set, `epochs` epochs). Printed per model: test accuracy and
loss as mean ± sample std over the seeds for fp32 and bf16, their difference, and whether it is
within seed-to-seed noise: |mean difference| <= the larger of the two standard deviations, and
Welch's t-test p-value. Runs are sequential and slow (a few minutes each on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from scipy import stats

from cnnlab.data import load_dataset
from cnnlab.spec import load_model
from cnnlab.train import train_model

PRECISIONS = ("fp32", "bf16")


def run_all(args: argparse.Namespace) -> list[dict]:
    """One record per run, printed as it finishes (the whole set takes long)."""
    mnist = load_dataset("mnist", data_dir=args.data_dir)
    records = []
    for name in args.models:
        for seed in args.seeds:
            for precision in PRECISIONS:
                result = train_model(
                    load_model(name),
                    mnist,
                    seed=seed,
                    epochs=args.epochs,
                    validation="test",
                    precision=precision,
                    threads=args.threads,
                    progress="quiet",
                )
                record = {
                    "model": name,
                    "seed": seed,
                    "precision": precision,
                    "status": result.status,
                    "test_accuracy": result.test_accuracy,
                    "test_loss": result.test_loss,
                    "train_seconds": result.timings.train_seconds,
                }
                print(json.dumps(record), flush=True)
                records.append(record)
    return records


def compare(records: list[dict], model: str, metric: str) -> dict:
    """fp32 vs bf16 on one metric: means, spreads, difference, within-noise verdict, Welch p."""
    values = {
        p: [r[metric] for r in records if r["model"] == model and r["precision"] == p]
        for p in PRECISIONS
    }
    mean = {p: statistics.fmean(v) for p, v in values.items()}
    std = {p: statistics.stdev(v) if len(v) > 1 else 0.0 for p, v in values.items()}
    difference = mean["bf16"] - mean["fp32"]
    welch = stats.ttest_ind(values["bf16"], values["fp32"], equal_var=False)
    return {
        "model": model,
        "metric": metric,
        "fp32": f"{mean['fp32']:.4f} ± {std['fp32']:.4f}",
        "bf16": f"{mean['bf16']:.4f} ± {std['bf16']:.4f}",
        "difference": difference,
        "within_noise": abs(difference) <= max(std.values()),
        "welch_p": float(welch.pvalue),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="seed/model-2", type=lambda t: t.split(","))
    parser.add_argument("--seeds", default="0,1,2", type=lambda t: [int(s) for s in t.split(",")])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    parser.add_argument(
        "--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/mnist"
    )
    parser.add_argument("--json", type=Path, help="also write runs and comparisons here")
    args = parser.parse_args(argv)
    records = run_all(args)
    comparisons = [
        compare(records, model, metric)
        for model in args.models
        for metric in ("test_accuracy", "test_loss")
    ]
    for row in comparisons:
        print(
            f"{row['model']} {row['metric']}: fp32 {row['fp32']}, bf16 {row['bf16']}, "
            f"difference {row['difference']:+.4f}, within seed noise: {row['within_noise']}, "
            f"Welch p = {row['welch_p']:.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps({"runs": records, "comparisons": comparisons}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
