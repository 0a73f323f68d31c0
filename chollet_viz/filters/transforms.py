"""Random, differentiable image transforms applied before the model at every step.

An image that excites a filter only at one exact pixel alignment is mostly adversarial
noise. Asking the pattern to survive small random shifts, rescalings and rotations
(Lucid's "transformation robustness") leaves the structure that the filter really
responds to. Each transform is called as ``t(images, rng)`` with a
``tf.random.Generator``, inside the compiled step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import tensorflow as tf

__all__ = ["pad", "jitter", "random_scale", "random_rotate", "compose", "standard_transforms"]


def _choice(rng: tf.random.Generator, values: Sequence[float]) -> tf.Tensor:
    values = tf.constant(list(values), dtype=tf.float32)
    return tf.gather(values, rng.uniform([], 0, values.shape[0], dtype=tf.int32))


def pad(width: int, value: float = 0.5):
    """Pad with a constant border (mid-grey by default), so that jitter can move the image."""

    def transform(images, rng):
        return tf.pad(images, [[0, 0], [width, width], [width, width], [0, 0]], constant_values=value)

    return transform


def jitter(d: int):
    """Crop a random window ``d`` pixels smaller than the image: a random shift of up to d."""
    if d < 1:
        raise ValueError(f"jitter needs a positive shift, got {d}.")

    def transform(images, rng):
        shape = tf.shape(images)
        dy = rng.uniform([], 0, d + 1, dtype=tf.int32)
        dx = rng.uniform([], 0, d + 1, dtype=tf.int32)
        return images[:, dy : dy + shape[1] - d, dx : dx + shape[2] - d, :]

    return transform


def random_scale(scales: Sequence[float]):
    """Resize (bilinearly) by a factor drawn from ``scales``."""

    def transform(images, rng):
        factor = _choice(rng, scales)
        size = tf.cast(tf.round(tf.cast(tf.shape(images)[1:3], tf.float32) * factor), tf.int32)
        return tf.image.resize(images, size, method="bilinear")

    return transform


def random_rotate(degrees: Sequence[float]):
    """Rotate about the centre by an angle (degrees) drawn from ``degrees``; borders reflect."""

    def transform(images, rng):
        angle = _choice(rng, degrees) * (math.pi / 180.0)
        shape = tf.shape(images)
        height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
        cx, cy = (width - 1) / 2, (height - 1) / 2
        cos, sin = tf.cos(angle), tf.sin(angle)
        # The projective transform maps each output pixel (x, y) to the input pixel it reads.
        matrix = tf.stack(
            [cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy, 0.0, 0.0]
        )
        return tf.raw_ops.ImageProjectiveTransformV3(
            images=images,
            transforms=tf.tile(matrix[None], [shape[0], 1]),
            output_shape=shape[1:3],
            fill_value=0.0,
            interpolation="BILINEAR",
            fill_mode="REFLECT",
        )

    return transform


def compose(*transforms):
    """Apply the transforms in order."""

    def transform(images, rng):
        for t in transforms:
            images = t(images, rng)
        return images

    return transform


def standard_transforms() -> list:
    """Pad, jitter, rescale by up to 5 %, rotate by up to 5 degrees, jitter again."""
    return [
        pad(12),
        jitter(8),
        random_scale([1 + i / 100 for i in range(-5, 6)]),
        random_rotate(list(range(-5, 6))),
        jitter(4),
    ]
