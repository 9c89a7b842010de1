"""Import Keras code (Sequential or functional) as a ModelSpec, read with `ast`, never run.

People paste model code from notebooks and tutorials, so nothing here evaluates it: no
eval/exec, no import of the user's modules, not even `ast.literal_eval`. A value is understood
only when it is written out (`32`, `(3, 3)`, `'same'`, `-1`) or is a name assigned such a value
earlier in the file (`k = (3, 3)`); anything computed (`2 ** 5`, `f(x)`) is refused with its
line. Dense units named like the class count (`num_classes`) become `spec.CLASSES`.
`input_shape=...` and `Input(...)` layers are dropped without a check: the dataset gives the
input shape. A `Rescaling(1./255)` applied to the input is left out with a note: it is
cnnlab's own input scaling (normalize = "scale"); any other Rescaling, and Normalization, is
refused with what cnnlab does instead. Random layers (`RandomFlip`, ...) applied to the input
before any other layer, Sequential or functional, nested Sequentials included, are left out with
a note giving the study's `[training] augment` line (`cnnlab.keras_augment`). An argument
cnnlab cannot build is refused unless it has Keras's default value (`groups=1` passes,
`groups=2` does not): nothing is silently changed.

Functional code (`x = layers.Conv2D(...)(x)`, `layers.Add()([x, shortcut])`,
`keras.Model(inputs, outputs)`) is read by following each tensor name back to the layer call
that made it, into a `cnnlab.keras_graph.Graph`, which finds the residual blocks; tensors made
in loops or by helper functions, shared layers, several inputs or outputs are refused with the
line. A model's JSON config goes through `cnnlab.keras_config`, with this module's rules.
"""

from __future__ import annotations

import ast
import bisect
import dataclasses
import difflib
import math
import re
import textwrap
import warnings
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cnnlab import keras_augment, keras_graph, spec
from cnnlab.errors import SpecError
from cnnlab.spec.recipes import KerasObject

MAX_SOURCE_BYTES = 1_000_000  # far above any model's code; bounds parse time and memory
MAX_SIZE = 1_000_000  # sanity bound on filters, units, kernel, stride and pool sizes
MAX_LAYERS = 1_000
_MAX_NESTING = 3  # literals nest at most this deep: `((3, 3), (1, 1))` is 2
_MAX_ITEMS = 16  # elements of one literal tuple or list
_MAX_HOPS = 32  # `a = b`, `b = c`, ... chains followed when resolving a name


@dataclass(frozen=True)
class ImportedModel:
    """A spec read from Keras code, plus where in the code it came from."""

    spec: spec.ModelSpec
    source: str  # the file name, as errors show it
    line: int  # line of `model = Sequential(...)`
    index: int  # 1-based among the Sequential models of the file
    model_lines: tuple[int, ...]  # lines of all models of the file
    notes: tuple[str, ...] = ()
    kind: str = "Sequential"  # or "functional"

    def header(self) -> str:
        """TOML comment lines saying which model of the file this is, and any notes."""
        count = len(self.model_lines)
        lines = [
            f"Imported by `cnnlab import-keras` from {self.source}: "
            f"{self.kind} model {self.index} of {count}, line {self.line}."
        ]
        others = [str(line) for line in self.model_lines if line != self.line]
        if others:
            lines.append(f"Other models start at lines {', '.join(others)}; pick with --index N.")
        lines += [f"Note: {note}." for note in self.notes]
        wrapped = [
            part
            for line in lines
            for part in textwrap.wrap(line, 98, break_long_words=False, break_on_hyphens=False)
        ]
        return "".join(f"# {part}\n" for part in wrapped)

    def to_toml(self) -> str:
        """The spec as a TOML model file that `cnnlab summary` and `cnnlab train` accept."""
        return self.header() + spec.model_to_toml(self.spec)


def import_keras_source(
    text: str, *, filename: str = "<string>", name: str | None = None, index: int | None = None
) -> spec.ModelSpec:
    """The ModelSpec of the last (or `index`-th, from 1) Sequential model defined in `text`."""
    return import_keras(text, filename=filename, name=name, index=index).spec


def import_keras_file(
    path: str | Path, *, name: str | None = None, index: int | None = None
) -> ImportedModel:
    """Read a .py file of Keras code and import one of its models; a .json or .keras file is a
    model's config (`cnnlab.keras_config`)."""
    if Path(path).suffix.lower() in (".json", ".keras"):
        from cnnlab import keras_config  # it builds on this module's rules

        return keras_config.import_keras_config(path, name=name)
    return import_keras(read_keras_file(path), filename=str(path), name=name, index=index)


def read_keras_file(path: str | Path) -> str:
    """The text of a UTF-8 file of at most MAX_SOURCE_BYTES; SpecError otherwise."""
    path = Path(path)
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_SOURCE_BYTES + 1)
    except OSError as error:
        raise SpecError(f"{path}: cannot read the file: {error.strerror or error}") from None
    if len(data) > MAX_SOURCE_BYTES:
        raise SpecError(
            f"{path}: larger than {MAX_SOURCE_BYTES:,} bytes; cut it down to the model's code"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise SpecError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[error.start]:02x}); save it as UTF-8"
        ) from None


def import_keras(
    text: str | Path,
    *,
    filename: str = "<string>",
    name: str | None = None,
    index: int | None = None,
) -> ImportedModel:
    """Import one Sequential model of `text` (the last unless `index`, counted from 1).

    `text` is Keras code, or the Path of a .py file holding it (a one-line str ending in .py
    that names a file is read too).
    """
    if isinstance(text, Path) or (
        text.endswith(".py") and "\n" not in text and Path(text).is_file()
    ):
        return import_keras_file(text, name=name, index=index)
    try:
        source = _Source(_parse(text, filename), text, filename)
        sites = _find_models(source)
        site = _choose_model(sites, index, filename)
        model_spec, notes = _read_model(source, site, name)
    except RecursionError:
        raise SpecError(f"{filename}: the code is nested too deeply to read") from None
    return ImportedModel(
        spec=model_spec,
        source=filename,
        line=site.line,
        index=sites.index(site) + 1,
        model_lines=tuple(s.line for s in sites),
        notes=notes,
        kind="functional" if site.functional else "Sequential",
    )


# --- Parsing and reading values ---------------------------------------------------------------


def _parse(text: str, filename: str) -> ast.Module:
    """Parse without running; IPython `%magic` and `!shell` lines are read as comments."""
    if len(text) > MAX_SOURCE_BYTES:
        raise SpecError(f"{filename}: longer than {MAX_SOURCE_BYTES:,} characters")
    if "\x00" in text:  # Python refuses it with no line (3.12: "None"; 3.11: a ValueError)
        line = text[: text.index("\x00")].count("\n") + 1
        raise SpecError(f"{filename}:{line}: not valid Python: a NUL byte (is it a binary file?)")
    try:
        try:
            return _parse_quietly(text, filename)
        except SyntaxError:
            without_magics = re.sub(r"(?m)^(\s*)([%!])", r"\1#\2", text)
            if without_magics == text:
                raise
            return _parse_quietly(without_magics, filename)
    except SyntaxError as error:
        raise SpecError(f"{filename}:{error.lineno}: not valid Python: {error.msg}") from None
    except (RecursionError, MemoryError):
        raise SpecError(f"{filename}: the code is nested too deeply to read") from None
    except ValueError as error:
        raise SpecError(f"{filename}: cannot read the code: {error}") from None


def _parse_quietly(text: str, filename: str) -> ast.Module:
    # The user's code is not ours: its warnings (e.g. "invalid escape sequence") are noise here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ast.parse(text, filename=filename)


@dataclass(frozen=True)
class _Binding:
    """`name = value` somewhere in the file; value None when code we do not run sets it."""

    end: tuple[int, int]  # (line, column) where the binding statement ends
    line: int
    value: ast.expr | None


class _Source:
    """A parsed file and what reading it (not running it) can tell: names and import aliases."""

    def __init__(self, tree: ast.Module, text: str, filename: str) -> None:
        self.tree, self.text, self.filename = tree, text, filename
        self.scope_of, self.enclosing = _scopes(tree)
        self.bindings = _collect_bindings(tree, self.scope_of)
        # `from keras.layers import Conv2D as C`: C means Conv2D.
        self.aliases = {
            alias.asname: alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
            if alias.asname
        }

    def error(self, node: ast.AST, message: str) -> SpecError:
        return SpecError(f"{self.filename}:{getattr(node, 'lineno', '?')}: {message}")

    def snippet(self, node: ast.AST) -> str:
        """The node's source text, first line only, shortened for one-line errors."""
        text = ast.get_source_segment(self.text, node) or type(node).__name__
        first = text.splitlines()[0] if text.strip() else text
        return _shorten(first + (" ..." if "\n" in text else ""))

    def binding_before(self, name: ast.Name) -> _Binding | None:
        """The last assignment of `name` that ends before this use of it, in its scope.

        As in Python, the innermost scope (function, lambda, comprehension, module) that
        assigns the name anywhere decides; a function's parameter `k` is not the module's `k`.
        """
        scope: ast.AST | None = self.scope_of[id(name)]
        while scope is not None:
            found = self.bindings.get((name.id, id(scope)))
            if found:
                use = (name.lineno, name.col_offset)
                before = bisect.bisect_right(found, use, key=_binding_end)
                return found[before - 1] if before else None
            scope = self.enclosing[id(scope)]
        return None

    def resolve(self, node: ast.expr, what: str) -> ast.expr:
        """Follow a name to the expression assigned to it (never evaluating anything)."""
        for _ in range(_MAX_HOPS):
            if not isinstance(node, ast.Name):
                return node
            binding = self.binding_before(node)
            if binding is None:
                raise self.error(
                    node,
                    f"{what}: {node.id!r} is not assigned a value earlier in this file; "
                    "cnnlab reads the code without running it, so write the value itself",
                )
            if binding.value is None:
                raise self.error(
                    node,
                    f"{what}: {node.id!r} gets its value from code cnnlab does not run "
                    f"(line {binding.line}); write the value itself",
                )
            node = binding.value
        raise self.error(node, f"{what}: names refer to names more than {_MAX_HOPS} times")

    def literal(self, node: ast.expr, what: str, depth: int = 0) -> object:
        """The value of a written-out literal (or a name assigned one); SpecError otherwise."""
        found = self.resolve(node, what)
        if isinstance(found, ast.Constant) and isinstance(
            found.value, (bool, int, float, str, type(None))
        ):
            return found.value
        if (
            isinstance(found, (ast.Tuple, ast.List))
            and depth < _MAX_NESTING
            and len(found.elts) <= _MAX_ITEMS
        ):
            return tuple(self.literal(item, what, depth + 1) for item in found.elts)
        if isinstance(found, ast.UnaryOp) and isinstance(found.op, (ast.USub, ast.UAdd)):
            value = self.literal(found.operand, what, depth + 1)
            if _is_number(value):
                return -value if isinstance(found.op, ast.USub) else value
        got = self.snippet(found)
        if isinstance(node, ast.Name) and found is not node:
            got = f"{node.id} = {got} (line {found.lineno})"
        raise self.error(
            node,
            f"{what} must be a written-out value (number, string, tuple, or a name assigned "
            f"one), got {got}",
        )

    def callee(self, call: ast.Call) -> str | None:
        """The last name of what is called: `tf.keras.layers.Conv2D(...)` -> 'Conv2D'."""
        return self.reference(call.func)

    def unbound_reference(self, node: ast.expr) -> str | None:
        """The last name of `tf.nn.relu` or of an imported `relu`: a thing, not a value."""
        if isinstance(node, ast.Name) and self.binding_before(node) is not None:
            return None
        return self.reference(node)

    def reference(self, node: ast.expr) -> str | None:
        """The last name of a plain `a.b.c` or `c` reference (import aliases undone)."""
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id, node.id)
        base = node
        while isinstance(base, ast.Attribute):
            base = base.value
        return node.attr if isinstance(node, ast.Attribute) and isinstance(base, ast.Name) else None


_SCOPES = (
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.Lambda,
    ast.ClassDef,
    ast.ListComp,
    ast.SetComp,
    ast.DictComp,
    ast.GeneratorExp,
)


def _scopes(tree: ast.Module) -> tuple[dict[int, ast.AST], dict[int, ast.AST | None]]:
    """Each node's scope, and each scope's enclosing scope (iteratively: no recursion limit)."""
    scope_of: dict[int, ast.AST] = {}
    enclosing: dict[int, ast.AST | None] = {id(tree): None}
    stack: list[tuple[ast.AST, ast.AST]] = [(tree, tree)]
    while stack:
        node, scope = stack.pop()
        scope_of[id(node)] = scope
        if isinstance(node, _SCOPES):
            enclosing[id(node)] = scope
            scope = node
        stack.extend((child, scope) for child in ast.iter_child_nodes(node))
    return scope_of, enclosing


def _collect_bindings(
    tree: ast.Module, scope_of: dict[int, ast.AST]
) -> dict[tuple[str, int], list[_Binding]]:
    """Every name assignment of the file by (name, scope), in order; unreadable ones as None."""
    bindings: dict[tuple[str, int], list[_Binding]] = defaultdict(list)
    readable: set[int] = set()
    for node in ast.walk(tree):  # breadth-first: an assignment comes before its target names
        scope = id(scope_of[id(node)])
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for name, value in _unpack(target, node.value):
                    bindings[name.id, scope].append(_Binding(_end(node), name.lineno, value))
                    readable.add(id(name))
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            if id(node) not in readable:  # for-loop targets, `x += 1`, `with ... as x`, ...
                bindings[node.id, scope].append(_Binding(_end(node), node.lineno, None))
        elif isinstance(node, ast.arg):  # a parameter: its caller sets it
            bindings[node.arg, scope].append(_Binding(_end(node), node.lineno, None))
    for found in bindings.values():
        found.sort(key=_binding_end)
    return bindings


def _end(node: ast.AST) -> tuple[int, int]:
    return (node.end_lineno or node.lineno, node.end_col_offset or 0)  # type: ignore[attr-defined]


def _binding_end(binding: _Binding) -> tuple[int, int]:
    return binding.end


def _unpack(target: ast.expr, value: ast.expr | None) -> list[tuple[ast.Name, ast.expr | None]]:
    """Pair names with values: `a, b = 28, 28` gives (a, 28) and (b, 28)."""
    if isinstance(target, ast.Name):
        return [(target, value)]
    if not isinstance(target, (ast.Tuple, ast.List)):
        return []
    if not (
        isinstance(value, (ast.Tuple, ast.List))
        and len(value.elts) == len(target.elts)
        and not any(isinstance(item, ast.Starred) for item in [*target.elts, *value.elts])
    ):
        return [(name, None) for item in target.elts for name, _ in _unpack(item, None)]
    return [pair for t, v in zip(target.elts, value.elts, strict=True) for pair in _unpack(t, v)]


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show(value: object) -> str:
    return _shorten(repr(value))


def _close_match(word: str, choices: list[str]) -> str:
    same_but_case = [choice for choice in choices if choice.lower() == word.lower()]
    close = same_but_case or difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --- Converting argument values -------------------------------------------------------------

_Convert = Callable[[_Source, ast.expr, str], object]


def _size(source: _Source, node: ast.expr, what: str) -> int:
    value = source.literal(node, what)
    if not _is_size(value):
        raise source.error(
            node, f"{what} must be an integer from 1 to {MAX_SIZE:,}, got {_show(value)}"
        )
    return value  # type: ignore[return-value]


def _is_size(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_SIZE


def _units(source: _Source, node: ast.expr, what: str) -> int | str:
    # The notebook's `num_classes` (and nb_classes, NUM_CLASSES, ...) means "the dataset's class
    # count", which the spec spells CLASSES, so the model serves any dataset.
    if isinstance(node, ast.Name) and "class" in node.id.lower():
        return spec.CLASSES
    return _size(source, node, what)


def _pair(source: _Source, node: ast.expr, what: str) -> tuple[int, int]:
    # Keras takes an int n as (n, n) (keras/src/utils/argument_validation.py, standardize_tuple).
    value = source.literal(node, what)
    pair = value if isinstance(value, tuple) else (value, value)
    if len(pair) != 2 or not all(_is_size(item) for item in pair):
        raise source.error(
            node,
            f"{what} must be an integer or a pair of integers from 1 to {MAX_SIZE:,}, "
            f"got {_show(value)}",
        )
    return pair  # type: ignore[return-value]


def _pair_or_none(source: _Source, node: ast.expr, what: str) -> tuple[int, int] | None:
    return None if source.literal(node, what) is None else _pair(source, node, what)


def _padding(source: _Source, node: ast.expr, what: str) -> str:
    value = source.literal(node, what)
    # Keras lowercases padding (keras/src/utils/argument_validation.py, standardize_padding).
    if isinstance(value, str) and value.lower() in ("valid", "same"):
        return value.lower()
    raise source.error(node, f"{what} must be 'valid' or 'same', got {_show(value)}")


def _activation(source: _Source, node: ast.expr, what: str) -> str:
    """'relu', None (linear), or a function reference such as tf.nn.relu or activations.relu."""
    reference = source.unbound_reference(node)
    if reference in spec.ACTIVATIONS or reference in spec.ACTIVATION_ALIASES:
        return spec.ACTIVATION_ALIASES.get(reference, reference)
    value = source.literal(node, what)
    if value is None:
        return "linear"  # Keras: activation=None applies none (keras/src/activations, get)
    if isinstance(value, str) and value in spec.ACTIVATION_ALIASES:
        return spec.ACTIVATION_ALIASES[value]  # "swish" is silu (keras/src/activations)
    if isinstance(value, str) and value in spec.ACTIVATIONS:
        return value
    hint = _close_match(value, list(spec.ACTIVATIONS)) if isinstance(value, str) else ""
    raise source.error(
        node,
        f"{what}: activation {_show(value)} is not supported{hint} "
        f"(supported: {', '.join(spec.ACTIVATIONS)})",
    )


def _flag(source: _Source, node: ast.expr, what: str) -> bool:
    value = source.literal(node, what)
    if not isinstance(value, bool):
        raise source.error(node, f"{what} must be True or False, got {_show(value)}")
    return value


def _number_check(rule: str, test: Callable[[float], bool]) -> _Convert:
    """A converter to float that accepts a written-out number for which `test` holds."""

    def convert(source: _Source, node: ast.expr, what: str) -> float:
        value = source.literal(node, what)
        if not _is_number(value) or not math.isfinite(value) or not test(value):
            raise source.error(node, f"{what} must be {rule}, got {_show(value)}")
        return float(value)

    return convert


_fraction = _number_check("a number in [0, 1)", lambda x: 0 <= x < 1)
_positive = _number_check("a number above 0", lambda x: x > 0)
_non_negative = _number_check("a number of at least 0", lambda x: x >= 0)


# --- Layers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    """How one Keras layer maps to a spec layer, with Keras's signature (keras/src/layers)."""

    build: type
    positional: tuple[str, ...]  # Keras's leading parameters, in order
    read: Mapping[str, _Convert]  # the arguments cnnlab builds
    keras_defaults: Mapping[str, tuple[object, ...]] = field(default_factory=dict)
    fixed: Mapping[str, object] = field(default_factory=dict)  # what the Keras class itself means


_CHANNELS_LAST = (None, "channels_last")  # Keras's default image_data_format
_WEIGHT_DEFAULTS = {
    "kernel_initializer": ("glorot_uniform",),
    "bias_initializer": ("zeros",),
    "kernel_regularizer": (None,),
    "bias_regularizer": (None,),
    "activity_regularizer": (None,),
    "kernel_constraint": (None,),
    "bias_constraint": (None,),
}
_POOLING = {"pool_size": _pair, "strides": _pair_or_none, "padding": _padding}
_WINDOW = {
    "kernel_size": _pair,
    "strides": _pair,
    "padding": _padding,
    "dilation_rate": _pair,
    "activation": _activation,
    "use_bias": _flag,
}
_DEPTHWISE_DEFAULTS = {
    "depthwise_initializer": ("glorot_uniform",),
    "depthwise_regularizer": (None,),
    "depthwise_constraint": (None,),
}
_NORM_DEFAULTS = {
    "center": (True,),
    "scale": (True,),
    "beta_initializer": ("zeros",),
    "gamma_initializer": ("ones",),
    "beta_regularizer": (None,),
    "gamma_regularizer": (None,),
    "beta_constraint": (None,),
    "gamma_constraint": (None,),
}

_LAYERS: dict[str, _Rule] = {
    # Keras's parameters in Keras's order (keras/src/layers/convolutional/*.py).
    "Conv2D": _Rule(
        spec.Conv2D,
        ("filters", "kernel_size", "strides", "padding"),
        {"filters": _size, **_WINDOW},
        {"data_format": _CHANNELS_LAST, "groups": (1,)} | _WEIGHT_DEFAULTS,
    ),
    "SeparableConv2D": _Rule(
        spec.SeparableConv2D,
        ("filters", "kernel_size", "strides", "padding"),
        {"filters": _size, "depth_multiplier": _size, **_WINDOW},
        {
            "data_format": _CHANNELS_LAST,
            "pointwise_initializer": ("glorot_uniform",),
            "pointwise_regularizer": (None,),
            "pointwise_constraint": (None,),
        }
        | _DEPTHWISE_DEFAULTS
        | _WEIGHT_DEFAULTS,
    ),
    "DepthwiseConv2D": _Rule(
        spec.DepthwiseConv2D,
        ("kernel_size", "strides", "padding", "depth_multiplier"),
        {"depth_multiplier": _size, **_WINDOW},
        {"data_format": _CHANNELS_LAST} | _DEPTHWISE_DEFAULTS | _WEIGHT_DEFAULTS,
    ),
    "LayerNormalization": _Rule(
        spec.LayerNormalization,
        ("axis", "epsilon"),
        {"epsilon": _positive},
        {"axis": (-1, (-1,)), "rms_scaling": (False,)} | _NORM_DEFAULTS,
    ),
    "GlobalMaxPooling2D": _Rule(
        spec.GlobalMaxPooling2D, (), {}, {"data_format": _CHANNELS_LAST, "keepdims": (False,)}
    ),
    "MaxPooling2D": _Rule(
        spec.MaxPooling2D, tuple(_POOLING), _POOLING, {"data_format": _CHANNELS_LAST}
    ),
    "AveragePooling2D": _Rule(
        spec.AveragePooling2D, tuple(_POOLING), _POOLING, {"data_format": _CHANNELS_LAST}
    ),
    "Dropout": _Rule(
        spec.Dropout, ("rate",), {"rate": _fraction}, {"noise_shape": (None,), "seed": (None,)}
    ),
    "BatchNormalization": _Rule(
        spec.BatchNormalization,
        ("axis", "momentum", "epsilon"),
        {"momentum": _fraction, "epsilon": _positive},
        {
            # -1 is Keras's default; 3 is the same axis (channels) of a channels_last image.
            "axis": (-1, 3),
            "center": (True,),
            "scale": (True,),
            "beta_initializer": ("zeros",),
            "gamma_initializer": ("ones",),
            "moving_mean_initializer": ("zeros",),
            "moving_variance_initializer": ("ones",),
            "beta_regularizer": (None,),
            "gamma_regularizer": (None,),
            "beta_constraint": (None,),
            "gamma_constraint": (None,),
            "renorm": (False,),
            "synchronized": (False,),
            "fused": (None, True, False),  # Keras 2: an implementation choice, same maths
            "renorm_clipping": (None,),
            "renorm_momentum": (0.99,),
        },
    ),
    "Flatten": _Rule(spec.Flatten, (), {}, {"data_format": _CHANNELS_LAST}),
    "GlobalAveragePooling2D": _Rule(
        spec.GlobalAveragePooling2D, (), {}, {"data_format": _CHANNELS_LAST, "keepdims": (False,)}
    ),
    "Dense": _Rule(
        spec.Dense,
        ("units", "activation"),
        {"units": _units, "activation": _activation, "use_bias": _flag},
        _WEIGHT_DEFAULTS | {"quantization_config": (None,), "lora_rank": (None,)},
    ),
    "Activation": _Rule(spec.Activation, ("activation",), {"activation": _activation}),
    # ReLU() at its defaults is the relu activation (keras/src/layers/activations/relu.py).
    "ReLU": _Rule(
        spec.Activation,
        ("max_value", "negative_slope", "threshold"),
        {},
        {"max_value": (None,), "negative_slope": (0.0, 0), "threshold": (0.0, 0)},
        {"activation": "relu"},
    ),
}
# Other Keras names of the same layers (Keras 2 and 3 export both).
_LAYER_ALIASES = {
    "Convolution2D": "Conv2D",
    "MaxPool2D": "MaxPooling2D",
    "AvgPool2D": "AveragePooling2D",
    "GlobalAvgPool2D": "GlobalAveragePooling2D",
    "GlobalMaxPool2D": "GlobalMaxPooling2D",
    "SeparableConvolution2D": "SeparableConv2D",
}
_INPUT_LAYERS = ("Input", "InputLayer")  # dropped: the dataset gives the input shape
_ANY_LAYER_DEFAULTS = {"trainable": (True,), "dtype": (None, "float32")}
# Accepted and dropped on any layer: names, and input shapes (the dataset gives the shape).
_DROPPED = ("name", "input_shape", "input_dim", "batch_input_shape", "batch_size")


INPUT_SCALING = "Rescaling"  # Rescaling(1./255) first: cnnlab's own x / 255, left out
SCALING_NOTE = (
    "the model's Rescaling(1/255) is left out: cnnlab feeds images as x / 255 already "
    '(normalize = "scale", the default in [training])'
)


def _is_input_scaling(source: _Source, call: ast.Call) -> bool:
    """Whether a `Rescaling(...)` call is Rescaling(1/255) (offset 0): cnnlab's own scaling.
    The scale may be written as a number or as one division of two numbers (`1./255`)."""
    arguments = _bind_arguments(source, call, INPUT_SCALING, ("scale", "offset"))
    scale = _written_number(source, arguments.get("scale"), "Rescaling's scale")
    offset = 0.0
    if "offset" in arguments:
        offset = _written_number(source, arguments["offset"], "Rescaling's offset")
    return is_input_scaling(scale, offset)


def is_input_scaling(scale: object, offset: object) -> bool:
    """Whether Rescaling(scale, offset) is x / 255, cnnlab's own input scaling."""
    numbers = all(_is_number(v) for v in (scale, offset))
    return numbers and math.isclose(scale, 1 / 255, rel_tol=1e-6) and offset == 0  # type: ignore[arg-type]


def _written_number(source: _Source, node: ast.expr | None, what: str) -> float | None:
    """A number written out, or one division of two written-out numbers; None otherwise."""
    if node is None:
        return None
    found = source.resolve(node, what)
    if isinstance(found, ast.BinOp) and isinstance(found.op, ast.Div):
        top, bottom = (_written_number(source, side, what) for side in (found.left, found.right))
        return top / bottom if top is not None and bottom else None
    if isinstance(found, ast.Constant) and _is_number(found.value):
        return float(found.value)
    return None


def _scaling_refused(source: _Source, call: ast.Call) -> SpecError:
    return source.error(
        call,
        f"{source.snippet(call)} is not supported: cnnlab feeds images as x / 255 (normalize = "
        '"scale") or standardised per channel (normalize = "per-channel" in [training]); only '
        "a Rescaling(1./255) applied to the input is read (and left out, as cnnlab's own)",
    )


def _layer(source: _Source, node: ast.expr) -> spec.Layer | None:
    """The spec layer of one `Conv2D(...)`-like call; None for an input layer."""
    call = source.resolve(node, "a layer")
    keras_name = source.callee(call) if isinstance(call, ast.Call) else None
    if keras_name is None:
        raise source.error(
            node, f"expected a layer such as Conv2D(...), got {source.snippet(call)}"
        )
    if keras_name in _INPUT_LAYERS:
        return None
    if keras_name == INPUT_SCALING:  # not right after the input (those are taken out first)
        raise _scaling_refused(source, call)
    if keras_augment.is_random_layer(keras_name):  # not at the input (those are taken out first)
        raise source.error(call, keras_augment.misplaced(keras_name))
    if keras_name == "Normalization":
        raise source.error(
            call,
            'Normalization is not a layer in cnnlab: write normalize = "per-channel" in the '
            "study's [training] (the mean and std of the training part, as adapt() computes)",
        )
    rule = _LAYERS.get(_LAYER_ALIASES.get(keras_name, keras_name))
    if rule is None:
        known = sorted([*_LAYERS, *_LAYER_ALIASES])
        raise source.error(
            call,
            f"layer {keras_name!r} is not supported{_close_match(keras_name, known)} "
            f"(supported: {', '.join(sorted(_LAYERS))})",
        )
    _refuse_keras1_kernel(source, call, rule)
    arguments = _bind_arguments(source, call, keras_name, rule.positional)
    values = {**rule.fixed, **_read_arguments(source, keras_name, rule, arguments)}
    missing = [f.name for f in _required_fields(rule.build) if f.name not in values]
    if missing:
        raise source.error(call, f"{keras_name} needs its argument {missing[0]!r}")
    return rule.build(**values)


def layer_from_code(text: str, *, filename: str = "<string>") -> spec.Layer | None:
    """The spec layer of one written-out Keras layer call, e.g. "Conv2D(32, (3, 3))";
    None for an input layer. The rules are `import-keras`'s (the config importer uses them)."""
    tree = _parse(text, filename)
    statement = tree.body[0] if len(tree.body) == 1 else None
    if not isinstance(statement, ast.Expr):
        raise SpecError(f"{filename}: expected one layer call, got {_show(text)}")
    return _layer(_Source(tree, text, filename), statement.value)


def optimizer_from_code(
    text: str, layers: tuple[spec.Layer, ...], *, filename: str = "<string>"
) -> spec.OptimizerSpec:
    """The optimizer of one written-out compile call, e.g. "compile(optimizer=Adam(), loss=...)",
    its loss checked against `layers`. The rules are `import-keras`'s (the config importer uses
    them)."""
    tree = _parse(text, filename)
    statement = tree.body[0] if len(tree.body) == 1 else None
    if not isinstance(statement, ast.Expr) or not isinstance(statement.value, ast.Call):
        raise SpecError(f"{filename}: expected one compile call, got {_show(text)}")
    return _compiled_optimizer(_Source(tree, text, filename), statement.value, layers)


def _required_fields(cls: type) -> list[dataclasses.Field]:
    return [
        f
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]


def _refuse_keras1_kernel(source: _Source, call: ast.Call, rule: _Rule) -> None:
    # Keras 2 read Conv2D(32, 3, 3) the Keras 1 way, as a 3x3 kernel (keras/legacy/interfaces.py,
    # conv2d_args_preprocessor); Keras 3 reads the third number as strides. Ask, don't guess.
    if rule.build is spec.Conv2D and len(call.args) >= 3:
        third = source.resolve(call.args[2], "Conv2D argument 'strides'")
        if isinstance(third, ast.Constant) and _is_number(third.value):
            raise source.error(
                call,
                f"{source.snippet(call)} is ambiguous: Keras 2 reads the third number as the "
                "kernel's width, Keras 3 as strides; write kernel_size=(h, w) or strides=n",
            )


def _bind_arguments(
    source: _Source, call: ast.Call, callee: str, positional: tuple[str, ...]
) -> dict[str, ast.expr]:
    """Map a call's arguments to Keras's parameter names, as Python would."""
    if len(call.args) > len(positional):
        names = ", ".join(positional) or "none"
        raise source.error(
            call,
            f"{callee} takes at most {len(positional)} positional arguments ({names}), got "
            f"{len(call.args)}; pass the others by keyword",
        )
    arguments: dict[str, ast.expr] = {}
    for parameter, node in zip(positional, call.args, strict=False):
        if isinstance(node, ast.Starred):
            raise source.error(node, f"{callee}(*...) is not supported; write the arguments out")
        arguments[parameter] = node
    for keyword in call.keywords:
        if keyword.arg is None:
            raise source.error(keyword, f"{callee}(**...) is not supported; write them out")
        if keyword.arg in arguments:
            raise source.error(keyword, f"{callee} got two values for {keyword.arg!r}")
        arguments[keyword.arg] = keyword.value
    return arguments


def _read_arguments(
    source: _Source, keras_name: str, rule: _Rule, arguments: dict[str, ast.expr]
) -> dict[str, object]:
    """Convert the arguments cnnlab builds; refuse the rest unless at Keras's default."""
    defaults = {**_ANY_LAYER_DEFAULTS, **rule.keras_defaults}
    values: dict[str, object] = {}
    for argument, node in arguments.items():
        if argument in rule.read:
            values[argument] = rule.read[argument](
                source, node, f"{keras_name} argument {argument!r}"
            )
        elif argument not in _DROPPED:
            _require_default(
                source, node, keras_name, argument, defaults.get(argument), list(rule.read)
            )
    return values


def _require_default(
    source: _Source,
    node: ast.expr,
    owner: str,
    argument: str,
    defaults: tuple[object, ...] | None,
    supported: list[str],
) -> None:
    """Accept an argument cnnlab does not build only when it has Keras's default value."""
    what = f"{owner} argument {argument!r}"
    if defaults is not None and _is_one_of(source, node, what, defaults):
        return
    if defaults is None:
        detail = _close_match(argument, supported)
    else:
        detail = f" with value {source.snippet(node)}; only Keras's default {_show(defaults[0])} is"
    listed = ", ".join(supported) if supported else "none"
    raise source.error(node, f"{what} is not supported{detail} (supported: {listed})")


def _is_one_of(source: _Source, node: ast.expr, what: str, allowed: tuple[object, ...]) -> bool:
    try:
        value = source.literal(node, what)
    except SpecError:  # `kernel_regularizer=l2(0.01)` is no literal, so no default either
        return False
    # Compare types too: True == 1 in Python, but groups=True is not Keras's groups=1.
    return any(type(value) is type(option) and value == option for option in allowed)


# --- Models -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Site:
    """`var = Sequential(...)` (or `var = Model(inputs, outputs)`, functional) and the
    statements after it that still mean this model."""

    var: str
    call: ast.Call
    line: int
    body: tuple[ast.stmt, ...]
    functional: bool = False


def _find_models(source: _Source) -> list[_Site]:
    """Every `var = Sequential(...)` of the file, in line order."""
    sites = []
    for block in _blocks(source.tree):
        for position, statement in enumerate(block):
            var, functional = _model_target(source, statement)
            if var is not None and not _is_augmentation_only(source, statement.value):  # type: ignore[attr-defined]
                body = _until_rebound(var, block[position + 1 :])
                call = statement.value
                sites.append(_Site(var, call, statement.lineno, body, functional))  # type: ignore[arg-type]
    return sorted(sites, key=lambda site: site.line)


def _is_augmentation_only(source: _Source, call: ast.Call) -> bool:
    """`data_augmentation = Sequential([RandomFlip(...), ...])`: a part of a model, not one."""
    listed = call.args[0] if call.args else None
    return (
        isinstance(listed, ast.List)
        and bool(listed.elts)
        and all(
            isinstance(item, ast.Call) and keras_augment.is_random_layer(source.callee(item))
            for item in listed.elts
        )
    )


def _blocks(tree: ast.Module) -> list[list[ast.stmt]]:
    """The statement lists of the file: module, function, loop, `with`, `if` bodies."""
    found = []
    for node in ast.walk(tree):
        for name in ("body", "orelse", "finalbody"):
            block = getattr(node, name, None)
            if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                found.append(block)
    return found


_FUNCTIONAL = ("Model", "Functional")  # keras.Model(inputs, outputs); Keras 3's class


def _model_target(source: _Source, statement: ast.stmt) -> tuple[str | None, bool]:
    """(var, functional) of `var = Sequential(...)` or `var = Model(...)`; `return Model(...)`
    inside a function is a functional model too."""
    value = (
        statement.value if isinstance(statement, (ast.Assign, ast.AnnAssign, ast.Return)) else None
    )
    if not isinstance(value, ast.Call):
        return None, False
    callee = source.callee(value)
    if isinstance(statement, ast.Return):
        return ("model", True) if callee in _FUNCTIONAL else (None, False)
    if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
        target = statement.targets[0]
    elif isinstance(statement, ast.AnnAssign):
        target = statement.target
    else:
        return None, False
    if isinstance(target, ast.Name) and callee in ("Sequential", *_FUNCTIONAL):
        return target.id, callee != "Sequential"
    return None, False


def _until_rebound(var: str, statements: list[ast.stmt]) -> tuple[ast.stmt, ...]:
    """The statements up to the next one that assigns `var` anew (e.g. the next model)."""
    kept = []
    for statement in statements:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if statement.name == var:
                break
        elif any(
            isinstance(node, ast.Name) and node.id == var and not isinstance(node.ctx, ast.Load)
            for node in ast.walk(statement)
        ):
            break
        kept.append(statement)
    return tuple(kept)


def _choose_model(sites: list[_Site], index: int | None, filename: str) -> _Site:
    if not sites:
        raise SpecError(
            f"{filename}: no Keras Sequential or functional model found: expected "
            "`model = Sequential()` then `model.add(...)` lines, `model = Sequential([...])`, "
            "or functional code ending in `model = keras.Model(inputs, outputs)` (subclassed "
            "models are not supported)"
        )
    if index is None:
        return sites[-1]
    if not 1 <= index <= len(sites):
        lines = ", ".join(str(site.line) for site in sites)
        raise SpecError(
            f"{filename}: index {index} is out of range: the file has {len(sites)} "
            f"model(s), numbered from 1 (at lines {lines})"
        )
    return sites[index - 1]


def _read_model(
    source: _Source, site: _Site, name: str | None
) -> tuple[spec.ModelSpec, tuple[str, ...]]:
    """The spec of one model site, and notes for the reader of the generated file."""
    if site.functional:
        chain, shape = _functional_layers(source, site.call), None
        compile_call = _compile_call(source, site)
    else:
        chain, shape, compile_call = _sequential_layers(source, site)
    layers = chain.layers
    if not layers:
        raise source.error(site.call, f"the Sequential model {site.var!r} has no layers")
    notes = [SCALING_NOTE] if chain.scaled else []
    if chain.augmentation:
        notes.append(keras_augment.note(chain.augmentation))
    if compile_call is None:
        optimizer = spec.OptimizerSpec()
        notes.append(
            f"no {site.var}.compile(...) follows line {site.line}, "
            f"so the optimizer is cnnlab's default, {optimizer.name}"
        )
    else:
        optimizer = _compiled_optimizer(source, compile_call, layers)
    if optimizer.name == "adadelta" and "learning_rate" not in optimizer.kwargs():
        if _imports_tensorflow(source.tree):
            optimizer = _with_adadelta_rate(optimizer, 0.001)
            notes.append(
                "Adadelta's learning rate is not given and the code imports tensorflow, so it "
                "is written as tf.keras's default, 0.001 (standalone Keras 2 used 1.0)"
            )
        else:
            optimizer = _with_adadelta_rate(optimizer, 1.0)
            notes.append(
                "Adadelta's learning rate is not given, so it is written as Keras 2's default, "
                "1.0 (the seed notebook's Keras); Keras 3 and tf.keras default to 0.001"
            )
    if shape is not None:
        notes.append(
            f"the code's input shape {shape} is not kept: cnnlab takes the image shape from "
            "the dataset a model trains on (mnist: 28x28x1; others with --dataset)"
        )
    model = spec.ModelSpec(
        name=name or _model_name(source, site),
        layers=layers,
        optimizer=optimizer,
        description=f"Imported from {Path(source.filename).name}, line {site.line}.",
    )
    return model, tuple(notes)


def _sequential_layers(
    source: _Source, site: _Site
) -> tuple[keras_graph.Chain, str | None, ast.Call | None]:
    """A Sequential model's layers (random layers and Rescaling at the input taken out), its
    input shape as written, and its last compile call."""
    nodes, compile_call = _model_calls(source, site)
    if len(nodes) > MAX_LAYERS:
        raise source.error(site.call, f"the model has {len(nodes)} layers; at most {MAX_LAYERS}")
    nodes = _flattened(source, nodes)
    shape = _input_shape(source, nodes)
    nodes, augmentation = _without_augmentation(source, nodes, _image_shape(source, nodes))
    nodes, scaled = _without_input_scaling(source, nodes)
    layers = tuple(layer for node in nodes if (layer := _layer(source, node)) is not None)
    return keras_graph.Chain(layers, tuple(augmentation), scaled), shape, compile_call


def _with_adadelta_rate(optimizer: spec.OptimizerSpec, rate: float) -> spec.OptimizerSpec:
    # Keras 2's `Adadelta(lr=1.0, ...)` (keras/optimizers.py, 2.2.4) is what a bare "adadelta"
    # means in cnnlab (cnnlab.optim); Keras 3 and tf.keras changed it to 0.001, so the spec says
    # which one it is rather than leave a Keras 3 reader to guess.
    return spec.OptimizerSpec(optimizer.name, (("learning_rate", rate), *optimizer.params))


def _imports_tensorflow(tree: ast.Module) -> bool:
    """Whether the code imports tensorflow (tf.keras), whose defaults are Keras 3's."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(
            alias.name.split(".")[0] == "tensorflow" for alias in node.names
        ):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "tensorflow":
            return True
    return False


def _without_input_scaling(source: _Source, nodes: list[ast.expr]) -> tuple[list[ast.expr], bool]:
    """The layers with a Rescaling(1./255) before the first real layer taken out, and whether
    there was one (a Rescaling anywhere else is refused by `_layer`)."""
    for index, node in enumerate(nodes):
        call = source.resolve(node, "a layer")
        name = source.callee(call) if isinstance(call, ast.Call) else None
        if name in _INPUT_LAYERS:
            continue
        if name == INPUT_SCALING and isinstance(call, ast.Call):
            if not _is_input_scaling(source, call):
                raise _scaling_refused(source, call)
            return [*nodes[:index], *nodes[index + 1 :]], True
        break
    return nodes, False


def _flattened(source: _Source, nodes: list[ast.expr]) -> list[ast.expr]:
    """The layers with each nested `Sequential([...])` (written inline or named, as a
    tutorial's `data_augmentation`) replaced by its own layers: a chain within the chain."""
    flat = []
    for node in nodes:
        call = source.resolve(node, "a layer")
        if isinstance(call, ast.Call) and source.callee(call) == "Sequential":
            flat += _flattened(source, _list_form_layers(source, call))
        else:
            flat.append(node)
    return flat


def _without_augmentation(
    source: _Source, nodes: list[ast.expr], input_shape: tuple[object, ...] | None
) -> tuple[list[ast.expr], list[KerasObject]]:
    """The layers with the random layers at the input taken out, and those as `augment` items
    (a random layer anywhere else is refused by `_layer`)."""
    kept, found = [], []
    for position, node in enumerate(nodes):
        call = source.resolve(node, "a layer")
        name = source.callee(call) if isinstance(call, ast.Call) else None
        if name in _INPUT_LAYERS:
            kept.append(node)
        elif keras_augment.is_random_layer(name):
            found.append(_augmentation(source, call, name, input_shape))  # type: ignore[arg-type]
        else:
            return [*kept, *nodes[position:]], found
    return kept, found


def _augmentation(
    source: _Source, call: ast.Call, name: str, input_shape: tuple[object, ...] | None
) -> KerasObject:
    """One random layer call as an `augment` item, its arguments read as written literals."""
    try:
        keras_augment.check_supported(name)
        arguments = _bind_arguments(source, call, name, keras_augment.POSITIONAL[name])
        values = {
            argument: source.literal(node, f"{name} argument {argument!r}")
            for argument, node in arguments.items()
            if argument not in _DROPPED
        }
        return keras_augment.augmentation(name, values, input_shape)
    except SpecError as error:
        raise source.error(call, str(error)) from None


_SHAPE_ARGUMENTS = ("input_shape", "batch_input_shape", "shape", "batch_shape")


def _shape_argument(source: _Source, nodes: list[ast.expr]) -> tuple[str, ast.expr] | None:
    """The first input shape argument of the layers (input_shape=..., Input((28, 28, 1)))."""
    for node in nodes:
        call = source.resolve(node, "a layer")
        if not isinstance(call, ast.Call):
            continue
        for keyword in call.keywords:
            if keyword.arg in _SHAPE_ARGUMENTS:
                return keyword.arg, keyword.value
        if source.callee(call) == "Input" and call.args:  # keras.Input(shape, batch_size, ...)
            return "shape", call.args[0]
    return None


def _input_shape(source: _Source, nodes: list[ast.expr]) -> str | None:
    """The input shape the Keras code gives, as written (for a note)."""
    found = _shape_argument(source, nodes)
    return source.snippet(found[1]) if found else None


def _image_shape(source: _Source, nodes: list[ast.expr]) -> tuple[object, ...] | None:
    """The input shape as written-out values, batch size left out; None if not written out
    (the dataset gives the shape: only a RandomCrop's check reads this)."""
    found = _shape_argument(source, nodes)
    if found is None:
        return None
    try:
        value = source.literal(found[1], "the input shape")
    except SpecError:
        return None
    if not isinstance(value, tuple):
        return None
    return value[1:] if found[0].startswith("batch") else value


def _model_calls(source: _Source, site: _Site) -> tuple[list[ast.expr], ast.Call | None]:
    """The model's layer expressions, in order, and its last `compile(...)` call."""
    nodes = _list_form_layers(source, site.call)
    compile_call = None
    for statement in site.body:
        method, call = _method_call(statement, site.var)
        if method == "add":
            nodes.append(_added_layer(source, call, site.var))
        elif method == "compile":
            compile_call = call
        elif method == "pop":
            raise source.error(call, f"{site.var}.pop() is not supported; leave the layer out")
        elif method is None:
            _refuse_hidden_layers(source, statement, site.var)
    return nodes, compile_call


def _method_call(statement: ast.stmt, var: str) -> tuple[str | None, ast.Call]:
    """('add', call) for a statement `var.add(...)`; (None, ...) for any other statement."""
    call = statement.value if isinstance(statement, ast.Expr) else None
    if isinstance(call, ast.Call) and _is_method_of(call, var):
        return call.func.attr, call  # type: ignore[attr-defined]
    return None, call  # type: ignore[return-value]


def _is_method_of(call: ast.Call, var: str) -> bool:
    func = call.func
    return (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id == var
    )


def _refuse_hidden_layers(source: _Source, statement: ast.stmt, var: str) -> None:
    """Refuse `var.add(...)` inside loops and conditions: reading code cannot follow them."""
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return  # another scope: a model of its own, if any
    for node in ast.walk(statement):
        if isinstance(node, ast.Call) and _is_method_of(node, var):
            method = node.func.attr  # type: ignore[attr-defined]
            if method in ("add", "pop"):
                raise source.error(
                    node,
                    f"{var}.{method}(...) inside another statement is not supported: cnnlab "
                    f"reads the code without running it; write one {var}.add(...) per layer",
                )


def _added_layer(source: _Source, call: ast.Call, var: str) -> ast.expr:
    arguments = _bind_arguments(source, call, f"{var}.add", ("layer",))
    if "layer" not in arguments:
        raise source.error(call, f"{var}.add(...) needs a layer")
    return arguments["layer"]


def _list_form_layers(source: _Source, call: ast.Call) -> list[ast.expr]:
    """The layers of `Sequential([...])` or `Sequential(layers=[...])`."""
    arguments = _bind_arguments(source, call, "Sequential", ("layers",))
    for argument, node in arguments.items():
        if argument not in ("layers", "name"):
            defaults = {"trainable": (True,)}.get(argument)
            _require_default(source, node, "Sequential", argument, defaults, ["layers", "name"])
    node = arguments.get("layers")
    found = node if node is None else source.resolve(node, "Sequential argument 'layers'")
    if found is None or (isinstance(found, ast.Constant) and found.value is None):
        return []
    if not isinstance(found, (ast.List, ast.Tuple)):
        raise source.error(
            found, f"Sequential layers must be a [...] list, got {source.snippet(found)}"
        )
    for item in found.elts:
        if isinstance(item, ast.Starred):
            raise source.error(item, "Sequential([*...]) is not supported; write the layers out")
    return list(found.elts)


def _model_name(source: _Source, site: _Site) -> str:
    """The model's `name=` if written, else the file's stem, else 'imported'."""
    for keyword in site.call.keywords:
        if keyword.arg == "name":
            value = source.literal(keyword.value, "Sequential argument 'name'")
            if isinstance(value, str) and value.strip() and value.isprintable():
                return value[:200]
    stem = Path(source.filename).stem
    return stem if stem and not source.filename.startswith("<") else "imported"


# --- Functional models ------------------------------------------------------------------------


def _functional_layers(source: _Source, call: ast.Call) -> keras_graph.Chain:
    """The layers of `Model(inputs, outputs)`, read by following the tensors back to the input."""
    arguments = _bind_arguments(source, call, "Model", ("inputs", "outputs"))
    for argument in ("inputs", "outputs"):
        if argument not in arguments:
            raise source.error(call, f"Model(...) needs its {argument}")
    reader = _TensorReader(source)
    inputs = [reader.tensor(node) for node in _tensor_list(source, arguments["inputs"])]
    outputs = _tensor_list(source, arguments["outputs"])
    if len(outputs) != 1:
        raise source.error(call, f"the model has {len(outputs)} outputs; cnnlab models have one")
    output = reader.tensor(outputs[0])
    if any(node.kind != "input" for node in inputs):
        raise source.error(call, "Model(inputs, ...): inputs must be keras.Input(...) tensors")
    return reader.graph.layers(inputs, output)


def _tensor_list(source: _Source, node: ast.expr) -> list[ast.expr]:
    found = source.resolve(node, "a model's tensors")
    if isinstance(found, (ast.List, ast.Tuple)):
        return list(found.elts)
    return [node]


class _TensorReader:
    """Follows tensor names back through the code to the layers applied, never running it."""

    def __init__(self, source: _Source) -> None:
        self.source = source
        self.graph = keras_graph.Graph()
        self.seen: dict[int, keras_graph.Node] = {}  # by the id of the expression making it
        self.applied: dict[int, int] = {}  # a layer object's expression -> line first applied
        self.input_shape: tuple[object, ...] | None = None  # as Input(shape=...) writes it
        self.in_loops = {
            id(inner): loop.lineno
            for loop in ast.walk(source.tree)
            if isinstance(loop, (ast.For, ast.AsyncFor, ast.While))
            for inner in ast.walk(loop)
        }

    def tensor(self, node: ast.expr, depth: int = 0) -> keras_graph.Node:
        if depth > MAX_LAYERS:
            raise self.source.error(node, f"more than {MAX_LAYERS} layers deep")
        found = self._value(node)
        if id(found) not in self.seen:
            self.seen[id(found)] = self._make(found, depth)
        return self.seen[id(found)]

    def _value(self, node: ast.expr) -> ast.expr:
        """The expression a tensor name was assigned (only straight assignments are read)."""
        while isinstance(node, ast.Name):
            binding = self.source.binding_before(node)
            if binding is None:
                raise self.source.error(node, f"tensor {node.id!r} is not assigned before its use")
            if binding.value is None:
                raise self.source.error(
                    node,
                    f"tensor {node.id!r} comes from code cnnlab does not run (a loop, a "
                    f"function's parameter, ... at line {binding.line}); write each layer out",
                )
            if id(binding.value) in self.in_loops:
                raise self.source.error(
                    node,
                    f"tensor {node.id!r} is made in the loop at line "
                    f"{self.in_loops[id(binding.value)]}, which cnnlab does not run; write "
                    "each layer out",
                )
            node = binding.value
        return node

    def _make(self, node: ast.expr, depth: int) -> keras_graph.Node:
        where = f"{self.source.filename}:{getattr(node, 'lineno', '?')}"
        if not isinstance(node, ast.Call):
            raise self.source.error(node, f"expected a tensor, got {self.source.snippet(node)}")
        callee = self.source.callee(node)
        if callee in _INPUT_LAYERS:
            self.input_shape = _image_shape(self.source, [node])
            return self.graph.input(where)
        if callee == "add":  # keras.layers.add([a, b])
            return self.graph.add(self._added(node, node.args), where)
        layer_call = self._layer_call(node)
        layer_name = self.source.callee(layer_call)
        if layer_name == "Add":
            return self.graph.add(self._added(node, node.args), where)
        if len(node.args) != 1 or node.keywords:
            raise self.source.error(node, f"{layer_name}(...) must be applied to one tensor")
        # A nested Sequential is its layers, in order; each is read before the tensor.
        steps = [self._step(step) for step in _flattened(self.source, [layer_call])]
        tensor = self.tensor(node.args[0], depth + 1)
        for step in steps:
            if isinstance(step, KerasObject):
                tensor = self.graph.augment(step, tensor, where)
            elif step == INPUT_SCALING:
                tensor = self.graph.scale(tensor, where)
            elif step is not None:  # None: a nested Sequential's own Input
                tensor = self.graph.apply(step, tensor, where)  # type: ignore[arg-type]
        return tensor

    def _step(self, node: ast.expr) -> spec.Layer | KerasObject | str | None:
        """One layer; a random one as its augment item, Rescaling(1/255) as INPUT_SCALING (the
        graph takes those out at the input and refuses them elsewhere)."""
        call = self.source.resolve(node, "a layer")
        name = self.source.callee(call) if isinstance(call, ast.Call) else None
        if keras_augment.is_random_layer(name):
            return _augmentation(self.source, call, name, self.input_shape)  # type: ignore[arg-type]
        if name == INPUT_SCALING and _is_input_scaling(self.source, call):  # type: ignore[arg-type]
            return INPUT_SCALING
        return _layer(self.source, node)

    def _layer_call(self, node: ast.Call) -> ast.Call:
        """`Conv2D(...)` of `Conv2D(...)(x)`, or of `conv(x)` after `conv = Conv2D(...)`."""
        func = node.func
        if isinstance(func, ast.Call):
            return func
        if isinstance(func, ast.Name) and self.source.binding_before(func) is not None:
            made = self.source.resolve(func, "a layer")
            if isinstance(made, ast.Call) and isinstance(self.source.callee(made), str):
                other = self.applied.setdefault(id(made), node.lineno)
                if other != node.lineno:
                    lines = sorted((other, node.lineno))
                    raise self.source.error(
                        node,
                        f"layer {func.id!r} is applied twice (lines {lines[0]} and {lines[1]}): "
                        "a shared layer, which cnnlab's models do not have",
                    )
                return made
        name = self.source.snippet(node.func)
        raise self.source.error(
            node,
            f"{name}(...) is not a Keras layer call cnnlab can read (a helper function is not "
            "run); write each layer out as x = layers.Conv2D(...)(x)",
        )

    def _added(self, node: ast.Call, args: list[ast.expr]) -> tuple[keras_graph.Node, ...]:
        if len(args) != 1:
            raise self.source.error(node, "Add()([a, b]) takes one list of tensors")
        items = self.source.resolve(args[0], "Add's tensors")
        if not isinstance(items, (ast.List, ast.Tuple)):
            raise self.source.error(node, "Add()([a, b]) takes a written-out list of tensors")
        return tuple(self.tensor(item) for item in items.elts)


def _compile_call(source: _Source, site: _Site) -> ast.Call | None:
    compile_call = None
    for statement in site.body:
        method, call = _method_call(statement, site.var)
        if method == "compile":
            compile_call = call
    return compile_call


# --- Compile: optimizer and loss --------------------------------------------------------------

# The Keras parameters of the optimizers cnnlab trains with, in Keras's order
# (keras/src/optimizers/*.py; Keras 2's keras/optimizers.py has the same ones but `lr`).
_OPTIMIZERS = {
    "adadelta": ("learning_rate", "rho", "epsilon"),
    "adam": ("learning_rate", "beta_1", "beta_2", "epsilon", "amsgrad"),
    "adamw": ("learning_rate", "weight_decay", "beta_1", "beta_2", "epsilon", "amsgrad"),
    "sgd": ("learning_rate", "momentum", "nesterov"),
    "rmsprop": ("learning_rate", "rho", "epsilon"),
}
_OPTIMIZER_READ: dict[str, _Convert] = {
    "learning_rate": _positive,
    "rho": _fraction,
    "epsilon": _positive,
    "beta_1": _fraction,
    "beta_2": _fraction,
    "amsgrad": _flag,
    "weight_decay": _non_negative,
    "momentum": _fraction,
    "nesterov": _flag,
}
_OPTIMIZER_DEFAULTS = {
    "decay": (0, 0.0),  # Keras 2's learning-rate decay; 0 means none
    "weight_decay": (None,),  # Keras 3, on optimizers other than AdamW
    "momentum": (0, 0.0),  # Keras 3's RMSprop
    "centered": (False,),
    "amsgrad": (False,),
    "clipnorm": (None,),
    "clipvalue": (None,),
    "global_clipnorm": (None,),
    "use_ema": (False,),
}
_LOSSES = ("categorical_crossentropy", "sparse_categorical_crossentropy")  # one-hot or int labels
_LOSS_CLASSES = ("CategoricalCrossentropy", "SparseCategoricalCrossentropy")
_LOSS_DEFAULTS = {
    "label_smoothing": (0, 0.0),
    "axis": (-1,),
    "ignore_class": (None,),
    "reduction": ("sum_over_batch_size", "auto"),
}


def _compiled_optimizer(
    source: _Source, call: ast.Call, layers: tuple[spec.Layer, ...]
) -> spec.OptimizerSpec:
    """The optimizer of `model.compile(...)`, after checking that its loss is cross-entropy."""
    arguments = _bind_arguments(
        source, call, "compile", ("optimizer", "loss", "metrics", "loss_weights")
    )
    if "loss" in arguments:
        _check_loss(source, arguments["loss"], layers)
    if "optimizer" not in arguments:
        return spec.OptimizerSpec("rmsprop")  # Keras's compile(optimizer="rmsprop") default
    return _optimizer(source, arguments["optimizer"])


def _optimizer(source: _Source, node: ast.expr) -> spec.OptimizerSpec:
    """'adam', Adam(), keras.optimizers.Adam(lr=0.01), or a name assigned one of these."""
    found = source.resolve(node, "the optimizer")
    if isinstance(found, ast.Call):
        keras_name = source.callee(found) or source.snippet(found)
    else:
        keras_name = source.literal(found, "the optimizer")
    # Keras matches optimizer names case-insensitively (keras/src/optimizers/__init__.py).
    name = keras_name.lower() if isinstance(keras_name, str) else ""
    if name not in _OPTIMIZERS:
        raise source.error(
            node,
            f"optimizer {_show(keras_name)} is not supported{_close_match(name, list(_OPTIMIZERS))}"
            f" (supported: {', '.join(_OPTIMIZERS)})",
        )
    if not isinstance(found, ast.Call):
        return spec.OptimizerSpec(name)
    return spec.OptimizerSpec(name, _optimizer_params(source, found, keras_name, name))


def _optimizer_params(
    source: _Source, call: ast.Call, keras_name: str, name: str
) -> tuple[tuple[str, float | bool], ...]:
    """The overrides written in an optimizer call, under Keras 3's names, in Keras's order."""
    params: dict[str, object] = {}
    for argument, node in _bind_arguments(source, call, keras_name, ("learning_rate",)).items():
        key = "learning_rate" if argument == "lr" else argument  # Keras 2 spelled it lr
        what = f"{keras_name} argument {argument!r}"
        if key in params:
            raise source.error(node, f"{keras_name} got both lr and learning_rate")
        if key == "epsilon" and _is_one_of(source, node, what, (None,)):
            continue  # Keras 2: epsilon=None means its default, K.epsilon() = 1e-7
        if key in _OPTIMIZERS[name]:
            params[key] = _OPTIMIZER_READ[key](source, node, what)
        elif argument != "name":
            supported = ["lr", *_OPTIMIZERS[name]]
            _require_default(
                source, node, keras_name, argument, _OPTIMIZER_DEFAULTS.get(argument), supported
            )
    return tuple((key, params[key]) for key in _OPTIMIZERS[name] if key in params)  # type: ignore[misc]


def _check_loss(source: _Source, node: ast.expr, layers: tuple[spec.Layer, ...]) -> None:
    """Refuse a loss cnnlab would not reproduce: anything but cross-entropy on the output."""
    found = node if source.unbound_reference(node) else source.resolve(node, "the loss")
    from_logits = False
    if isinstance(found, ast.Call):
        loss = source.callee(found) or source.snippet(found)
        if loss in _LOSS_CLASSES:
            from_logits = _loss_from_logits(source, found, loss)
    else:
        loss = source.unbound_reference(found) or source.literal(found, "the loss")
    if loss not in _LOSSES + _LOSS_CLASSES:
        raise source.error(
            node,
            f"loss {_show(loss)} is not supported: cnnlab trains with cross-entropy "
            f"(supported: {', '.join(_LOSSES + _LOSS_CLASSES)})",
        )
    if from_logits == _ends_in_softmax(layers):
        state = "ends" if from_logits else "does not end"
        raise source.error(
            node,
            f"the loss has from_logits={from_logits} but the model {state} in a softmax, "
            "which cnnlab does not reproduce; make the two agree",
        )


def _loss_from_logits(source: _Source, call: ast.Call, loss: str) -> bool:
    from_logits = False
    for argument, value in _bind_arguments(source, call, loss, ()).items():
        if argument == "from_logits":
            from_logits = _flag(source, value, f"{loss} argument 'from_logits'")
        elif argument != "name":
            _require_default(source, value, loss, argument, _LOSS_DEFAULTS.get(argument), [])
    return from_logits


def _ends_in_softmax(layers: tuple[spec.Layer, ...]) -> bool:
    last = layers[-1]
    return isinstance(last, (spec.Dense, spec.Activation)) and last.activation == "softmax"
