"""Intermediate activations: models that return what chosen layers output, and channel ranking.

``activation_model(model, layers=[...])`` or ``activation_model(model, layer_types=...)``
builds a Keras model from the input of ``model`` to the outputs of the chosen layers, in
the order asked for. Layers inside a nested model (the VGG16 base inside a classifier)
are reached by name, or by the path ``"vgg16/block1_pool"`` when a name is ambiguous.

Building such a model with ``keras.Model(model.input, inner_layer.output)`` fails for a
nested model ("Graph disconnected"): the inner layer's output lives in the nested model's
own graph. Here the model is replayed layer by layer on a fresh input instead (see
``chollet_viz.layers``, which the CAM family and filter visualisation use too).
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np

from .layers import cut_model, find_layers, layer_paths, model_input_shape

__all__ = [
    "activation_model",
    "activations",
    "channel_means",
    "image_batch",
    "layer_paths",
    "rank_channels",
]


# --- the activation model ---------------------------------------------------------------


def activation_model(model: keras.Model, layers=None, layer_types=None) -> keras.Model:
    """A model from ``model``'s input to the outputs of the chosen layers (a list, in order).

    ``layers``: names, ``"outer/inner"`` paths or Layer objects; ``layer_types``: a layer
    class or tuple of classes (e.g. ``(Conv2D, MaxPooling2D)``), searched in nested models
    too. With neither, every layer is used. The new model shares ``model``'s weights.
    """
    chosen = [layer for _, layer in find_layers(model, layers, layer_types)]
    cut = cut_model(model, chosen)
    return keras.Model(cut.inputs[0], list(cut.outputs), name=f"{model.name}_activations")


# --- inputs -----------------------------------------------------------------------------


def _expected_shape(model: keras.Model) -> tuple:
    shape = model_input_shape(model)
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
    # A direct call: predict() would compile a new function (tf.function, jax.jit) for every new model.
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
