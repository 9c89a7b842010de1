"""Time Keras 3 training steps of one model; run by `epoch_time.py` in an env that has Keras.

Runs with the interpreter of a Keras environment (Keras 3 + TensorFlow, or + torch), never with
cnnlab's: the model arrives as JSON (cnnlab's layer specs, Keras class names and arguments, with
the optimiser's Keras parameters resolved), and the result leaves as one JSON line on stdout.

    python keras_epoch.py MODEL_JSON --data-dir DIR --steps 60 --warmup 15 [--extra-path DIR]
    python keras_epoch.py MODEL_JSON --data-dir DIR --epochs 3   # whole epochs, as users wait
    [--threads N]   # the backend's CPU threads, as cnnlab's side uses (default: the backend's)
    [--policy mixed_bfloat16]   # Keras's mixed precision (bf16 compute, float32 weights)
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np


def load_mnist(data_dir: Path, part: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """The IDX files as Keras's mnist.load_data() gives them, scaled as the notebook did;
    part is "train" or "t10k" (the test set)."""
    with gzip.open(data_dir / f"{part}-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28, 1)
    with gzip.open(data_dir / f"{part}-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return images.astype("float32") / 255, np.eye(10, dtype="float32")[labels]


def build_keras_model(model: dict, input_shape: tuple[int, int, int], classes: int):
    import keras

    layers = [keras.Input(input_shape)]
    for spec in model["layers"]:
        kind = spec.pop("type")
        if spec.get("units") == "classes":
            spec["units"] = classes
        layers.append(getattr(keras.layers, kind)(**spec))
    net = keras.Sequential(layers)
    optimizer_class = {
        "adadelta": keras.optimizers.Adadelta,
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
    }[model["optimizer"]["name"]]
    net.compile(
        loss="categorical_crossentropy",
        optimizer=optimizer_class(**model["optimizer"]["params"]),
        metrics=["accuracy"],
    )
    return net


def fit_stamps(net, x, y, *, batch_size: int, steps: int) -> tuple[list[float], float]:
    """fit() over `steps` batches, the clock read after each one; and fit()'s wall time."""
    import keras

    stamps: list[float] = []

    class StepClock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            stamps.append(time.perf_counter())

    n = min(len(x), steps * batch_size)
    start = time.perf_counter()
    net.fit(x[:n], y[:n], batch_size=batch_size, epochs=1, verbose=0, callbacks=[StepClock()])
    return stamps, time.perf_counter() - start


def fit_epoch_stamps(net, train, test, *, batch_size: int, epochs: int) -> dict:
    """fit() over whole epochs validated on the test set (the seed recipe): the clock at each
    epoch's end, when fit() returns (which can be long after the last epoch), and the longest
    wait for a batch after the first epoch (from the epoch's start or the batch before)."""
    import keras

    stamps: list[float] = []
    batch_clock: list[list[float]] = []

    class EpochClock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            batch_clock.append([time.perf_counter()])

        def on_train_batch_end(self, batch, logs=None):
            batch_clock[-1].append(time.perf_counter())

        def on_epoch_end(self, epoch, logs=None):
            stamps.append(time.perf_counter())

    started = time.perf_counter()
    history = net.fit(
        *train,
        batch_size=batch_size,
        epochs=epochs,
        validation_data=test,
        verbose=0,
        callbacks=[EpochClock()],
    ).history
    returned = time.perf_counter()
    gaps = [b - a for clock in batch_clock[1:] for a, b in zip(clock[:-1], clock[1:], strict=True)]
    return {
        "epoch_stamps": stamps,
        "returned": returned,
        "fit_seconds": returned - started,
        "longest_batch_wait": max(gaps, default=0.0),
        # The last epoch's validation is the test set under the final weights: the test result.
        "test_accuracy": history["val_accuracy"][-1],
        "test_loss": history["val_loss"][-1],
    }


def set_threads(backend: str, threads: int) -> None:
    """Before the first op: TensorFlow fixes its thread pools when it first runs one."""
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
    elif backend == "torch":
        import torch

        torch.set_num_threads(threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model_json", type=Path)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=0, help="whole epochs instead of steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--extra-path", help="a site-packages to borrow from (torch for Keras)")
    parser.add_argument("--threads", type=int, help="CPU threads of the backend's ops")
    parser.add_argument("--policy", help="Keras dtype policy, e.g. mixed_bfloat16")
    args = parser.parse_args()
    if args.extra_path:
        sys.path.append(args.extra_path)  # after this env's own packages, so they win
    import keras

    if args.threads:
        set_threads(keras.backend.backend(), args.threads)

    if args.policy:  # before the model is built: layers take the global policy when created
        keras.mixed_precision.set_global_policy(args.policy)
    model = json.loads(args.model_json.read_text())
    x, y = load_mnist(args.data_dir)
    keras.utils.set_random_seed(args.seed)
    net = build_keras_model(model, x.shape[1:], y.shape[1])
    result = {
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "policy": keras.mixed_precision.global_policy().name,
        "model": model["name"],
    }
    if args.epochs:
        test = load_mnist(args.data_dir, "t10k")
        timing = fit_epoch_stamps(net, (x, y), test, batch_size=args.batch_size, epochs=args.epochs)
        result.update(timing)
    else:
        steps = args.warmup + args.steps
        stamps, wall = fit_stamps(net, x, y, batch_size=args.batch_size, steps=steps)
        result.update(stamps=stamps, fit_wall_seconds=wall)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
