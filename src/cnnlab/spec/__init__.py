"""Typed, frozen specs of models and studies: the only form in which code past the edge sees them.

Layer classes carry Keras's class names and Keras's defaults, so a Keras user reads them as-is and
`import-keras` maps one to one. Files (TOML) are parsed into these objects once, in
`load_model` / `load_study`; every error there is a `SpecError` naming file, line, layer and rule,
e.g. `mymodel.toml:7: layer 3 (conv): kernel must be >= 1, got 0`. Layers count from 1.

A model file (the full format is in docs/spec-format.md):

    name = "seed/reference"
    optimizer = "adadelta"            # or { name = "adam", learning_rate = 1e-3 }
    layers = [
      { conv = 32, kernel = 3, activation = "relu" },   # kernel 3 means (3, 3); [3, 5] allowed
      { maxpool = 2 },                                  # pool size; strides/padding optional
      { dropout = 0.25 },
      "flatten",                                        # no-argument layers as bare strings
      { dense = "classes", activation = "softmax" },
    ]
    [reported]                        # optional figures reported elsewhere
    test_accuracy = 0.9949

Type keys are the layer table's (`cnnlab.spec.kinds.KINDS`): conv, separableconv,
depthwiseconv, maxpool, avgpool, globalavgpool, globalmaxpool, dropout, batchnorm, layernorm,
flatten, dense, activation, residual (Keras class names such as Conv2D or MaxPooling2D are
accepted, in any case). A study names models
(presets or files), seeds, a dataset and training settings, and may generate models from grids
(`cnnlab.grid`).
"""

from __future__ import annotations

from cnnlab.spec.files import parse_toml
from cnnlab.spec.kinds import KINDS, LAYER_TYPES, LayerKind, kind_of
from cnnlab.spec.model import load_model, model_from_dict, model_from_toml
from cnnlab.spec.overview import ModelOverview, describe_model
from cnnlab.spec.study import load_study, parse_seeds, study_from_dict
from cnnlab.spec.toml_lines import toml_positions
from cnnlab.spec.types import (
    ACTIVATION_ALIASES,
    ACTIVATIONS,
    CLASSES,
    SHORTCUTS,
    Activation,
    AveragePooling2D,
    BatchNormalization,
    Conv2D,
    Dense,
    DepthwiseConv2D,
    Dropout,
    Flatten,
    GlobalAveragePooling2D,
    GlobalMaxPooling2D,
    Layer,
    LayerNormalization,
    MaxPooling2D,
    ModelSpec,
    OptimizerSpec,
    Padding,
    Pair,
    Pruning,
    Residual,
    SeedRange,
    SeparableConv2D,
    StudySpec,
    TrainingSpec,
)
from cnnlab.spec.vocabulary import (
    MODEL_KEYS,
    NORMALIZE_MODES,
    OPTIMIZERS,
    PADDINGS,
    PRECISIONS,
    STUDY_KEYS,
    TRAINING_KEYS,
)
from cnnlab.spec.writer import layer_to_toml, model_to_toml, study_to_toml

__all__ = [
    "ACTIVATIONS",
    "ACTIVATION_ALIASES",
    "DepthwiseConv2D",
    "GlobalMaxPooling2D",
    "KINDS",
    "LayerKind",
    "LayerNormalization",
    "Residual",
    "SHORTCUTS",
    "SeparableConv2D",
    "kind_of",
    "Activation",
    "AveragePooling2D",
    "BatchNormalization",
    "CLASSES",
    "Conv2D",
    "Dense",
    "Dropout",
    "Flatten",
    "GlobalAveragePooling2D",
    "LAYER_TYPES",
    "Layer",
    "MODEL_KEYS",
    "MaxPooling2D",
    "NORMALIZE_MODES",
    "ModelOverview",
    "ModelSpec",
    "OPTIMIZERS",
    "OptimizerSpec",
    "PADDINGS",
    "PRECISIONS",
    "Padding",
    "Pair",
    "STUDY_KEYS",
    "Pruning",
    "SeedRange",
    "StudySpec",
    "TRAINING_KEYS",
    "TrainingSpec",
    "describe_model",
    "layer_to_toml",
    "load_model",
    "load_study",
    "model_from_dict",
    "model_from_toml",
    "model_to_toml",
    "parse_seeds",
    "parse_toml",
    "study_from_dict",
    "study_to_toml",
    "toml_positions",
]
