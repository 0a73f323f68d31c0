"""Class activation maps: CAM, Grad-CAM, Grad-CAM++ and Score-CAM over one shared base.

Every method makes the same picture: a weighted sum of the channels of one convolutional
feature map ``A`` (shape ``h x w x K``), passed through a ReLU and divided by its maximum,

    heatmap = relu(sum_k weight_k * A_k) / max(...)

and differs only in how it weighs the channels (``_weights``). Images go in as the model
expects them (already preprocessed), in batches; heatmaps come out at the feature map's
resolution, in [0, 1]; ``upsample`` resizes them to the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from ..plotting import resize
from ._core import (
    ScoredModel,
    as_batch,
    class_index_of_top,
    compile_fn,
    gradients,
)


@dataclass
class CAMResult:
    """Heatmaps of a batch and what made them."""

    heatmaps: np.ndarray  # (batch, h, w), each in [0, 1] (all zeros when nothing is positive)
    raw: np.ndarray  # (batch, h, w): relu(weighted sum) before normalisation
    weights: np.ndarray  # (batch, channels)
    class_index: np.ndarray  # (batch,) the class each heatmap explains
    score: np.ndarray  # (batch,) that class's score (logit or probability) for the image
    layer: str  # path of the feature layer

    def upsampled(self, size) -> np.ndarray:
        return upsample(self.heatmaps, size)


def normalize_heatmaps(maps) -> np.ndarray:
    """ReLU, then divide each map by its maximum; an all-zero (or non-finite) map stays zero."""
    maps = np.maximum(np.asarray(maps, dtype=np.float32), 0)
    peak = maps.reshape(len(maps), -1).max(axis=1) if maps.size else np.zeros(len(maps))
    ok = np.isfinite(peak) & (peak > 0)
    scale = np.where(ok, peak, 1).astype(np.float32).reshape(-1, *([1] * (maps.ndim - 1)))
    out = maps / scale
    out[~ok] = 0
    return out


def upsample(heatmaps, size) -> np.ndarray:
    """Bilinear resize of heatmaps (batch, h, w) or one (h, w) to ``size = (height, width)``."""
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    if heatmaps.ndim == 2:
        return np.clip(resize(heatmaps, size), 0, 1)
    # The batch rides along as channels, which bilinear resizing treats independently.
    return np.clip(np.moveaxis(resize(np.moveaxis(heatmaps, 0, -1), size), -1, 0), 0, 1)


class ClassActivationMethod:
    """Shared base: target layer, class score, the compiled pass and the normalisation.

    ``model`` is a Keras Functional or Sequential model (nested models are entered);
    ``layer`` names the feature layer (``None``: the last layer with a 4-D output);
    ``score="logit"`` explains the class logit (the pre-activation of a final softmax or
    sigmoid), ``"probability"`` the probability as the book does. ``compiled=False`` runs
    eagerly (for comparison only).
    """

    uses_gradients = True
    name = "base"

    def __init__(self, model, layer=None, *, score: str = "logit", compiled: bool = True):
        self.scored = ScoredModel(model, layer, score=score)
        self.compiled = compiled
        self._fn = None

    @property
    def model(self):
        return self.scored.model

    @property
    def layer(self) -> str | None:
        return self.scored.layer_path

    # The one thing each method says -------------------------------------------------------

    def _weights(self, features, grads, logits, index):
        """Channel weights of shape (batch, channels), as TensorFlow ops."""
        raise NotImplementedError

    # Shared machinery ------------------------------------------------------------------

    def _pass(self, x, requested):
        scored = self.scored
        with tf.GradientTape() as tape:
            # Watching the input records every op, even in a frozen model whose weights
            # are not trainable (otherwise the gradient would come back None).
            tape.watch(x)
            logits, features = scored.logits_and_features(x)
            index = tf.where(requested < 0, class_index_of_top(logits), requested)
            score = scored.class_score(logits, index)
        grads = gradients(score, features, tape) if self.uses_gradients else None
        weights = self._weights(features, grads, logits, index)
        raw = tf.nn.relu(tf.einsum("bhwk,bk->bhw", features, weights))
        return raw, weights, index, score

    def _prepare(self, images, class_index):
        batch, single = as_batch(images)
        self.scored.build(batch.shape)
        requested = self.scored.class_indices(class_index, len(batch))
        if self._fn is None:
            self._fn = compile_fn(self._pass, self.compiled)
        return batch, single, requested

    def explain(self, images, class_index=None) -> CAMResult:
        """Heatmaps for a batch (or one image) and the classes they explain.

        ``class_index``: ``None`` for each image's top class, one integer for all, or one
        per image.
        """
        batch, _, requested = self._prepare(images, class_index)
        raw, weights, index, score = self._fn(tf.constant(batch), tf.constant(requested))
        raw = raw.numpy()
        return CAMResult(
            heatmaps=normalize_heatmaps(raw),
            raw=raw,
            weights=weights.numpy(),
            class_index=index.numpy(),
            score=score.numpy(),
            layer=self.layer,
        )

    def class_logits(self, images) -> np.ndarray:
        """The class logits (the pre-activations of a final softmax or sigmoid), (batch, classes)."""
        batch, _ = as_batch(images)
        self.scored.build(batch.shape)
        logits, _ = self.scored.logits_and_features(tf.constant(batch))
        return np.asarray(logits)

    def __call__(self, images, class_index=None, size=None) -> np.ndarray:
        """Normalised heatmaps (batch, h, w), or (h, w) for one image; resized to ``size``."""
        _, single = as_batch(images)
        maps = self.explain(images, class_index).heatmaps
        if size is not None:
            maps = upsample(maps, size)
        return maps[0] if single else maps


class GradCAM(ClassActivationMethod):
    """Grad-CAM (Selvaraju et al., 2017): weigh each channel by the gradient of the class
    score with respect to it, averaged over positions, separately for each image."""

    name = "Grad-CAM"

    def _weights(self, features, grads, logits, index):
        return tf.reduce_mean(grads, axis=(1, 2))  # per image: never over the batch axis


class GradCAMPlusPlus(ClassActivationMethod):
    """Grad-CAM++ (Chattopadhyay et al., 2018): positive gradients weighted per position.

    Uses the paper's closed form for an exponential of the score, which needs only first
    derivatives: alpha = g^2 / (2 g^2 + sum_ij A g^3), weight = sum_ij alpha relu(g).
    """

    name = "Grad-CAM++"

    def _weights(self, features, grads, logits, index):
        g2 = tf.square(grads)
        g3 = g2 * grads
        denom = 2 * g2 + tf.reduce_sum(features * g3, axis=(1, 2), keepdims=True)
        alpha = tf.math.divide_no_nan(g2, tf.where(denom != 0, denom, tf.ones_like(denom)))
        return tf.reduce_sum(alpha * tf.nn.relu(grads), axis=(1, 2))


class CAM(ClassActivationMethod):
    """CAM (Zhou et al., 2016), for a feature map followed by global average pooling and a
    dense classifier: the weights are the dense layer's column for the class.

    ``dense`` names the classifier layer (default: the model's output layer).
    """

    name = "CAM"
    uses_gradients = False

    def __init__(self, model, layer=None, *, dense=None, score: str = "logit", compiled: bool = True):
        super().__init__(model, layer, score=score, compiled=compiled)
        self._dense_request = dense

    def _kernel(self, channels: int):
        from ..replay import leaf_layers, output_layer

        model = self.model
        if self._dense_request is None:
            dense = output_layer(model)
        elif isinstance(self._dense_request, str):
            leaves = dict(leaf_layers(model))
            matches = [l for p, l in leaves.items() if p == self._dense_request or p.split("/")[-1] == self._dense_request]
            if len(matches) != 1:
                raise ValueError(f"No single layer named {self._dense_request!r} in model {model.name!r}.")
            dense = matches[0]
        else:
            dense = self._dense_request
        kernel = getattr(dense, "kernel", None)
        if kernel is None or len(kernel.shape) != 2 or kernel.shape[0] != channels:
            shape = None if kernel is None else tuple(kernel.shape)
            raise ValueError(
                f"CAM needs the feature layer ({channels} channels) to be followed by global "
                f"average pooling and a dense layer with {channels} inputs; layer "
                f"{dense.name!r} has kernel shape {shape}. Use GradCAM for other architectures."
            )
        return kernel

    def _weights(self, features, grads, logits, index):
        kernel = self._kernel(int(features.shape[-1]))
        columns = tf.transpose(tf.convert_to_tensor(kernel))  # (classes, channels)
        if columns.shape[0] == 1:  # one sigmoid unit: class 0 is the negative logit
            sign = tf.cast(2 * index - 1, columns.dtype)[:, None]
            return sign * columns[0][None, :]
        return tf.gather(columns, index)


class ScoreCAM(ClassActivationMethod):
    """Score-CAM (Wang et al., 2020): no gradients; each channel, upsampled and scaled to
    [0, 1], masks the image, and the class score of the masked image is its weight.

    The masked images are scored in batches of ``batch_size`` in one compiled function.
    ``max_channels`` keeps only the channels with the highest mean activation (the rest
    weigh zero), which makes it much faster for wide layers. Masking multiplies the model's
    input, so masked-out pixels become 0 in the model's input space. The score defaults to
    the probability, as in the paper (logits of masked images are not comparable).
    """

    name = "Score-CAM"
    uses_gradients = False

    def __init__(
        self,
        model,
        layer=None,
        *,
        score: str = "probability",
        batch_size: int = 32,
        max_channels: int | None = None,
        compiled: bool = True,
    ):
        super().__init__(model, layer, score=score, compiled=compiled)
        self.batch_size = int(batch_size)
        self.max_channels = max_channels
        self._masked_fn = None

    def _masked_scores(self, image, maps, index):
        """Scores of ``image`` masked by each of ``maps`` (n, h, w) for class ``index``."""
        size = tf.shape(image)[:2]
        masks = tf.image.resize(maps[..., None], size, method="bilinear")
        low = tf.reduce_min(masks, axis=(1, 2, 3), keepdims=True)
        high = tf.reduce_max(masks, axis=(1, 2, 3), keepdims=True)
        masks = tf.math.divide_no_nan(masks - low, high - low)  # a flat channel masks everything
        logits, _ = self.scored.logits_and_features(image[None] * masks)
        index = tf.fill([tf.shape(maps)[0]], index)
        return self.scored.class_score(logits, index)

    def _forward(self, x, requested):
        logits, features = self.scored.logits_and_features(x)
        index = tf.where(requested < 0, class_index_of_top(logits), requested)
        return features, index, self.scored.class_score(logits, index)

    def explain(self, images, class_index=None) -> CAMResult:
        batch, _, requested = self._prepare(images, class_index)
        if self._masked_fn is None:
            self._masked_fn = compile_fn(self._masked_scores, self.compiled)
            self._forward_fn = compile_fn(self._forward, self.compiled)
        features, index, score = self._forward_fn(tf.constant(batch), tf.constant(requested))
        features, index = features.numpy(), index.numpy()
        n, _, _, k = features.shape
        weights = np.zeros((n, k), dtype=np.float32)
        for b in range(n):
            channels = np.arange(k)
            if self.max_channels is not None and self.max_channels < k:
                means = features[b].mean(axis=(0, 1))
                channels = np.sort(np.argsort(-means, kind="stable")[: self.max_channels])
            maps = np.moveaxis(features[b][..., channels], -1, 0)
            for start in range(0, len(channels), self.batch_size):
                chunk = maps[start : start + self.batch_size]
                scores = self._masked_fn(tf.constant(batch[b]), tf.constant(chunk), tf.constant(index[b]))
                weights[b, channels[start : start + len(chunk)]] = scores.numpy()
        raw = np.maximum(np.einsum("bhwk,bk->bhw", features, weights), 0).astype(np.float32)
        return CAMResult(normalize_heatmaps(raw), raw, weights, index, score.numpy(), self.layer)


def grad_cam(model, images, layer=None, class_index=None, score: str = "logit", size=None) -> np.ndarray:
    """One-call Grad-CAM: normalised heatmaps for ``images`` (see ``GradCAM``)."""
    return GradCAM(model, layer, score=score)(images, class_index, size=size)
