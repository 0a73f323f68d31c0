"""The machinery every class activation method shares: a model replayed to give the class
score (logit by default) and one tapped feature map, and one compiled pass over it.

TensorFlow-specific code (``GradientTape``, ``tf.function``, ``tf.custom_gradient``) is
kept in this module.
"""

from __future__ import annotations

import functools
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from ..layers import find_layer, is_container, leaf_layers, output_layer, tapped_model

SCORES = ("logit", "probability")


# --- the class score -------------------------------------------------------------------


def _activation_name(layer) -> str | None:
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    act = getattr(layer, "activation", None)
    name = getattr(act, "__name__", None)
    return name if name in ("softmax", "sigmoid") else None


class _SwappedActivation(keras.layers.Layer):
    """Calls a layer with its ``activation`` temporarily replaced (same weights)."""

    def __init__(self, layer, activation, **kwargs):
        super().__init__(name=f"{layer.name}_{activation.__name__}", **kwargs)
        self.inner = layer
        self.replacement = activation

    def call(self, *args, **kwargs):
        saved = self.inner.activation
        self.inner.activation = self.replacement
        try:
            return self.inner(*args, **kwargs)
        finally:
            self.inner.activation = saved


def _identity(x, *args, **kwargs):
    return x


def class_index_of_top(logits):
    """Top class per sample; a single sigmoid unit means class 1 when its logit is > 0."""
    if logits.shape[-1] == 1:
        return tf.cast(logits[:, 0] > 0, tf.int32)
    return tf.argmax(logits, axis=-1, output_type=tf.int32)


def class_score(logits, index, score: str, independent: bool = False):
    """Per-sample score of class ``index[b]`` from logits.

    For a single sigmoid unit, class 1 scores ``z`` and class 0 scores ``-z`` (whose
    sigmoid is ``1 - p``), so "cat" has a score too in a cat-vs-dog model. The
    probability is a softmax over the classes, or a sigmoid per class when
    ``independent`` (a multi-label model whose last activation is a sigmoid).
    """
    if logits.shape[-1] == 1:
        z = logits[:, 0] * tf.cast(2 * index - 1, logits.dtype)
        return z if score == "logit" else tf.sigmoid(z)
    z = tf.gather(logits, index, axis=1, batch_dims=1)
    if score == "logit":
        return z
    if independent:
        return tf.sigmoid(z)
    return tf.gather(tf.nn.softmax(logits, axis=-1), index, axis=1, batch_dims=1)


# --- guided backpropagation ------------------------------------------------------------


def _guided(forward, upper=None):
    """A ReLU whose gradient passes only positive gradients where the unit was active."""

    @tf.custom_gradient
    def guided(x):
        y = forward(x)

        def grad(dy):
            active = x > 0 if upper is None else (x > 0) & (x < upper)
            return dy * tf.cast(active & (dy > 0), dy.dtype)

        return y, grad

    guided.__name__ = "guided_" + getattr(forward, "__name__", "relu")
    return guided


guided_relu = _guided(tf.nn.relu)
guided_relu6 = _guided(tf.nn.relu6, upper=6.0)


def _guided_substitute(layer):
    name = getattr(getattr(layer, "activation", None), "__name__", None)
    if name in ("relu", "relu6"):
        return _SwappedActivation(layer, guided_relu if name == "relu" else guided_relu6)
    if isinstance(layer, keras.layers.ReLU):
        slope = float(np.asarray(layer.negative_slope))
        threshold = float(np.asarray(layer.threshold))
        if slope != 0 or threshold != 0:
            return None  # a leaky ReLU stays as it is
        if layer.max_value is None:
            return keras.layers.Lambda(guided_relu, name=layer.name + "_guided")
        if float(layer.max_value) == 6.0:
            return keras.layers.Lambda(guided_relu6, name=layer.name + "_guided")
    return None


# --- finding the target layer ----------------------------------------------------------


def _describe(paths: Sequence[str], shapes: dict) -> str:
    return ", ".join(f"{p} {tuple(shapes[p][1:])}" for p in paths) or "none"


class ScoredModel:
    """A model replayed so that it returns (class logits, feature map of one layer).

    ``layer`` is a layer name (searched in nested models too), a path such as
    ``"vgg16/block5_conv3"``, a layer object, ``None`` for the last layer with a 4-D
    output, or ``False`` for no feature map. The model is built lazily at the first call
    because a Sequential model without ``keras.Input`` only knows its input shape then.
    """

    def __init__(self, model, layer=None, *, score: str = "logit", guided: bool = False):
        if score not in SCORES:
            raise ValueError(f"Unknown score {score!r}; valid scores are {SCORES}.")
        if not isinstance(model, keras.Model):
            raise TypeError(f"Expected a keras.Model, got {type(model).__name__}.")
        self.model = model
        self.score = score
        self.guided = guided
        self._layer_request = layer
        self._replayed = None
        self.layer_path: str | None = None
        self.n_outputs: int | None = None
        self.final_activation: str | None = None
        self.conv_layers: list[str] = []  # paths of the layers with a 4-D output

    # Building ---------------------------------------------------------------------------

    def _input_shape(self, images_shape):
        try:
            shape = tuple(self.model.inputs[0].shape[1:])
        except (AttributeError, IndexError):
            shape = tuple(images_shape[1:])
        return shape

    def _substitute(self, final):
        kind = _activation_name(final)
        self.final_activation = kind

        def substitute(layer):
            if layer is final and kind is not None:
                # The class score is the logit: skip the final softmax/sigmoid.
                if isinstance(layer, (keras.layers.Softmax, keras.layers.Activation)):
                    return _identity
                return _SwappedActivation(layer, keras.activations.linear)
            if self.guided:
                return _guided_substitute(layer)
            return None

        return substitute

    def _resolve(self, leaves: dict, shapes_of):
        request = self._layer_request
        if request is False:
            return None
        if request is None:
            shapes = shapes_of()
            convs = [p for p in leaves if len(shapes.get(p, ())) == 4]
            if not convs:
                raise ValueError(f"Model {self.model.name!r} has no layer with a 4-D output.")
            return convs[-1]
        if not isinstance(request, (str, keras.layers.Layer)):
            raise TypeError(f"layer must be a name, a path or a layer, got {type(request).__name__}.")

        def valid():
            shapes = shapes_of()
            convs = [p for p in leaves if len(shapes.get(p, ())) == 4]
            return f"Layers with a 4-D (batch, height, width, channels) output: {_describe(convs, shapes)}"

        return find_layer(self.model, request, among=leaves, valid=valid)[0]

    def build(self, images_shape):
        if self._replayed is not None:
            return
        model = self.model
        if isinstance(model, keras.Sequential) and not model.built:
            model.build((None, *images_shape[1:]))
        leaves = dict(leaf_layers(model))
        final = output_layer(model)
        input_shape = self._input_shape(images_shape)
        substitute = self._substitute(final)
        probe = {}

        def shapes_of():
            if not probe:
                probe.update(tapped_model(model, input_shape=input_shape, substitute=substitute).shapes)
            return probe

        path = self._resolve(leaves, shapes_of)
        taps = [] if path is None else [leaves[path]]
        result = tapped_model(model, taps, input_shape=input_shape, substitute=substitute)
        outputs = result.model.outputs
        logits_shape = tuple(outputs[0].shape)
        if len(logits_shape) != 2:
            raise ValueError(
                f"Model {model.name!r} outputs shape {logits_shape}; class activation methods "
                "need class scores of shape (batch, classes)."
            )
        if path is not None:
            shape = tuple(outputs[1].shape)
            if len(shape) != 4:
                convs = [p for p in leaves if len(result.shapes.get(p, ())) == 4]
                raise ValueError(
                    f"Layer {path!r} outputs shape {shape}, not a 4-D (batch, height, width, "
                    "channels) feature map, so it cannot be weighed into a heatmap. Layers "
                    f"with a 4-D output: {_describe(convs, result.shapes)}."
                )
        self.layer_path = path
        self.conv_layers = [p for p in leaves if len(result.shapes.get(p, ())) == 4]
        self.n_outputs = int(logits_shape[-1])
        self._replayed = result.model

    # Running ---------------------------------------------------------------------------

    @property
    def replayed(self) -> keras.Model:
        if self._replayed is None:
            raise RuntimeError("The model is built at its first call.")
        return self._replayed

    def class_indices(self, class_index, batch: int) -> np.ndarray:
        """Requested classes as int32 of shape (batch,); -1 asks for the top class."""
        n_classes = 2 if self.n_outputs == 1 else self.n_outputs
        if class_index is None:
            return np.full(batch, -1, dtype=np.int32)
        index = np.asarray(class_index)
        if index.ndim == 0:
            index = np.full(batch, index)
        if index.shape != (batch,):
            raise ValueError(
                f"class_index has shape {index.shape}; give one integer, or one per image ({batch})."
            )
        if not np.issubdtype(index.dtype, np.integer):
            raise TypeError(f"class_index must be integers, got {index.dtype}.")
        bad = index[(index < 0) | (index >= n_classes)]
        if bad.size:
            raise ValueError(
                f"Class index {int(bad[0])} is out of range: model {self.model.name!r} has "
                f"{n_classes} classes, valid indices are 0..{n_classes - 1}."
            )
        return index.astype(np.int32)

    def prepare(self, images, class_index):
        """The images as a float32 batch, the model built for them, and the requested
        classes: ``(batch, whether one image was given, class indices)``."""
        batch, single = as_batch(images)
        self.build(batch.shape)
        return batch, single, self.class_indices(class_index, len(batch))

    def class_score(self, logits, index):
        """The score (logit or probability) of class ``index[b]`` of each sample."""
        independent = self.final_activation == "sigmoid" and self.n_outputs > 1
        return class_score(logits, index, self.score, independent)

    def logits_and_features(self, x):
        outs = self.replayed(x, training=False)
        if not isinstance(outs, (list, tuple)):  # a one-output model returns a bare tensor
            outs = [outs]
        return (outs[0], outs[1]) if self.layer_path is not None else (outs[0], None)


def as_batch(images) -> tuple[np.ndarray, bool]:
    """Images as a float32 batch (b, h, w, c); also says whether one image was given."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        return images[None], True
    if images.ndim != 4:
        raise ValueError(f"Expected images of shape (batch, height, width, channels), got {images.shape}.")
    if len(images) == 0:
        raise ValueError(f"Got an empty batch of images {images.shape}; give at least one image.")
    return images, False


def compile_fn(fn, compiled: bool):
    """``tf.function`` for one method object. TF counts retracing per code object, so
    several CAM objects would share one count and trigger a spurious "retracing" warning;
    a ``functools.partial`` gets a count of its own."""
    return tf.function(functools.partial(fn), reduce_retracing=True) if compiled else fn


def gradients(score, sources, tape):
    """Gradient of the summed per-sample scores: per-sample, since samples don't interact."""
    return tape.gradient(score, sources, unconnected_gradients=tf.UnconnectedGradients.ZERO)


__all__ = ["ScoredModel", "class_score", "class_index_of_top", "as_batch", "is_container"]
