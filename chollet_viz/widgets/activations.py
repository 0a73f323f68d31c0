"""An ipywidgets explorer of intermediate activations: pick a layer and a channel.

The explorer draws with matplotlib's Agg renderer into an ``ipywidgets.Image``, so it
needs no interactive matplotlib backend (it works the same in Jupyter and Colab). Its
display bundle also carries a PNG of the current view: a renderer without a widget
manager (the static HTML book, GitHub) shows that figure in the widget's place.
"""

from __future__ import annotations

from collections.abc import Mapping

import ipywidgets as widgets
import numpy as np
from matplotlib.figure import Figure

from ..activations import channel_means, convert_channels
from ..plotting import overlay_heatmap
from ._base import FigureExplorer

__all__ = ["ActivationExplorer", "activation_explorer"]


def _as_maps(name: str, activation) -> np.ndarray:
    maps = np.asarray(activation, dtype=np.float32)
    if maps.ndim == 4 and maps.shape[0] == 1:
        maps = maps[0]
    if maps.ndim != 3:
        raise ValueError(
            f"Activation {name!r} has shape {np.shape(activation)}; expected one image's "
            "activation, (height, width, channels) or (1, height, width, channels)."
        )
    return maps


def _as_rgb(image) -> np.ndarray:
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    if image.ndim == 2:
        image = image[..., None]
    try:
        if image.ndim != 3:
            raise ValueError("it is not one image")
        return convert_channels(image, 3)
    except ValueError as exc:
        raise ValueError(
            f"Expected an image (height, width[, 1, 3 or 4]) with values 0..255, got shape {np.shape(image)}: {exc}."
        ) from None


class ActivationExplorer(FigureExplorer):
    """Layer menu and channel slider over a dict {layer name: activation}.

    The view shows the chosen channel with its colour scale and, when ``image`` (the
    input picture, values 0..255) is given, the picture itself and the channel upsampled
    and laid over it. ``figure()`` gives the current view as a matplotlib figure.
    """

    def __init__(self, activations: Mapping, image=None, layer: str | None = None, channel: int = 0, cmap: str = "viridis"):
        if not isinstance(activations, Mapping) or not activations:
            raise ValueError("activations must be a non-empty dict {layer name: activation array}.")
        self.maps = {str(name): _as_maps(str(name), act) for name, act in activations.items()}
        self.image = None if image is None else _as_rgb(image)
        self.cmap = cmap
        names = list(self.maps)
        layer = names[0] if layer is None else layer
        if layer not in self.maps:
            raise ValueError(f"Unknown layer {layer!r}; the activations are of: {', '.join(names)}.")
        channels = self.maps[layer].shape[-1]
        if not 0 <= channel < channels:
            raise ValueError(f"Channel {channel} is out of range: layer {layer!r} has channels 0..{channels - 1}.")

        self.layer_menu = widgets.Dropdown(options=names, value=layer, description="Layer")
        self.channel_slider = widgets.IntSlider(
            value=channel, min=0, max=channels - 1, description="Channel", continuous_update=False
        )
        self.view = widgets.Image(format="png", value=self.png())
        self.widget = widgets.VBox([widgets.HBox([self.layer_menu, self.channel_slider]), self.view])
        self.layer_menu.observe(self._on_layer, names="value")
        self.channel_slider.observe(self._redraw, names="value")

    @property
    def layer(self) -> str:
        return self.layer_menu.value

    @property
    def channel(self) -> int:
        return self.channel_slider.value

    def _on_layer(self, change) -> None:
        channels = self.maps[change["new"]].shape[-1]
        # Clamp before redrawing once; the slider's own observer would draw twice.
        with self.channel_slider.hold_trait_notifications():
            self.channel_slider.value = min(self.channel_slider.value, channels - 1)
            self.channel_slider.max = channels - 1
        self._redraw()


    def figure(self) -> Figure:
        """The current view (layer, channel) as a matplotlib figure, not attached to pyplot."""
        maps = self.maps[self.layer]
        k = self.channel
        channel_map = maps[..., k]
        means = channel_means(maps)
        rank = int(np.sum(means > means[k])) + 1
        panels = 1 if self.image is None else 3
        fig = Figure(figsize=(3.4 * panels + 0.6, 3.6), dpi=80)
        axes = fig.subplots(1, panels, squeeze=False)[0]
        shown = axes[0] if self.image is None else axes[1]
        drawn = shown.imshow(channel_map, cmap=self.cmap)
        fig.colorbar(drawn, ax=shown, fraction=0.046, pad=0.04)
        status = "dead: zero everywhere" if not np.any(channel_map) else f"mean {means[k]:.3g}, rank {rank} of {len(means)}"
        shown.set_title(f"{self.layer}, channel {k}\n{status}", fontsize=10)
        if self.image is not None:
            axes[0].imshow(self.image.astype(np.uint8))
            axes[0].set_title("input", fontsize=10)
            peak = float(channel_map.max())
            heat = channel_map / peak if peak > 0 else np.zeros_like(channel_map)
            axes[2].imshow(overlay_heatmap(self.image, np.clip(heat, 0, 1), alpha=0.5, cmap=self.cmap))
            axes[2].set_title("channel over the input", fontsize=10)
        for ax in axes:
            ax.set_axis_off()
        fig.tight_layout()
        return fig


    def __repr__(self) -> str:
        return f"ActivationExplorer({len(self.maps)} layers; showing {self.layer}, channel {self.channel})"



def activation_explorer(activations: Mapping, image=None, layer: str | None = None, channel: int = 0, cmap: str = "viridis") -> ActivationExplorer:
    """An :class:`ActivationExplorer`; display it (last line of a cell) to use it."""
    return ActivationExplorer(activations, image=image, layer=layer, channel=channel, cmap=cmap)
