"""The book's method (DLwP 1st ed., 5.4.2), batched and compiled.

For one filter of one layer the book

1. starts from ``random((1, size, size, 3)) * 20 + 128``, uniform noise around 128, fed
   to VGG16 *without* ``preprocess_input``: the values are already in the model's input
   space (BGR, ImageNet mean removed), where 128 means a near-white pixel
   (BGR 232, 245, 252 once the mean is added back);
2. takes as loss the mean activation of that filter over the layer's feature map;
3. repeats 40 times: gradient of the loss with respect to the image, divided by its root
   mean square + 1e-5, added to the image (step size 1);
4. displays the result with ``deprocess_image`` (centre, std 0.1, + 0.5, clip to [0, 1],
   x 255, uint8), keeping the model's BGR channel order.

``generate_patterns`` runs the same arithmetic for many filters at once: a batch of
images in which image i maximises filter i, on the model cut at the layer, with the step
compiled. Images never interact and the normalisation is per image, so each pattern is
what the one-filter loop gives from the same start, up to float rounding.
"""

from __future__ import annotations

import numpy as np

from ..backend import to_numpy
from ._layers import channel_count, check_channels, cut_model, feature_layer
from .objectives import channel
from .param import Pixels
from .render import NormalizedAscent, RenderResult, render

__all__ = [
    "BOOK_STEPS",
    "BOOK_STEP_SIZE",
    "book_start",
    "dead_at_start",
    "filter_grid",
    "generate_pattern",
    "generate_patterns",
    "show_filter_grid",
]

BOOK_STEPS = 40
BOOK_STEP_SIZE = 1.0


def book_start(batch: int, size: int, seed: int | None = 0) -> np.ndarray:
    """The book's starting images: uniform noise in [128, 148), float32 (batch, size, size, 3)."""
    rng = np.random.default_rng(seed)
    return (rng.random((batch, size, size, 3)) * 20 + 128).astype(np.float32)


def _start_for(filters, size, start, seed) -> np.ndarray:
    if start is None:
        return book_start(len(filters), size, seed)
    start = np.asarray(start, dtype=np.float32)
    if start.ndim == 3:
        start = start[None]
    if start.ndim != 4 or start.shape[0] != len(filters) or start.shape[-1] != 3:
        raise ValueError(
            f"start must have shape ({len(filters)}, height, width, 3), one image per filter; "
            f"got {start.shape}."
        )
    return start


def generate_patterns(
    model,
    layer_name: str,
    filters=None,
    *,
    size: int = 64,
    steps: int = BOOK_STEPS,
    step: float = BOOK_STEP_SIZE,
    start=None,
    seed: int | None = 0,
    batch_size: int = 64,
    progress: bool = True,
    precision: str = "float32",
) -> RenderResult:
    """The book's pattern for every filter in ``filters`` (default: all), ``batch_size`` at a time.

    ``start`` (one image per filter, the model's input space) replaces the book's noise,
    drawn otherwise with ``seed``. Returns a ``RenderResult`` whose ``labels`` are the filter
    indices, ``images`` the raw images (``to_uint8()`` deprocesses them) and ``dead`` the
    filters that never fired.
    """
    layer = feature_layer(model, layer_name)
    filters = list(range(channel_count(layer))) if filters is None else [int(f) for f in np.atleast_1d(filters)]
    if not filters:
        raise ValueError("filters is empty: name at least one filter index.")
    check_channels(model, layer_name, filters)
    start = _start_for(filters, size, start, seed)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")

    parts = []
    for first in range(0, len(filters), batch_size):
        chunk = filters[first : first + batch_size]
        label = f"{layer_name} filter {chunk[0]}" if len(chunk) == 1 else f"{layer_name} filters {chunk[0]}-{chunk[-1]}"
        parts.append(
            render(
                model,
                channel(layer_name, chunk),
                Pixels(start[first : first + batch_size], space="model"),
                steps=steps,
                optimizer=NormalizedAscent(step),
                labels=chunk,
                progress=progress,
                description=label,
                precision=precision,
            )
        )
    if len(parts) == 1:
        parts[0].description = layer_name
        return parts[0]
    return RenderResult(
        images=np.concatenate([p.images for p in parts]),
        history=np.concatenate([p.history for p in parts], axis=1),
        labels=filters,
        dead=[d for p in parts for d in p.dead],
        space="model",
        seconds=sum(p.seconds for p in parts),
        description=layer_name,
    )


def generate_pattern(model, layer_name: str, filter_index: int, *, size: int = 150, start=None, seed: int | None = 0, progress: bool = False, **kwargs) -> RenderResult:
    """The book's ``generate_pattern`` for one filter (a batch of one); see ``generate_patterns``."""
    return generate_patterns(model, layer_name, [filter_index], size=size, start=start, seed=seed, progress=progress, **kwargs)


def dead_at_start(model, layer_name: str, start) -> list[int]:
    """Filters of ``layer_name`` that output zero everywhere on ``start`` (one image).

    Such a filter (a ReLU that does not fire) has a zero gradient, so the book's ascent
    never moves away from ``start``: one forward pass finds them all.
    """
    feature_layer(model, layer_name)
    start = np.asarray(start, dtype=np.float32)
    start = start[None] if start.ndim == 3 else start[:1]
    maps = to_numpy(cut_model(model, [layer_name])(start))[0]
    return [int(i) for i in np.flatnonzero(np.all(maps == 0, axis=(0, 1)))]


def filter_grid(images: np.ndarray, ncols: int = 8, margin: int = 5) -> np.ndarray:
    """The book's figure: images (n, h, w, 3) uint8 tiled ``ncols`` wide with black margins."""
    from ..plotting import tile

    return tile(np.asarray(images), ncols=ncols, margin=margin, fill=0)


def show_filter_grid(result: RenderResult, ncols: int = 8, margin: int = 5, title: str | None = None, ax=None, mark_dead: bool = True, size: float = 6.0):
    """Draw the grid of ``result``'s patterns; dead filters are outlined in red and counted."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    images = result.to_uint8()
    if ax is None:
        _, ax = plt.subplots(figsize=(size, size))
    ax.imshow(filter_grid(images, ncols, margin))
    h, w = images.shape[1:3]
    dead = set(result.dead) if mark_dead else set()
    for i, label in enumerate(result.labels):
        if label in dead:
            r, c = divmod(i, ncols)
            ax.add_patch(Rectangle((c * (w + margin) - 0.5, r * (h + margin) - 0.5), w, h, fill=False, edgecolor="red", linewidth=2))
    title = title if title is not None else result.description
    if dead:
        title += f"\n{len(dead)} dead filter{'s' if len(dead) > 1 else ''} (outlined in red): never fired"
    ax.set_title(title)
    ax.axis("off")
    return ax.figure
