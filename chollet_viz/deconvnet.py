"""Zeiler & Fergus deconvnet reconstructions (and their gradient relatives) for conv-pool chains.

Zeiler and Fergus ("Visualizing and Understanding Convolutional Networks", ECCV 2014)
project a feature map back to pixel space: the image goes forward once while every
max-pooling layer records where each maximum came from (the *switches*); then a signal
taken from the feature map goes backward, layer by layer, through

    max unpooling (values back to the switches)  ->  ReLU  ->  transposed convolution

using each convolution's own kernel. Here this runs on any Keras model whose layers, up
to the chosen pooling layer, are a plain chain of ``Conv2D`` (ReLU or linear) and
``MaxPooling2D`` layers, such as the VGG16 convolutional base. It is written with
``keras.ops`` and runs on Keras' TensorFlow, JAX and PyTorch backends.

Bias: the forward pass keeps every bias (it decides the activations and the switches);
the backward pass ignores them, as Zeiler and Fergus do. A bias is a constant added per
channel: it has no input to flow back to, and the gradient of a convolution with respect
to its input does not contain it either. (A transposed-convolution *layer* created fresh,
as in a straight PyTorch port, would add a bias of its own; ours adds none.)

The backward pass takes a ``rule`` for the ReLUs, which makes the three classic methods
one computation:

* ``"deconvnet"``: ReLU applied to the backward signal (Zeiler & Fergus),
* ``"guided"``: the same, also masked where the forward ReLU was off (guided backprop),
* ``"backprop"``: masked where the forward ReLU was off (the plain gradient).

The same rules can be run as gradients (``Deconvnet.gradient``), by rebuilding the
forward pass with ReLUs whose backward pass is replaced (``chollet_viz.backend.relu``)
and letting the backend differentiate it. The explicit reconstruction equals that
gradient: the transposed convolution is the adjoint of the convolution and max unpooling
is the gradient of max pooling.

Switches without an argmax operation (``keras.ops`` has none for pooling): each window
is compared with its maximum, and where several positions hold the maximum (a tie, such
as an all-zero window after a ReLU) the first in row-major order is the switch. That is
the rule of TensorFlow's ``max_pool_with_argmax`` and of the max-pooling gradient of
TensorFlow, JAX and PyTorch on CPU, so the two routes agree even in windows of equal
values.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import keras
import numpy as np

from . import backend, models
from .layers import find_layer, is_container

MODES = ("full", "max")
RULES = ("deconvnet", "guided", "backprop")

# BGR channel means that Keras' VGG16 ``preprocess_input`` (mode "caffe") subtracts.
VGG16_BGR_MEAN = np.array(models.VGG16_BGR_MEAN, dtype=np.float32)

ops = keras.ops


# --------------------------------------------------------------------------- building blocks


def _padding(padding: str) -> str:
    padding = str(padding).lower()
    if padding not in ("valid", "same"):
        raise ValueError(f"Unknown padding {padding!r}; valid paddings are 'valid' and 'same'.")
    return padding


def _pool_extent(size: int, pool: int, stride: int, padding: str):
    """Number of windows along one axis, and the padding before the first (TensorFlow's rule:
    "same" pads ``total // 2`` before and the rest after; padded positions never win)."""
    if padding == "valid":
        if size < pool:
            raise ValueError(f"A {pool}-wide pooling window does not fit in a map {size} wide with padding 'valid'.")
        return (size - pool) // stride + 1, 0
    windows = -(-size // stride)
    return windows, max((windows - 1) * stride + pool - size, 0) // 2


def _first_maxima(x, pool_size, strides, padding):
    """Max pooling, and for each offset (dy, dx) of a window (row-major) a boolean map
    (batch, out_h, out_w, c) of the windows whose switch is at that offset.

    The switch is the first position in row-major order that holds the window's maximum.
    Returns ``pooled, masks, (top, left)`` where ``top``, ``left`` is the padding before
    the first window.
    """
    (ph, pw), (sh, sw), padding = _pair(pool_size), _pair(strides), _padding(padding)
    height, width = int(x.shape[1]), int(x.shape[2])
    out_h, top = _pool_extent(height, ph, sh, padding)
    out_w, left = _pool_extent(width, pw, sw, padding)
    bottom = max((out_h - 1) * sh + ph - height - top, 0)
    right = max((out_w - 1) * sw + pw - width - left, 0)
    if top or bottom or left or right:
        x = ops.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=-np.inf)
    windows = [
        x[:, dy : dy + (out_h - 1) * sh + 1 : sh, dx : dx + (out_w - 1) * sw + 1 : sw, :]
        for dy in range(ph)
        for dx in range(pw)
    ]
    pooled = windows[0]
    for window in windows[1:]:
        pooled = ops.maximum(pooled, window)  # exact: the same numbers as any max pooling
    masks, taken = [], None
    for window in windows:
        at_max = ops.equal(window, pooled)
        masks.append(at_max if taken is None else ops.logical_and(at_max, ops.logical_not(taken)))
        taken = at_max if taken is None else ops.logical_or(taken, at_max)
    return pooled, masks, (top, left)


def max_pool_with_switches(x, pool_size=2, strides=None, padding="valid"):
    """Max pooling that also returns the switches (where each maximum was), per image.

    ``x`` has shape (batch, height, width, channels). A switch is the flat index
    ``(y * width + x) * channels + c`` (int32) of the maximum *inside its own image*, the
    first maximum in row-major order where a window holds several; ``max_unpool`` adds the
    batch position itself. That keeps switches valid when signals are stacked along the
    batch axis, and avoids the classic slip of scattering a whole batch into the first image.
    """
    x = ops.convert_to_tensor(x, "float32")
    pool_size = _pair(pool_size)
    strides = pool_size if strides is None else _pair(strides)
    pooled, masks, (top, left) = _first_maxima(x, pool_size, strides, padding)
    height, width, channels = (int(d) for d in x.shape[1:])  # the batch may be unknown in a graph
    out_h, out_w = int(pooled.shape[1]), int(pooled.shape[2])
    rows = np.arange(out_h)[:, None, None] * strides[0] - top
    cols = np.arange(out_w)[None, :, None] * strides[1] - left
    offsets = [(dy, dx) for dy in range(pool_size[0]) for dx in range(pool_size[1])]
    switches = ops.zeros_like(pooled, dtype="int32")
    for (dy, dx), mask in zip(offsets, masks):
        index = ((rows + dy) * width + cols + dx) * channels + np.arange(channels)  # (out_h, out_w, c)
        # Padded positions are never a window's maximum, so their (negative) index is never kept.
        switches = ops.where(mask, ops.convert_to_tensor(index.astype(np.int32)), switches)
    return pooled, switches


def max_unpool(values, switches, output_shape):
    """Put every pooled value back at its switch, zeros elsewhere (Zeiler & Fergus' unpooling).

    ``output_shape`` is the shape before pooling, ``(height, width, channels)`` (a leading
    batch entry is ignored); the batch size is that of ``values``. Where overlapping
    windows share a maximum the values add up, which makes this exactly the gradient
    (adjoint) of max pooling with respect to its input.
    """
    values = ops.convert_to_tensor(values)
    switches = ops.cast(switches, "int32")
    height, width, channels = (int(d) for d in tuple(output_shape)[-3:])
    batch = values.shape[0] if values.shape[0] is not None else ops.shape(values)[0]
    batch_ids = ops.broadcast_to(ops.reshape(ops.arange(batch, dtype="int32"), (-1, 1, 1, 1)), ops.shape(switches))
    indices = ops.reshape(ops.stack([batch_ids, switches], axis=-1), (-1, 2))
    flat = ops.scatter(indices, ops.reshape(values, (-1,)), (batch, height * width * channels))
    return ops.reshape(flat, (-1, height, width, channels))


# When the pooling windows tile the map (stride = pool size, sizes divisible, as in VGG16)
# every input position lies in exactly one window, and unpooling is "repeat each value
# over its tile, keep it where the switch points". With the mask of switch positions made
# once per forward pass, that is elementwise work, about 10x faster on CPU than a scatter.


def windows_tile(pool_size, strides, height, width) -> bool:
    """Whether pooling windows cut a (height, width) map into whole, disjoint tiles."""
    pool_size, strides = _pair(pool_size), _pair(strides)
    return pool_size == strides and height % pool_size[0] == 0 and width % pool_size[1] == 0


def switch_mask(switches, output_shape, pool_size=2):
    """Boolean map (batch, height, width, channels) of the positions the switches point to.

    For windows that tile the map only (see ``windows_tile``).
    """
    height, width, channels = (int(d) for d in tuple(output_shape)[-3:])
    position = np.arange(height * width * channels, dtype=np.int32).reshape(1, height, width, channels)
    return ops.equal(_spread(ops.cast(switches, "int32"), pool_size), position)


def _tile_mask(masks, pool_size):
    """The per-offset masks of ``_first_maxima`` laid out at input resolution (tiling windows)."""
    ph, pw = _pair(pool_size)
    _, out_h, out_w, channels = masks[0].shape
    stacked = ops.reshape(ops.stack(masks, axis=3), (-1, out_h, out_w, ph, pw, channels))
    return ops.reshape(ops.transpose(stacked, (0, 1, 3, 2, 4, 5)), (-1, out_h * ph, out_w * pw, channels))


def unpool_with_mask(values, mask, pool_size=2):
    """``max_unpool`` for tiling windows, given the ``switch_mask``: the values repeated over
    their tiles, kept where the mask is set."""
    spread = _spread(ops.convert_to_tensor(values), pool_size)
    return ops.where(mask, spread, ops.zeros_like(spread))


def _spread(t, pool_size):
    """Repeat every entry of (batch, h, w, c) over a pool_size tile: (batch, h*ph, w*pw, c)."""
    ph, pw = _pair(pool_size)
    return ops.repeat(ops.repeat(t, ph, axis=1), pw, axis=2)


def conv(x, kernel, strides=1, padding="same"):
    """A 2-D convolution without bias, as ``Conv2D`` computes it (channels last)."""
    return ops.conv(x, kernel, strides=_pair(strides), padding=_padding(padding), data_format="channels_last")


def conv_transpose(y, kernel, input_shape, strides=1, padding="same"):
    """The transposed convolution with the same ``kernel``: the adjoint of ``conv``.

    It maps a (batch, h', w', out_channels) signal back to ``input_shape`` = the shape the
    convolution read, (height, width, in_channels) or with a batch entry (ignored).
    """
    y = ops.convert_to_tensor(y)
    padding, strides = _padding(padding), _pair(strides)
    height, width, _ = (int(d) for d in tuple(input_shape)[-3:])
    # A strided convolution maps several input sizes to one output size: the output
    # padding says which one to go back to (Keras' rule: see keras.ops.conv_transpose).
    output_padding = []
    for n, size, k, s in zip(y.shape[1:3], (height, width), kernel.shape[:2], strides):
        n, k = int(n), int(k)
        if n != ((size - k) // s + 1 if padding == "valid" else -(-size // s)):
            raise ValueError(
                f"A map of size {n} does not come from a convolution (kernel {k}, stride {s}, padding "
                f"{padding!r}) of an input of size {size}."
            )
        output_padding.append(size - ((n - 1) * s + (k if padding == "valid" else k % 2)))
    return ops.conv_transpose(
        y, kernel, strides=strides, padding=padding, output_padding=tuple(output_padding), data_format="channels_last"
    )


def relu_backward(signal, pre_activation, rule):
    """A ReLU's backward pass under ``rule`` (see the module docstring)."""
    if rule == "deconvnet":
        return ops.relu(signal)
    if rule not in RULES:
        raise ValueError(f"Unknown rule {rule!r}; valid rules are {RULES}.")
    on = ops.cast(ops.greater(pre_activation, 0), signal.dtype)
    return ops.relu(signal) * on if rule == "guided" else signal * on


def select_signal(feature_map, mode="full", channel=None):
    """The backward signal taken from a feature map (batch, h, w, c).

    ``mode="full"`` keeps the whole map, ``mode="max"`` keeps only each image's single
    strongest activation and zeroes the rest; ``channel`` first restricts the map to one
    channel. An all-zero map gives an all-zero signal (no NaN anywhere downstream).
    """
    if mode not in MODES:
        raise ValueError(f"Unknown mode {mode!r}; valid modes are {MODES}.")
    feature_map = ops.convert_to_tensor(feature_map)
    height, width, channels = (int(d) for d in feature_map.shape[1:])
    if channel is not None:
        if not 0 <= channel < channels:
            raise ValueError(f"channel {channel} is out of range; the map has {channels} channels (0..{channels - 1}).")
        feature_map = feature_map * ops.cast(np.eye(channels, dtype=np.float32)[channel], feature_map.dtype)
    if mode == "full":
        return feature_map
    flat = ops.reshape(feature_map, (-1, height * width * channels))
    keep = ops.one_hot(ops.argmax(flat, axis=1), height * width * channels, dtype=flat.dtype)
    return ops.reshape(flat * keep, (-1, height, width, channels))


def strongest_activation(feature_map):
    """``(value, y, x, channel)`` of the largest entry of one image's map, (h, w, c) or (1, h, w, c)."""
    feature_map = np.asarray(feature_map)
    if feature_map.ndim == 4:
        if feature_map.shape[0] != 1:
            raise ValueError(f"Expected one image's feature map, got a batch of {feature_map.shape[0]}.")
        feature_map = feature_map[0]
    y, x, c = np.unravel_index(int(np.argmax(feature_map)), feature_map.shape)
    return float(feature_map[y, x, c]), int(y), int(x), int(c)


# --------------------------------------------------------------------------- the model walk


@dataclass(frozen=True)
class _Step:
    kind: str  # "conv" or "pool"
    layer: keras.layers.Layer

    @property
    def relu(self) -> bool:
        return self.kind == "conv" and _activation_name(self.layer) == "relu"


def _activation_name(layer) -> str:
    return getattr(layer.activation, "__name__", str(layer.activation))


def _chain(model) -> list[_Step]:
    """The model's leading run of supported layers, each fed by the one before.

    The run ends at the first other layer, or where the graph branches. A model whose
    first layer is a nested model (a conv base inside a classifier) is read from that base.
    """
    steps = []
    previous = model.inputs[0]
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if not steps and is_container(layer):
            # A nested model's ``input`` is its own graph's: look at where this graph calls it.
            fed_by_input = any(
                len(node.input_tensors) == 1 and node.input_tensors[0] is previous for node in layer._inbound_nodes
            )
            return _chain(layer) if fed_by_input else steps
        try:
            fed_by_previous = layer.input is previous
        except (AttributeError, ValueError):  # a layer called several times has no single input
            fed_by_previous = False
        if not fed_by_previous:
            break
        previous = layer.output
        if type(layer) is keras.layers.Conv2D:  # not subclasses with other arithmetic
            plain = (
                tuple(layer.dilation_rate) == (1, 1)
                and layer.groups == 1
                and layer.data_format == "channels_last"
                and _activation_name(layer) in ("relu", "linear")
            )
            if not plain:
                break
            steps.append(_Step("conv", layer))
        elif isinstance(layer, keras.layers.MaxPooling2D) and layer.data_format == "channels_last":
            steps.append(_Step("pool", layer))
        else:
            break
    return steps


def _bias(layer):
    return layer.bias if layer.use_bias else 0.0


def _is_mask(t) -> bool:
    return keras.backend.standardize_dtype(t.dtype) == "bool"


class Deconvnet:
    """Deconvnet reconstructions from the pooling layers of a conv-pool model.

    ``model`` is e.g. ``chollet_viz.models.vgg16(include_top=False,
    input_shape=(224, 224, 3))``; images go in already preprocessed for it. The heavy
    paths are compiled by ``chollet_viz.backend.compile`` (``tf.function``, ``jax.jit``;
    eager on PyTorch), one graph per choice of layers, modes and rule (``compile=False``
    runs them eagerly, for debugging and for the benchmark).
    """

    def __init__(self, model: keras.Model, compile: bool = True):
        self.model = model
        self._steps = _chain(model)
        self.pool_layers = tuple(s.layer.name for s in self._steps if s.kind == "pool")
        if not self.pool_layers:
            raise ValueError(
                f"Model {model.name!r} does not start with a chain of Conv2D (ReLU or linear) and "
                "MaxPooling2D layers containing a pooling layer, so it has nothing to reconstruct from."
            )
        wrap = (lambda f: backend.compile(f, state=model)) if compile else (lambda f: f)
        self._forward_fn = wrap(self._feature_map_graph)
        self._reconstruct_fn = wrap(self._reconstruct_graph)
        self._gradient_fn = wrap(self._gradient_graph)

    # ---- public API

    def feature_map(self, images, layer_name: str) -> np.ndarray:
        """The output of pooling layer ``layer_name`` for ``images``."""
        return backend.to_numpy(self._run(self._forward_fn, self._images(images), self._stop(layer_name)))

    def reconstruct(self, images, layer_name: str, mode: str = "full", rule: str = "deconvnet", channel=None):
        """Project the map of ``layer_name`` (whole, or its strongest activation) back to pixels.

        Returns an array shaped like ``images`` (a single image gets a batch axis) in the
        model's input space (for VGG16: BGR, preprocessed scale); show it with ``deprocess``.
        """
        return self.reconstruct_all(images, (layer_name,), (mode,), rule, channel)[layer_name][mode]

    def reconstruct_all(self, images, layer_names=None, modes=MODES, rule: str = "deconvnet", channel=None):
        """Reconstructions for several layers and modes from one forward pass.

        Returns ``{layer_name: {mode: array}}``; ``layer_names`` defaults to every pooling
        layer. The forward pass runs once, with switches, up to the deepest layer asked for.
        """
        return self._all(self._reconstruct_fn, images, layer_names, modes, rule, channel)

    def gradient(self, images, layer_name: str, mode: str = "full", rule: str = "deconvnet", channel=None):
        """The same projection computed as a gradient of the rebuilt forward pass.

        The selected activations (the signal ``select_signal`` takes from the map) are
        differentiated with respect to the input, every ReLU's backward pass replaced by
        ``rule``: ``"deconvnet"`` gives the deconvnet rule, ``"guided"`` guided
        backpropagation and ``"backprop"`` the ordinary gradient.
        """
        return self.gradient_all(images, (layer_name,), (mode,), rule, channel)[layer_name][mode]

    def gradient_all(self, images, layer_names=None, modes=MODES, rule: str = "deconvnet", channel=None):
        """``gradient`` for several layers and modes (one gradient per layer and mode)."""
        return self._all(self._gradient_fn, images, layer_names, modes, rule, channel)

    # ---- argument checks

    def _stop(self, layer_name: str) -> int:
        valid = f"Valid pooling layers are {list(self.pool_layers)}"
        path, layer = find_layer(self.model, layer_name, valid=valid)
        for i, step in enumerate(self._steps):
            if step.kind == "pool" and step.layer is layer:
                return i
        raise ValueError(
            f"Layer {path!r} is not a pooling layer of the model's leading chain of Conv2D and "
            f"MaxPooling2D layers, so there is nothing to reconstruct from it. {valid}."
        )

    def _images(self, images):
        images = ops.convert_to_tensor(images, "float32")
        if len(images.shape) == 3:
            images = images[None]
        expected = tuple(self.model.input_shape[1:])
        got = tuple(images.shape[1:])
        if len(images.shape) != 4 or any(e is not None and e != g for e, g in zip(expected, got)):
            raise ValueError(f"Expected images of shape (batch, {', '.join(map(str, expected))}), got {tuple(images.shape)}.")
        return images

    def _all(self, fn, images, layer_names, modes, rule, channel):
        layer_names = self.pool_layers if layer_names is None else tuple(layer_names)
        stops = tuple(self._stop(name) for name in layer_names)
        modes = tuple(modes)
        for mode in modes:
            if mode not in MODES:
                raise ValueError(f"Unknown mode {mode!r}; valid modes are {MODES}.")
        if rule not in RULES:
            raise ValueError(f"Unknown rule {rule!r}; valid rules are {RULES}.")
        if channel is not None:
            channel = int(channel)
        images = self._images(images)
        out = backend.to_numpy(self._run(fn, images, stops, modes, rule, channel))
        n = int(images.shape[0])
        return {
            name: {mode: out[i][j * n : (j + 1) * n] for j, mode in enumerate(modes)}
            for i, name in enumerate(layer_names)
        }

    @staticmethod
    def _run(fn, *args):
        # Each choice of layers, modes and rule is its own graph, traced once on first use.
        # Tracing a few of them in a row is by design, so TensorFlow's "frequent retracing"
        # warning (its Python logger; no TensorFlow import needed) is kept quiet during the call.
        logger = logging.getLogger("tensorflow")
        level = logger.level
        logger.setLevel("ERROR")
        try:
            return fn(*args)
        finally:
            logger.setLevel(level)

    # ---- graph bodies

    def _forward(self, x, stop, keep_pre_activations):
        """Forward pass recording, per step, what the backward pass needs.

        Conv steps: (input shape, pre-activation or None, None); pool steps: (input shape,
        the boolean switch mask when the windows tile the map, else the switches, pooled map).
        """
        record = []
        for step in self._steps[: stop + 1]:
            layer = step.layer
            if step.kind == "conv":
                z = conv(x, layer.kernel, layer.strides, layer.padding) + _bias(layer)
                record.append((tuple(x.shape[1:]), z if keep_pre_activations else None, None))
                x = ops.relu(z) if step.relu else z
            else:
                shape = tuple(x.shape[1:])
                if windows_tile(layer.pool_size, layer.strides, shape[0], shape[1]):
                    pooled, masks, _ = _first_maxima(x, layer.pool_size, layer.strides, layer.padding)
                    switches = _tile_mask(masks, layer.pool_size)  # boolean: the fast route
                else:
                    pooled, switches = max_pool_with_switches(x, layer.pool_size, layer.strides, layer.padding)
                record.append((shape, switches, pooled))
                x = pooled
        return x, record

    def _backward(self, signal, record, stop, rule):
        """Unpool -> ReLU (under ``rule``) -> transposed convolution, down to the input."""
        for step, (in_shape, saved, _) in reversed(list(zip(self._steps[: stop + 1], record))):
            layer = step.layer
            if step.kind == "pool":
                if _is_mask(saved):
                    signal = unpool_with_mask(signal, saved, layer.pool_size)
                else:
                    signal = max_unpool(signal, saved, in_shape)
            else:
                if step.relu:
                    signal = relu_backward(signal, saved, rule)
                signal = conv_transpose(signal, layer.kernel, in_shape, layer.strides, layer.padding)
        return signal

    def _feature_map_graph(self, images, stop):
        return self._forward(images, stop, keep_pre_activations=False)[0]

    def _reconstruct_graph(self, images, stops, modes, rule, channel):
        _, record = self._forward(images, max(stops), keep_pre_activations=rule != "deconvnet")
        results = []
        for stop in stops:
            feature_map = record[stop][2]
            signals = [select_signal(feature_map, mode, channel) for mode in modes]
            # One backward pass per signal: stacking them along the batch axis measured no faster.
            results.append(ops.concatenate([self._backward(signal, record, stop, rule) for signal in signals], axis=0))
        return results

    def _rebuilt(self, x, stop, relu):
        """The forward pass up to step ``stop`` with the ReLUs ``relu`` and the backend's own
        max pooling, whose gradient the backend provides."""
        for step in self._steps[: stop + 1]:
            layer = step.layer
            if step.kind == "conv":
                z = conv(x, layer.kernel, layer.strides, layer.padding) + _bias(layer)
                x = relu(z) if step.relu else z
            else:
                x = ops.max_pool(x, _pair(layer.pool_size), _pair(layer.strides), _padding(layer.padding), "channels_last")
        return x

    def _gradient_graph(self, images, stops, modes, rule, channel):
        relu = backend.relu(rule)
        results = []
        for stop in stops:
            grads = []
            for mode in modes:
                # d <map, signal> / d images with the signal held constant: the map's
                # vector-Jacobian product with the signal, as the reconstruction computes it.
                def score(x, stop=stop, mode=mode):
                    feature_map = self._rebuilt(x, stop, relu)
                    signal = ops.stop_gradient(select_signal(feature_map, mode, channel))
                    return ops.sum(feature_map * signal, axis=(1, 2, 3))

                grads.append(backend.value_and_grad(score, images)[1][0])
            results.append(ops.concatenate(grads, axis=0))
        return results


def _pair(value):
    if isinstance(value, int):
        return (value, value)
    return tuple(int(v) for v in value)


# --------------------------------------------------------------------------- images


def preprocess_input(images) -> np.ndarray:
    """VGG16's preprocessing (Caffe style) as a NumPy array: see ``models.vgg16_preprocess``."""
    return np.asarray(models.vgg16_preprocess(images))


def undo_preprocess(x) -> np.ndarray:
    """Back from ``preprocess_input`` to an RGB uint8 image."""
    x = np.asarray(x, dtype=np.float32) + VGG16_BGR_MEAN
    return np.clip(x[..., ::-1], 0, 255).round().astype(np.uint8)


def deprocess(x, percentile: float = 99.5, bgr: bool = True) -> np.ndarray:
    """Display a reconstruction or gradient (model input space) as RGB floats in [0, 1].

    Zero becomes mid-grey; the ``percentile`` of the absolute non-zero values maps to
    the ends of the range, so a few extreme pixels do not wash out the rest. Works on one
    image (h, w, 3) or a batch, each image scaled on its own. An all-zero input gives a
    uniform grey image.
    """
    x = np.asarray(x, dtype=np.float32)
    if bgr:
        x = x[..., ::-1]
    if x.ndim == 4:
        return np.stack([deprocess(image, percentile, bgr=False) for image in x])
    magnitude = np.abs(x[x != 0])
    scale = np.percentile(magnitude, percentile) if magnitude.size else 1.0
    return np.clip(0.5 + x / (2 * scale), 0.0, 1.0)


def support_box(x):
    """``(top, bottom, left, right)`` (ends exclusive) of the non-zero pixels of one image, or None."""
    x = np.asarray(x)
    mask = np.any(x != 0, axis=-1) if x.ndim == 3 else x != 0
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def show_reconstructions(image, columns: dict, boxes: dict | None = None, size: float = 2.4, bgr: bool = True):
    """One row per layer: the input image, then one panel per column, without axes.

    ``image`` is RGB 0..255 (h, w, 3). ``columns`` maps a column title to
    ``{layer_name: array (h, w, 3) in model input space}`` (shown with ``deprocess``);
    every column lists the same layers. ``boxes`` may map layer names to a
    ``(top, bottom, left, right)`` box drawn on that row's input. Returns the figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    layer_names = list(next(iter(columns.values())))
    fig, axes = plt.subplots(
        len(layer_names), len(columns) + 1, figsize=(size * (len(columns) + 1), size * len(layer_names)), squeeze=False
    )
    for row, name in zip(axes, layer_names):
        row[0].imshow(np.clip(image, 0, 255).astype(np.uint8))
        row[0].set_ylabel(name, fontsize=10)
        if boxes and boxes.get(name):
            top, bottom, left, right = boxes[name]
            row[0].add_patch(
                Rectangle((left - 0.5, top - 0.5), right - left, bottom - top, fill=False, edgecolor="yellow", linewidth=1.5)
            )
        for ax, column in zip(row[1:], columns.values()):
            ax.imshow(deprocess(column[name], bgr=bgr))
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
    for ax, title in zip(axes[0], ["input", *columns]):
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


__all__ = [
    "show_reconstructions",
    "MODES",
    "RULES",
    "Deconvnet",
    "max_pool_with_switches",
    "max_unpool",
    "windows_tile",
    "switch_mask",
    "unpool_with_mask",
    "conv",
    "conv_transpose",
    "relu_backward",
    "select_signal",
    "strongest_activation",
    "preprocess_input",
    "undo_preprocess",
    "deprocess",
    "support_box",
]
