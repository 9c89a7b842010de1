"""The words of the file format besides the layer table: options, optimizers, keys."""

from __future__ import annotations

import re

# Layer type keys, aliases and options are the layer table's (cnnlab.spec.kinds).
OPTION_ALIASES = {"kernel_size": "kernel", "dilation": "dilation_rate"}
PADDINGS = ("valid", "same")

# Keras optimizer parameter names each optimizer accepts (keras/src/optimizers/*.py); the
# defaults live with the training code (cnnlab.optim), a spec records only overrides.
OPTIMIZERS = {
    "adadelta": ("learning_rate", "rho", "epsilon", "weight_decay"),
    "adam": ("learning_rate", "beta_1", "beta_2", "epsilon", "amsgrad", "weight_decay"),
    "adamw": ("learning_rate", "beta_1", "beta_2", "epsilon", "amsgrad", "weight_decay"),
    "sgd": ("learning_rate", "momentum", "nesterov", "weight_decay"),
    "rmsprop": ("learning_rate", "rho", "momentum", "epsilon", "weight_decay"),
}
# Keras 3's arguments of every optimiser (cnnlab.optim.EXTRAS): gradient clipping.
OPTIMIZERS = {
    name: (*params, "clipnorm", "clipvalue", "global_clipnorm")
    for name, params in OPTIMIZERS.items()
}
PARAM_ORDER = tuple(dict.fromkeys(param for params in OPTIMIZERS.values() for param in params))
PARAM_ALIASES = {"lr": "learning_rate"}  # Keras 2's spelling

MODEL_KEYS = ("name", "description", "optimizer", "layers", "reported", "factors")
STUDY_KEYS = (
    "name",
    "description",
    "dataset",
    "seeds",
    "prune",
    "models",
    "training",
    "model",
    "grid",
)
# `prune = { ... }` and `cnnlab run --prune`: the ways to stop runs early (cnnlab.halving), and
# the validation figures a rung may rank models by (Keras's History keys).
PRUNE_KEYS = ("method", "factor", "min_epochs", "metric")
PRUNE_METHODS = ("halving",)
PRUNE_METRICS = ("val_accuracy", "val_loss")
TRAINING_KEYS = (
    "epochs",
    "batch_size",
    "validation",
    "train_limit",
    "precision",
    "augment",
    "learning_rate_schedule",
    "early_stopping",
    "reduce_lr_on_plateau",
    "label_smoothing",
    "normalize",
)
PRECISIONS = ("fp32", "bf16")
# How pixels become inputs: "scale" is the notebook's x / 255; "per-channel" then standardises
# each channel with the training part's mean and std (cnnlab.data.normalize, cnnlab.inputs).
NORMALIZE_MODES = ("scale", "per-channel")
TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")
