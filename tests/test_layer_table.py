"""Every row of the layer table, against Keras 3: shapes, parameters, outputs, round trips.

The cases are written twice, independently: with Keras's API in benchmarks/keras_layer_reference.py
(which recorded Keras's names, shapes, parameter counts, weights and outputs in
tests/fixtures/keras/layer_table.*) and as cnnlab TOML here. Each case is a small model on a
9x9x3 input ending in Dense(4, softmax); Keras's random weights (non-zero biases, gammas, betas
and moving statistics) are loaded into cnnlab's modules and the outputs compared.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab import spec as s
from cnnlab.build import build_model
from cnnlab.errors import SpecError
from cnnlab.spec.kinds import KINDS
from cnnlab.stacked import CannotStack, StackedSeeds
from cnnlab.summary import summarize

FIXTURES = Path(__file__).parent / "fixtures" / "keras"
KERAS = json.loads((FIXTURES / "layer_table.json").read_text())
HEAD = '"flatten", { dense = "classes", activation = "softmax" }'
DENSE_HEAD = '{ dense = "classes", activation = "softmax" }'
BLOCK = """{ conv = 8, kernel = 3, padding = "same" }, "batchnorm", "relu",
           { conv = 8, kernel = 3, padding = "same" }, "batchnorm" """

CASES = {
    "conv": (
        '{ conv = 4, kernel = 3, strides = 2, padding = "same", activation = "relu" }, ' + HEAD
    ),
    "conv_dilated": (
        '{ conv = 4, kernel = [3, 2], dilation_rate = 2, activation = "elu" }, ' + HEAD
    ),
    "conv_even_same": f'{{ conv = 5, kernel = 4, padding = "same", use_bias = false }}, {HEAD}',
    "separableconv": (
        '{ separableconv = 6, kernel = 3, padding = "same", depth_multiplier = 2,'
        f' activation = "relu" }}, {HEAD}'
    ),
    "separableconv_strided": (
        '{ separableconv = 4, kernel = 3, strides = 2, padding = "same", use_bias = false }, '
        + HEAD
    ),
    "separableconv_dilated": f"{{ separableconv = 4, kernel = 3, dilation_rate = 2 }}, {HEAD}",
    "depthwiseconv": (
        f'{{ depthwiseconv = 3, strides = 2, padding = "same", depth_multiplier = 2 }}, {HEAD}'
    ),
    "depthwiseconv_plain": f'{{ depthwiseconv = [2, 3], activation = "gelu" }}, {HEAD}',
    "maxpool": f'{{ maxpool = 3, strides = 2, padding = "same" }}, {HEAD}',
    "avgpool": f'"avgpool", {HEAD}',
    "globalavgpool": f'"globalavgpool", {DENSE_HEAD}',
    "globalmaxpool": f'{{ conv = 4, kernel = 3 }}, "GlobalMaxPooling2D", {DENSE_HEAD}',
    "dropout": f"{{ dropout = 0.3 }}, {HEAD}",
    "batchnorm": f'"batchnorm", {HEAD}',
    "layernorm": f'{{ conv = 5, kernel = 3 }}, "layernorm", {HEAD}',
    "layernorm_vector": (
        f'"flatten", {{ dense = 7 }}, {{ layernorm = true, epsilon = 1e-5 }}, {DENSE_HEAD}'
    ),
    "flatten": HEAD,
    "dense": f'"flatten", {{ dense = 6, activation = "tanh" }}, {DENSE_HEAD}',
    "residual_identity": (
        '{ conv = 8, kernel = 3, padding = "same" }, '
        f'{{ residual = [{BLOCK}], activation = "relu" }}, {HEAD}'
    ),
    "residual_projection": (
        '{ residual = [{ conv = 8, kernel = 3, strides = 2, padding = "same" }, "batchnorm",'
        ' "relu", { conv = 8, kernel = 3, padding = "same" }, "batchnorm"],'
        ' shortcut = "projection",'
        f' activation = "relu" }}, {HEAD}'
    ),
}
for _name in (*s.ACTIVATIONS, *s.ACTIVATION_ALIASES):
    if _name == "softmax":
        CASES["activation_softmax"] = f'"flatten", {{ dense = 6 }}, "softmax", {DENSE_HEAD}'
    else:
        CASES[f"activation_{_name}"] = (
            f'{{ conv = 3, kernel = 3, activation = "{_name}" }}, "{_name}", {HEAD}'
        )


def case_spec(name: str) -> s.ModelSpec:
    return s.model_from_toml(f'name = "{name}"\nlayers = [{CASES[name]}]', source=name)


def case_model(name: str):
    record = KERAS["cases"][name]
    return build_model(case_spec(name), tuple(record["input_shape"]), record["classes"])


def kinds_in(layers) -> set[str]:
    found = set()
    for layer in layers:
        found.add(s.kind_of(layer).key)
        if isinstance(layer, s.Residual):
            found |= kinds_in(layer.layers)
    return found


def cases_of(key: str) -> list[str]:
    """The cases about one kind: named after its key (conv, conv_dilated, ...), holding it."""
    return [
        name
        for name in CASES
        if name.split("_")[0] == key and key in kinds_in(case_spec(name).layers)
    ]


def test_every_row_and_every_keras_case_has_a_cnnlab_case():
    assert sorted(CASES) == sorted(KERAS["cases"])
    assert [kind.key for kind in KINDS if not cases_of(kind.key)] == []


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.key)
def test_layer_kind_builds_trains_counts_round_trips_and_stacks(kind):
    """Per row: forward and backward, parameters = summary = Keras, TOML round trip, stacking."""
    for name in cases_of(kind.key):
        spec, record = case_spec(name), KERAS["cases"][name]
        model = case_model(name)
        images = torch.rand(2, 3, 9, 9)
        model(images).logsumexp(1).sum().backward()
        for param_name, parameter in model.named_parameters():
            assert parameter.grad is not None, (name, param_name)
        result = summarize(spec, tuple(record["input_shape"]), record["classes"])
        counted = sum(p.numel() for p in model.parameters())
        assert result.trainable_params == counted == record["trainable_params"], name
        assert result.total_params == record["total_params"], name
        assert s.model_from_toml(s.model_to_toml(spec)) == spec, name
        _stacks_like_separate_models(name, kind)


def _stacks_like_separate_models(name: str, kind) -> None:
    torch.manual_seed(0)
    models = [case_model(name) for _ in range(2)]
    generators = [torch.Generator().manual_seed(seed) for seed in range(2)]
    unstackable = any(s.kind_of(layer).stacking is None for layer in models[0].model_spec.layers)
    if unstackable or name == "activation_softmax":  # a softmax inside mixes the seeds' channels
        with pytest.raises(CannotStack, match=r"^layer \d+ \(\w+ '\w+'\): "):
            StackedSeeds(models, generators)
        return
    stack = StackedSeeds(models, generators).eval()
    for model in models:
        model.eval()
    images = torch.rand(3, 9, 9, 3)
    stacked = stack(images.repeat(1, 1, 1, 2).permute(0, 3, 1, 2))
    for seed, model in enumerate(models):
        torch.testing.assert_close(
            stacked[seed], model(images.permute(0, 3, 1, 2)), atol=1e-5, rtol=1e-4, msg=name
        )


@pytest.mark.parametrize("name", sorted(CASES))
def test_case_has_keras_names_shapes_and_parameter_counts(name):
    record = KERAS["cases"][name]
    result = summarize(case_spec(name), tuple(record["input_shape"]), record["classes"])
    ours = {
        row.name: (
            row.layer_type,
            list(row.output_shape),
            row.trainable_params,
            row.non_trainable_params,
        )
        for row in result.rows
        if row.layer_type != "Residual"
    }
    keras = {
        row["name"]: (
            row["class_name"],
            row["output_shape"],
            row["trainable_params"],
            row["non_trainable_params"],
        )
        for row in record["layers"]
    }
    assert ours == keras


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    return dict(np.load(FIXTURES / "layer_table.npz"))


@pytest.mark.parametrize("name", sorted(CASES))
def test_case_output_matches_keras_with_keras_weights(name, arrays):
    model = case_model(name).eval()
    load_weights(model, arrays, name)
    images = torch.from_numpy(arrays[f"{name}/input"]).permute(0, 3, 1, 2)
    with torch.no_grad():
        probabilities = torch.softmax(model(images), 1).numpy()
    np.testing.assert_allclose(probabilities, arrays[f"{name}/output"], atol=2e-5, rtol=1e-4)


def load_weights(model: torch.nn.Module, arrays: dict[str, np.ndarray], case: str) -> None:
    """Keras's weights by layer name into the modules of that name (blocks' included)."""
    modules = {path.rsplit(".", 1)[-1]: module for path, module in model.named_modules()}
    for key, value in arrays.items():
        if key.startswith(f"{case}/weights/"):
            layer, index = key.split("/")[2:]
            target = torch_tensors(modules[layer])[int(index)]
            with torch.no_grad():
                target.copy_(torch_layout(target, torch.from_numpy(value)))


def torch_tensors(module: torch.nn.Module) -> list[torch.Tensor]:
    """The module's tensors in the order of Keras's get_weights()."""
    if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
        return [module.weight, module.bias, module.running_mean, module.running_var]
    if hasattr(module, "depthwise_weight"):
        return [module.depthwise_weight, module.weight, module.bias]
    return [module.weight, module.bias]


def torch_layout(target: torch.Tensor, keras: torch.Tensor) -> torch.Tensor:
    if (
        keras.dim() == 4
        and target.shape[1] == 1
        and keras.shape[2] * keras.shape[3] == target.shape[0]
    ):
        # a depthwise kernel (kh, kw, C, m) -> (C*m, 1, kh, kw); channel c*m + j as TF has it
        return keras.reshape(*keras.shape[:2], -1).permute(2, 0, 1).unsqueeze(1)
    if keras.dim() == 4:
        return keras.permute(3, 2, 0, 1)
    return keras.T if keras.dim() == 2 else keras


def test_a_layer_type_without_a_row_is_an_error_naming_it():
    class Unknown:
        pass

    with pytest.raises(SpecError, match="layer type Unknown has no row in the layer table"):
        summarize(s.ModelSpec("m", (Unknown(),)), (9, 9, 3), 4)  # type: ignore[arg-type]


def test_every_rows_torch_builder_and_stacking_rule_exist():
    from cnnlab import layers

    rules = {"conv", "depthwise", "separable", "dense", "batchnorm", "layernorm", "dropout"}
    rules |= {"flatten", "global_average", "global_max", "as_is", "residual"}
    for kind in KINDS:
        assert kind.module in layers._BUILDERS, kind.key
        assert kind.stacking is None or kind.stacking in rules, kind.key
        assert kind.spec_type.__name__ == kind.keras_class


PRESETS = {"resnet20": "resnet/resnet20", "separable": "separable/small"}


@pytest.mark.parametrize("key", sorted(KERAS["presets"]))
def test_preset_has_keras_names_shapes_and_parameter_counts(key):
    """resnet/resnet20 and separable/small on 28x28x1 and 32x32x3, against Keras 3's count."""
    record = KERAS["presets"][key]
    spec = s.load_model(PRESETS[key.split("@")[0]])
    result = summarize(spec, tuple(record["input_shape"]), record["classes"])
    ours = [
        (row.name, row.layer_type, list(row.output_shape), row.params)
        for row in result.rows
        if row.layer_type != "Residual"
    ]
    keras = [
        (
            row["name"],
            row["class_name"],
            row["output_shape"],
            row["trainable_params"] + row["non_trainable_params"],
        )
        for row in record["layers"]
    ]
    assert sorted(ours) == sorted(keras)
    assert result.total_params == record["total_params"]
    model = build_model(spec, tuple(record["input_shape"]), record["classes"])
    assert sum(p.numel() for p in model.parameters()) == record["trainable_params"]


def test_resnet20_has_about_a_quarter_million_parameters_as_he_et_al_report():
    result = summarize(s.load_model("resnet/resnet20"), (32, 32, 3), 10)
    assert 0.26e6 < result.total_params < 0.28e6
    weighted = [row for row in result.rows if row.layer_type in ("Conv2D", "Dense")]
    assert len(weighted) - 2 == 20  # 19 3x3 convs, the classifier, and 2 projection convs


def test_conv_dilation_at_its_default_leaves_stored_run_keys_as_they_were():
    from cnnlab.store import canonical_json

    # The form a Conv2D had before dilation_rate existed, so stored studies still resume.
    assert canonical_json(s.Conv2D(8, (3, 3))) == (
        '{"activation":"linear","filters":8,"kernel_size":[3,3],"padding":"valid",'
        '"strides":[1,1],"type":"Conv2D","use_bias":true}'
    )
    assert '"dilation_rate":[2,2]' in canonical_json(s.Conv2D(8, (3, 3), dilation_rate=(2, 2)))
