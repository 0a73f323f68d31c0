"""An ipywidgets explorer of class activation maps: pick one of the top classes.

The heatmaps of all the top-k classes are computed up front in one batch (one compiled
pass), so switching classes only redraws. Like the other explorers, it draws with
matplotlib's Agg renderer into an ``ipywidgets.Image``, and its display bundle carries a
PNG of the current view for renderers without a widget manager (the static book).
"""

from __future__ import annotations


import ipywidgets as widgets
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..cam import GradCAM, GradCAMPlusPlus, upsample
from ..plotting import overlay_heatmap
from ._base import FigureExplorer

__all__ = ["CAMExplorer", "cam_explorer"]

METHODS = {"Grad-CAM": GradCAM, "Grad-CAM++": GradCAMPlusPlus}


def _softmax(logits: np.ndarray) -> np.ndarray:
    if logits.shape[-1] == 1:  # one sigmoid unit: classes 0 and 1
        p = 1 / (1 + np.exp(-logits[..., 0]))
        return np.stack([1 - p, p], axis=-1)
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _class_names(n: int, class_names):
    if class_names is not None:
        if len(class_names) != n:
            raise ValueError(f"Got {len(class_names)} class names for a model with {n} classes.")
        return [str(c) for c in class_names]
    if n == 1000:
        from ..datasets import imagenet_class_name

        return [imagenet_class_name(i) for i in range(n)]
    return [f"class {i}" for i in range(n)]


class CAMExplorer(FigureExplorer):
    """Class menu (the model's top-k classes for ``image``), method menu and opacity slider.

    ``image`` is the picture as an RGB array with values 0..255; ``preprocess`` turns a
    batch of such pictures into the model's input (default: none). ``layer`` is the
    feature layer (default: the last layer with a 4-D output).
    """

    def __init__(self, model, image, *, preprocess=None, layer=None, top: int = 5, class_names=None,
                 method: str = "Grad-CAM", alpha: float = 0.4):
        image = np.asarray(image, dtype=np.float32)
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"Expected one RGB image (height, width, 3) with values 0..255, got {image.shape}.")
        if method not in METHODS:
            raise ValueError(f"Unknown method {method!r}; choose one of {list(METHODS)}.")
        self.image = image
        self.x = np.asarray(preprocess(image[None].copy()) if preprocess else image[None], dtype=np.float32)
        self.model, self.layer = model, layer
        self._explainers = {}
        self._maps = {}
        probs = _softmax(self._explainer(method).class_logits(self.x))[0]
        names = _class_names(len(probs), class_names)
        top = max(1, min(int(top), len(probs)))
        self.classes = [int(i) for i in np.argsort(-probs, kind="stable")[:top]]
        self.probabilities = {c: float(probs[c]) for c in self.classes}
        options = [(f"{names[c]} ({probs[c]:.3f})", c) for c in self.classes]
        self.names = {c: names[c] for c in self.classes}

        self.class_menu = widgets.Dropdown(options=options, value=self.classes[0], description="Class")
        self.method_menu = widgets.Dropdown(options=list(METHODS), value=method, description="Method")
        self.alpha_slider = widgets.FloatSlider(value=alpha, min=0.0, max=1.0, step=0.05,
                                                description="Opacity", continuous_update=False)
        self.view = widgets.Image(format="png", value=self.png())
        controls = widgets.HBox([self.class_menu, self.method_menu, self.alpha_slider])
        self.widget = widgets.VBox([controls, self.view])
        for control in (self.class_menu, self.method_menu, self.alpha_slider):
            control.observe(self._redraw, names="value")

    def _explainer(self, method):
        if method not in self._explainers:
            self._explainers[method] = METHODS[method](self.model, self.layer)
        return self._explainers[method]

    def heatmaps(self, method: str | None = None) -> np.ndarray:
        """Heatmaps (top-k, h, w) of the top-k classes, computed once per method."""
        method = method or self.method_menu.value
        if method not in self._maps:
            batch = np.repeat(self.x, len(self.classes), axis=0)
            self._maps[method] = self._explainer(method).explain(batch, self.classes).heatmaps
        return self._maps[method]

    @property
    def class_index(self) -> int:
        return self.class_menu.value

    def figure(self) -> Figure:
        """The current view as a matplotlib figure (not attached to pyplot)."""
        method = self.method_menu.value
        heat = self.heatmaps(method)[self.classes.index(self.class_index)]
        fig = Figure(figsize=(10.5, 3.8), dpi=80)
        FigureCanvasAgg(fig)  # tight_layout needs a renderer to measure the titles
        axes = fig.subplots(1, 3)
        axes[0].imshow(self.image.astype(np.uint8))
        axes[0].set_title("input", fontsize=10)
        axes[1].imshow(heat, cmap="jet", vmin=0, vmax=1)
        axes[1].set_title(f"{method}, {heat.shape[0]}x{heat.shape[1]}", fontsize=10)
        big = upsample(heat, self.image.shape[:2])
        axes[2].imshow(overlay_heatmap(self.image, big, alpha=self.alpha_slider.value))
        name = self.names[self.class_index]
        axes[2].set_title(f"{name} (p = {self.probabilities[self.class_index]:.3f})", fontsize=10)
        for ax in axes:
            ax.set_axis_off()
        fig.tight_layout()
        return fig



    def __repr__(self) -> str:
        return (f"CAMExplorer(top {len(self.classes)} classes; showing {self.names[self.class_index]}, "
                f"{self.method_menu.value})")



def cam_explorer(model, image, *, preprocess=None, layer=None, top: int = 5, class_names=None,
                 method: str = "Grad-CAM", alpha: float = 0.4) -> CAMExplorer:
    """A :class:`CAMExplorer`; display it (last line of a cell) to use it."""
    return CAMExplorer(model, image, preprocess=preprocess, layer=layer, top=top,
                       class_names=class_names, method=method, alpha=alpha)
