"""Import a Keras model's JSON config (`model.to_json()`, or `config.json` in a `.keras` file).

The config is data, read with `json` only; each layer's config goes through the same rules as
`import-keras` applies to code (the arguments cnnlab builds, the rest refused unless at Keras's
default), so both importers accept and refuse the same things. Functional configs are graphs
(each layer's `inbound_nodes`), read by `cnnlab.keras_graph` into chains and residual blocks;
Keras 3's node format (`keras_history`) and Keras 2's (`[name, node, tensor, kwargs]`) are both
read. Random augmentation layers at the input (a nested `data_augmentation` Sequential
included) and a Rescaling(1/255) after them are left out with `import-keras`'s notes. Weights
are never read: a `.keras` file's `model.weights.h5` is left alone.
"""

from __future__ import annotations

import json
import math
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab import keras_augment, keras_graph, keras_import, optim, spec
from cnnlab.errors import SpecError
from cnnlab.spec.recipes import KerasObject

MAX_CONFIG_BYTES = 20_000_000  # a ResNet-152's config is ~1 MB; far above any real one

# Keras's initializer classes that are the defaults cnnlab builds, by the name a call uses.
_INITIALIZERS = {"GlorotUniform": "glorot_uniform", "Zeros": "zeros", "Ones": "ones"}
# Config keys that are bookkeeping, not part of what the layer computes.
_DROPPED = ("name", "build_config", "batch_shape", "sparse", "ragged", "optional")


def import_keras_config(path: str | Path, *, name: str | None = None) -> keras_import.ImportedModel:
    """The model of a `.json` config file or a `.keras` archive, as an `ImportedModel`."""
    path = Path(path)
    config = _read(path)
    where = str(path)
    model = config.get("config") if isinstance(config, dict) else None
    kind = config.get("class_name") if isinstance(config, dict) else None
    if kind not in ("Sequential", "Functional", "Model") or not isinstance(model, dict):
        raise SpecError(
            f"{where}: not a Keras model config: expected class_name Sequential or Functional "
            f"with a config, got {keras_import._show(kind)}"
        )
    read = _sequential if kind == "Sequential" else _functional
    chain = read(model, where)
    layers = chain.layers
    model_name = name or _model_name(model, path)
    compiled = config.get("compile_config")
    optimizer = _optimizer(compiled, layers, where) if compiled else spec.OptimizerSpec()
    imported = spec.ModelSpec(
        name=model_name,
        layers=layers,
        optimizer=optimizer,
        description=f"Imported from the Keras config {path.name}.",
    )
    notes = [keras_import.SCALING_NOTE] if chain.scaled else []
    if chain.augmentation:
        notes.append(keras_augment.note(chain.augmentation))
    if not compiled:
        notes.insert(
            0,
            "the config has no compile_config (the model was saved uncompiled), so the "
            f"optimizer is cnnlab's default, {imported.optimizer.name}",
        )
    return keras_import.ImportedModel(
        spec=imported,
        source=where,
        line=1,
        index=1,
        model_lines=(1,),
        notes=tuple(notes),
        kind=f"{kind} config",
    )


def _optimizer(compiled: Any, layers: tuple[spec.Layer, ...], where: str) -> spec.OptimizerSpec:
    """compile_config's optimizer (Keras 3 writes it when the model was compiled), through
    `import-keras`'s rules for the same compile call; values at cnnlab's defaults left out."""
    place = f"{where}: compile_config"
    if not isinstance(compiled, dict):
        raise SpecError(f"{place}: not a table: {keras_import._show(compiled)}")
    arguments = []
    if compiled.get("optimizer") is not None:
        arguments.append(f"optimizer={_call(compiled['optimizer'], _OPTIMIZER_BOOKKEEPING)}")
    if compiled.get("loss") is not None:
        arguments.append(f"loss={_call(compiled['loss'], ('name', 'dtype'))}")
    try:
        found = keras_import.optimizer_from_code(f"compile({', '.join(arguments)})", layers)
    except SpecError as error:
        reason = re.sub(r"^<string>:\d+: ", "", str(error))
        raise SpecError(f"{place}: {reason}") from None
    defaults = optim.KERAS_DEFAULTS.get(found.name, {})
    params = tuple((k, v) for k, v in found.params if defaults.get(k, optim.EXTRAS.get(k)) != v)
    return spec.OptimizerSpec(found.name, params)


# Optimizer config keys that change nothing while use_ema is False (refused otherwise) and
# Keras 3's defaults of None (no loss scaling, no gradient accumulation).
_OPTIMIZER_BOOKKEEPING = ("name", "ema_momentum", "ema_overwrite_frequency")
_NONE_KEYS = ("loss_scale_factor", "gradient_accumulation_steps")


def _call(value: Any, dropped: tuple[str, ...]) -> str:
    """A serialized optimizer or loss as the call that made it: Adam(learning_rate=0.001, ...).

    Keras stores hyperparameters as float32 variables, so 0.001 comes back 0.0010000000474974513;
    each float is written as the shortest text that float32 reads back the same.
    """
    if not (isinstance(value, dict) and isinstance(value.get("class_name"), str)):
        return _python(value)
    config = value.get("config") or {}
    if not isinstance(config, dict):
        return _python(value)
    arguments = ", ".join(
        f"{key}={_python(_float32(item))}"
        for key, item in config.items()
        if key not in dropped and not (key in _NONE_KEYS and item is None)
    )
    return f"{value['class_name']}({arguments})"


def _float32(value: Any) -> Any:
    if isinstance(value, float) and math.isfinite(value) and value == float(np.float32(value)):
        return float(str(np.float32(value)))
    return value


def _read(path: Path) -> Any:
    try:
        if path.suffix == ".keras" or zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                text = _bounded(archive.open("config.json").read(MAX_CONFIG_BYTES + 1), path)
        else:
            with path.open("rb") as stream:
                text = _bounded(stream.read(MAX_CONFIG_BYTES + 1), path)
        return json.loads(text)
    except KeyError:
        raise SpecError(
            f"{path}: a .keras file without config.json; save it with model.save"
        ) from None
    except (OSError, zipfile.BadZipFile) as error:
        raise SpecError(
            f"{path}: cannot read it: {getattr(error, 'strerror', None) or error}"
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SpecError(f"{path}: not a JSON model config: {error}") from None


def _bounded(data: bytes, path: Path) -> str:
    if len(data) > MAX_CONFIG_BYTES:
        raise SpecError(f"{path}: a config larger than {MAX_CONFIG_BYTES:,} bytes")
    return data.decode("utf-8")


def _model_name(model: dict, path: Path) -> str:
    name = model.get("name")
    if isinstance(name, str) and name.strip() and name.isprintable():
        return name[:200]
    return path.stem


def _layer_entries(model: dict, where: str) -> list[dict]:
    entries = model.get("layers")
    if not isinstance(entries, list) or not entries:
        raise SpecError(f"{where}: the model config has no layers list")
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
            raise SpecError(
                f"{where}: a layer entry without a class_name: {keras_import._show(entry)}"
            )
    return entries


def _sequential(model: dict, where: str) -> keras_graph.Chain:
    """The layers, with the random layers at the input, then a Rescaling(1/255), taken out."""
    entries = _flattened(_layer_entries(model, where), where)
    shape = _input_shape(entries)
    steps = [entry for entry in entries if entry["class_name"] != "InputLayer"]
    count = 0
    while count < len(steps) and keras_augment.is_random_layer(steps[count]["class_name"]):
        count += 1
    augmentation = tuple(_augmentation(entry, where, shape) for entry in steps[:count])
    scaled = count < len(steps) and _input_scaling(steps[count])
    layers = [_layer(entry, where) for entry in steps[count + scaled :]]
    found = tuple(layer for layer in layers if layer is not None)
    if not found:
        raise SpecError(f"{where}: the Sequential config has no layers")
    return keras_graph.Chain(found, augmentation, scaled)


def _flattened(entries: list[dict], where: str, depth: int = 0) -> list[dict]:
    """The layer entries with each nested Sequential's own entries in its place."""
    flat = []
    for entry in entries:
        if entry["class_name"] != "Sequential":
            flat.append(entry)
        elif depth >= _MAX_NESTED:
            raise SpecError(f"{where}: Sequential models nested more than {_MAX_NESTED} deep")
        else:
            inner = entry.get("config") if isinstance(entry.get("config"), dict) else {}
            flat += _flattened(_layer_entries(inner, where), where, depth + 1)
    return flat


_MAX_NESTED = 8  # a data_augmentation Sequential is 1


def _input_shape(entries: list[dict]) -> tuple[object, ...] | None:
    """The input's shape (batch size left out) that the first entry giving one writes."""
    for entry in entries:
        config = entry.get("config") if isinstance(entry.get("config"), dict) else {}
        for key in ("batch_shape", "batch_input_shape"):  # Keras 3, Keras 2
            if isinstance(config.get(key), list) and config[key]:
                return tuple(config[key][1:])
    return None


def _augmentation(entry: dict, where: str, shape: tuple[object, ...] | None) -> KerasObject:
    """A random layer's config as an `augment` item, by `import-keras`'s rules."""
    kind, config = entry["class_name"], entry.get("config") or {}
    name = config.get("name") if isinstance(config, dict) else None
    if not isinstance(config, dict):
        raise SpecError(f"{where}: layer {name!r}: its config is not a table")
    arguments = {key: value for key, value in config.items() if key not in _DROPPED}
    try:
        return keras_augment.augmentation(kind, arguments, shape)
    except SpecError as error:
        raise SpecError(f"{where}: layer {name!r} ({kind}): {error}") from None


def _input_scaling(entry: dict) -> bool:
    """A Rescaling(1/255) layer entry: cnnlab's own input scaling (`keras_import`)."""
    config = entry.get("config") or {}
    return (
        entry["class_name"] == keras_import.INPUT_SCALING
        and isinstance(config, dict)
        and keras_import.is_input_scaling(config.get("scale"), config.get("offset", 0.0))
    )


def _layer(entry: dict, where: str) -> spec.Layer | None:
    """One layer config through `import-keras`'s rules for the same Keras class."""
    kind = entry["class_name"]
    config = entry.get("config") or {}
    name = config.get("name") or entry.get("name") or "?"
    if not isinstance(config, dict):
        raise SpecError(f"{where}: layer {name!r}: its config is not a table")
    arguments = ", ".join(
        f"{key}={_python(value)}" for key, value in config.items() if key not in _DROPPED
    )
    text = f"{kind}({arguments})"
    try:
        return keras_import.layer_from_code(text, filename=where)
    except SpecError as error:
        reason = re.sub(rf"^{re.escape(where)}:\d+: ", "", str(error))
        raise SpecError(f"{where}: layer {name!r} ({kind}): {reason}") from None


def _python(value: Any) -> str:
    """A config value as the Python literal a call would have written."""
    if isinstance(value, dict) and "class_name" in value:
        inner = value.get("config") or {}
        if value["class_name"] == "DTypePolicy":
            return repr(inner.get("name"))
        if value["class_name"] in _INITIALIZERS and all(v is None for v in inner.values()):
            return repr(_INITIALIZERS[value["class_name"]])
        return repr(f"{value['class_name']}({inner})")  # not a default: refused, shown
    if isinstance(value, list):
        return "(" + "".join(f"{_python(item)}, " for item in value) + ")"
    if isinstance(value, (dict, str, int, float, bool)) or value is None:
        return repr(value)
    return repr(str(value))


# --- Functional configs: the graph of inbound nodes --------------------------------------------


def _functional(model: dict, where: str) -> keras_graph.Chain:
    """The layers, with the random layers and a Rescaling(1/255) of the input taken out (by
    the graph, which refuses them elsewhere)."""
    graph = keras_graph.Graph()
    tensors: dict[str, keras_graph.Node] = {}
    entries = _layer_entries(model, where)
    shape = _input_shape(entries)
    for entry in entries:
        name = entry.get("name") or (entry.get("config") or {}).get("name")
        place = f"{where}: layer {name!r}"
        sources = _inbound(entry, place)
        if entry["class_name"] == "InputLayer":
            tensors[name] = graph.input(place)
        elif entry["class_name"] == "Add":
            tensors[name] = graph.add(tuple(_tensor(tensors, s, place) for s in sources), place)
        elif len(sources) != 1:
            raise SpecError(f"{place}: applied to {len(sources)} tensors; cnnlab reads one")
        else:
            tensor = _tensor(tensors, sources[0], place)
            for step in _flattened([entry], where):  # a nested Sequential: its layers
                tensor = _apply(graph, step, tensor, where, shape)
            tensors[name] = tensor
    inputs = [_tensor(tensors, n, where) for n in _endpoints(model.get("input_layers"), where)]
    outputs = _endpoints(model.get("output_layers"), where)
    if len(outputs) != 1:
        raise SpecError(f"{where}: the model has {len(outputs)} outputs; cnnlab models have one")
    return graph.layers(inputs, _tensor(tensors, outputs[0], where))


def _apply(
    graph: keras_graph.Graph,
    entry: dict,
    tensor: keras_graph.Node,
    where: str,
    shape: tuple[object, ...] | None,
) -> keras_graph.Node:
    """One layer entry applied to a tensor (random layers and Rescaling(1/255) as the graph's
    augment and scale steps); a nested Sequential's own InputLayer changes nothing."""
    kind = entry["class_name"]
    place = f"{where}: layer {(entry.get('config') or {}).get('name') or entry.get('name')!r}"
    if kind == "InputLayer":
        return tensor
    if keras_augment.is_random_layer(kind):
        return graph.augment(_augmentation(entry, where, shape), tensor, place)
    if _input_scaling(entry):
        return graph.scale(tensor, place)
    return graph.apply(_layer(entry, where), tensor, place)  # type: ignore[arg-type]


def _tensor(tensors: dict[str, keras_graph.Node], name: str, place: str) -> keras_graph.Node:
    if name not in tensors:
        raise SpecError(f"{place}: takes the output of {name!r}, which no earlier layer makes")
    return tensors[name]


def _inbound(entry: dict, place: str) -> list[str]:
    """The names of the layers whose outputs this layer takes (one call of the layer only)."""
    nodes = entry.get("inbound_nodes") or []
    if len(nodes) > 1:
        raise SpecError(f"{place}: the layer is called {len(nodes)} times (shared weights)")
    if not nodes:
        return []
    node = nodes[0]
    if isinstance(node, dict):  # Keras 3: {"args": [tensor or [tensors]], "kwargs": {...}}
        return [history[0] for history in _histories(node.get("args"))]
    return [item[0] for item in node if isinstance(item, list) and item]  # Keras 2


def _histories(value: Any) -> list[list]:
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        return [value["config"]["keras_history"]]
    if isinstance(value, list):
        return [history for item in value for history in _histories(item)]
    return []


def _endpoints(value: Any, where: str) -> list[str]:
    """input_layers / output_layers: ["name", 0, 0] for one, [["name", 0, 0], ...] for more."""
    if isinstance(value, list) and value and isinstance(value[0], str):
        return [value[0]]
    if isinstance(value, list) and all(isinstance(item, list) and item for item in value):
        return [item[0] for item in value]
    raise SpecError(f"{where}: the config's input_layers / output_layers are not readable")
