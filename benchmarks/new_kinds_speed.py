"""Training speed of the new layer kinds (residual blocks, separable convolutions) against
Keras-TF on the same machine, in the same run.

    .venv/bin/python benchmarks/new_kinds_speed.py [--keras-python /work/kerasenv/bin/python]
        [--models resnet/resnet20,separable/small] [--steps 30] [--warmup 8] [--repeats 2]

cnnlab's side is the real `train_model` loop (epoch_time.time_cnnlab); Keras's side builds the
same networks with Keras's own API (keras_layer_reference.resnet20 / separable_net, written
independently of cnnlab's presets) and times fit() batch by batch (keras_epoch.fit_stamps), with
the preset's optimiser. Both on MNIST, batch 128, fp32; the sides alternate model by model and the
best repeat is kept. Printed: seconds per step of each side and the ratio cnnlab / Keras-TF.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the sibling benchmarks

from cnnlab.data import load_dataset  # noqa: E402
from cnnlab.optim import resolve_optimizer  # noqa: E402
from cnnlab.spec import load_model  # noqa: E402
from epoch_time import DEFAULT_KERAS_PYTHON, steady_timing, time_cnnlab  # noqa: E402

BUILDERS = {"resnet/resnet20": "resnet20", "separable/small": "separable_net"}

# Run by the Keras interpreter: build the network with Keras's API, compile, time fit().
KERAS_SIDE = """
import json, sys
sys.path.insert(0, {here!r})
import keras
from keras_epoch import fit_stamps, load_mnist
import keras_layer_reference as ref
keras.utils.set_random_seed(0)
x, y = load_mnist(__import__("pathlib").Path({data_dir!r}))
net = ref.build(getattr(ref, {builder!r}), (28, 28, 1), with_head=False)
optimizer = keras.optimizers.get({{"class_name": {optimizer!r}, "config": {params!r}}})
net.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"])
stamps, wall = fit_stamps(net, x, y, batch_size=128, steps={steps})
print(json.dumps({{"stamps": stamps, "keras": keras.__version__}}))
"""


def time_keras(python: str, model: str, data_dir: Path, steps: int, warmup: int):
    optimizer = resolve_optimizer(load_model(model).optimizer)
    code = KERAS_SIDE.format(
        here=str(HERE),
        data_dir=str(data_dir),
        builder=BUILDERS[model],
        optimizer=optimizer.name,
        params=dict(optimizer.kwargs()),
        steps=steps + warmup,
    )
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [python, "-c", code], capture_output=True, text=True, env=env, timeout=1800, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"Keras side failed for {model}: {done.stderr.strip()[-800:]}")
    stamps = json.loads(done.stdout.strip().splitlines()[-1])["stamps"]
    return steady_timing(stamps, warmup)


def cpu_name() -> str:
    """The processor's model name, and whether it has AMX (bf16 matrix units)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine()
    name = next(
        (
            line.split(":", 1)[1].strip()
            for line in info.splitlines()
            if line.startswith("model name")
        ),
        platform.machine(),
    )
    return name + (" (AMX)" if " amx_bf16" in info else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keras-python", default=DEFAULT_KERAS_PYTHON)
    parser.add_argument("--models", default=",".join(BUILDERS))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--data-dir", type=Path, default=HERE.parents[1] / "shared/data/mnist")
    args = parser.parse_args()
    mnist = load_dataset("mnist", data_dir=args.data_dir)
    print(f"CPU: {cpu_name()}; batch 128, fp32, MNIST, {os.cpu_count()} cores")
    print(f"{'model':20} {'cnnlab s/step':>14} {'Keras-TF s/step':>16} {'ratio':>7}")
    for model in args.models.split(","):
        spec = load_model(model)
        ours, theirs = [], []
        for _ in range(args.repeats):
            ours.append(time_cnnlab(spec, mnist, args.steps, args.warmup, "fp32").fastest)
            theirs.append(
                time_keras(args.keras_python, model, args.data_dir, args.steps, args.warmup).fastest
            )
        a, b = min(ours), min(theirs)
        print(f"{model:20} {a:14.4f} {b:16.4f} {a / b:7.2f}")


if __name__ == "__main__":
    main()
