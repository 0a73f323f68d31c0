"""Guided backpropagation and guided Grad-CAM.

Guided backpropagation (Springenberg et al., 2015) is the gradient of the class score
with respect to the input pixels, where every ReLU lets a gradient through only if both
the unit was active and the gradient is positive. It shows fine detail but hardly depends
on the class; multiplying it by the (upsampled) Grad-CAM heatmap keeps the detail only
where the class evidence is: guided Grad-CAM.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ._core import ScoredModel, as_batch, class_index_of_top, compile_fn, gradients
from .methods import GradCAM, upsample


class GuidedBackprop:
    """Guided-backpropagation saliency (batch, height, width, channels) in input space.

    The model is replayed with its ReLU and ReLU6 activations swapped for guided ones (the
    weights are shared, the model itself is untouched).
    """

    def __init__(self, model, *, score: str = "logit", compiled: bool = True):
        self.scored = ScoredModel(model, False, score=score, guided=True)
        self.compiled = compiled
        self._fn = None

    def _pass(self, x, requested):
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits, _ = self.scored.logits_and_features(x)
            index = tf.where(requested < 0, class_index_of_top(logits), requested)
            score = self.scored.class_score(logits, index)
        return gradients(score, x, tape), index

    def explain(self, images, class_index=None):
        """Returns (saliency of the batch, class indices explained)."""
        batch, _ = as_batch(images)
        self.scored.build(batch.shape)
        requested = self.scored.class_indices(class_index, len(batch))
        if self._fn is None:
            self._fn = compile_fn(self._pass, self.compiled)
        grads, index = self._fn(tf.constant(batch), tf.constant(requested))
        return grads.numpy(), index.numpy()

    def __call__(self, images, class_index=None) -> np.ndarray:
        _, single = as_batch(images)
        grads, _ = self.explain(images, class_index)
        return grads[0] if single else grads


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
