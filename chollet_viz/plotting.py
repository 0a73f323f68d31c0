"""Figures for the course: image grids, channel mosaics and heatmap overlays (matplotlib).

Mosaics are tiled with NumPy and drawn with a single ``imshow``, which is much faster
than one subplot per channel and gives the same picture.
"""

from __future__ import annotations

import math

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from .activations import single_activation


def use_jpeg_figures(quality: int = 90) -> None:
    """Store this notebook's inline figures as JPEG of ``quality`` instead of PNG.

    The chapters' figures are photographs, heatmaps and mosaics of smooth feature maps:
    PNG stores them at about five times the bytes of a JPEG at quality 90, which looks the
    same at the size a page shows them. Line plots keep PNG (chapters with curves do not
    call this). Does nothing outside an IPython kernel.
    """
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be an integer from 1 to 100, got {quality}.")
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):  # plain Python or terminal IPython
        return
    from matplotlib_inline.config import InlineBackend

    # The inline backend's own configuration, what ``%config InlineBackend...`` sets; the
    # keyword arguments first, since changing the formats is what applies them.
    config = InlineBackend.instance()
    config.print_figure_kwargs = {"bbox_inches": "tight", "pil_kwargs": {"quality": int(quality)}}
    config.figure_formats = {"jpeg"}


def standardize_channels(maps: np.ndarray) -> np.ndarray:
    """The book's display normalisation, per channel: centre, scale to std 64, shift to 128.

    ``maps`` has shape (height, width, channels); returns uint8. A constant channel (a
    dead ReLU channel is zero everywhere) becomes a blank tile of value 128 instead of
    the book's division by zero.
    """
    maps = np.asarray(maps, dtype=np.float32)
    centred = maps - maps.mean(axis=(0, 1), keepdims=True)
    std = centred.std(axis=(0, 1), keepdims=True)
    scaled = np.divide(centred, std, out=np.zeros_like(centred), where=std > 0)
    return np.clip(scaled * 64 + 128, 0, 255).astype(np.uint8)


def tile(images: np.ndarray, ncols: int | None = None, margin: int = 0, fill=0) -> np.ndarray:
    """Tile a stack of images (n, h, w[, c]) into one array, row by row.

    Missing tiles at the end of the last row and the margins are filled with ``fill``.
    """
    images = np.asarray(images)
    n, h, w = images.shape[:3]
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    out_shape = (nrows * h + (nrows - 1) * margin, ncols * w + (ncols - 1) * margin, *images.shape[3:])
    out = np.full(out_shape, fill, dtype=images.dtype)
    for i, image in enumerate(images):
        r, c = divmod(i, ncols)
        out[r * (h + margin) : r * (h + margin) + h, c * (w + margin) : c * (w + margin) + w] = image
    return out


def channel_mosaic(maps: np.ndarray, ncols: int = 16, normalize: bool = True) -> np.ndarray:
    """Every channel of one activation (h, w, c) or (1, h, w, c) tiled into a 2-D array."""
    maps = single_activation(maps)
    if normalize:
        maps = standardize_channels(maps)
    return tile(np.moveaxis(maps, -1, 0), ncols=min(ncols, maps.shape[-1]))


def show_mosaic(mosaic: np.ndarray, title: str = "", cmap: str = "viridis", scale: float = 1 / 40, ax=None):
    """Draw a mosaic with one ``imshow``; figure size follows the mosaic's pixel size."""
    if ax is None:
        h, w = mosaic.shape[:2]
        _, ax = plt.subplots(figsize=(max(w * scale, 2), max(h * scale, 1)))
    ax.imshow(mosaic, aspect="auto", cmap=cmap)
    ax.set_title(title)
    ax.grid(False)
    ax.axis("off")
    return ax


def show_images(images, titles=None, ncols: int | None = None, size: float = 2.5, cmap=None, suptitle=None):
    """A grid of images without axes; ``titles`` label each panel."""
    images = list(images)
    ncols = ncols or len(images)
    nrows = math.ceil(len(images) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            image = np.asarray(images[i])
            if image.dtype.kind == "f" and image.ndim == 3 and image.max() > 1:
                image = np.clip(image, 0, 255).astype(np.uint8)
            ax.imshow(image, cmap=cmap)
            if titles is not None:
                ax.set_title(titles[i], fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def resize(array: np.ndarray, size) -> np.ndarray:
    """Bilinear resize of a 2-D (h, w) or 3-D (h, w, c) array to ``size = (height, width)``."""
    import tensorflow as tf

    array = np.asarray(array, dtype=np.float32)
    squeeze = array.ndim == 2
    if squeeze:
        array = array[..., None]
    out = tf.image.resize(array, size, method="bilinear").numpy()
    return out[..., 0] if squeeze else out


def overlay_heatmap(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4, cmap: str = "jet") -> np.ndarray:
    """Lay a heatmap (any size, values in [0, 1]) over an RGB image (0..255); returns uint8.

    The heatmap is resized bilinearly to the image and coloured with a matplotlib colormap.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"Expected an RGB image of shape (height, width, 3), got {image.shape}.")
    heatmap = resize(np.asarray(heatmap, dtype=np.float32), image.shape[:2])
    colours = matplotlib.colormaps[cmap](np.clip(heatmap, 0, 1))[..., :3] * 255
    return np.clip(colours * alpha + image * (1 - alpha), 0, 255).astype(np.uint8)
