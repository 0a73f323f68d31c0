"""What every explorer shares: a matplotlib figure shown live in a widget, or as a still image.

A subclass builds its controls, sets ``self.view`` (a ``widgets.Image``) and
``self.widget`` (the whole layout) and says how to draw its ``figure()``.
"""

from __future__ import annotations

import base64
import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..plotting import png_to_jpeg, smaller_image


class FigureExplorer:
    view = None
    widget = None

    def figure(self, *args, **kwargs) -> Figure:
        raise NotImplementedError

    def png(self, *args, **kwargs) -> bytes:
        """The figure rendered off-screen (Agg) to PNG bytes."""
        buffer = io.BytesIO()
        FigureCanvasAgg(self.figure(*args, **kwargs)).print_png(buffer)
        return buffer.getvalue()

    def _redraw(self, change=None) -> None:
        self.view.value = self.png()

    def _repr_mimebundle_(self, include=None, exclude=None, **kwargs):
        # A live frontend picks the widget view; static HTML and plain viewers get the still image.
        bundle = dict(self.widget._repr_mimebundle_(**kwargs) or {})
        png = bytes(self.view.value)
        jpeg = png_to_jpeg(png)
        mime = smaller_image(png, jpeg)  # the rule the chapters' figures follow
        bundle[mime] = base64.b64encode(png if mime == "image/png" else jpeg).decode("ascii")
        bundle["text/plain"] = repr(self)
        return bundle
