"""Class activation maps: which parts of an image a convnet's class decision rests on.

CAM, Grad-CAM, Grad-CAM++, XGrad-CAM, HiResCAM, LayerCAM, Score-CAM and EigenCAM share
one base (``ClassActivationMethod``): the target layer is found anywhere in the model
(nested models and Sequential models too),
the class score is the logit before the final softmax unless ``score="probability"``,
and one compiled pass gives the heatmaps of a whole batch. Pixel attributions share a
second base (``PixelAttribution``): gradient saliency, SmoothGrad, Integrated Gradients,
occlusion and guided backpropagation (with guided Grad-CAM); ``attribution_heatmaps``
turns their attributions into heatmaps. Deletion and insertion curves, average drop and
increase in confidence measure how faithful a heatmap is.

Everything runs on Keras 3's TensorFlow, JAX and PyTorch backends; on JAX and PyTorch,
importing this package leaves TensorFlow unimported.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import sanity
from ._core import ScoredModel
from .attribution import (
    AttributionResult,
    IntegratedGradients,
    Occlusion,
    PixelAttribution,
    Saliency,
    SmoothGrad,
    attribution_heatmaps,
)
from .faithfulness import (
    ConfidenceChange,
    FaithfulnessCurve,
    blurred,
    confidence_change,
    deletion_curve,
    insertion_curve,
    pixel_order,
)
from .guided import GuidedBackprop, guided_grad_cam, saliency_to_image
from .methods import (
    CAM,
    CAMResult,
    ClassActivationMethod,
    EigenCAM,
    FasterScoreCAM,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
    grad_cam,
    normalize_heatmaps,
    upsample,
)


def conv_layers(model, input_shape=None) -> list[str]:
    """Paths of the layers with a 4-D (batch, height, width, channels) output, in order.

    ``input_shape`` (without batch axis) is needed only for a Sequential model that has
    not been built yet.
    """
    scored = ScoredModel(model, False)
    scored.build((None, *(input_shape or ())))
    return scored.conv_layers


def overlay(image, heatmap, alpha: float = 0.4, cmap: str = "jet", path=None) -> np.ndarray:
    """Lay a heatmap over an RGB image (0..255) with a matplotlib colormap; optionally save.

    The heatmap (any size, values in [0, 1]) is resized to the image; a batch of one
    heatmap, ``(1, h, w)`` as a method returns for one image in a batch, is taken as that
    map. ``path`` writes the result as an image file (format from the suffix, via Pillow).
    """
    from PIL import Image

    from ..plotting import overlay_heatmap

    heatmap = np.asarray(heatmap)
    if heatmap.ndim == 3 and len(heatmap) == 1:
        heatmap = heatmap[0]
    if heatmap.ndim != 2:
        raise ValueError(
            f"overlay takes one heatmap of shape (h, w) or (1, h, w), got shape {heatmap.shape}; "
            "for a batch, overlay each map on its own image."
        )
    image = np.asarray(image)
    if image.ndim == 4 and len(image) == 1:
        image = image[0]
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"overlay takes one RGB image of shape (height, width, 3), got shape {image.shape}.")
    out = overlay_heatmap(image, heatmap, alpha=alpha, cmap=cmap)
    if path is not None:
        Image.fromarray(out).save(Path(path))
    return out


__all__ = [
    "sanity",
    "AttributionResult",
    "CAM",
    "CAMResult",
    "ClassActivationMethod",
    "ConfidenceChange",
    "EigenCAM",
    "FaithfulnessCurve",
    "FasterScoreCAM",
    "GradCAM",
    "GradCAMPlusPlus",
    "GuidedBackprop",
    "HiResCAM",
    "IntegratedGradients",
    "LayerCAM",
    "Occlusion",
    "PixelAttribution",
    "Saliency",
    "ScoreCAM",
    "SmoothGrad",
    "XGradCAM",
    "attribution_heatmaps",
    "blurred",
    "confidence_change",
    "conv_layers",
    "deletion_curve",
    "grad_cam",
    "guided_grad_cam",
    "insertion_curve",
    "normalize_heatmaps",
    "overlay",
    "pixel_order",
    "saliency_to_image",
    "upsample",
]
