"""An ipywidgets explorer of filter patterns: pick a layer, a filter and a method, render.

Patterns cost seconds each, so nothing is rendered until asked ("Render" button or
``explorer.render(...)``), and every pattern is cached by (layer, filter, method, size):
coming back to one is instant. ``add(result)`` fills the cache from patterns already
computed (a whole grid from ``generate_patterns``). Like the activation explorer, it draws
with matplotlib's Agg into an ``ipywidgets.Image`` and carries a PNG of the current view
for renderers without a widget manager (the static HTML book).
"""

from __future__ import annotations


import ipywidgets as widgets
import keras
import numpy as np
from matplotlib.figure import Figure

from .. import filters as F
from ..filters._layers import channel_count, check_channels, feature_layer
from ._base import FigureExplorer

__all__ = ["FilterExplorer", "filter_explorer"]

METHODS = ("book", "regularised")


class FilterExplorer(FigureExplorer):
    """Layer menu, filter number and method, with patterns rendered on demand and cached.

    ``method="book"`` is the book's 40 normalised steps from its noise start;
    ``"regularised"`` is a Fourier-parameterised image with random transforms and Adam
    (``steps`` steps, 64 by default), mapped into the model's space by ``preprocess``
    (VGG16's by default; ``F.unit_range`` for models that take RGB in [0, 1]).
    """

    def __init__(self, model: keras.Model, layers=None, size: int = 64, method: str = "book", steps: int = 64, seed: int = 0, preprocess=F.vgg16_preprocess):
        self.model = model
        names = F.conv_layer_names(model) if layers is None else list(layers)
        if not names:
            raise ValueError(f"Model {model.name!r} has no convolution layer to explore.")
        for name in names:
            feature_layer(model, name)
        self._check_method(method)
        self.size, self.steps, self.seed, self.preprocess = int(size), int(steps), seed, preprocess
        self.cache: dict[tuple, dict] = {}

        self.layer_menu = widgets.Dropdown(options=names, value=names[0], description="Layer")
        self.filter_box = widgets.BoundedIntText(value=0, min=0, max=self._count(names[0]) - 1, description="Filter")
        self.method_menu = widgets.ToggleButtons(options=list(METHODS), value=method, description="Method")
        self.button = widgets.Button(description="Render", icon="play")
        self.status = widgets.Label()
        self.view = widgets.Image(format="png", value=self.png())
        controls = widgets.HBox([self.layer_menu, self.filter_box, self.button])
        self.widget = widgets.VBox([controls, self.method_menu, self.status, self.view])
        self.layer_menu.observe(self._on_layer, names="value")
        self.filter_box.observe(self._redraw, names="value")
        self.method_menu.observe(self._redraw, names="value")
        self.button.on_click(self._on_click)

    # --- state ----------------------------------------------------------------------------

    @staticmethod
    def _check_method(method):
        if method not in METHODS:
            raise ValueError(f"Unknown method {method!r}; choose one of {', '.join(METHODS)}.")

    def _count(self, layer: str) -> int:
        return channel_count(feature_layer(self.model, layer))

    @property
    def key(self) -> tuple:
        return (self.layer_menu.value, int(self.filter_box.value), self.method_menu.value, self.size)

    # --- rendering ------------------------------------------------------------------------

    def render(self, layer: str | None = None, filter_index: int | None = None, method: str | None = None) -> np.ndarray:
        """The pattern (uint8, size x size x 3) of one filter, from the cache or rendered now."""
        layer = self.layer_menu.value if layer is None else layer
        filter_index = int(self.filter_box.value if filter_index is None else filter_index)
        method = self.method_menu.value if method is None else method
        self._check_method(method)
        check_channels(self.model, layer, [filter_index])
        key = (layer, filter_index, method, self.size)
        if key not in self.cache:
            if method == "book":
                result = F.generate_pattern(self.model, layer, filter_index, size=self.size, seed=self.seed)
            else:
                result = F.render(
                    self.model,
                    F.channel(layer, filter_index),
                    F.fourier_image(1, self.size, seed=self.seed),
                    steps=self.steps,
                    optimizer=keras.optimizers.Adam(0.1),
                    transforms=F.standard_transforms(),
                    preprocess=self.preprocess,
                    seed=self.seed,
                    progress=False,
                )
            self._store(key, result, 0)
        return self.cache[key]["image"]

    def select(self, layer: str, filter_index: int, method: str = "book") -> FilterExplorer:
        """Show one pattern (rendering it if needed), as if picked in the controls."""
        self.render(layer, filter_index, method)
        with self.layer_menu.hold_trait_notifications(), self.filter_box.hold_trait_notifications():
            self.layer_menu.value = layer
            self.filter_box.max = self._count(layer) - 1
            self.filter_box.value = int(filter_index)
            self.method_menu.value = method
        self._redraw()
        return self

    def _store(self, key, result: F.RenderResult, i: int) -> None:
        label = result.labels[i]
        self.cache[key] = {
            "image": result.to_uint8()[i],
            "objective": float(result.final[i]),
            "dead": label in result.dead,
        }

    def add(self, result: F.RenderResult, layer: str | None = None, method: str = "book") -> None:
        """Cache the patterns of a ``generate_patterns`` result (their labels are filter indices)."""
        self._check_method(method)
        layer = result.description if layer is None else layer
        feature_layer(self.model, layer)
        if result.images.shape[1] != self.size:
            raise ValueError(f"These patterns are {result.images.shape[1]} px; the explorer shows {self.size} px.")
        for i, f in enumerate(result.labels):
            self._store((layer, int(f), method, self.size), result, i)
        self._redraw()

    def _on_click(self, button) -> None:
        self.status.value = f"rendering {self.layer_menu.value}, filter {self.filter_box.value}..."
        self.button.disabled = True
        try:
            self.render()
        finally:
            self.button.disabled = False
        self._redraw()

    def _on_layer(self, change) -> None:
        with self.filter_box.hold_trait_notifications():
            self.filter_box.max = self._count(change["new"]) - 1
            self.filter_box.value = min(self.filter_box.value, self.filter_box.max)
        self._redraw()

    def _redraw(self, change=None) -> None:
        cached = sum(1 for k in self.cache if k[0] == self.layer_menu.value and k[2] == self.method_menu.value)
        self.status.value = f"{len(self.cache)} patterns cached ({cached} for this layer and method)"
        self.view.value = self.png()

    # --- drawing --------------------------------------------------------------------------

    def _title(self, key) -> str:
        layer, f, method, _ = key
        entry = self.cache.get(key)
        if entry is None:
            state = "not rendered yet: press Render"
        elif entry["dead"]:
            state = "dead: never fired from this start"
        else:
            state = f"mean activation {entry['objective']:.4g}"
        return f"{layer}, filter {f} ({method})\n{state}"

    def figure(self, keys=None, ncols: int = 4) -> Figure:
        """The current pattern, or the cached ones at ``keys`` [(layer, filter, method), ...]."""
        keys = [self.key] if keys is None else [(k[0], int(k[1]), k[2], self.size) for k in keys]
        ncols = min(ncols, len(keys))
        nrows = -(-len(keys) // ncols)
        fig = Figure(figsize=(3.0 * ncols, 3.3 * nrows), dpi=80)
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax in axes:
            ax.set_axis_off()
        for ax, key in zip(axes, keys):
            entry = self.cache.get(key)
            image = entry["image"] if entry else np.full((self.size, self.size, 3), 255, np.uint8)
            ax.imshow(image)
            ax.set_title(self._title(key), fontsize=9)
        fig.tight_layout()
        return fig


    def __repr__(self) -> str:
        layer, f, method, size = self.key
        return f"FilterExplorer({len(self.layer_menu.options)} layers, {size} px; showing {layer}, filter {f}, {method})"



def filter_explorer(model: keras.Model, layers=None, size: int = 64, method: str = "book", steps: int = 64, seed: int = 0, preprocess=F.vgg16_preprocess) -> FilterExplorer:
    """A :class:`FilterExplorer`; display it (last line of a cell) to use it."""
    return FilterExplorer(model, layers=layers, size=size, method=method, steps=steps, seed=seed, preprocess=preprocess)
