"""Intermediate activations: models that return what chosen layers output, and channel ranking.

``activation_model(model, layers=[...])`` or ``activation_model(model, layer_types=...)``
builds a Keras model from the input of ``model`` to the outputs of the chosen layers, in
the order asked for. Layers inside a nested model (the VGG16 base inside a classifier)
are reached by name, or by the path ``"vgg16/block1_pool"`` when a name is ambiguous.

Building such a model with ``keras.Model(model.input, inner_layer.output)`` fails for a
nested model ("Graph disconnected"): the inner layer's output lives in the nested model's
own graph. Here the model is replayed layer by layer on a fresh input instead (see
``chollet_viz.replay``, which the CAM family uses too), recording the chosen outputs.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np

from .replay import replay

__all__ = [
    "activation_model",
    "activations",
    "channel_means",
    "image_batch",
    "layer_paths",
    "rank_channels",
]


# --- finding layers ---------------------------------------------------------------------


def _children(model: keras.Model) -> list[keras.layers.Layer]:
    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def _walk(model: keras.Model, prefix: tuple = ()):
    """Yield (path of layers, path string) for every layer, depth first, in model order."""
    for layer in _children(model):
        path = (*prefix, layer)
        yield path, "/".join(step.name for step in path)
        if isinstance(layer, keras.Model):
            yield from _walk(layer, path)


def _as_types(layer_types) -> tuple[type, ...]:
    types = layer_types if isinstance(layer_types, (tuple, list)) else (layer_types,)
    for t in types:
        if not (isinstance(t, type) and issubclass(t, keras.layers.Layer)):
            raise TypeError(f"layer_types must be Keras layer classes, got {t!r}.")
    return tuple(types)


def _resolve(model: keras.Model, layers=None, layer_types=None) -> list[tuple]:
    """Turn names, paths, Layer objects or layer types into paths of layers."""
    if layers is not None and layer_types is not None:
        raise ValueError("Pass either layers (names or Layer objects) or layer_types, not both.")
    everything = list(_walk(model))
    if layer_types is not None:
        types = _as_types(layer_types)
        # A nested model is searched through, never returned itself unless asked by name.
        found = [p for p, _ in everything if isinstance(p[-1], types) and not isinstance(p[-1], keras.Model)]
        if not found:
            names = sorted({type(p[-1]).__name__ for p, _ in everything})
            raise ValueError(
                f"Model {model.name!r} has no layer of type "
                f"{', '.join(t.__name__ for t in types)}; its layer types are {', '.join(names)}."
            )
        return found
    if layers is None:
        return [p for p, _ in everything if not isinstance(p[-1], keras.Model)]
    if isinstance(layers, (str, keras.layers.Layer)):
        layers = [layers]
    layers = list(layers)
    if not layers:
        raise ValueError("layers is empty: name at least one layer.")
    by_path = {s: p for p, s in everything}
    paths = []
    for wanted in layers:
        if isinstance(wanted, keras.layers.Layer):
            matches = [p for p, _ in everything if p[-1] is wanted]
            label = f"Layer object {wanted.name!r}"
        elif isinstance(wanted, str):
            matches = [by_path[wanted]] if wanted in by_path else [p for p, _ in everything if p[-1].name == wanted]
            label = f"Layer {wanted!r}"
        else:
            raise TypeError(f"layers must hold layer names or Layer objects, got {wanted!r}.")
        if not matches:
            raise ValueError(
                f"{label} is not in model {model.name!r}. Its layers are: "
                + ", ".join(s for _, s in everything)
                + "."
            )
        if len(matches) > 1:
            options = ", ".join("/".join(step.name for step in p) for p in matches)
            raise ValueError(f"{label} is ambiguous in model {model.name!r}; name one of: {options}.")
        paths.append(matches[0])
    return paths


def layer_paths(model: keras.Model, layers=None, layer_types=None) -> list[str]:
    """Names of the chosen layers, nested ones as ``"outer/inner"`` paths.

    With neither argument, every layer (nested models searched through) is listed.
    """
    return ["/".join(step.name for step in path) for path in _resolve(model, layers, layer_types)]


# --- building the activation model ------------------------------------------------------


def _graph(model: keras.Model):
    """The functional graph of a model: itself, or a Sequential model's inner Functional."""
    try:
        model.inputs
    except AttributeError:
        raise ValueError(
            f"Model {model.name!r} has no defined input yet (a Sequential model built "
            "without keras.Input). Start it with keras.Input(shape), or call "
            f"{model.name}.build((None, height, width, channels)) first."
        ) from None
    return getattr(model, "_functional", None) or model


def activation_model(model: keras.Model, layers=None, layer_types=None) -> keras.Model:
    """A model from ``model``'s input to the outputs of the chosen layers (a list, in order).

    ``layers``: names, ``"outer/inner"`` paths or Layer objects; ``layer_types``: a layer
    class or tuple of classes (e.g. ``(Conv2D, MaxPooling2D)``), searched in nested models
    too. With neither, every layer is used. The new model shares ``model``'s weights.
    """
    paths = _resolve(model, layers, layer_types)
    input_shape = _graph(model).inputs[0].shape[1:]
    taps = [path[-1] for path in paths]
    replayed = replay(model, input_shape, taps=taps, with_output=False).model
    return keras.Model(replayed.inputs[0], replayed.outputs, name=f"{model.name}_activations")


# --- inputs -----------------------------------------------------------------------------


def _expected_shape(model: keras.Model) -> tuple:
    shape = tuple(_graph(model).inputs[0].shape[1:])
    if len(shape) != 3:
        raise ValueError(f"Model {model.name!r} does not take images: its input shape is {shape}.")
    return shape


def _load(path: Path, size, channels: int) -> np.ndarray:
    from .datasets import load_image

    if path.is_dir():
        raise ValueError(f"{path} is a folder, not an image file.")
    image = load_image(path, target_size=size if None not in size else None)
    if channels == 1:  # ITU-R 601 luma, as Pillow's convert("L") computes it
        image = image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return image


def convert_channels(array: np.ndarray, channels: int) -> np.ndarray:
    """Gray, RGB or RGBA images (..., c) to ``channels`` (1 or 3), as Pillow converts them.

    Gray is repeated into RGB, RGBA loses its alpha, and RGB(A) becomes gray by ITU-R 601
    luma. The channel axis is the last one and is kept.
    """
    got = array.shape[-1]
    if got == channels:
        return array
    if channels == 3 and got == 1:
        return np.repeat(array, 3, axis=-1)
    if channels == 3 and got == 4:
        return array[..., :3]
    if channels == 1 and got in (3, 4):
        return array[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)[:, None]
    raise ValueError(
        f"got {got} channels where {channels} are needed; gray (1 channel), RGB (3) and RGBA (4) "
        "images can be converted"
    )


def image_batch(image, model: keras.Model) -> np.ndarray:
    """A float32 batch (n, height, width, channels) that ``model`` accepts, from ``image``.

    ``image`` is a file path, a registered image name (``"cat.1700.jpg"``), one image
    (h, w), (h, w, c) or a batch (n, h, w, c). Files are resized to the model's input
    size; arrays of another size are rejected. Gray images become RGB and RGBA images
    lose their alpha channel (as Pillow's ``convert("RGB")`` does) when the model takes
    RGB; RGB becomes gray for a one-channel model. Values are not rescaled.
    """
    height, width, channels = _expected_shape(model)
    expected = f"(height, width, channels) = ({height}, {width}, {channels}) or a batch (n, {height}, {width}, {channels})"
    if isinstance(image, (str, os.PathLike)):
        image = _load(Path(image), (height, width), channels)
    array = np.asarray(image)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise TypeError(f"Expected an image path or a numeric array, got {type(image).__name__}.")
    array = array.astype(np.float32)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[0] == 0:
        raise ValueError(f"Expected an image of shape {expected}; got an array of shape {np.shape(image)}.")
    try:
        array = convert_channels(array, channels)
    except ValueError as exc:
        raise ValueError(f"Expected an image of shape {expected}; {exc} (shape {np.shape(image)}).") from None
    for got_size, want, what in ((array.shape[1], height, "height"), (array.shape[2], width, "width")):
        if want is not None and got_size != want:
            raise ValueError(
                f"Expected an image of shape {expected}; got shape {np.shape(image)} ({what} "
                f"{got_size}, not {want}). Load files with chollet_viz.datasets.load_image(path, "
                f"target_size=({height}, {width})) or resize arrays with chollet_viz.plotting.resize."
            )
    return array


def activations(model: keras.Model, image, layers=None, layer_types=None, preprocess=None) -> dict[str, np.ndarray]:
    """The chosen layers' activations for ``image``, as {layer path: array}, in layer order.

    ``image`` goes through :func:`image_batch`; ``preprocess`` (e.g. ``lambda x: x / 255``)
    is applied to the batch before the model sees it.
    """
    names = layer_paths(model, layers, layer_types)
    batch = image_batch(image, model)
    if preprocess is not None:
        batch = preprocess(batch)
    # A direct call: predict() would trace a new tf.function for every new model.
    outputs = activation_model(model, layers=names)(batch, training=False)
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    return {name: keras.ops.convert_to_numpy(out) for name, out in zip(names, outputs)}


# --- ranking channels -------------------------------------------------------------------


def single_activation(activation) -> np.ndarray:
    """One image's activation as (height, width, channels), from that or (1, h, w, c)."""
    activation = np.asarray(activation)
    if activation.ndim == 4:
        if activation.shape[0] != 1:
            raise ValueError(f"Expected one image's activation, got a batch of {activation.shape[0]}.")
        activation = activation[0]
    if activation.ndim != 3:
        raise ValueError(f"Expected an activation of shape (height, width, channels), got {activation.shape}.")
    return activation


def channel_means(activation) -> np.ndarray:
    """Mean of each channel of one activation (h, w, c) or (1, h, w, c); shape (c,)."""
    return single_activation(activation).astype(np.float64).mean(axis=(0, 1))


def rank_channels(activation, top: int | None = 5) -> np.ndarray:
    """Indices of the ``top`` channels with the highest mean activation, highest first.

    Ties keep channel order; ``top=None`` ranks every channel.
    """
    means = channel_means(activation)
    if top is not None and (isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1):
        raise ValueError(f"top must be a positive integer or None, got {top!r}.")
    order = np.argsort(-means, kind="stable")
    return order if top is None else order[:top]
