"""The words of the file format: layer type keys and aliases, options, optimizers, keys."""

from __future__ import annotations

import re

# Layer type keys, by spelling with case, "_" and "-" removed (Keras class names included).
TYPE_ALIASES = {
    "conv": "conv",
    "conv2d": "conv",
    "convolution2d": "conv",
    "maxpool": "maxpool",
    "maxpool2d": "maxpool",
    "maxpooling": "maxpool",
    "maxpooling2d": "maxpool",
    "avgpool": "avgpool",
    "avgpool2d": "avgpool",
    "averagepooling": "avgpool",
    "averagepooling2d": "avgpool",
    "dropout": "dropout",
    "batchnorm": "batchnorm",
    "batchnormalization": "batchnorm",
    "flatten": "flatten",
    "globalavgpool": "globalavgpool",
    "globalavgpool2d": "globalavgpool",
    "globalaveragepooling": "globalavgpool",
    "globalaveragepooling2d": "globalavgpool",
    "dense": "dense",
    "activation": "activation",
}
LAYER_TYPES = tuple(dict.fromkeys(TYPE_ALIASES.values()))
LAYER_OPTIONS = {
    "conv": ("kernel", "strides", "padding", "activation", "use_bias"),
    "maxpool": ("strides", "padding"),
    "avgpool": ("strides", "padding"),
    "dropout": (),
    "batchnorm": ("momentum", "epsilon"),
    "flatten": (),
    "globalavgpool": (),
    "dense": ("activation", "use_bias"),
    "activation": (),
}
OPTION_ALIASES = {"kernel_size": "kernel"}
# Layers that may be written as a bare string ("flatten"); pooling then uses Keras's (2, 2).
BARE_LAYERS = ("flatten", "globalavgpool", "batchnorm", "maxpool", "avgpool")
# The layers a bare string cannot name: what to write instead.
NEEDS_VALUE = {
    "conv": "{ conv = 32, kernel = 3 } (filters and kernel size)",
    "dense": '{ dense = 128 } or { dense = "classes" } (units)',
    "dropout": "{ dropout = 0.25 } (the rate)",
}
PADDINGS = ("valid", "same")

# Keras optimizer parameter names each optimizer accepts (keras/src/optimizers/*.py); the
# defaults live with the training code (cnnlab.optim), a spec records only overrides.
OPTIMIZERS = {
    "adadelta": ("learning_rate", "rho", "epsilon", "weight_decay"),
    "adam": ("learning_rate", "beta_1", "beta_2", "epsilon", "weight_decay"),
    "adamw": ("learning_rate", "beta_1", "beta_2", "epsilon", "weight_decay"),
    "sgd": ("learning_rate", "momentum", "nesterov", "weight_decay"),
    "rmsprop": ("learning_rate", "rho", "momentum", "epsilon", "weight_decay"),
}
PARAM_ORDER = tuple(dict.fromkeys(param for params in OPTIMIZERS.values() for param in params))
PARAM_ALIASES = {"lr": "learning_rate"}  # Keras 2's spelling

MODEL_KEYS = ("name", "description", "optimizer", "layers", "reported", "factors")
STUDY_KEYS = ("name", "description", "dataset", "seeds", "models", "training", "model", "grid")
TRAINING_KEYS = ("epochs", "batch_size", "validation", "precision")
PRECISIONS = ("fp32", "bf16")
TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")
