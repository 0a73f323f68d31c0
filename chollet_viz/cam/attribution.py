"""Pixel attributions: how much each input pixel (and colour channel) counts for a class.

Gradient saliency (Simonyan et al., 2013), SmoothGrad (Smilkov et al., 2017), Integrated
Gradients (Sundararajan et al., 2017) and occlusion sensitivity (Zeiler & Fergus, 2014)
share one base (``PixelAttribution``): the class score comes from ``ScoredModel`` (the logit
before a final softmax or sigmoid unless ``score="probability"``; nested and Sequential
models too), the class is each image's top class, one for all, or one per image, and the
model runs in compiled passes over at most ``batch_size`` images at a time. Each method
says only how it builds its attribution (``_attribute``) from two compiled primitives:
the class score of a stack of images and its gradient with respect to them.
Written with ``keras.ops``; the gradient and the compilation come from
``chollet_viz.backend``, so the attributions run on TensorFlow, JAX and PyTorch alike.
Random draws (SmoothGrad's noise) are made in NumPy, so every backend sees the same ones.

Attributions have the images' shape ``(batch, height, width, channels)`` (occlusion:
one channel) in the model's input space; ``attribution_heatmaps`` turns them into
heatmaps ``(batch, height, width)`` in [0, 1] for display or for deletion and insertion
curves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from keras import ops

from .. import backend
from ._core import ScoredModel, as_batch, chosen_class, compile_fn
from .methods import normalize_heatmaps

REDUCTIONS = ("abs_max", "abs_sum", "sum")


def attribution_heatmaps(attributions, reduce: str = "abs_max") -> np.ndarray:
    """Attributions (batch, h, w, c), or one (h, w, c), as heatmaps in [0, 1].

    ``reduce`` says how the channels become one value per pixel: ``"abs_max"`` the largest
    absolute value over channels (how Simonyan et al. display a gradient), ``"abs_sum"``
    the sum of absolute values, ``"sum"`` the signed sum with its negative part dropped
    (the pixels whose evidence is *for* the class, for signed attributions such as
    Integrated Gradients and occlusion). Each map is then divided by its maximum; a map
    with nothing positive stays all zero.
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"Unknown reduce {reduce!r}; valid reductions are {REDUCTIONS}.")
    a = np.asarray(attributions, dtype=np.float32)
    single = a.ndim == 3
    if single:
        a = a[None]
    if a.ndim != 4:
        raise ValueError(
            f"Expected attributions of shape (batch, height, width, channels) or one "
            f"(height, width, channels), got {a.shape}."
        )
    if reduce == "abs_max":
        maps = np.abs(a).max(axis=-1)
    elif reduce == "abs_sum":
        maps = np.abs(a).sum(axis=-1)
    else:
        maps = a.sum(axis=-1)
    maps = normalize_heatmaps(maps)
    return maps[0] if single else maps


@dataclass
class AttributionResult:
    """Attributions of a batch and what they explain.

    Unpacks as ``(attributions, class_index)``, as ``GuidedBackprop.explain`` always did.
    """

    attributions: np.ndarray  # (batch, h, w, c) in the model's input space (occlusion: c = 1)
    class_index: np.ndarray  # (batch,) the class each attribution explains
    score: np.ndarray  # (batch,) that class's score (logit or probability) for the image
    reduce: str = "abs_max"  # the method's default way to a heatmap (attribution_heatmaps)
    baseline_score: np.ndarray | None = None  # (batch,) Integrated Gradients: score of the baseline

    def heatmaps(self, reduce: str | None = None) -> np.ndarray:
        """Heatmaps (batch, h, w) in [0, 1]; ``reduce`` as in ``attribution_heatmaps``."""
        return attribution_heatmaps(self.attributions, reduce or self.reduce)

    def __iter__(self):
        return iter((self.attributions, self.class_index))


# --- argument checks ---------------------------------------------------------------------


def _at_least_one(name, value) -> int:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be an integer of at least 1, got {value!r}.")
    return int(value)


def _pair(name, value) -> tuple[int, int]:
    """An int or (height, width) pair of ints, each at least 1."""
    pair = tuple(np.atleast_1d(value).tolist())
    if len(pair) == 1:
        pair = pair * 2
    if len(pair) != 2:
        raise ValueError(f"{name} must be an integer or a (height, width) pair, got {value!r}.")
    return tuple(_at_least_one(name, v) for v in pair)


def baseline_batch(baseline, batch: np.ndarray, what: str = "baseline") -> np.ndarray:
    """``baseline`` as a float32 array of the batch's shape: a number, one colour (c,), one
    image (h, w, c), or one image per image in the batch (b, h, w, c)."""
    base = np.asarray(baseline, dtype=np.float32)
    if base.ndim == 4 and len(base) != len(batch) or base.ndim > 4:
        base = None
    else:
        try:
            base = np.broadcast_to(base, batch.shape)
        except ValueError:
            base = None
    if base is None:
        b, h, w, c = batch.shape
        raise ValueError(
            f"{what} has shape {np.shape(baseline)}, which does not fit images of shape "
            f"{batch.shape}; give a number, a colour ({c},), an image ({h}, {w}, {c}) or one "
            f"per image ({b}, {h}, {w}, {c})."
        )
    if not np.all(np.isfinite(base)):
        raise ValueError(f"{what} has non-finite values.")
    return base


# --- the shared base ---------------------------------------------------------------------


class PixelAttribution:
    """Shared base: the class score, the compiled passes and the batching.

    ``model`` is a Keras Functional or Sequential model (nested models are entered);
    ``score="logit"`` explains the class logit (the pre-activation of a final softmax or
    sigmoid), ``"probability"`` the probability; ``batch_size`` caps the images in one
    pass (perturbed copies included); ``compiled=False`` runs eagerly.
    """

    name = "base"
    default_score = "logit"
    reduce = "abs_max"  # default of AttributionResult.heatmaps
    guided = False  # guided-backpropagation ReLUs in the replayed model

    def __init__(self, model, *, score: str | None = None, batch_size: int = 32, compiled: bool = True):
        self.scored = ScoredModel(model, False, score=score or self.default_score, guided=self.guided)
        self.batch_size = _at_least_one("batch_size", batch_size)
        self.compiled = compiled
        self._score_fn = self._gradient_fn = None

    @property
    def model(self):
        return self.scored.model

    # The one thing each method says -------------------------------------------------------

    def _attribute(self, batch: np.ndarray, requested: np.ndarray) -> dict:
        """The fields of the ``AttributionResult`` of ``batch`` for the classes
        ``requested`` (b,) (-1: the top class): attributions (b, h, w, c), class_index,
        score, and any extra field."""
        raise NotImplementedError

    def _check(self, batch: np.ndarray) -> None:
        """Reject arguments that do not fit the images, before the model runs."""

    # Compiled primitives ------------------------------------------------------------------

    def _scores(self, x, requested):
        logits, _ = self.scored.logits_and_features(x)
        index = chosen_class(logits, requested)
        return self.scored.class_score(logits, index), index

    def _gradient(self, x, requested):
        (score, index), (grads,) = backend.value_and_grad(lambda v: self._scores(v, requested), x, has_aux=True)
        return grads, score, index

    def _chunks(self, fn, x, requested) -> list[np.ndarray]:
        """``fn`` over ``batch_size`` images at a time; its outputs concatenated."""
        x, requested = np.asarray(x, np.float32), np.asarray(requested, np.int32)
        outs = [backend.to_numpy(fn(ops.convert_to_tensor(x[i : i + self.batch_size]),
                                    ops.convert_to_tensor(requested[i : i + self.batch_size])))
                for i in range(0, len(x), self.batch_size)]
        return [np.concatenate([out[k] for out in outs]) for k in range(len(outs[0]))]

    def scores(self, x, requested) -> tuple[np.ndarray, np.ndarray]:
        """Class scores (n,) of the images ``x`` (n, h, w, c), and the classes explained
        (``requested``, with -1 replaced by the image's top class)."""
        return tuple(self._chunks(self._score_fn, x, requested))

    def gradient(self, x, requested) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Gradient of each image's class score with respect to that image (n, h, w, c),
        the scores (n,) and the classes explained (n,)."""
        return tuple(self._chunks(self._gradient_fn, x, requested))

    def _weighted_gradient(self, batch, index, points, weights) -> np.ndarray:
        """sum_i weights[i] * gradient at ``points(start, stop)`` (stop - start, b, h, w, c),
        with as many points per pass as ``batch_size`` allows; summed in float64."""
        n, b = len(weights), len(batch)
        per_pass = max(1, self.batch_size // b)
        total = np.zeros(batch.shape, np.float64)
        for start in range(0, n, per_pass):
            stop = min(start + per_pass, n)
            stack = points(start, stop).reshape(-1, *batch.shape[1:])
            grads = self.gradient(stack, np.tile(index, stop - start))[0].reshape(stop - start, *batch.shape)
            total += np.tensordot(np.asarray(weights[start:stop], np.float64), grads, axes=1)
        return total.astype(np.float32)

    # Public -------------------------------------------------------------------------------

    def _prepare(self, images, class_index):
        batch, single, requested = self.scored.prepare(images, class_index)
        if self._score_fn is None:
            # state: under JAX the weights are arguments of the compiled passes, so a model
            # changed in place afterwards (the sanity checks' randomisation) is seen.
            self._score_fn = compile_fn(self._scores, self.compiled, state=self.model)
            self._gradient_fn = compile_fn(self._gradient, self.compiled, state=self.model)
        return batch, single, requested

    def explain(self, images, class_index=None) -> AttributionResult:
        """Attributions for a batch (or one image) and the classes they explain.

        ``class_index``: ``None`` for each image's top class, one integer for all, or one
        per image.
        """
        batch, _, requested = self._prepare(images, class_index)
        self._check(batch)
        fields = self._attribute(batch, requested)
        fields["attributions"] = np.asarray(fields["attributions"], np.float32)
        return AttributionResult(reduce=self.reduce, **fields)

    def __call__(self, images, class_index=None) -> np.ndarray:
        """Attributions (batch, h, w, c), or (h, w, c) for one image."""
        _, single = as_batch(images)
        out = self.explain(images, class_index).attributions
        return out[0] if single else out


# --- the methods -------------------------------------------------------------------------


class Saliency(PixelAttribution):
    """Gradient saliency (Simonyan et al., 2013): the gradient of the class score with
    respect to the input pixels.

    ``abs_max=True`` gives the map the paper displays, the largest absolute value over the
    colour channels, as attributions of one channel (b, h, w, 1); by default the raw
    signed gradient (b, h, w, c).
    """

    name = "Saliency"

    def __init__(self, model, *, abs_max: bool = False, **kwargs):
        super().__init__(model, **kwargs)
        self.abs_max = bool(abs_max)

    def _channels(self, grads):
        return np.abs(grads).max(axis=-1, keepdims=True) if self.abs_max else grads

    def _attribute(self, batch, requested):
        grads, score, index = self.gradient(batch, requested)  # one pass: score and gradient
        return dict(attributions=self._channels(grads), class_index=index, score=score)


class SmoothGrad(Saliency):
    """SmoothGrad (Smilkov et al., 2017): the gradient averaged over ``samples`` noisy
    copies of the image, x + N(0, sigma^2), with sigma = ``noise_level`` * (max - min) of
    that image (the paper's rule; it finds 10-20 % best).

    The noise is drawn in NumPy, ``standard_normal((k, b, h, w, c))`` for consecutive
    groups of ``k`` samples of the whole batch, from ``np.random.default_rng(seed)`` anew
    at each call (so a call is deterministic), or from ``seed`` itself if it is a NumPy
    ``Generator`` or ``RandomState`` (then it advances). ``abs_max`` as in ``Saliency``,
    applied to the averaged gradient.
    """

    name = "SmoothGrad"

    def __init__(self, model, *, samples: int = 50, noise_level: float = 0.15, seed=0, **kwargs):
        super().__init__(model, **kwargs)
        self.samples = _at_least_one("samples", samples)
        noise_level = float(noise_level)
        if not np.isfinite(noise_level) or noise_level < 0:
            raise ValueError(f"noise_level must be a finite number >= 0, got {noise_level!r}.")
        self.noise_level = noise_level
        if not (hasattr(seed, "standard_normal") or isinstance(seed, (int, np.integer))):
            raise TypeError(f"seed must be an integer or a NumPy random generator, got {type(seed).__name__}.")
        self.seed = seed

    def _attribute(self, batch, requested):
        score, index = self.scores(batch, requested)
        rng = self.seed if hasattr(self.seed, "standard_normal") else np.random.default_rng(self.seed)
        sigma = self.noise_level * (batch.max(axis=(1, 2, 3)) - batch.min(axis=(1, 2, 3)))
        sigma = sigma.astype(np.float64).reshape(1, -1, 1, 1, 1)

        def noisy(start, stop):
            z = rng.standard_normal((stop - start, *batch.shape))
            return (batch[None] + sigma * z).astype(np.float32)

        weights = np.full(self.samples, 1.0 / self.samples)
        mean_grad = self._weighted_gradient(batch, index, noisy, weights)
        return dict(attributions=self._channels(mean_grad), class_index=index, score=score)


class IntegratedGradients(PixelAttribution):
    """Integrated Gradients (Sundararajan et al., 2017): (x - x') times the gradient
    averaged along the straight path from the baseline x' to the image x,

        IG(x) = (x - x') * integral_0^1 grad f(x' + a (x - x')) da,

    whose sum over pixels and channels is f(x) - f(x') (completeness), up to the error of
    the quadrature over ``steps`` intervals: ``rule="trapezoid"`` (steps + 1 gradients)
    or ``"riemann"``, the paper's right-endpoint sum (its eq. 3, ``steps`` gradients).

    ``baseline`` is in the model's input space: 0 (default) is the zero input (black for
    inputs in [0, 1], the mean colour for mean-subtracted inputs); a number, a colour, an
    image or one per image. The result's ``baseline_score`` is f(x').
    """

    name = "Integrated Gradients"
    reduce = "sum"
    RULES = ("trapezoid", "riemann")

    def __init__(self, model, *, steps: int = 50, baseline=0.0, rule: str = "trapezoid", **kwargs):
        super().__init__(model, **kwargs)
        self.steps = _at_least_one("steps", steps)
        if rule not in self.RULES:
            raise ValueError(f"Unknown rule {rule!r}; valid rules are {self.RULES}.")
        self.rule = rule
        self.baseline = baseline

    def path(self) -> tuple[np.ndarray, np.ndarray]:
        """The path's points ``a`` in [0, 1] and their quadrature weights (summing to 1)."""
        m = self.steps
        if self.rule == "riemann":
            return np.arange(1, m + 1) / m, np.full(m, 1.0 / m)
        weights = np.full(m + 1, 1.0 / m)
        weights[[0, -1]] = 0.5 / m
        return np.arange(m + 1) / m, weights

    def _check(self, batch):
        baseline_batch(self.baseline, batch)

    def _attribute(self, batch, requested):
        score, index = self.scores(batch, requested)
        base = baseline_batch(self.baseline, batch)
        alphas, weights = self.path()
        delta = batch - base

        def points(start, stop):
            return base[None] + alphas[start:stop, None, None, None, None] * delta[None]

        mean_grad = self._weighted_gradient(batch, index, points, weights)
        baseline_score, _ = self.scores(base, index)
        return dict(attributions=delta * mean_grad, class_index=index, score=score,
                    baseline_score=baseline_score)


class Occlusion(PixelAttribution):
    """Occlusion sensitivity (Zeiler & Fergus, 2014, sec. 4.2): cover part of the image with
    a ``patch`` (height, width) of ``baseline`` and record how much the class score drops.

    The patch moves by ``stride`` (at most the patch) from the top-left corner, with one
    more position flush with the bottom and right edges where the stride does not reach
    them, so every pixel is covered. Each pixel gets the mean drop (score of the image
    minus score of the occluded image) over the patches that cover it: attributions
    (b, h, w, 1), positive where hiding the pixel lowers the score. The score defaults to the probability, the
    classifier output the paper plots. ``baseline`` is in the model's input space: 0 is
    the zero input (black for inputs in [0, 1], the mean colour, "grey", for
    mean-subtracted inputs); a number, a colour, an image or one per image. The occluded
    images go through the model in batches of ``batch_size``.
    """

    name = "Occlusion"
    default_score = "probability"
    reduce = "sum"

    def __init__(self, model, *, patch=8, stride=4, baseline=0.0, **kwargs):
        super().__init__(model, **kwargs)
        self.patch = _pair("patch", patch)
        self.stride = _pair("stride", stride)
        if any(s > p for s, p in zip(self.stride, self.patch)):
            raise ValueError(
                f"stride {self.stride} must not exceed patch {self.patch}: the pixels between "
                "patches would never be occluded."
            )
        self.baseline = baseline

    @staticmethod
    def positions(size: int, patch: int, stride: int) -> list[int]:
        """Top (or left) edges of the patches along one axis of ``size`` pixels."""
        starts = list(range(0, size - patch + 1, stride))
        if starts[-1] != size - patch:
            starts.append(size - patch)
        return starts

    def _check(self, batch):
        (ph, pw), (h, w) = self.patch, batch.shape[1:3]
        if ph > h or pw > w:
            raise ValueError(f"patch {self.patch} is larger than the images ({h}, {w}); give at most ({h}, {w}).")
        baseline_batch(self.baseline, batch)

    def _attribute(self, batch, requested):
        score, index = self.scores(batch, requested)
        (ph, pw), (sh, sw) = self.patch, self.stride
        b, h, w, c = batch.shape
        base = baseline_batch(self.baseline, batch)
        corners = [(i, j) for i in self.positions(h, ph, sh) for j in self.positions(w, pw, sw)]
        count = np.zeros((h, w), np.float64)
        for i, j in corners:
            count[i : i + ph, j : j + pw] += 1
        total = np.zeros((b, h, w), np.float64)
        per_pass = max(1, self.batch_size // b)
        for start in range(0, len(corners), per_pass):
            group = corners[start : start + per_pass]
            stack = np.repeat(batch[None], len(group), axis=0)  # (k, b, h, w, c)
            for k, (i, j) in enumerate(group):
                stack[k, :, i : i + ph, j : j + pw] = base[:, i : i + ph, j : j + pw]
            occluded, _ = self.scores(stack.reshape(-1, h, w, c), np.tile(index, len(group)))
            drops = score[None].astype(np.float64) - occluded.reshape(len(group), b)
            for k, (i, j) in enumerate(group):
                total[:, i : i + ph, j : j + pw] += drops[k][:, None, None]
        return dict(attributions=(total / count)[..., None], class_index=index, score=score)


__all__ = [
    "AttributionResult",
    "IntegratedGradients",
    "Occlusion",
    "PixelAttribution",
    "REDUCTIONS",
    "Saliency",
    "SmoothGrad",
    "attribution_heatmaps",
    "baseline_batch",
]
