"""Does bf16 (the fast mode) learn as well as fp32, and cnnlab as well as Keras? Test accuracy
over seeds, side by side.

    .venv/bin/python benchmarks/precision_accuracy.py [--models seed/model-2] [--seeds 0,1,2]
        [--epochs 12] [--threads 2] [--precisions fp32,bf16]
        [--keras-python /work/kerasenv/bin/python] [--json out.json]

Each (model, seed, side) is one ordinary `train_model` run of the seed study's recipe (batch
128, validation on the test set, `epochs` epochs) in fp32 or bf16; with `--keras-python`, also
Keras 3 + TensorFlow's `fit()` of the same model and recipe in its own interpreter (side
"keras-tf", fp32). Printed per model and side against cnnlab fp32: test accuracy and loss as
mean ± sample std over the seeds, their difference, and whether it is within seed-to-seed
noise: |mean difference| <= the larger of the two standard deviations, and Welch's t-test
p-value. Runs are sequential and slow (a few minutes each on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from scipy import stats

from cnnlab.data import load_dataset
from cnnlab.spec import load_model
from cnnlab.train import train_model
from epoch_time import keras_model_json  # beside this script: cnnlab specs as Keras arguments

BASELINE = "fp32"  # every other side is compared with cnnlab in fp32
KERAS = "keras-tf"
KERAS_SCRIPT = Path(__file__).with_name("keras_epoch.py")


def run_all(args: argparse.Namespace) -> list[dict]:
    """One record per run, printed as it finishes (the whole set takes long)."""
    mnist = load_dataset("mnist", data_dir=args.data_dir)
    records = []
    for name in args.models:
        for seed in args.seeds:
            for side in sides(args):
                if side == KERAS:
                    outcome = keras_run(args, name, seed)
                else:
                    outcome = cnnlab_run(args, mnist, name, seed, side)
                record = {"model": name, "seed": seed, "side": side, **outcome}
                print(json.dumps(record), flush=True)
                records.append(record)
    return records


def sides(args: argparse.Namespace) -> list[str]:
    return [*args.precisions, *([KERAS] if args.keras_python else [])]


def cnnlab_run(args: argparse.Namespace, mnist, name: str, seed: int, precision: str) -> dict:
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
    return {
        "status": result.status,
        "test_accuracy": result.test_accuracy,
        "test_loss": result.test_loss,
        "train_seconds": result.timings.train_seconds,
    }


def keras_run(args: argparse.Namespace, name: str, seed: int) -> dict:
    """Keras-TF's fit() of the same model and recipe, in the Keras environment's interpreter."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(keras_model_json(load_model(name)), handle)
    command = [args.keras_python, str(KERAS_SCRIPT), handle.name, "--data-dir", str(args.data_dir)]
    command += ["--epochs", str(args.epochs), "--seed", str(seed)]
    if args.threads:  # the same threads as cnnlab's side: TF's results depend on the count
        command += ["--threads", str(args.threads)]
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    finally:
        os.unlink(handle.name)
    if done.returncode != 0:
        last_line = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        raise SystemExit(f"Keras run of {name} seed {seed} failed: {last_line}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "status": "done",
        "test_accuracy": result["test_accuracy"],
        "test_loss": result["test_loss"],
        "train_seconds": result["fit_seconds"],
    }


def compare(records: list[dict], model: str, metric: str, side: str) -> dict:
    """`side` vs cnnlab fp32 on one metric: means, spreads, difference, within-noise verdict,
    Welch p."""
    values = {
        s: [r[metric] for r in records if r["model"] == model and r["side"] == s]
        for s in (BASELINE, side)
    }
    mean = {s: statistics.fmean(v) for s, v in values.items()}
    std = {s: statistics.stdev(v) if len(v) > 1 else 0.0 for s, v in values.items()}
    difference = mean[side] - mean[BASELINE]
    welch = stats.ttest_ind(values[side], values[BASELINE], equal_var=False)
    return {
        "model": model,
        "metric": metric,
        "side": side,
        BASELINE: f"{mean[BASELINE]:.4f} ± {std[BASELINE]:.4f}",
        "other": f"{mean[side]:.4f} ± {std[side]:.4f}",
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
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of both sides")
    parser.add_argument(
        "--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/mnist"
    )
    parser.add_argument(
        "--precisions", default="fp32,bf16", type=lambda t: t.split(","), help="cnnlab's sides"
    )
    parser.add_argument(
        "--keras-python", help="interpreter of an env with Keras 3 + TensorFlow: adds keras-tf"
    )
    parser.add_argument("--json", type=Path, help="also write runs and comparisons here")
    args = parser.parse_args(argv)
    if BASELINE not in args.precisions:
        parser.error(f"--precisions must include {BASELINE}: the other sides are compared with it")
    if args.keras_python and not Path(args.keras_python).is_file():
        parser.error(f"--keras-python {args.keras_python}: no such interpreter")
    records = run_all(args)
    comparisons = [
        compare(records, model, metric, side)
        for model in args.models
        for side in sides(args)
        if side != BASELINE
        for metric in ("test_accuracy", "test_loss")
    ]
    for row in comparisons:
        print(
            f"{row['model']} {row['metric']}: cnnlab fp32 {row[BASELINE]}, {row['side']} "
            f"{row['other']}, difference {row['difference']:+.4f}, within seed noise: "
            f"{row['within_noise']}, Welch p = {row['welch_p']:.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps({"runs": records, "comparisons": comparisons}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
