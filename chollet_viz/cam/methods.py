"""Class activation maps over one shared base: CAM, Grad-CAM, Grad-CAM++, XGrad-CAM,
HiResCAM, LayerCAM, Score-CAM (full and faster) and EigenCAM.

Every method makes the same picture: a weighted sum of the channels of one convolutional
feature map ``A`` (shape ``h x w x K``), passed through a ReLU and divided by its maximum,

    heatmap = relu(sum_k weight_k * A_k) / max(...)

and differs only in how it weighs the channels (``_weights``): one weight per channel
(shape ``(batch, K)``), or, for HiResCAM and LayerCAM, one per channel and position
(``(batch, h, w, K)``). EigenCAM, which uses no class at all, replaces the weighted sum
(``_raw``). Images go in as the model expects them (already preprocessed), in batches;
heatmaps come out at the feature map's resolution, in [0, 1]; ``upsample`` resizes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from keras import ops

from .. import backend
from ..plotting import resize
from ._core import (
    ScoredModel,
    as_batch,
    chosen_class,
    compile_fn,
    feature_gradients,
)


@dataclass
class CAMResult:
    """Heatmaps of a batch and what made them."""

    heatmaps: np.ndarray  # (batch, h, w), each in [0, 1] (all zeros when nothing is positive)
    raw: np.ndarray  # (batch, h, w): relu(weighted sum) before normalisation
    weights: np.ndarray  # (batch, channels), or (batch, h, w, channels) per position
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
        """Channel weights, (batch, channels) or per position (batch, h, w, channels)."""
        raise NotImplementedError

    # Shared machinery ------------------------------------------------------------------

    def _raw(self, features, grads, logits, index):
        """The weighted sum of the channels before its ReLU, and the weights used."""
        weights = self._weights(features, grads, logits, index)
        if len(weights.shape) == 2:
            return ops.einsum("bhwk,bk->bhw", features, weights), weights
        return ops.sum(weights * features, axis=-1), weights

    def _pass(self, x, requested):
        scored = self.scored
        if self.uses_gradients:
            logits, features, index, score, grads = feature_gradients(scored, x, requested)
        else:
            logits, features = scored.logits_and_features(x)
            index = chosen_class(logits, requested)
            score, grads = scored.class_score(logits, index), None
        raw, weights = self._raw(features, grads, logits, index)
        return ops.relu(raw), weights, index, score

    def _prepare(self, images, class_index):
        batch, single, requested = self.scored.prepare(images, class_index)
        if self._fn is None:
            self._fn = compile_fn(self._pass, self.compiled, state=self.model)
        return batch, single, requested

    def explain(self, images, class_index=None) -> CAMResult:
        """Heatmaps for a batch (or one image) and the classes they explain.

        ``class_index``: ``None`` for each image's top class, one integer for all, or one
        per image.
        """
        batch, _, requested = self._prepare(images, class_index)
        out = self._fn(ops.convert_to_tensor(batch), ops.convert_to_tensor(requested))
        raw, weights, index, score = backend.to_numpy(tuple(out))
        return CAMResult(
            heatmaps=normalize_heatmaps(raw),
            raw=raw,
            weights=weights,
            class_index=index,
            score=score,
            layer=self.layer,
        )

    def class_logits(self, images) -> np.ndarray:
        """The class logits (the pre-activations of a final softmax or sigmoid), (batch, classes)."""
        batch, _ = as_batch(images)
        self.scored.build(batch.shape)
        logits, _ = self.scored.logits_and_features(ops.convert_to_tensor(batch))
        return backend.to_numpy(logits)

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
        return ops.mean(grads, axis=(1, 2))  # per image: never over the batch axis


class GradCAMPlusPlus(ClassActivationMethod):
    """Grad-CAM++ (Chattopadhay et al., 2018): positive gradients weighted per position.

    The paper's closed form for an exponential of the score (its eq. 19), which needs only
    first derivatives ``g`` of the score with respect to ``A``:

        alpha_ij^k = g_ij^2 / (2 g_ij^2 + (sum_ab A_ab^k) g_ij^3),
        weight_k = sum_ij alpha_ij^k relu(g_ij^k).

    ``normalize_alphas=True`` divides each channel's alphas by their sum first, as the
    authors' released code does (and tf-keras-vis after it); the paper does not. They
    differ even on a global-average-pooling head, where each channel's gradient is one
    value ``c_k`` at all ``n`` positions: normalised alphas are ``1 / n`` and the weight is
    ``relu(c_k)`` (Grad-CAM's, negatives zeroed), the paper's is ``relu(c_k) n / (2 + c_k S_k)``
    with ``S_k = sum_ab A_ab^k``, so ``c_k S_k`` is channel k's contribution to the logit.
    """

    name = "Grad-CAM++"

    def __init__(self, model, layer=None, *, normalize_alphas: bool = False, score: str = "logit",
                 compiled: bool = True):
        super().__init__(model, layer, score=score, compiled=compiled)
        self.normalize_alphas = bool(normalize_alphas)

    def _weights(self, features, grads, logits, index):
        g2 = ops.square(grads)
        total = ops.sum(features, axis=(1, 2), keepdims=True)  # sum_ab A_ab, per channel
        denom = 2 * g2 + total * g2 * grads
        # Where g = 0 the numerator is 0 as well: alpha is 0 there (not 0 / 0). An exact
        # pole of eq. 19 (2 + S g = 0 at a negative g) gets alpha 0 too: relu(g) drops it anyway.
        ok = ops.logical_and(g2 > 0, denom != 0)
        alpha = ops.where(ok, g2 / ops.where(ok, denom, ops.ones_like(denom)), ops.zeros_like(g2))
        if self.normalize_alphas:
            alpha = ops.divide_no_nan(alpha, ops.sum(alpha, axis=(1, 2), keepdims=True))
        return ops.sum(alpha * ops.relu(grads), axis=(1, 2))


class XGradCAM(ClassActivationMethod):
    """XGrad-CAM (Fu et al., 2020): each position's gradient weighted by that position's
    share of the channel's activation, weight_k = sum_ij (A_ij^k / sum_ab A_ab^k) g_ij^k.
    An all-zero channel weighs zero."""

    name = "XGrad-CAM"

    def _weights(self, features, grads, logits, index):
        share = ops.divide_no_nan(features, ops.sum(features, axis=(1, 2), keepdims=True))
        return ops.sum(share * grads, axis=(1, 2))


class HiResCAM(ClassActivationMethod):
    """HiResCAM (Draelos & Carin, 2020): the gradient times the activation at each position,
    summed over channels, with no averaging: relu(sum_k g_ij^k A_ij^k). For a head of
    global average pooling and a dense layer it equals Grad-CAM (and CAM)."""

    name = "HiResCAM"

    def _weights(self, features, grads, logits, index):
        return grads


class LayerCAM(ClassActivationMethod):
    """LayerCAM (Jiang et al., 2021): like HiResCAM, but only positive gradients count,
    relu(sum_k relu(g_ij^k) A_ij^k); meant to work on shallow layers too."""

    name = "LayerCAM"

    def _weights(self, features, grads, logits, index):
        return ops.relu(grads)


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
        from ..layers import find_layer, leaf_layers, output_layer

        model = self.model
        if self._dense_request is None:
            dense = output_layer(model)
        elif isinstance(self._dense_request, str):
            dense = find_layer(model, self._dense_request, among=dict(leaf_layers(model)))[1]
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
        columns = ops.transpose(ops.convert_to_tensor(kernel))  # (classes, channels)
        if columns.shape[0] == 1:  # one sigmoid unit: class 0 is the negative logit
            sign = ops.cast(2 * index - 1, columns.dtype)[:, None]
            return sign * columns[0][None, :]
        return ops.take(columns, index, axis=0)


class ScoreCAM(ClassActivationMethod):
    """Score-CAM (Wang et al., 2020): no gradients; each channel, upsampled and scaled to
    [0, 1], masks the image, and the class score of the masked image is its weight.

    The masked images are scored in batches of ``batch_size`` in one compiled function.
    ``max_channels`` scores only that many channels per image, those whose activation
    varies most over positions (largest standard deviation; the rule of Faster Score-CAM,
    which tf-keras-vis' ``max_N`` follows); the others weigh zero. A flat channel would
    mask the image with a constant, which says nothing about where the evidence is.
    Masking multiplies the model's input, so masked-out pixels become 0 in the model's
    input space. The score defaults to the probability, as in the paper (logits of masked
    images are not comparable).
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
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        if max_channels is not None and int(max_channels) < 1:
            raise ValueError(f"max_channels must be None (all channels) or at least 1, got {max_channels}.")
        self.batch_size = int(batch_size)
        self.max_channels = None if max_channels is None else int(max_channels)
        self._masked_fn = None

    def _masked_scores(self, image, maps, index, size):
        """Scores of ``image`` masked by each of ``maps`` (n, h, w) for the classes
        ``index`` (n,); ``size``: the image's (height, width), a static value."""
        masks = ops.image.resize(maps[..., None], size, interpolation="bilinear")
        low = ops.min(masks, axis=(1, 2, 3), keepdims=True)
        high = ops.max(masks, axis=(1, 2, 3), keepdims=True)
        masks = ops.divide_no_nan(masks - low, high - low)  # a flat channel masks everything
        logits, _ = self.scored.logits_and_features(image[None] * masks)
        return self.scored.class_score(logits, index)

    def _forward(self, x, requested):
        logits, features = self.scored.logits_and_features(x)
        index = chosen_class(logits, requested)
        return features, index, self.scored.class_score(logits, index)

    def channels(self, features) -> np.ndarray:
        """The channels scored for one image's feature map (h, w, K), in increasing order."""
        k = features.shape[-1]
        if self.max_channels is None or self.max_channels >= k:
            return np.arange(k)
        spread = features.reshape(-1, k).std(axis=0)
        return np.sort(np.argsort(-spread, kind="stable")[: self.max_channels])

    def explain(self, images, class_index=None) -> CAMResult:
        batch, _, requested = self._prepare(images, class_index)
        if self._masked_fn is None:
            self._masked_fn = compile_fn(self._masked_scores, self.compiled, state=self.model)
            self._forward_fn = compile_fn(self._forward, self.compiled, state=self.model)
        out = self._forward_fn(ops.convert_to_tensor(batch), ops.convert_to_tensor(requested))
        features, index, score = backend.to_numpy(tuple(out))
        size = tuple(int(d) for d in batch.shape[1:3])
        n, _, _, k = features.shape
        weights = np.zeros((n, k), dtype=np.float32)
        for b in range(n):
            channels = self.channels(features[b])
            maps = np.moveaxis(features[b][..., channels], -1, 0)
            for start in range(0, len(channels), self.batch_size):
                chunk = maps[start : start + self.batch_size]
                classes = np.full(len(chunk), index[b], np.int32)
                scores = self._masked_fn(ops.convert_to_tensor(batch[b]), ops.convert_to_tensor(chunk),
                                         ops.convert_to_tensor(classes), size)
                weights[b, channels[start : start + len(chunk)]] = backend.to_numpy(scores)
        raw = np.maximum(np.einsum("bhwk,bk->bhw", features, weights), 0).astype(np.float32)
        return CAMResult(normalize_heatmaps(raw), raw, weights, index, score, self.layer)


class FasterScoreCAM(ScoreCAM):
    """Score-CAM on the ``max_channels`` (default 64) channels of largest spatial standard
    deviation only (Faster Score-CAM; see ``ScoreCAM``)."""

    name = "Faster Score-CAM"

    def __init__(self, model, layer=None, *, max_channels: int = 64, **kwargs):
        super().__init__(model, layer, max_channels=max_channels, **kwargs)


class EigenCAM(ClassActivationMethod):
    """EigenCAM (Muhammad & Yeasin, 2020): the feature map projected on its first principal
    component, with no gradient and no class: the same map for every class.

    The positions are the samples and the channels the variables: after removing each
    channel's mean over positions, the map is ``(A - mean) v`` with ``v`` the first right
    singular vector. A singular vector's sign is arbitrary; it is chosen so that the map
    correlates positively with the summed activation, where the network's features fire.
    """

    name = "EigenCAM"
    uses_gradients = False

    def _raw(self, features, grads, logits, index):
        _, h, w, k = features.shape
        flat = ops.reshape(features, (-1, h * w, k))
        centred = flat - ops.mean(flat, axis=1, keepdims=True)
        _, _, vh = ops.svd(centred, full_matrices=False)  # vh: (b, k, k), rows are the right singular vectors
        first = vh[:, 0, :]
        projection = ops.einsum("bpk,bk->bp", centred, first)
        total = ops.sum(flat, axis=-1)
        correlation = ops.sum(projection * (total - ops.mean(total, axis=1, keepdims=True)), axis=1)
        sign = ops.where(correlation < 0, -1.0, 1.0)
        first = first * sign[:, None]
        return ops.reshape(projection * sign[:, None], (-1, h, w)), first


def grad_cam(model, images, layer=None, class_index=None, score: str = "logit", size=None) -> np.ndarray:
    """One-call Grad-CAM: normalised heatmaps for ``images`` (see ``GradCAM``)."""
    return GradCAM(model, layer, score=score)(images, class_index, size=size)
