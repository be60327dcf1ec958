"""The layers each exit of a Keras model computes: what both the FLOP count (common.flops) and the
predicted instructions (common.target_cost) charge to a sample that leaves at that exit."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras


def _ancestors(tensor: keras.KerasTensor, seen: dict[str, keras.layers.Layer]) -> None:
    """Add the layers `tensor` depends on (itself included) to `seen`, in dependency order."""
    layer, node_index, _ = tensor._keras_history
    if layer.name in seen:
        return
    for parent in layer._inbound_nodes[node_index].input_tensors:
        _ancestors(parent, seen)
    seen[layer.name] = layer


def path_layers(model: keras.Model) -> list[list[keras.layers.Layer]]:
    """[[layer, ...] per exit] in dependency order, cumulative: exit k holds every layer exits 0..k
    compute (what a sample that leaves at exit k has computed)."""
    seen, paths = {}, []
    for output in model.outputs:
        _ancestors(output, seen)
        paths.append(list(seen.values()))
    return paths
