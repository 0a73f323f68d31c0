"""The layers filter visualisation reads: found by ``chollet_viz.layers`` (names, paths,
nested and Sequential models), checked to output 4-D feature maps, and the model cut there."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from .. import layers as L


def _rank(layer: keras.layers.Layer) -> int | None:
    try:
        return len(layer.output.shape)
    except (AttributeError, ValueError):  # a layer never called on a symbolic input
        return None


def conv_layer_names(model: keras.Model) -> list[str]:
    """Names of the convolution layers of ``model``, in model order; those inside nested
    models as ``"outer/inner"`` paths."""
    return [path for path, layer in L.leaf_layers(model) if isinstance(layer, keras.layers.Conv2D)]


def _layer_list(model: keras.Model) -> str:
    convs = conv_layer_names(model)
    if convs:
        return "Its convolution layers are: " + ", ".join(convs)
    four_d = [path for path, layer in L.leaf_layers(model) if _rank(layer) == 4]
    return "Its layers with a 4-D output are: " + (", ".join(four_d) or "(none)")


def get_layer(model: keras.Model, name: str) -> keras.layers.Layer:
    """The layer ``name`` (or ``"outer/inner"`` path), nested models searched too; an
    unknown name lists the convolution layers."""
    if not isinstance(name, str):
        raise TypeError(f"A layer is named by a string, got {name!r}.")
    return L.find_layer(model, name, valid=lambda: _layer_list(model))[1]


def feature_layer(model: keras.Model, name: str) -> keras.layers.Layer:
    """The layer ``name``, checked to output 4-D feature maps (batch, height, width, channels)."""
    layer = get_layer(model, name)
    rank = _rank(layer)
    if rank != 4:
        shape = tuple(layer.output.shape) if rank is not None else "unknown"
        raise ValueError(
            f"Layer {name!r} outputs shape {shape}, not 4-D feature maps (batch, height, width, "
            f"channels), so it has no filters to visualise. {_layer_list(model)}."
        )
    return layer


def channel_count(layer: keras.layers.Layer) -> int:
    return int(layer.output.shape[-1])


def check_channels(model: keras.Model, name: str, indices: Sequence[int]) -> None:
    """Raise if any index is not a channel (filter) of the 4-D layer ``name``."""
    count = channel_count(feature_layer(model, name))
    bad = [int(i) for i in indices if not 0 <= int(i) < count]
    if bad:
        raise IndexError(
            f"Filter index {bad[0]} is out of range for layer {name!r}, which has {count} "
            f"filters: valid indices are 0 to {count - 1}."
        )


def cut_model(model: keras.Model, names: Sequence[str]) -> keras.Model:
    """A model from ``model``'s input to the outputs of the named layers, nothing further.

    The layers may sit in nested or Sequential models (see ``chollet_viz.layers.cut_model``);
    the layers after the deepest target are left out, so they cost nothing.
    """
    for name in names:
        get_layer(model, name)  # the filters' error message for an unknown name
    return L.cut_model(model, list(names), name=f"{model.name}_to_{'_'.join(names)}".replace("/", "_"))
