"""EfficientNet-Lite0 (ImageNet-1k) in Keras 3, with its weights converted from PyTorch.

The weights are a PyTorch state dict saved with NumPy (asset
``efficientnet_lite0_state_dict``). PyTorch stores convolution kernels as
(out, in, h, w), depthwise kernels as (channels, 1, h, w) and dense kernels as
(out, in); Keras wants (h, w, in, out), (h, w, channels, 1) and (in, out). The
functions below convert them and ``load_state_dict`` checks every key and shape
before touching the model.

Layer names follow the network's structure:

- ``stem_conv``, ``stem_bn``, ``stem_relu``: 3x3 stride-2 convolution to 32 channels.
- ``block{i}_...`` for the sixteen MBConv blocks, ``i`` = 0..15 (see ``BLOCKS`` for the
  stage, expansion, kernel and stride of each): ``expand_conv``, ``expand_bn``,
  ``expand_relu`` (absent in block 0, whose expansion ratio is 1), ``dwconv``,
  ``dw_bn``, ``dw_relu``, ``project_conv``, ``project_bn`` and ``block{i}_out``, the
  block's output (the residual sum where the block has an identity skip).
- ``head_conv``, ``head_bn``, ``head_relu`` (7x7x1280), ``avg_pool``, ``dropout``,
  ``logits`` (1000 ImageNet logits; apply a softmax for probabilities).

Every "same" padding here equals the PyTorch model's static padding for 224x224
inputs: a stride-2 convolution pads (0, 1) with a 3x3 kernel and (1, 2) with a 5x5
one, exactly what TensorFlow's "same" does for even input sizes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import keras
import numpy as np
from keras import layers

from .data import fetch

INPUT_SHAPE = (224, 224, 3)
BN_EPSILON = 1e-3  # the PyTorch model's BatchNorm eps (not PyTorch's default 1e-5)
STEM_FILTERS = 32
HEAD_FILTERS = 1280
NUM_CLASSES = 1000
DROPOUT_RATE = 0.2

# Stages as (expansion ratio, kernel size, stride of the first block, output channels,
# number of blocks). Lite variants keep the stem and head fixed and drop squeeze-excite.
STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)

# The layer a Grad-CAM would normally explain (last convolutional feature map, 7x7x1280)
# and a finer alternative (the last 14x14 block, end of stage 5, 14x14x112).
LAST_CONV_LAYER = "head_relu"
CAM_LAYERS = {
    "head_relu": "7x7x1280, the last feature map before global average pooling",
    "block10_out": "14x14x112, the last 14x14 block (end of stage 5)",
}


@dataclass(frozen=True)
class BlockSpec:
    """One MBConv block: where it sits and how it is shaped."""

    index: int
    stage: int  # 1..7
    expand_ratio: int
    kernel_size: int
    stride: int
    filters_in: int
    filters_out: int

    @property
    def has_skip(self) -> bool:
        return self.stride == 1 and self.filters_in == self.filters_out

    @property
    def expanded(self) -> int:
        return self.filters_in * self.expand_ratio


def _block_specs() -> tuple[BlockSpec, ...]:
    specs, filters_in = [], STEM_FILTERS
    for stage, (ratio, kernel, stride, filters_out, repeats) in enumerate(STAGES, start=1):
        for r in range(repeats):
            specs.append(
                BlockSpec(len(specs), stage, ratio, kernel, stride if r == 0 else 1, filters_in, filters_out)
            )
            filters_in = filters_out
    return tuple(specs)


BLOCKS = _block_specs()
BLOCK_OUTPUT_LAYERS = tuple(f"block{b.index}_out" for b in BLOCKS)


def preprocess_input(x):
    """Scale RGB values in 0..255 to about -1..1 as the model expects: ``(x - 127) / 128``.

    NumPy input (or lists, numbers) gives a float32 NumPy array; tensors stay tensors.
    """
    if isinstance(x, (np.ndarray, list, tuple, int, float, np.number)):
        return (np.asarray(x, dtype=np.float32) - 127.0) / 128.0
    return (x - 127.0) / 128.0


# --------------------------------------------------------------------------- model


def _conv_bn_relu(x, filters, kernel_size, strides, prefix, conv_name="conv"):
    x = layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same", use_bias=False, name=f"{prefix}_{conv_name}"
    )(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{prefix}_bn")(x)
    return layers.ReLU(max_value=6.0, name=f"{prefix}_relu")(x)


def _mbconv(x, spec: BlockSpec):
    name = f"block{spec.index}"
    inputs = x
    if spec.expand_ratio != 1:
        x = _conv_bn_relu(x, spec.expanded, 1, 1, f"{name}_expand")
    x = layers.DepthwiseConv2D(
        spec.kernel_size, strides=spec.stride, padding="same", use_bias=False, name=f"{name}_dwconv"
    )(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_dw_bn")(x)
    x = layers.ReLU(max_value=6.0, name=f"{name}_dw_relu")(x)
    x = layers.Conv2D(spec.filters_out, 1, padding="same", use_bias=False, name=f"{name}_project_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_project_bn")(x)
    # The projection is linear (no activation), as in MobileNetV2.
    if spec.has_skip:
        return layers.Add(name=f"{name}_out")([x, inputs])
    # A named no-op so that every block's output can be asked for as block{i}_out.
    return layers.Identity(name=f"{name}_out")(x)


def build_efficientnet_lite0() -> keras.Model:
    """The EfficientNet-Lite0 architecture with freshly initialised weights."""
    inputs = keras.Input(INPUT_SHAPE, name="image")
    x = _conv_bn_relu(inputs, STEM_FILTERS, 3, 2, "stem")
    for spec in BLOCKS:
        x = _mbconv(x, spec)
    x = _conv_bn_relu(x, HEAD_FILTERS, 1, 1, "head")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(DROPOUT_RATE, name="dropout")(x)
    outputs = layers.Dense(NUM_CLASSES, name="logits")(x)
    return keras.Model(inputs, outputs, name="efficientnet_lite0")


def efficientnet_lite0(pretrained: bool = True) -> keras.Model:
    """ImageNet EfficientNet-Lite0 returning logits for 224x224 RGB inputs.

    Feed it ``preprocess_input(images)`` with ``images`` in 0..255. With
    ``pretrained=True`` the converted ImageNet weights are loaded through the asset
    registry (offline mirror first, sha256 checked).
    """
    model = build_efficientnet_lite0()
    if pretrained:
        load_state_dict(model, read_state_dict(fetch("efficientnet_lite0_state_dict")))
    return model


# ------------------------------------------------------------- weight conversion


class StateDictError(ValueError):
    """A state dict does not fit the model: keys missing, unexpected, or of the wrong shape."""


def conv_kernel_to_keras(kernel: np.ndarray) -> np.ndarray:
    """PyTorch Conv2d kernel (out, in, h, w) -> Keras Conv2D kernel (h, w, in, out)."""
    kernel = np.asarray(kernel)
    if kernel.ndim != 4:
        raise ValueError(f"A Conv2d kernel must be 4-D (out, in, h, w), got shape {kernel.shape}.")
    return np.ascontiguousarray(kernel.transpose(2, 3, 1, 0))


def depthwise_kernel_to_keras(kernel: np.ndarray) -> np.ndarray:
    """PyTorch depthwise kernel (channels, 1, h, w) -> Keras DepthwiseConv2D kernel (h, w, channels, 1)."""
    kernel = np.asarray(kernel)
    if kernel.ndim != 4 or kernel.shape[1] != 1:
        raise ValueError(
            f"A depthwise kernel (groups == channels, depth multiplier 1) must have shape "
            f"(channels, 1, h, w), got {kernel.shape}."
        )
    return np.ascontiguousarray(kernel.transpose(2, 3, 0, 1))


def dense_kernel_to_keras(kernel: np.ndarray) -> np.ndarray:
    """PyTorch Linear weight (out, in) -> Keras Dense kernel (in, out)."""
    kernel = np.asarray(kernel)
    if kernel.ndim != 2:
        raise ValueError(f"A Linear weight must be 2-D (out, in), got shape {kernel.shape}.")
    return np.ascontiguousarray(kernel.T)


# Per kind of layer: the PyTorch parameter suffixes, in Keras' weight order, and how
# each one is converted.
_IDENTITY = np.asarray
_KINDS = {
    "conv": (("weight", conv_kernel_to_keras),),
    "depthwise": (("weight", depthwise_kernel_to_keras),),
    # Keras' BatchNormalization weights: gamma, beta, moving_mean, moving_variance.
    "bn": (("weight", _IDENTITY), ("bias", _IDENTITY), ("running_mean", _IDENTITY), ("running_var", _IDENTITY)),
    "dense": (("weight", dense_kernel_to_keras), ("bias", _IDENTITY)),
}


def state_dict_mapping() -> list[tuple[str, str, str]]:
    """(Keras layer name, kind, PyTorch module prefix) for every layer that has weights."""
    mapping = [("stem_conv", "conv", "_conv_stem"), ("stem_bn", "bn", "_bn0")]
    for spec in BLOCKS:
        torch, keras_ = f"_blocks.{spec.index}", f"block{spec.index}"
        if spec.expand_ratio != 1:
            mapping += [
                (f"{keras_}_expand_conv", "conv", f"{torch}._expand_conv"),
                (f"{keras_}_expand_bn", "bn", f"{torch}._bn0"),
            ]
        mapping += [
            (f"{keras_}_dwconv", "depthwise", f"{torch}._depthwise_conv"),
            (f"{keras_}_dw_bn", "bn", f"{torch}._bn1"),
            (f"{keras_}_project_conv", "conv", f"{torch}._project_conv"),
            (f"{keras_}_project_bn", "bn", f"{torch}._bn2"),
        ]
    mapping += [("head_conv", "conv", "_conv_head"), ("head_bn", "bn", "_bn1"), ("logits", "dense", "_fc")]
    return mapping


def _expected_keys() -> list[str]:
    return [f"{prefix}.{suffix}" for _, kind, prefix in state_dict_mapping() for suffix, _ in _KINDS[kind]]


def _listing(keys, limit=8) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def convert_state_dict(state_dict: Mapping[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Keras weights per layer name from a PyTorch EfficientNet-Lite0 state dict.

    Raises ``StateDictError`` naming every missing and unexpected key. PyTorch's
    ``num_batches_tracked`` counters carry no weights and are ignored.
    """
    keys = {k for k in state_dict if not k.endswith("num_batches_tracked")}
    expected = _expected_keys()
    missing = [k for k in expected if k not in keys]
    unexpected = keys - set(expected)
    if missing or unexpected:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing key(s): {_listing(missing)}")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected key(s): {_listing(unexpected)}")
        raise StateDictError(
            "The state dict does not match EfficientNet-Lite0: " + "; ".join(problems) + ". "
            "Expected the keys of the PyTorch package efficientnet-lite-pytorch "
            "(e.g. '_conv_stem.weight', '_blocks.0._depthwise_conv.weight', '_fc.bias')."
        )
    weights = {}
    for layer_name, kind, prefix in state_dict_mapping():
        converted = []
        for suffix, convert in _KINDS[kind]:
            key = f"{prefix}.{suffix}"
            try:
                converted.append(convert(np.asarray(state_dict[key], dtype=np.float32)))
            except ValueError as exc:
                raise StateDictError(f"State dict key {key!r} (for layer {layer_name!r}): {exc}") from exc
        weights[layer_name] = converted
    return weights


def load_state_dict(model: keras.Model, state_dict: Mapping[str, np.ndarray]) -> keras.Model:
    """Load a PyTorch EfficientNet-Lite0 state dict into ``model`` (built by this module).

    Every key and every converted shape is checked before any weight is set, so a
    bad state dict leaves the model as it was.
    """
    weights = convert_state_dict(state_dict)
    kinds = {name: (kind, prefix) for name, kind, prefix in state_dict_mapping()}
    for layer_name, arrays in weights.items():
        try:
            layer = model.get_layer(layer_name)
        except ValueError as exc:
            raise StateDictError(
                f"The model has no layer {layer_name!r}; build it with build_efficientnet_lite0()."
            ) from exc
        kind, prefix = kinds[layer_name]
        for (suffix, _), array, variable in zip(_KINDS[kind], arrays, layer.weights, strict=True):
            if tuple(array.shape) != tuple(variable.shape):
                raise StateDictError(
                    f"State dict key '{prefix}.{suffix}' converts to shape {array.shape} but layer "
                    f"{layer_name!r} expects {tuple(variable.shape)}."
                )
    for layer_name, arrays in weights.items():
        model.get_layer(layer_name).set_weights(arrays)
    return model


def read_state_dict(path) -> dict[str, np.ndarray]:
    """Read a state dict saved with ``numpy.savez`` into a plain dict of arrays."""
    with np.load(path) as npz:
        return {key: npz[key] for key in npz.files}


__all__ = [
    "BLOCKS",
    "BLOCK_OUTPUT_LAYERS",
    "CAM_LAYERS",
    "LAST_CONV_LAYER",
    "BlockSpec",
    "StateDictError",
    "build_efficientnet_lite0",
    "conv_kernel_to_keras",
    "convert_state_dict",
    "dense_kernel_to_keras",
    "depthwise_kernel_to_keras",
    "efficientnet_lite0",
    "load_state_dict",
    "preprocess_input",
    "read_state_dict",
    "state_dict_mapping",
]
