"""Guided backpropagation and guided Grad-CAM.

Guided backpropagation (Springenberg et al., 2015) is the gradient of the class score
with respect to the input pixels, where every ReLU lets a gradient through only if both
the unit was active and the gradient is positive. It shows fine detail but hardly depends
on the class; multiplying it by the (upsampled) Grad-CAM heatmap keeps the detail only
where the class evidence is: guided Grad-CAM.
"""

from __future__ import annotations

import numpy as np

from ._core import as_batch
from .attribution import Saliency
from .methods import GradCAM, upsample


class GuidedBackprop(Saliency):
    """Guided-backpropagation saliency (batch, height, width, channels) in input space.

    The gradient saliency (``Saliency``) of a replay of the model with its ReLU and ReLU6
    activations swapped for guided ones (the weights are shared, the model itself is
    untouched). ``explain`` returns an ``AttributionResult``, which unpacks as
    ``(saliency, class indices)``.
    """

    name = "Guided backpropagation"
    guided = True


def guided_grad_cam(model, images, layer=None, class_index=None, score: str = "logit") -> np.ndarray:
    """Guided backpropagation times the upsampled Grad-CAM heatmap, per image and class."""
    batch, single = as_batch(images)
    cams = GradCAM(model, layer, score=score).explain(batch, class_index)
    guided, _ = GuidedBackprop(model, score=score).explain(batch, cams.class_index)
    out = guided * upsample(cams.heatmaps, batch.shape[1:3])[..., None]
    return out[0] if single else out


def saliency_to_image(saliency) -> np.ndarray:
    """Display a signed saliency (h, w, c) as uint8: centred on grey, 0.15 per std, clipped."""
    saliency = np.asarray(saliency, dtype=np.float32)
    centred = saliency - saliency.mean()
    std = centred.std()
    scaled = centred / std * 0.15 if std > 0 else centred
    return (np.clip(scaled + 0.5, 0, 1) * 255).astype(np.uint8)
