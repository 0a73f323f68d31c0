"""Finding a model's layers, and building the model tapped or cut at them: one place for both.

Every part of the package names layers the same way: by name (searched in nested models
too), by path ``"outer/inner"`` when a name is ambiguous, or by the layer object. A name
that is not there gets an error saying what is valid, with the closest names first.

Two models are built from the chosen layers:

- ``tapped_model``: inputs -> [the model's output, *the layers' outputs] (the CAM family
  needs features and class scores from one pass; a hook may replace layers' calls);
- ``cut_model``: inputs -> the layers' outputs only, without the layers after the deepest
  one (filter visualisation runs it at every step; activation models).

Keras 3 cannot build ``Model(outer.inputs, [inner_layer.output, outer.output])`` when the
layer sits inside a nested model ("Graph disconnected"), and a Sequential model built
without ``keras.Input`` has no symbolic graph at all. Instead of relying on either, the
model is *replayed* on fresh ``keras.Input`` tensors: every layer is called again (same
objects, so the same weights), nested Functional and Sequential models are entered, and
a hook may record a layer's output or substitute the call (for example to drop the final
softmax). The result is an ordinary Functional model whose extra outputs are the taps.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Callable, Iterator

import keras

from keras.src.models.functional import Functional  # no public alias in Keras 3.15

Hook = Callable[[keras.layers.Layer], Callable | None]

__all__ = [
    "FeatureOffset",
    "Replay",
    "cut_model",
    "find_layer",
    "find_layers",
    "model_input_shape",
    "is_container",
    "layer_paths",
    "leaf_layers",
    "output_layer",
    "replay",
    "tapped_model",
    "walk",
]


# --- walking a model ---------------------------------------------------------------------


def is_container(layer) -> bool:
    """True for models whose layers can be entered (Functional and Sequential)."""
    return isinstance(layer, (Functional, keras.Sequential))


def walk(model, prefix: str = "") -> Iterator[tuple[str, keras.layers.Layer]]:
    """Yield ``(path, layer)`` for every layer, nested models too (before their layers),
    depth first in model order; input layers are skipped."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        path = f"{prefix}{layer.name}"
        yield path, layer
        if is_container(layer):
            yield from walk(layer, prefix=path + "/")


def leaf_layers(model, prefix: str = "") -> Iterator[tuple[str, keras.layers.Layer]]:
    """Yield ``(path, layer)`` for every non-container layer, entering nested models."""
    for path, layer in walk(model, prefix):
        if not is_container(layer):
            yield path, layer


def output_layer(model):
    """The leaf layer that produces the model's (single) output."""
    layer = model
    while is_container(layer):
        if isinstance(layer, Functional) and len(layer.outputs) != 1:
            raise ValueError(f"Model {layer.name!r} has several outputs; CAM methods need one.")
        layer = layer.layers[-1]
    return layer


def model_input_shape(model) -> tuple:
    """The model's input shape without the batch axis; a clear error when it has none yet."""
    try:
        inputs = model.inputs
    except AttributeError:
        inputs = None
    if not inputs:
        raise ValueError(
            f"Model {model.name!r} has no defined input yet (a Sequential model built "
            "without keras.Input). Start it with keras.Input(shape), or call "
            f"{model.name}.build((None, height, width, channels)) first."
        )
    return tuple(inputs[0].shape[1:])


# --- finding layers ----------------------------------------------------------------------


def _listing(paths) -> str:
    return ", ".join(paths) or "(none)"


def _close(name: str, candidates: dict) -> list[str]:
    """Paths whose full path or last name is close to ``name`` (difflib), best first."""
    by_key = {}
    for path in candidates:
        by_key.setdefault(path, path)
        by_key.setdefault(path.rsplit("/", 1)[-1], path)
    matches = difflib.get_close_matches(name, list(by_key), n=3, cutoff=0.6)
    return list(dict.fromkeys(by_key[m] for m in matches))


def find_layer(model, layer, *, among: dict | None = None, valid=None) -> tuple[str, keras.layers.Layer]:
    """The ``(path, layer)`` that ``layer`` names in ``model``.

    ``layer`` is a name (searched in nested models too), a path ``"outer/inner"`` or a
    Layer object. ``among`` restricts the search to ``{path: layer}`` (default: every
    layer, nested models included). ``valid`` describes, in an error, what may be named
    (a sentence, or a callable making it only when needed); by default the paths searched.
    """
    candidates = dict(walk(model)) if among is None else dict(among)
    if isinstance(layer, keras.layers.Layer):
        matches = [p for p, found in candidates.items() if found is layer]
        name, label = layer.name, f"Layer object {layer.name!r}"
    elif isinstance(layer, str):
        # A full path names one layer; otherwise the name is looked up in nested models too.
        matches = [layer] if layer in candidates else [p for p in candidates if p.rsplit("/", 1)[-1] == layer]
        name, label = layer, f"layer named {layer!r}"
    else:
        raise TypeError(f"A layer is named by a string, an 'outer/inner' path or a Layer object, got {layer!r}.")
    if len(matches) == 1:
        return matches[0], candidates[matches[0]]
    if matches:
        raise ValueError(
            f"Layer name {name!r} is ambiguous in model {model.name!r}: it names "
            f"{', '.join(matches)}. Pass one of these paths."
        )
    close = _close(name, candidates)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else "."
    if valid is None:
        valid = f"Its layers are: {_listing(candidates)}"
    elif callable(valid):
        valid = valid()
    raise ValueError(f"Model {model.name!r} has no {label}{hint} {valid}.")


def _as_types(layer_types) -> tuple[type, ...]:
    types = layer_types if isinstance(layer_types, (tuple, list)) else (layer_types,)
    for t in types:
        if not (isinstance(t, type) and issubclass(t, keras.layers.Layer)):
            raise TypeError(f"layer_types must be Keras layer classes, got {t!r}.")
    return tuple(types)


def find_layers(model, layers=None, layer_types=None) -> list[tuple[str, keras.layers.Layer]]:
    """``(path, layer)`` for each of ``layers`` (names, paths or Layer objects, in that
    order), or for every layer of ``layer_types`` (a class or tuple of classes), or, with
    neither, for every layer. Nested models are searched through; a nested model itself
    is returned only when asked for by name or object."""
    if layers is not None and layer_types is not None:
        raise ValueError("Pass either layers (names or Layer objects) or layer_types, not both.")
    if layer_types is not None:
        types = _as_types(layer_types)
        found = [(p, layer) for p, layer in leaf_layers(model) if isinstance(layer, types)]
        if not found:
            names = sorted({type(layer).__name__ for _, layer in walk(model)})
            raise ValueError(
                f"Model {model.name!r} has no layer of type "
                f"{', '.join(t.__name__ for t in types)}; its layer types are {', '.join(names)}."
            )
        return found
    if layers is None:
        return list(leaf_layers(model))
    if isinstance(layers, (str, keras.layers.Layer)):
        layers = [layers]
    layers = list(layers)
    if not layers:
        raise ValueError("layers is empty: name at least one layer.")
    everything = dict(walk(model))
    return [find_layer(model, wanted, among=everything) for wanted in layers]


def layer_paths(model, layers=None, layer_types=None) -> list[str]:
    """Paths of the chosen layers (see ``find_layers``), nested ones as ``"outer/inner"``."""
    return [path for path, _ in find_layers(model, layers, layer_types)]


# --- replaying a model -------------------------------------------------------------------


@dataclass
class Replay:
    """The result of replaying a model: a Functional model ``inputs -> [output, *taps]``."""

    model: keras.Model
    taps: list[str]
    shapes: dict[str, tuple] = field(default_factory=dict)  # output shape of every leaf, by path
    offsets: list = field(default_factory=list)  # one FeatureOffset per tap (feature_offset=True)

    def __call__(self, x, deltas=None, *, training: bool = False):
        """Run the replayed model; ``deltas`` (one per tap, with ``feature_offset=True``)
        are added to the taps' outputs for this call only."""
        if deltas is None:
            return self.model(x, training=training)
        if len(deltas) != len(self.offsets):
            raise ValueError(
                f"Got {len(deltas)} feature offsets for {len(self.offsets)} offset taps; build the "
                "replay with tapped_model(..., feature_offset=True) and pass one delta per tap."
            )
        for offset, delta in zip(self.offsets, deltas):
            offset.delta = delta
        try:
            return self.model(x, training=training)
        finally:
            for offset in self.offsets:
                offset.delta = None


class FeatureOffset(keras.layers.Layer):
    """Adds ``delta`` to a tapped layer's output while ``Replay.__call__`` sets it; zero
    in value, so the outputs are unchanged.

    Keras 3 has no backend-neutral gradient with respect to an intermediate tensor (JAX
    differentiates functions of their arguments only): the gradient of a score with
    respect to the offset, an argument, is its gradient with respect to the features.
    A second ``keras.Input`` cannot carry ``delta``: the replay is one Functional model on
    one input, and Keras refuses an output that depends on another ("not connected to
    inputs"). So the layer holds ``delta`` during the call instead.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.delta = None

    def call(self, x):
        return x if self.delta is None else x + self.delta

    def compute_output_shape(self, input_shape):
        return input_shape


def replay(model, input_shape, taps=(), substitute: Hook | None = None, with_output: bool = True,
           inline: bool = False) -> Replay:
    """Rebuild ``model`` on a fresh input of ``input_shape`` (without batch axis).

    ``taps`` are layers (leaves or nested models) whose outputs become extra model
    outputs, in that order; ``with_output=False`` keeps only them.
    ``substitute(layer)`` may return a callable used instead of ``layer`` for its call.
    ``inline=True`` lays nested Functional models' layers out in the one graph instead of
    calling each as one block, so that Keras can leave out every layer the outputs do not
    need (a model cut at an early layer of a nested base then skips the rest of the base).
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
        if inline and len(args) == 1 and not kwargs and len(container.inputs) == 1:
            # Run on the caller's tensor, so that its layers join the caller's graph
            # directly. (``clone_model(input_tensors=...)`` would not do: a Functional
            # built from intermediate tensors re-creates them on inputs of its own.)
            return container._run_through_graph(args[0], call_fn=call)
        # A Functional model: ``clone_model`` (public API) replays it, reusing every layer,
        # on fresh inputs of its own. The replay, with the taps it reached as extra
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


# --- the tapped and the cut model --------------------------------------------------------


def _taps(model, layers) -> list[keras.layers.Layer]:
    return [layer for _, layer in find_layers(model, layers)]


def tapped_model(model, layers=(), *, input_shape=None, substitute: Hook | None = None,
                 feature_offset: bool = False) -> Replay:
    """``model`` replayed to return ``[its output, *the outputs of layers]`` in one pass.

    ``layers``: names, paths or Layer objects (see ``find_layer``); ``input_shape``
    (without batch axis) defaults to the model's; ``substitute`` as in ``replay``.
    ``feature_offset=True`` adds a ``FeatureOffset`` after each tapped (leaf) layer, so
    that ``replay(x, deltas)`` and a gradient with respect to ``deltas`` give d output /
    d features on every backend. Returns the ``Replay`` (its ``model``, the output shape
    of every layer reached, and the offsets).
    """
    shape = model_input_shape(model) if input_shape is None else tuple(input_shape)
    taps = _taps(model, layers) if layers else []
    if not feature_offset or not taps:
        return replay(model, shape, taps=taps, substitute=substitute)
    nested = [layer.name for layer in taps if is_container(layer)]
    if nested:
        raise ValueError(f"feature_offset taps single layers, not nested models: {nested}.")
    by_id = {id(layer): FeatureOffset(name=f"{layer.name}_offset") for layer in taps}

    def hook(layer):
        inner = substitute(layer) if substitute is not None else None
        offset = by_id.get(id(layer))
        if offset is None:
            return inner
        call = layer if inner is None else inner
        return lambda *args, **kwargs: offset(call(*args, **kwargs))

    result = replay(model, shape, taps=taps, substitute=hook)
    result.offsets = [by_id[id(layer)] for layer in taps]
    return result


def cut_model(model, layers, *, input_shape=None, name: str | None = None) -> keras.Model:
    """A model from ``model``'s input to the outputs of ``layers`` (a list, in order), with
    none of the layers after them: the layers may sit in nested or Sequential models.

    One layer gives a model with one output, several a list. The new model shares
    ``model``'s weights.
    """
    layers = [layers] if isinstance(layers, (str, keras.layers.Layer)) else list(layers)
    taps = _taps(model, layers)
    shape = model_input_shape(model) if input_shape is None else tuple(input_shape)
    replayed = replay(model, shape, taps=taps, with_output=False, inline=True).model
    outputs = replayed.outputs[0] if len(replayed.outputs) == 1 else replayed.outputs
    if name is None:
        name = f"{model.name}_to_{'_'.join(layer.name for layer in taps)}"
    return keras.Model(replayed.inputs[0], outputs, name=name)
