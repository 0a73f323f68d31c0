"""Random, differentiable image transforms applied before the model at every step.

An image that excites a filter only at one exact pixel alignment is mostly adversarial
noise. Asking the pattern to survive small random shifts, rescalings and rotations
(Lucid's "transformation robustness") leaves the structure that the filter really
responds to.

The randomness is kept out of the compiled step, so that it is the same on every Keras
backend: a transform draws its parameters (a few numbers) with NumPy, ``draw(rng)`` for a
``np.random.Generator``, and applies them, as a tensor, inside the step with
``keras.ops``: ``t(images, params)``. ``t(images, rng)`` does both (handy outside a
compiled function). Shapes never depend on the drawn numbers (a compiled step is traced
once): a jitter crops a window of fixed size at a random offset, and a rescaling zooms
about the centre on the same canvas.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import numpy as np

__all__ = ["Transform", "pad", "jitter", "random_scale", "random_rotate", "compose", "standard_transforms"]


class Transform:
    """An image transform with ``size`` random parameters (float32) drawn by ``draw``.

    ``apply(images, params)`` uses keras.ops only; ``params`` is a tensor of ``size`` numbers.
    """

    size = 0

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        return np.zeros(0, np.float32)

    def apply(self, images, params):
        raise NotImplementedError

    def __call__(self, images, params=None):
        if isinstance(params, np.random.Generator):
            params = self.draw(params)
        elif params is None:
            if self.size:
                raise TypeError(f"{self!r} is random: pass its parameters or a np.random.Generator.")
            params = np.zeros(0, np.float32)
        if isinstance(params, (np.ndarray, list, tuple)):
            params = keras.ops.convert_to_tensor(np.asarray(params, np.float32))
        return self.apply(keras.ops.convert_to_tensor(images), params)


def _choices(values, what: str) -> np.ndarray:
    values = np.asarray(list(values), np.float32)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"{what} needs a non-empty sequence of numbers, got {values.tolist()!r}.")
    return values


def _affine(images, matrix, fill_mode: str):
    """Warp with the 3x3 matrix (output pixel (x, y, 1) -> the input pixel it reads), same for the batch."""
    flat = keras.ops.stack([matrix[0, 0], matrix[0, 1], matrix[0, 2], matrix[1, 0], matrix[1, 1], matrix[1, 2], 0.0 * matrix[0, 0], 0.0 * matrix[0, 0]])
    batch = keras.ops.shape(images)[0]
    transform = keras.ops.tile(flat[None], [batch, 1])
    return keras.ops.image.affine_transform(images, transform, interpolation="bilinear", fill_mode=fill_mode, fill_value=0.0)


def _about_centre(images, linear):
    """The 3x3 matrix reading input (cx, cy) + linear @ ((x, y) - (cx, cy)) for output (x, y)."""
    height, width = images.shape[1], images.shape[2]
    cx, cy = (width - 1) / 2, (height - 1) / 2
    a, b, c, d = linear
    zero, one = 0.0 * a, 1.0 + 0.0 * a
    return keras.ops.stack(
        [
            keras.ops.stack([a, b, cx - a * cx - b * cy]),
            keras.ops.stack([c, d, cy - c * cx - d * cy]),
            keras.ops.stack([zero, zero, one]),
        ]
    )


class pad(Transform):
    """Pad with a constant border (mid-grey by default), so that jitter can move the image."""

    def __init__(self, width: int, value: float = 0.5):
        if width < 0:
            raise ValueError(f"pad needs a width >= 0, got {width}.")
        self.width, self.value = int(width), float(value)

    def apply(self, images, params):
        w = self.width
        return keras.ops.pad(images, [[0, 0], [w, w], [w, w], [0, 0]], constant_values=self.value)

    def __repr__(self):
        return f"pad({self.width}, {self.value:g})"


class jitter(Transform):
    """Crop a random window ``d`` pixels smaller than the image: a random shift of up to d."""

    size = 2

    def __init__(self, d: int):
        if d < 1:
            raise ValueError(f"jitter needs a positive shift, got {d}.")
        self.d = int(d)

    def draw(self, rng):
        return rng.integers(0, self.d + 1, size=2).astype(np.float32)  # dy, dx

    def apply(self, images, params):
        b, h, w, c = images.shape
        offsets = keras.ops.cast(params, "int32")
        zero = offsets[0] * 0
        return keras.ops.slice(images, [zero, offsets[0], offsets[1], zero], [b, h - self.d, w - self.d, c])

    def __repr__(self):
        return f"jitter({self.d})"


class random_scale(Transform):
    """Zoom about the centre by a factor drawn from ``scales`` (bilinear), keeping the size.

    Above 1 the borders leave the canvas; below 1 the canvas is filled by reflection.
    """

    size = 1

    def __init__(self, scales: Sequence[float]):
        self.scales = _choices(scales, "random_scale")
        if np.any(self.scales <= 0):
            raise ValueError(f"random_scale needs positive factors, got {self.scales.tolist()}.")

    def draw(self, rng):
        return self.scales[rng.integers(0, self.scales.size)][None]

    def apply(self, images, params):
        inverse = 1.0 / params[0]
        zero = 0.0 * inverse
        return _affine(images, _about_centre(images, (inverse, zero, zero, inverse)), "reflect")

    def __repr__(self):
        return f"random_scale({self.scales.tolist()})"


class random_rotate(Transform):
    """Rotate about the centre by an angle (degrees) drawn from ``degrees``; borders reflect."""

    size = 1

    def __init__(self, degrees: Sequence[float]):
        self.degrees = _choices(degrees, "random_rotate")

    def draw(self, rng):
        return self.degrees[rng.integers(0, self.degrees.size)][None]

    def apply(self, images, params):
        angle = params[0] * (math.pi / 180.0)
        cos, sin = keras.ops.cos(angle), keras.ops.sin(angle)
        return _affine(images, _about_centre(images, (cos, -sin, sin, cos)), "reflect")

    def __repr__(self):
        return f"random_rotate({self.degrees.tolist()})"


class compose(Transform):
    """Apply the transforms in order; their parameters are drawn in that order too."""

    def __init__(self, *transforms):
        for t in transforms:
            if not isinstance(t, Transform):
                raise TypeError(
                    f"{t!r} is not a Transform: use pad, jitter, random_scale, random_rotate or a "
                    "subclass of chollet_viz.filters.transforms.Transform."
                )
        self.transforms = transforms
        self.size = sum(t.size for t in transforms)

    def draw(self, rng):
        return np.concatenate([np.zeros(0, np.float32)] + [t.draw(rng) for t in self.transforms]).astype(np.float32)

    def apply(self, images, params):
        first = 0
        for t in self.transforms:
            images = t.apply(images, params[first : first + t.size])
            first += t.size
        return images

    def __repr__(self):
        return f"compose({', '.join(map(repr, self.transforms))})"


def standard_transforms() -> list:
    """Pad, jitter, rescale by up to 5 %, rotate by up to 5 degrees, jitter again."""
    return [
        pad(12),
        jitter(8),
        random_scale([1 + i / 100 for i in range(-5, 6)]),
        random_rotate(list(range(-5, 6))),
        jitter(4),
    ]
