"""Filter visualisation by gradient ascent (section 5.4.2), in small Lucid-style parts.

- ``book``: the book's method, exactly, for one filter or a batch of filters at once;
- ``objectives``: what to maximise (``channel``, ``neuron``, ``class_logit``; + and *);
- ``param``: what is optimised (``Pixels``, ``pixel_image``, ``fourier_image``);
- ``transforms``: random jitter, scale and rotation applied at every step;
- ``render``: the compiled, batched ascent loop that ties them together.
"""

from ._layers import conv_layer_names, cut_model
from .book import (
    BOOK_STEP_SIZE,
    BOOK_STEPS,
    book_start,
    dead_at_start,
    filter_grid,
    generate_pattern,
    generate_patterns,
    show_filter_grid,
)
from .objectives import Objective, channel, class_logit, neuron
from .param import Pixels, fourier_image, pixel_image, unit_range, vgg16_preprocess
from .render import NormalizedAscent, RenderResult, deprocess_image, normalize_gradient, render, to_uint8
from .transforms import jitter, pad, random_rotate, random_scale, standard_transforms

__all__ = [
    "BOOK_STEPS",
    "BOOK_STEP_SIZE",
    "NormalizedAscent",
    "Objective",
    "Pixels",
    "RenderResult",
    "book_start",
    "channel",
    "class_logit",
    "conv_layer_names",
    "cut_model",
    "dead_at_start",
    "deprocess_image",
    "filter_grid",
    "fourier_image",
    "generate_pattern",
    "generate_patterns",
    "jitter",
    "neuron",
    "normalize_gradient",
    "pad",
    "pixel_image",
    "random_rotate",
    "random_scale",
    "render",
    "show_filter_grid",
    "standard_transforms",
    "to_uint8",
    "unit_range",
    "vgg16_preprocess",
]
