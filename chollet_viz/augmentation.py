"""The book's data augmentation, as Keras 2.0's ``ImageDataGenerator`` performed it.

The book (listing 5.11) augments with ``rotation_range=40, width_shift_range=0.2,
height_shift_range=0.2, shear_range=0.2, zoom_range=0.2, horizontal_flip=True,
fill_mode="nearest"``. In the Keras 2.0 release the book was written against, those
transforms are composed into *one* affine matrix per image (rotation, shift, shear, zoom,
about the image centre), the shear angle is in radians, and the image is resampled once
with nearest-neighbour interpolation. Chaining Keras 3's ``RandomRotation``,
``RandomTranslation``, ``RandomShear`` and ``RandomZoom`` layers instead resamples four
times with bilinear interpolation: the training images come out blurred while the
validation images stay sharp, and the trained model falls short of the book's accuracy.
"""

from __future__ import annotations

import math

import numpy as np

BOOK_RANGES = dict(rotation=40.0, width_shift=0.2, height_shift=0.2, shear=0.2, zoom=0.2, horizontal_flip=True)


def affine_matrix(theta, tx, ty, shear, zx, zy, height, width):
    """The 3x3 matrix ImageDataGenerator builds, mapping output (row, col) to input (row, col).

    ``theta`` and ``shear`` are in radians, ``tx``/``ty`` are row/column shifts in pixels,
    ``zx``/``zy`` the row/column zoom factors (above 1 zooms out). Works on NumPy arrays
    or TensorFlow tensors of shape ``(batch,)``; returns shape ``(batch, 3, 3)``.
    """
    xp = _namespace(theta)
    one, zero = xp.ones_like(theta), xp.zeros_like(theta)
    rotation = _stack(xp, [[xp.cos(theta), -xp.sin(theta), zero], [xp.sin(theta), xp.cos(theta), zero], [zero, zero, one]])
    shift = _stack(xp, [[one, zero, tx], [zero, one, ty], [zero, zero, one]])
    shearing = _stack(xp, [[one, -xp.sin(shear), zero], [zero, xp.cos(shear), zero], [zero, zero, one]])
    zoom = _stack(xp, [[zx, zero, zero], [zero, zy, zero], [zero, zero, one]])
    matrix = rotation @ shift @ shearing @ zoom
    # Keras 2.0 transforms about the point (h/2 + 0.5, w/2 + 0.5), in index coordinates.
    oy, ox = height / 2 + 0.5, width / 2 + 0.5
    offset = xp.asarray([[1, 0, oy], [0, 1, ox], [0, 0, 1]], dtype=matrix.dtype)
    reset = xp.asarray([[1, 0, -oy], [0, 1, -ox], [0, 0, 1]], dtype=matrix.dtype)
    return offset @ matrix @ reset


def to_projective(matrix):
    """(batch, 3, 3) row/column matrices -> the 8-vectors of ``keras.ops.image.affine_transform``.

    Those map output ``(x, y) = (col, row)`` to input ``(x, y)``, so rows and columns swap.
    """
    xp = _namespace(matrix)
    m = matrix
    zero = xp.zeros_like(m[:, 0, 0])
    return xp.stack([m[:, 1, 1], m[:, 1, 0], m[:, 1, 2], m[:, 0, 1], m[:, 0, 0], m[:, 0, 2], zero, zero], axis=1)


def apply_affine(images, matrix):
    """Resample a batch once, nearest-neighbour, edges filled with the nearest pixel.

    On Keras' backend, any of the three; one matrix (batch 1) applies to every image.
    """
    from keras import ops

    transforms = to_projective(matrix)
    if transforms.shape[0] == 1 and images.shape[0] not in (1, None):
        # TensorFlow's kernel broadcasts a single transform; JAX's and PyTorch's do not.
        transforms = ops.tile(ops.convert_to_tensor(transforms), (images.shape[0], 1))  # a copy: torch writes into it
    return ops.image.affine_transform(images, transforms, interpolation="nearest", fill_mode="nearest")


def _apply_affine_tf(images, matrix):
    """:func:`apply_affine` in TensorFlow itself, whatever Keras' backend: the training
    pipeline is ``tf.data``, whose graph only TensorFlow ops can join. The op and arguments
    are those of Keras' TensorFlow ``affine_transform``, so the numbers are the same."""
    import tensorflow as tf

    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=tf.cast(to_projective(matrix), tf.float32),
        output_shape=tf.shape(images)[1:-1],
        fill_value=0.0,
        interpolation="NEAREST",
        fill_mode="NEAREST",
    )


def sample_parameters(batch, height, width, seed, **ranges):
    """Random transform parameters for ``batch`` images, drawn as ImageDataGenerator drew them.

    ``seed`` is a pair of integers for TensorFlow's stateless random ops. ``ranges``
    override :data:`BOOK_RANGES` (rotation in degrees, shear in radians, shifts and zoom
    as fractions). Returns a dict of ``(batch,)`` tensors: the arguments of
    :func:`affine_matrix` plus ``flip``, a boolean for the horizontal mirror.
    """
    import tensorflow as tf

    r = {**BOOK_RANGES, **ranges}
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=7)

    def uniform(i, low, high):
        return tf.random.stateless_uniform([batch], seeds[i], low, high)

    return dict(
        theta=uniform(0, -r["rotation"], r["rotation"]) * (math.pi / 180),
        tx=uniform(1, -r["height_shift"], r["height_shift"]) * float(height),
        ty=uniform(2, -r["width_shift"], r["width_shift"]) * float(width),
        shear=uniform(3, -r["shear"], r["shear"]),
        zx=uniform(4, 1 - r["zoom"], 1 + r["zoom"]),
        zy=uniform(5, 1 - r["zoom"], 1 + r["zoom"]),
        flip=uniform(6, 0.0, 1.0) < (0.5 if r["horizontal_flip"] else 0.0),
    )


def random_book_transform(images, seed, **ranges):
    """Augment a float batch ``(batch, height, width, channels)`` as the book's generator does.

    ``seed`` is a pair of integers, so one batch always gets the same transforms: pass
    e.g. ``(global_seed, batch_index)``. ``ranges`` as for :func:`sample_parameters`.
    TensorFlow on every Keras backend (its stateless random ops, and the training
    pipeline is ``tf.data``): returns a ``tf.Tensor``.
    """
    import tensorflow as tf

    images = tf.convert_to_tensor(images)
    height, width = images.shape[1], images.shape[2]
    p = sample_parameters(tf.shape(images)[0], height, width, seed, **ranges)
    flip = p.pop("flip")
    out = _apply_affine_tf(images, affine_matrix(**p, height=height, width=width))
    return tf.where(flip[:, None, None, None], tf.reverse(out, axis=[2]), out)


def _namespace(x):
    if isinstance(x, np.ndarray):
        return np
    import tensorflow as tf

    class _TF:  # the few NumPy spellings this module needs, on tensors
        cos, sin, ones_like, zeros_like = tf.cos, tf.sin, tf.ones_like, tf.zeros_like
        stack, asarray = staticmethod(tf.stack), staticmethod(tf.constant)

    return _TF


def _stack(xp, rows):
    """Nested lists of (batch,) arrays -> (batch, 3, 3)."""
    return xp.stack([xp.stack(row, axis=-1) for row in rows], axis=-2)
