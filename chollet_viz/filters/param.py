"""Image parameterisations: what gradient ascent actually changes.

A parameterisation holds trainable ``keras.Variable``s (``variables``) and a pure function
of their values, ``images(*values)``, giving a batch of images (batch, height, width, 3);
called, ``param()`` gives the images of the variables' current values. Everything is
``keras.ops``, so it runs on every Keras backend. Three are provided:

- ``Pixels(start)``: the pixels themselves, in whatever space ``start`` is in. The book's
  method uses this in the model's own input space, with no colour constraint.
- ``pixel_image(...)``: pixels in a decorrelated colour space, squashed into RGB [0, 1].
- ``fourier_image(...)``: the image's 2-D Fourier coefficients, scaled so that every
  frequency moves about equally fast (natural images have power falling like 1/f^2, so
  plain pixel gradients are dominated by high-frequency noise), plus the same colour
  decorrelation.

RGB images in [0, 1] are brought into a model's input space by a preprocessing function,
e.g. ``vgg16_preprocess``.
"""

from __future__ import annotations

import keras
import numpy as np

from .. import models

__all__ = [
    "Pixels",
    "RGBImage",
    "pixel_image",
    "fourier_image",
    "irfft2",
    "COLOUR_SQRT_COVARIANCE",
    "colour_sqrt_covariance",
    "vgg16_preprocess",
    "unit_range",
]

# Square root of the RGB covariance of natural images (pixels in [0, 1]), as columns
# U * sqrt(S) of its SVD, so that M @ M.T is the covariance. Estimated with
# ``colour_sqrt_covariance`` on every 7th pixel of the 2,000 Dogs-vs-Cats training images
# of section 5.2 (43 million pixels); Lucid's ImageNet estimate is within 0.03 of it.
COLOUR_SQRT_COVARIANCE = np.array(
    [
        [0.2496, 0.0730, 0.0183],
        [0.2501, -0.0040, -0.0391],
        [0.2455, -0.0701, 0.0212],
    ],
    dtype=np.float32,
)

def colour_sqrt_covariance(pixels: np.ndarray) -> np.ndarray:
    """A matrix M with M @ M.T equal to the covariance of ``pixels`` (..., 3).

    Its columns are the principal colour directions scaled by their standard deviations,
    the first (brightness) pointing to positive values.
    """
    flat = np.asarray(pixels, dtype=np.float64).reshape(-1, 3)
    u, s, _ = np.linalg.svd(np.cov(flat, rowvar=False))
    u = u * np.where(u.sum(axis=0) < 0, -1.0, 1.0)  # fix the SVD's arbitrary signs
    return u * np.sqrt(s)


def _to_rgb(t, decorrelate: bool):
    """Map unconstrained values to RGB in [0, 1], optionally through correlated colours."""
    if decorrelate:
        # Normalised so that the strongest colour direction has unit length: gradient
        # steps then move brightness and hue at comparable rates.
        m = COLOUR_SQRT_COVARIANCE / np.linalg.norm(COLOUR_SQRT_COVARIANCE, axis=0).max()
        t = keras.ops.tensordot(t, keras.ops.convert_to_tensor(m.T), axes=1)
    return keras.ops.sigmoid(t)


class Pixels:
    """The images' values themselves, starting from ``start`` (batch, height, width, channels).

    ``space`` says what the values mean: ``"model"`` for a model's input space (the book's
    method), ``"rgb"`` for RGB in [0, 1].
    """

    def __init__(self, start, space: str = "model"):
        start = np.asarray(start, dtype=np.float32)
        if start.ndim != 4:
            raise ValueError(f"start must have shape (batch, height, width, channels), got {start.shape}.")
        self.image = keras.Variable(start, name="pixels")
        self.variables = [self.image]
        self.space = space
        self.shape = start.shape

    def images(self, pixels):
        return pixels

    def __call__(self):
        return keras.ops.convert_to_tensor(self.image.value)


class RGBImage:
    """Unconstrained variables mapped to RGB [0, 1] through ``decode`` and a colour transform."""

    space = "rgb"

    def __init__(self, variable: keras.Variable, decode, shape, decorrelate: bool):
        self.variable = variable
        self.variables = [variable]
        self.decode = decode
        self.shape = shape
        self.decorrelate = decorrelate

    def images(self, values):
        return _to_rgb(self.decode(values), self.decorrelate)

    def __call__(self):
        return self.images(self.variable.value)


def _shape(batch: int, height: int, width: int | None):
    width = height if width is None else width
    if min(batch, height, width) < 1:
        raise ValueError(f"batch, height and width must be positive, got {batch}, {height}, {width}.")
    return int(batch), int(height), int(width)


def pixel_image(batch: int, height: int, width: int | None = None, sd: float = 0.01, decorrelate: bool = True, seed: int = 0) -> RGBImage:
    """RGB images parameterised by their (colour-decorrelated) pixels, starting near grey."""
    batch, height, width = _shape(batch, height, width)
    init = np.random.default_rng(seed).normal(0.0, sd, (batch, height, width, 3)).astype(np.float32)
    return RGBImage(keras.Variable(init, name="pixels"), lambda v: v, (batch, height, width, 3), decorrelate)


def _frequency_scale(height: int, width: int, decay_power: float) -> np.ndarray:
    """1 / f^decay_power for the real-FFT grid, with the DC term treated as the lowest frequency."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    freqs = np.sqrt(fx**2 + fy**2)
    scale = 1.0 / np.maximum(freqs, 1.0 / max(height, width)) ** decay_power
    # irfft2 divides by height * width; this keeps pixel values of order sd * scale.
    return (scale * np.sqrt(height * width)).astype(np.float32)


def fourier_image(
    batch: int,
    height: int,
    width: int | None = None,
    sd: float = 0.01,
    decay_power: float = 1.0,
    decorrelate: bool = True,
    seed: int = 0,
) -> RGBImage:
    """RGB images parameterised by scaled 2-D Fourier coefficients (Lucid's ``fft_image``).

    The variables are the real and imaginary parts of every channel's spectrum, each
    multiplied by 1/f^decay_power before the inverse FFT, so that low frequencies are as
    easy to change as high ones.
    """
    batch, height, width = _shape(batch, height, width)
    scale = _frequency_scale(height, width, decay_power)
    fh, fw = scale.shape
    init = np.random.default_rng(seed).normal(0.0, sd, (2, batch, 3, fh, fw)).astype(np.float32)

    def decode(v):
        scaled = keras.ops.convert_to_tensor(scale)
        channels_first = irfft2(v[0] * scaled, v[1] * scaled, (height, width))
        # The constant 4 keeps the initial image's values small, as in Lucid.
        return keras.ops.transpose(channels_first, (0, 2, 3, 1)) / 4.0

    return RGBImage(keras.Variable(init, name="spectrum"), decode, (batch, height, width, 3), decorrelate)


def irfft2(real, imag, shape):
    """``numpy.fft.irfft2`` over the last two axes, from ``keras.ops.ifft2``.

    ``real``, ``imag`` (..., height, width // 2 + 1) are the non-negative-frequency half of
    a spectrum along the last axis, as ``rfft2`` gives it. ``keras.ops`` has no inverse
    real 2-D FFT, so the other half is filled in by Hermitian symmetry, X[k, l] =
    conj(X[-k mod height, width - l]), and the real part of the full inverse taken:
    that also drops the imaginary parts of the zero (and Nyquist) frequency columns,
    as ``irfft2`` does.
    """
    height, width = int(shape[0]), int(shape[1])
    half = width // 2 + 1
    if tuple(real.shape[-2:]) != (height, half) or tuple(imag.shape[-2:]) != (height, half):
        raise ValueError(
            f"irfft2 to shape {(height, width)} needs spectra of shape (..., {height}, {half}); got "
            f"{tuple(real.shape)} and {tuple(imag.shape)}."
        )
    ops = keras.ops
    rows = np.array([(-k) % height for k in range(height)], np.int32)
    columns = np.array([width - l for l in range(half, width)], np.int32)
    if columns.size:
        mirrored_real = ops.take(ops.take(real, rows, axis=-2), columns, axis=-1)
        mirrored_imag = ops.take(ops.take(imag, rows, axis=-2), columns, axis=-1)
        real = ops.concatenate([real, mirrored_real], axis=-1)
        imag = ops.concatenate([imag, -mirrored_imag], axis=-1)
    return ops.ifft2((real, imag))[0]


def vgg16_preprocess(rgb):
    """RGB in [0, 1] to the input space of Keras' ImageNet VGG16: 0-255, BGR, mean removed."""
    return models.vgg16_preprocess(rgb * 255.0)


def unit_range(rgb):
    """For models that take RGB in [0, 1] (the course's small convnet): nothing to do."""
    return rgb
