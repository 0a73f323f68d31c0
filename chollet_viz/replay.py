"""Replaying a Keras model layer by layer, to tap a layer's output anywhere inside it.

Used by ``activations.activation_model`` and by the CAM family.

Keras 3 cannot build ``Model(outer.inputs, [inner_layer.output, outer.output])`` when the
layer sits inside a nested model ("Graph disconnected"), and a Sequential model built
without ``keras.Input`` has no symbolic graph at all. Instead of relying on either, the
model is replayed on fresh ``keras.Input`` tensors: every layer is called again (same
objects, so the same weights), nested Functional and Sequential models are entered, and
a hook may record a layer's output or substitute the call (for example to drop the final
softmax). The result is an ordinary Functional model whose extra outputs are the taps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import keras

from keras.src.models.functional import Functional  # no public alias in Keras 3.15

Hook = Callable[[keras.layers.Layer], Callable | None]


def is_container(layer) -> bool:
    """True for models whose layers can be entered (Functional and Sequential)."""
    return isinstance(layer, (Functional, keras.Sequential))


def leaf_layers(model, prefix: str = ""):
    """Yield ``(path, layer)`` for every non-container layer, entering nested models."""
    for layer in model.layers:
        path = f"{prefix}{layer.name}"
        if is_container(layer):
            yield from leaf_layers(layer, prefix=path + "/")
        elif not isinstance(layer, keras.layers.InputLayer):
            yield path, layer


def output_layer(model):
    """The leaf layer that produces the model's (single) output."""
    layer = model
    while is_container(layer):
        if isinstance(layer, Functional) and len(layer.outputs) != 1:
            raise ValueError(f"Model {layer.name!r} has several outputs; CAM methods need one.")
        layer = layer.layers[-1]
    return layer


@dataclass
class Replay:
    """The result of replaying a model: a Functional model ``inputs -> [output, *taps]``."""

    model: keras.Model
    taps: list[str]
    shapes: dict[str, tuple] = field(default_factory=dict)  # output shape of every leaf, by path


def replay(model, input_shape, taps=(), substitute: Hook | None = None, with_output: bool = True) -> Replay:
    """Rebuild ``model`` on a fresh input of ``input_shape`` (without batch axis).

    ``taps`` are layers (leaves or nested models) whose outputs become extra model
    outputs, in that order; ``with_output=False`` keeps only them.
    ``substitute(layer)`` may return a callable used instead of ``layer`` for its call.
    """
    if not is_container(model):
        raise TypeError(
            f"Expected a Keras Functional or Sequential model, got {type(model).__name__}; "
            "subclassed models cannot be entered layer by layer."
        )
    tap_ids = {id(layer) for layer in taps}
    found: dict[int, object] = {}  # id(tapped layer) -> its output tensor
    shapes: dict[str, tuple] = {}

    def caller(prefix):
        def call(layer, *args, **kwargs):
            path = prefix + layer.name
            if is_container(layer):
                out = run(layer, args, kwargs, path + "/")
                if id(layer) in tap_ids:  # a nested model may itself be tapped
                    found[id(layer)] = out
                return out
            replacement = substitute(layer) if substitute is not None else None
            out = (layer if replacement is None else replacement)(*args, **kwargs)
            shapes[path] = tuple(getattr(out, "shape", ()))
            if id(layer) in tap_ids:
                found[id(layer)] = out
            return out

        return call

    def run(container, args, kwargs, prefix):
        """Call ``container`` on symbolic tensors layer by layer; returns its output(s)."""
        call = caller(prefix)
        if isinstance(container, keras.Sequential):
            (x,) = args
            for layer in container.layers:
                if not isinstance(layer, keras.layers.InputLayer):
                    x = call(layer, x)
            return x
        # A Functional model: ``clone_model`` (public API) replays it on fresh inputs of
        # its own, reusing every layer. The replay, with the taps it reached as extra
        # outputs, is wrapped as a model and called here, which joins the taps to the
        # caller's graph.
        before = set(found)
        clone = keras.models.clone_model(container, clone_function=lambda layer: layer, call_function=call)
        reached = [k for k in found if k not in before]
        wrapped = keras.Model(clone.inputs, [*clone.outputs, *(found[k] for k in reached)])
        outs = wrapped(*args, **kwargs)
        outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
        n_out = len(clone.outputs)
        found.update(zip(reached, outs[n_out:]))
        return outs[0] if n_out == 1 else outs[:n_out]

    inputs = keras.Input(shape=tuple(input_shape))
    output = run(model, (inputs,), {}, "")
    missing = [layer.name for layer in taps if id(layer) not in found]
    if missing:
        raise ValueError(f"Layers {missing} were not reached when running the model.")
    outputs = [output] if with_output else []
    outputs += [found[id(layer)] for layer in taps]
    return Replay(keras.Model(inputs, outputs), [layer.name for layer in taps], shapes)
