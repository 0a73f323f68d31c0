"""The models the course visualises, built in Keras 3 with weights resolved offline first."""

from __future__ import annotations

import contextlib
import io
import sys

import keras
from keras import layers

from .data import AssetError, fetch

VGG16_HEAD_MESSAGE = (
    "VGG16 with its ImageNet classifier head (fc1, fc2, predictions; about 528 MB) needs "
    "Keras' download of 'vgg16_weights_tf_dim_ordering_tf_kernels.h5', which failed: {error}. "
    "The classifier head is not available offline anywhere (the course's mirror holds only "
    "the convolutional base). Run this on a machine with internet access (Colab works), use "
    "vgg16(include_top=False) for the convolutional base, or use efficientnet_lite0() as an "
    "ImageNet classifier that works offline."
)


def cats_and_dogs_small(pretrained: bool = False) -> keras.Model:
    """The book's small convnet of section 5.2 with dropout, for 150x150 RGB inputs in [0, 1].

    With ``pretrained=True`` the weights trained by ``python -m chollet_viz.train``
    (shipped in ``data/``, sha256-checked) are loaded.
    """
    model = keras.Sequential(
        [
            keras.Input((150, 150, 3)),
            layers.Conv2D(32, 3, activation="relu", name="conv2d_1"),
            layers.MaxPooling2D(2, name="max_pooling2d_1"),
            layers.Conv2D(64, 3, activation="relu", name="conv2d_2"),
            layers.MaxPooling2D(2, name="max_pooling2d_2"),
            layers.Conv2D(128, 3, activation="relu", name="conv2d_3"),
            layers.MaxPooling2D(2, name="max_pooling2d_3"),
            layers.Conv2D(128, 3, activation="relu", name="conv2d_4"),
            layers.MaxPooling2D(2, name="max_pooling2d_4"),
            layers.Flatten(name="flatten"),
            layers.Dropout(0.5, name="dropout"),
            layers.Dense(512, activation="relu", name="dense_1"),
            layers.Dense(1, activation="sigmoid", name="dense_2"),
        ],
        name="cats_and_dogs_small",
    )
    if pretrained:
        model.load_weights(fetch("cats_and_dogs_small"))
    return model


# ImageNet channel means in BGR order, subtracted by Keras' VGG16 ("caffe") preprocessing.
VGG16_BGR_MEAN = (103.939, 116.779, 123.68)


def vgg16_preprocess(images):
    """VGG16's input preprocessing: RGB 0..255 -> BGR with the ImageNet means removed.

    Equal to ``keras.applications.vgg16.preprocess_input`` for channels-last inputs, but
    it never edits its argument (Keras' edits float NumPy arrays in place) and works on
    tensors inside compiled functions. Returns a tensor of the input's floating dtype
    (float32 for integer images).
    """
    x = keras.ops.convert_to_tensor(images)
    if "float" not in keras.backend.standardize_dtype(x.dtype):
        x = keras.ops.cast(x, "float32")
    return keras.ops.flip(x, axis=-1) - keras.ops.convert_to_tensor(VGG16_BGR_MEAN, dtype=x.dtype)


def vgg16(include_top: bool = False, input_shape=None) -> keras.Model:
    """ImageNet VGG16.

    ``include_top=False`` gives the convolutional base (14,714,688 parameters), loaded from
    the offline mirror's weights file when ``CHOLLET_VIZ_MIRROR`` provides it, otherwise
    downloaded by Keras. ``include_top=True`` needs Keras' download of the full model and
    raises ``AssetError`` with an explanation where that is impossible; Keras' messages
    about that download (528 MB, a minute on Colab) appear once it has finished.
    """
    from keras.applications import VGG16

    if include_top:
        # Keras prints "Downloading data from ..." before it tries; offline the attempt fails
        # and that line would be the only trace of it in a stored chapter, so it is held
        # back and shown only if the download worked.
        said = io.StringIO()
        try:
            with contextlib.redirect_stdout(said):
                model = VGG16(weights="imagenet", include_top=True)
        except Exception as exc:  # Keras raises a bare Exception on a failed download
            raise AssetError(VGG16_HEAD_MESSAGE.format(error=exc)) from exc
        sys.stdout.write(said.getvalue())
        return model
    try:
        weights = str(fetch("vgg16_imagenet_notop"))
    except AssetError as mirror_error:
        try:
            return VGG16(weights="imagenet", include_top=False, input_shape=input_shape)
        except Exception as exc:
            raise AssetError(
                f"The ImageNet VGG16 convolutional base is not available: {mirror_error} "
                f"Keras' own download failed too: {exc}"
            ) from exc
    return VGG16(weights=weights, include_top=False, input_shape=input_shape)


def mnist_cnn() -> keras.Model:
    """A small MNIST classifier: conv 16 -> pool -> conv 32 -> pool -> dense 10 (logits)."""
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Rescaling(1 / 255, name="rescale"),
            layers.Conv2D(16, 3, activation="relu", padding="same", name="conv_1"),
            layers.MaxPooling2D(2, name="pool_1"),
            layers.Conv2D(32, 3, activation="relu", padding="same", name="conv_2"),
            layers.MaxPooling2D(2, name="pool_2"),
            layers.Flatten(name="flatten"),
            layers.Dense(10, name="logits"),
        ],
        name="mnist_cnn",
    )


def efficientnet_lite0(pretrained: bool = True) -> keras.Model:
    """ImageNet EfficientNet-Lite0 ported from PyTorch; returns logits (see ``efficientnet``)."""
    from .efficientnet import efficientnet_lite0 as build

    return build(pretrained=pretrained)


__all__ = ["cats_and_dogs_small", "vgg16", "vgg16_preprocess", "VGG16_BGR_MEAN", "mnist_cnn", "efficientnet_lite0"]
