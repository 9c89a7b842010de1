"""A Keras functional graph (layers applied to tensors, `Add` joining two) as cnnlab's layers.

Both Keras importers build a `Graph` (from code read with `ast`, or from a JSON config) and ask
it for a layer list. A chain of layers stays a chain; an `Add` of two branches that leave one
tensor becomes a `Residual` block: the longer branch is its layers, the other its shortcut,
which must be the tensor itself (identity) or a 1x1 Conv2D with the block's strides then
BatchNormalization (projection, as Keras's ResNet v1). An `Activation` right after the `Add`
becomes the block's activation. Anything else (two inputs, a tensor used twice without an
`Add` joining it back, a `Concatenate`, another shortcut) is refused naming where it is.

What cnnlab does outside the model is taken out of the chain's start: random augmentation
layers applied to the input (the study's `[training] augment`), then a Rescaling(1/255)
(cnnlab's own input scaling); anywhere else they are refused, as the Sequential path does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from cnnlab import keras_augment, spec
from cnnlab.errors import SpecError
from cnnlab.spec.recipes import KerasObject


@dataclass(eq=False)
class Node:
    """One tensor: the graph's input, a layer applied to one tensor, or an Add of two."""

    kind: str  # "input", "layer", "add", "augment" (a random layer) or "scale" (x / 255)
    where: str  # "file.py:12" or "config layer 'conv2d_3'", for errors
    layer: spec.Layer | None = None
    inputs: tuple[Node, ...] = ()
    order: int = 0  # creation order: a later tensor never feeds an earlier one
    augmentation: KerasObject | None = None  # of an "augment" node


@dataclass(frozen=True)
class Chain:
    """A graph's layers, and what was taken out of their start."""

    layers: tuple[spec.Layer, ...]
    augmentation: tuple[KerasObject, ...] = ()
    scaled: bool = False


_LEFT_OUT = ("augment", "scale")


@dataclass
class Graph:
    nodes: list[Node] = field(default_factory=list)

    def input(self, where: str) -> Node:
        return self._add(Node("input", where))

    def apply(self, layer: spec.Layer, tensor: Node, where: str) -> Node:
        return self._add(Node("layer", where, layer, (tensor,)))

    def augment(self, item: KerasObject, tensor: Node, where: str) -> Node:
        return self._add(Node("augment", where, None, (tensor,), augmentation=item))

    def scale(self, tensor: Node, where: str) -> Node:
        return self._add(Node("scale", where, None, (tensor,)))

    def add(self, tensors: tuple[Node, ...], where: str) -> Node:
        if len(tensors) != 2:
            raise SpecError(
                f"{where}: Add of {len(tensors)} tensors; cnnlab's residual block adds two"
            )
        return self._add(Node("add", where, None, tensors))

    def _add(self, node: Node) -> Node:
        node.order = len(self.nodes)
        self.nodes.append(node)
        return node

    def layers(self, inputs: list[Node], output: Node) -> Chain:
        """The layers from the one input to `output`, residual blocks found where they are."""
        if len(inputs) != 1:
            raise SpecError(
                f"{output.where}: the model has {len(inputs)} inputs; cnnlab models take one image"
            )
        self._check_uses(inputs[0], output)
        return _without_input_steps(_chain(output, inputs[0]))

    def _check_uses(self, start: Node, output: Node) -> None:
        """Each tensor feeds one layer, except a block's input, which an Add joins back."""
        used: dict[int, list[Node]] = {}
        for node in _ancestors(output):
            for source in node.inputs:
                used.setdefault(id(source), []).append(node)
        for node in _ancestors(output):
            consumers = used.get(id(node), [])
            if len(consumers) > 2:
                raise SpecError(
                    f"{node.where}: this tensor feeds {len(consumers)} layers; cnnlab expresses "
                    "chains of layers and residual blocks (a tensor and its shortcut) only"
                )
        if start not in _ancestors(output):
            raise SpecError(f"{output.where}: the model's output does not depend on its input")


def _ancestors(node: Node) -> set[Node]:
    seen: set[Node] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(current.inputs)
    return seen


def _without_input_steps(items: list[spec.Layer | Node]) -> Chain:
    """The chain with its leading augment nodes, then one scale node, taken out; SpecError
    naming any other augment or scale node."""
    start = 0
    while start < len(items) and getattr(items[start], "kind", None) == "augment":
        start += 1
    augmentation = tuple(node.augmentation for node in items[:start])  # type: ignore[union-attr]
    scaled = start < len(items) and getattr(items[start], "kind", None) == "scale"
    rest = items[start + scaled :]
    for item in rest:
        if isinstance(item, Node):
            raise SpecError(f"{item.where}: {_misplaced(item)}")
    return Chain(tuple(_fold_activations(rest)), augmentation, scaled)  # type: ignore[arg-type]


def _misplaced(node: Node) -> str:
    if node.augmentation is not None:
        return keras_augment.misplaced(node.augmentation.name)
    return (
        "Rescaling(1/255) is read only applied to the model's input (after its random layers, "
        "if any), as cnnlab's own x / 255, and left out; here it follows other layers"
    )


def _chain(node: Node, stop: Node) -> list[spec.Layer | Node]:
    """The layers from `stop` (exclusive) to `node` (inclusive), in order; an "augment" or
    "scale" node stays a Node (`_without_input_steps` takes those at the start out)."""
    layers: list[spec.Layer | Node] = []
    while node is not stop:
        if node.kind == "input":
            raise SpecError(f"{node.where}: a second input; cnnlab models take one image")
        if node.kind == "add":
            block, node = _block(node)
            layers.append(block)
            continue
        layers.append(node if node.kind in _LEFT_OUT else node.layer)  # type: ignore[arg-type]
        node = node.inputs[0]
    return layers[::-1]


def _block(add: Node) -> tuple[spec.Residual, Node]:
    """The residual block an Add closes, and the tensor it starts from."""
    first, second = add.inputs
    common = _ancestors(first) & _ancestors(second)
    if not common:
        raise SpecError(f"{add.where}: Add of two tensors that share no input")
    fork = max(common, key=lambda node: node.order)
    branches = sorted((_chain(first, fork), _chain(second, fork)), key=len)
    for item in (*branches[0], *branches[1]):
        if isinstance(item, Node):
            reason = (
                keras_augment.in_a_branch(item.augmentation.name)
                if item.augmentation
                else _misplaced(item)
            )
            raise SpecError(f"{item.where}: {reason}")
    if not branches[1]:
        raise SpecError(f"{add.where}: Add of a tensor to itself; a block needs layers")
    for shortcut, body in (branches, branches[::-1]):  # the shorter branch first
        kind = _shortcut_kind(shortcut, body)
        if kind is not None:
            return spec.Residual(layers=tuple(body), shortcut=kind), fork
    raise SpecError(
        f"{add.where}: neither branch of the Add is a shortcut cnnlab expresses: the tensor "
        "itself, or Conv2D(filters, 1, strides=<the block's strides>) then BatchNormalization() "
        f"with Keras's defaults; got {_names(branches[0])}"
    )


def _shortcut_kind(shortcut: list[spec.Layer], body: list[spec.Layer]) -> str | None:
    if not shortcut:
        return "identity"
    strides = spec.kinds.block_strides(tuple(body))
    filters = getattr(shortcut[0], "filters", 0)
    expected = (
        spec.Conv2D(filters=filters, kernel_size=(1, 1), strides=strides),
        spec.BatchNormalization(),
    )
    return "projection" if tuple(shortcut) == expected else None


def _names(layers: list[spec.Layer]) -> str:
    return ", ".join(repr(layer) for layer in layers)


def _fold_activations(layers: list[spec.Layer]) -> list[spec.Layer]:
    """A block followed by an Activation takes it as its own (Keras creates them in that order)."""
    folded: list[spec.Layer] = []
    for layer in layers:
        previous = folded[-1] if folded else None
        if (
            isinstance(layer, spec.Activation)
            and isinstance(previous, spec.Residual)
            and previous.activation == "linear"
        ):
            folded[-1] = dataclasses.replace(previous, activation=layer.activation)
        else:
            folded.append(layer)
    return folded
