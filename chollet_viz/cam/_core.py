"""The machinery every class activation method shares: a model replayed to give the class
score (logit by default) and one tapped feature map, and one compiled pass over it.

Written with ``keras.ops``; what differs per backend (gradients, compilation, the guided
ReLU) comes from ``chollet_viz.backend``, so the CAM family runs on TensorFlow, JAX and
PyTorch alike.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
from keras import ops

from .. import backend
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
        return ops.cast(logits[:, 0] > 0, "int32")
    return ops.cast(ops.argmax(logits, axis=-1), "int32")


def class_score(logits, index, score: str, independent: bool = False):
    """Per-sample score of class ``index[b]`` from logits.

    For a single sigmoid unit, class 1 scores ``z`` and class 0 scores ``-z`` (whose
    sigmoid is ``1 - p``), so "cat" has a score too in a cat-vs-dog model. The
    probability is a softmax over the classes, or a sigmoid per class when
    ``independent`` (a multi-label model whose last activation is a sigmoid).
    """
    index = ops.cast(index, "int32")
    if logits.shape[-1] == 1:
        z = logits[:, 0] * ops.cast(2 * index - 1, logits.dtype)
        return z if score == "logit" else ops.sigmoid(z)
    column = index[:, None]
    z = ops.take_along_axis(logits, column, axis=1)[:, 0]
    if score == "logit":
        return z
    if independent:
        return ops.sigmoid(z)
    return ops.take_along_axis(ops.softmax(logits, axis=-1), column, axis=1)[:, 0]


def chosen_class(logits, requested):
    """``requested`` (b,), with -1 replaced by each sample's top class."""
    return ops.where(requested < 0, class_index_of_top(logits), requested)


# --- guided backpropagation ------------------------------------------------------------


def _guided_substitute(layer):
    """The guided-backpropagation ReLU (``backend.relu("guided")``: only positive
    gradients, only where the unit was active) in place of a ReLU or ReLU6."""
    name = getattr(getattr(layer, "activation", None), "__name__", None)
    if name in ("relu", "relu6"):
        return _SwappedActivation(layer, backend.relu("guided", None if name == "relu" else 6.0))
    if isinstance(layer, keras.layers.ReLU):
        slope = float(np.asarray(layer.negative_slope))
        threshold = float(np.asarray(layer.threshold))
        if slope != 0 or threshold != 0:
            return None  # a leaky ReLU stays as it is
        if layer.max_value is None:
            return backend.relu("guided")
        if float(layer.max_value) == 6.0:
            return backend.relu("guided", 6.0)
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
        self._replayed = None  # the Replay: the model and the feature offset
        self.layer_path: str | None = None
        self.n_outputs: int | None = None
        self.feature_shape: tuple | None = None  # (h, w, channels) of the tapped layer
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
        # The offset makes d score / d features a gradient with respect to an argument.
        result = tapped_model(model, taps, input_shape=input_shape, substitute=substitute,
                              feature_offset=path is not None)
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
        self.feature_shape = None if path is None else tuple(int(d) for d in outputs[1].shape[1:])
        self._replayed = result

    # Running ---------------------------------------------------------------------------

    def _built(self):
        """The replay (model and feature offset), or a clear error before the first build."""
        if self._replayed is None:
            raise RuntimeError("The model is built at its first call.")
        return self._replayed

    @property
    def replayed(self) -> keras.Model:
        return self._built().model

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

    def logits_and_features(self, x, delta=None):
        """Class logits and the feature map; ``delta`` (zeros) is added to the features,
        so that the gradient with respect to it is the gradient with respect to them."""
        outs = self._built()(x, None if delta is None else [delta], training=False)
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


def compile_fn(fn, compiled: bool, state=None):
    """``fn`` compiled for the backend (``backend.compile``; ``state``: the model whose
    weights it reads), or ``fn`` itself when not ``compiled``."""
    return backend.compile(fn, state=state) if compiled else fn


def feature_gradients(scored: ScoredModel, x, requested):
    """One pass: logits, features, classes (``requested``, -1 replaced by the top class),
    their scores and d score / d features, on any backend (the gradient with respect to
    the zero feature offset)."""

    def score(delta):
        logits, features = scored.logits_and_features(x, delta)
        index = chosen_class(logits, requested)
        return scored.class_score(logits, index), (logits, features, index)

    delta = ops.zeros((ops.shape(x)[0], *scored.feature_shape), dtype="float32")
    (value, (logits, features, index)), (grads,) = backend.value_and_grad(score, delta, has_aux=True)
    return logits, features, index, value, grads


__all__ = ["ScoredModel", "class_score", "class_index_of_top", "as_batch", "is_container"]
