"""The example files in examples/ stay valid as the spec format grows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from cnnlab.build import build_model
from cnnlab.layers import Residual
from cnnlab.spec import load_model, load_study
from cnnlab.stacked import StackedSeeds
from cnnlab.summary import summarize

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
STUDIES = ["depth-kernel-grid.toml", "fashion-vs-seed.toml", "plain-vs-residual.toml"]


@pytest.mark.parametrize("name", STUDIES)
def test_example_study_loads_and_every_model_fits_28x28_images(name):
    study = load_study(EXAMPLES / name)
    assert study.models
    for model in study.models:
        assert summarize(model, (28, 28, 1), 10).total_params > 0


def test_the_grid_example_makes_every_depth_kernel_bn_combination():
    study = load_study(EXAMPLES / "depth-kernel-grid.toml")
    names = {model.name for model in study.models}
    assert len(names) == 12 and {"d3-k3", "d7-k5-bn"} <= names
    assert study.seeds == (0, 1, 2) and study.training.validation == 0.1


def test_the_grid_example_descriptions_count_every_conv_layer_the_models_have():
    # The report shows each description beside the model: "3 conv layers" on a model with a
    # conv stem and 3 conv blocks (4 convs) misread the depth axis.
    for model in load_study(EXAMPLES / "depth-kernel-grid.toml").models:
        rows = summarize(model, (28, 28, 1), 10).rows
        convs = sum(row.layer_type == "Conv2D" for row in rows)
        counted = re.match(r"(?:(\d+) \+ )?(\d+) conv layers", model.description)
        assert counted, model.description
        assert sum(int(n) for n in counted.groups() if n) == convs, (model.name, convs)


def test_the_residual_grid_pairs_each_plain_model_with_its_residual_twin():
    study = load_study(EXAMPLES / "plain-vs-residual.toml")
    models = {model.name: model for model in study.models}
    assert sorted(models) == ["identity-d2", "identity-d4", "none-d2", "none-d4"]
    plain = summarize(models["none-d4"], (28, 28, 1), 10)
    residual = summarize(models["identity-d4"], (28, 28, 1), 10)
    assert plain.total_params == residual.total_params  # the identity shortcut adds no weights
    assert [row.name for row in residual.rows if row.layer_type == "Add"] == [
        "add",
        "add_1",
        "add_2",
        "add_3",
    ]
    assert not [row for row in plain.rows if row.layer_type == "Add"]


def test_the_plain_twin_adds_nothing_so_it_computes_another_function_than_its_residual():
    study = load_study(EXAMPLES / "plain-vs-residual.toml")
    models = {model.name: model for model in study.models}
    plain = build_model(models["none-d2"], (28, 28, 1), 10).eval()
    residual = build_model(models["identity-d2"], (28, 28, 1), 10).eval()
    residual.load_state_dict(plain.state_dict())  # the same weights: only the Add differs
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert not torch.allclose(plain(x), residual(x))
        block = next(m for m in plain.modules() if isinstance(m, Residual))
        features = torch.rand(2, 16, 28, 28, generator=torch.Generator().manual_seed(1))
        body = features
        for name in block.body_names:
            body = block.get_submodule(name)(body)
        assert torch.equal(block(features), torch.relu(body))
        # --stack-seeds computes the same plain twin
        twins = [plain, build_model(models["none-d2"], (28, 28, 1), 10).eval()]
        generators = [torch.Generator().manual_seed(seed) for seed in range(2)]
        stacked = StackedSeeds(twins, generators).eval()(x.repeat(1, 2, 1, 1))
        for seed, twin in enumerate(twins):
            torch.testing.assert_close(stacked[seed], twin(x), atol=1e-5, rtol=1e-4)


def test_a_plain_blocks_runs_get_new_keys_and_every_other_blocks_keep_theirs():
    # Plain blocks were built as identity blocks before: their stored runs trained another
    # network, so their keys change and `cnnlab run` trains them again; no other key moves.
    from cnnlab.spec.types import Residual as ResidualSpec
    from cnnlab.store.identity import canonical_json

    plain, identity = ResidualSpec((), "none"), ResidualSpec((), "identity")
    assert '"adds_nothing":true' in canonical_json(plain)
    assert canonical_json(identity) == (
        '{"activation":"linear","layers":[],"shortcut":"identity","type":"Residual"}'
    )
    assert ResidualSpec((), "projection").adds_nothing is False


def test_the_single_model_example_loads():
    assert load_model(EXAMPLES / "small-cnn.toml").name == "small-cnn"
