"""What gradient ascent maximises: one score per image of the batch, composable.

An objective reads the outputs of named layers and returns a tensor of shape (batch,):
the score of each image. The render loop maximises their sum; since the images of a batch
never interact, each image follows the gradient of its own score. Objectives add,
subtract and scale by numbers::

    channel("block4_conv1", 12) + 0.5 * channel("block4_conv1", 40)

``channel(layer, [f0, f1, ...])`` gives image i its own filter ``f_i``: one batch renders
many filters at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from numbers import Real

import keras
import numpy as np

from ._layers import check_channels, get_layer

__all__ = ["Objective", "channel", "neuron", "class_logit"]


class Objective:
    """A score per image, computed from a dict {layer name: layer output}.

    ``checks`` are called as ``check(model, batch_size)`` before rendering so that a bad
    layer name or filter index fails with a clear message, not deep inside the backend.
    """

    def __init__(self, fn: Callable, layers: Sequence[str], description: str, checks=()):
        self.fn = fn
        self.layers = tuple(dict.fromkeys(layers))
        self.description = description
        self.checks = tuple(checks)

    def __call__(self, outputs: dict):
        return self.fn(outputs)

    def check(self, model: keras.Model, batch_size: int) -> None:
        for check in self.checks:
            check(model, batch_size)

    def __repr__(self) -> str:
        return f"Objective({self.description})"

    def _combine(self, other: Objective, sign: float) -> Objective:
        if not isinstance(other, Objective):
            return NotImplemented
        op = "+" if sign > 0 else "-"
        return Objective(
            lambda outputs: self.fn(outputs) + sign * other.fn(outputs),
            self.layers + other.layers,
            f"{self.description} {op} {other.description}",
            self.checks + other.checks,
        )

    def __add__(self, other):
        return self._combine(other, 1.0)

    def __radd__(self, other):
        # sum([...]) starts from 0.
        if isinstance(other, Real) and other == 0:
            return self
        return NotImplemented

    def __sub__(self, other):
        return self._combine(other, -1.0)

    def __mul__(self, factor):
        if not isinstance(factor, Real):
            return NotImplemented
        factor = float(factor)
        return Objective(
            lambda outputs: factor * self.fn(outputs),
            self.layers,
            f"{factor:g} * ({self.description})",
            self.checks,
        )

    __rmul__ = __mul__

    def __neg__(self):
        return -1 * self


def _per_image(index, what: str):
    """An int for every image, or a sequence with one entry per image."""
    if isinstance(index, int) or getattr(index, "ndim", None) == 0:
        return int(index), None
    indices = [int(i) for i in index]
    if not indices:
        raise ValueError(f"{what} is an empty sequence.")

    def check_batch(model, batch_size):
        if len(indices) != batch_size:
            raise ValueError(
                f"{what} gives {len(indices)} indices, one per image, but the batch has "
                f"{batch_size} images."
            )

    return indices, check_batch


def channel(layer: str, index) -> Objective:
    """Mean activation of one channel (filter) of a 4-D layer: the book's loss.

    ``index`` is one filter for every image, or a sequence with one filter per image.
    """
    indices, check_batch = _per_image(index, "channel index")
    scalar = check_batch is None

    def fn(outputs):
        maps = outputs[layer]
        if scalar:
            selected = maps[..., indices]
        else:  # image i's own filter indices[i]
            index = keras.ops.convert_to_tensor(np.asarray(indices, np.int32).reshape(-1, 1, 1, 1))
            selected = keras.ops.squeeze(keras.ops.take_along_axis(maps, index, axis=3), axis=3)
        return keras.ops.mean(selected, axis=(1, 2))

    checks = [lambda model, n: check_channels(model, layer, [indices] if scalar else indices)]
    if check_batch:
        checks.append(check_batch)
    return Objective(fn, [layer], f"channel({layer!r}, {index!r})", checks)


def neuron(layer: str, index, x: int | None = None, y: int | None = None) -> Objective:
    """Activation of one channel at one position (the centre by default) of a 4-D layer."""
    indices, check_batch = _per_image(index, "neuron channel index")
    scalar = check_batch is None

    def fn(outputs):
        maps = outputs[layer]
        shape = keras.ops.shape(maps)
        row = shape[1] // 2 if y is None else y
        col = shape[2] // 2 if x is None else x
        values = maps[:, row, col, :]
        if scalar:
            return values[:, indices]
        index = keras.ops.convert_to_tensor(np.asarray(indices, np.int32).reshape(-1, 1))
        return keras.ops.squeeze(keras.ops.take_along_axis(values, index, axis=1), axis=1)

    checks = [lambda model, n: check_channels(model, layer, [indices] if scalar else indices)]
    if check_batch:
        checks.append(check_batch)
    return Objective(fn, [layer], f"neuron({layer!r}, {index!r}, x={x}, y={y})", checks)


def _check_logits(model: keras.Model, layer_name: str, index: int) -> None:
    layer = get_layer(model, layer_name)
    shape = tuple(layer.output.shape)
    if len(shape) != 2:
        raise ValueError(
            f"class_logit needs a layer of class scores with a 2-D output (batch, classes); "
            f"{layer_name!r} outputs {shape}."
        )
    activation = getattr(getattr(layer, "activation", None), "__name__", "linear")
    if activation in ("softmax", "sigmoid"):
        # A softmax probability also rises when the other classes fall, which is not what
        # a class visualisation should show; the logit (pre-activation) is the usual target.
        raise ValueError(
            f"Layer {layer_name!r} applies a {activation}; class_logit needs the logits, the "
            f"layer's output before that activation (a Dense layer without activation)."
        )
    if not 0 <= index < shape[1]:
        raise IndexError(
            f"Class index {index} is out of range for layer {layer_name!r}, which has "
            f"{shape[1]} classes: valid indices are 0 to {shape[1] - 1}."
        )


def class_logit(layer: str, index: int) -> Objective:
    """The logit of one class, read from a layer of shape (batch, classes) without softmax."""
    index = int(index)
    return Objective(
        lambda outputs: outputs[layer][:, index],
        [layer],
        f"class_logit({layer!r}, {index})",
        [lambda model, n: _check_logits(model, layer, index)],
    )
