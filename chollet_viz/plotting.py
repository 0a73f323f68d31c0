"""Figures for the course: image grids, channel mosaics and heatmap overlays (matplotlib).

Mosaics are tiled with NumPy and drawn with a single ``imshow``, which is much faster
than one subplot per channel and gives the same picture.
"""

from __future__ import annotations

import io
import math
import re

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from .activations import single_activation


JPEG_QUALITY = 85


def smaller_image(png: bytes, jpeg: bytes) -> str:
    """The MIME type to store a picture as: ``image/jpeg`` where JPEG saves a third of PNG's bytes.

    Photographs, heatmaps and mosaics of fine feature maps take about a fifth of the bytes
    as JPEG at quality 85 and look the same at the size a page shows them; line plots,
    text and mosaics of a few large flat blocks are about as small, and sharper, as PNG.
    """
    return "image/jpeg" if len(jpeg) < len(png) * 2 / 3 else "image/png"


def png_to_jpeg(png: bytes, quality: int = JPEG_QUALITY) -> bytes:
    """Re-encode PNG bytes as JPEG (on white, as the page shows a transparent background)."""
    from PIL import Image

    image = Image.open(io.BytesIO(png))
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        flat = Image.new("RGB", image.size, "white")
        flat.paste(image, mask=image.getchannel("A"))
        image = flat
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def use_compact_figures(quality: int = JPEG_QUALITY) -> None:
    """Store each inline figure of this notebook as PNG or JPEG, whichever :func:`smaller_image` picks.

    Each figure is rendered both ways and only one is stored: a chapter full of pictures
    stays a few hundred kilobytes instead of megabytes. Call it before the first figure;
    it does nothing outside an IPython kernel.
    """
    if not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ValueError(f"quality must be an integer from 1 to 100, got {quality!r}.")
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):  # plain Python or terminal IPython
        return
    from IPython.core.pylabtools import print_figure
    from matplotlib.figure import Figure

    # Matplotlib loads its backend at the first figure, and the inline backend then installs
    # its own PNG formatter over these: load it first.
    plt.switch_backend(matplotlib.get_backend())
    rendered = {}  # the PNG formatter renders both; the JPEG formatter, called next, consumes it

    def both(fig):
        return rendered.pop(id(fig), None) or (
            print_figure(fig, "png", base64=True),
            print_figure(fig, "jpg", base64=True, pil_kwargs={"quality": quality}),
        )

    def as_png(fig):
        rendered.clear()  # only ever the figure being displayed now
        png, jpeg = rendered[id(fig)] = both(fig)
        return png if smaller_image(png, jpeg) == "image/png" else None

    def as_jpeg(fig):
        png, jpeg = both(fig)
        return jpeg if smaller_image(png, jpeg) == "image/jpeg" else None

    formatters = shell.display_formatter.formatters
    for mime in ("image/svg+xml", "application/pdf", "image/png", "image/jpeg"):
        formatters[mime].pop(Figure, None)
    formatters["image/png"].for_type(Figure, as_png)
    formatters["image/jpeg"].for_type(Figure, as_jpeg)


def glue_figure(name: str, fig=None) -> None:
    """Show ``fig`` (the current figure by default) and record it as ``name`` for the book.

    A cell that draws several figures in a loop cannot give each its own caption in the
    cell's metadata. Recorded this way, each figure is placed in the HTML by a
    ``{glue:figure}`` directive with its own caption and number (the cell carries the tag
    ``remove-output`` so the book does not show it twice), while Jupyter and Colab show it
    in the cell as usual. The output is the one ``myst_nb.glue(name, fig)`` writes, so the
    chapters do not need MyST-NB installed to run.
    """
    from IPython.core.formatters import format_display_data
    from IPython.display import display

    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name):
        raise ValueError(f"name must be a figure label of lower-case letters, digits and single hyphens, got {name!r}.")
    fig = plt.gcf() if fig is None else fig
    data, metadata = format_display_data(fig)
    metadata["scrapbook"] = {"name": name, "mime_prefix": ""}
    display(data, raw=True, metadata=metadata)
    plt.close(fig)  # shown once, here; the inline backend would show it again at the cell's end


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
    """Bilinear resize of a 2-D (h, w) or 3-D (h, w, c) array to ``size = (height, width)``.

    Half-pixel centres and no antialiasing, as ``tf.image.resize`` does by default, on
    every Keras backend (``keras.ops.image.resize``).
    """
    import keras

    array = np.asarray(array, dtype=np.float32)
    squeeze = array.ndim == 2
    if squeeze:
        array = array[..., None]
    out = keras.ops.image.resize(
        array, tuple(int(s) for s in size), interpolation="bilinear", antialias=False, data_format="channels_last"
    )
    out = np.asarray(keras.ops.convert_to_numpy(out))
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
