"""Does a heatmap point at what the model uses? Deletion and insertion curves.

Petsiuk et al. (RISE, 2018): rank the pixels by heatmap value; *deletion* replaces the
most highlighted pixels first by a baseline and records the class score as more and more
are gone; *insertion* starts from the baseline and puts the most highlighted pixels back
first. A faithful heatmap makes the deletion curve fall fast (small area under it) and
the insertion curve rise fast (large area). Areas are over the fraction of pixels, 0..1.

Chattopadhay et al. (Grad-CAM++, 2018, sec. 6.2), as the Score-CAM paper tabulates them:
*average drop* and *increase in confidence* compare the class probability of the image
with that of the image multiplied by its heatmap, the "explanation map" (``confidence_change``).

Written with ``keras.ops`` and NumPy: runs on TensorFlow, JAX and PyTorch alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from keras import ops

from .. import backend
from ._core import ScoredModel, as_batch, chosen_class, compile_fn
from .methods import upsample


@dataclass
class FaithfulnessCurve:
    kind: str  # "deletion" or "insertion"
    fractions: np.ndarray  # (steps + 1,) fraction of pixels deleted / inserted
    scores: np.ndarray  # (batch, steps + 1) class score at each step
    class_index: np.ndarray  # (batch,)

    @property
    def auc(self) -> np.ndarray:
        """Area under each image's curve (trapezoidal rule over the fraction of pixels)."""
        return np.trapezoid(self.scores, self.fractions, axis=-1)


def _area_weights(size: int, out: int) -> np.ndarray:
    """(out, size) matrix of area (box-filter) resampling along one axis: output pixel ``i``
    averages the input interval [i s, (i + 1) s), s = size / out, pixels cut by its edges
    counting by the part of them inside (TensorFlow's ``resize(method="area")``)."""
    scale = size / out
    edges = np.arange(out + 1) * scale
    pixels = np.arange(size)
    overlap = np.minimum(pixels[None] + 1, edges[1:, None]) - np.maximum(pixels[None], edges[:-1, None])
    return np.maximum(overlap, 0) / scale


def blurred(images, factor: int = 8) -> np.ndarray:
    """A strongly blurred copy: area-downsample by ``factor``, bilinear back up."""
    batch, single = as_batch(images)
    h, w = batch.shape[1:3]
    # keras.ops.image.resize has "area" on TensorFlow only: the box filter is written out
    # (float64, separable), the same on every backend.
    rows, columns = _area_weights(h, max(h // factor, 1)), _area_weights(w, max(w // factor, 1))
    small = np.einsum("ih,bhwc,jw->bijc", rows, batch.astype(np.float64), columns).astype(np.float32)
    out = backend.to_numpy(ops.image.resize(ops.convert_to_tensor(small), (h, w), interpolation="bilinear"))
    return out[0] if single else out


def pixel_order(heatmap, size) -> np.ndarray:
    """Pixel indices (flattened) from the most to the least highlighted; ties keep order."""
    return np.argsort(-upsample(heatmap, size).ravel(), kind="stable")


class _Curves:
    def __init__(self, model, score, batch_size):
        self.scored = ScoredModel(model, False, score=score)
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be an integer of at least 1, got {batch_size!r}.")
        self.batch_size = int(batch_size)
        self._fn = compile_fn(self._scores, True, state=model)

    def _scores(self, x, requested):
        logits, _ = self.scored.logits_and_features(x)
        index = chosen_class(logits, requested)
        return self.scored.class_score(logits, index), index

    def score_rows(self, x, requested) -> tuple[np.ndarray, np.ndarray]:
        """Scores and classes of the images ``x``, ``batch_size`` at a time (-1: top class)."""
        x, requested = np.asarray(x, np.float32), np.asarray(requested, np.int32)
        outs = [backend.to_numpy(self._fn(ops.convert_to_tensor(x[i : i + self.batch_size]),
                                          ops.convert_to_tensor(requested[i : i + self.batch_size])))
                for i in range(0, len(x), self.batch_size)]
        return np.concatenate([s for s, _ in outs]), np.concatenate([i for _, i in outs])

    def prepare(self, images, heatmaps, class_index):
        """The batch, its heatmaps (b, h', w') and the requested classes, checked."""
        batch, _ = as_batch(images)
        self.scored.build(batch.shape)
        heatmaps = np.asarray(heatmaps, dtype=np.float32)
        heatmaps = heatmaps[None] if heatmaps.ndim == 2 else heatmaps
        if heatmaps.ndim != 3:
            raise ValueError(f"Expected heatmaps of shape (batch, h, w) or one (h, w), got {heatmaps.shape}.")
        if len(heatmaps) != len(batch):
            raise ValueError(f"Got {len(heatmaps)} heatmaps for {len(batch)} images.")
        return batch, heatmaps, self.scored.class_indices(class_index, len(batch))

    def run(self, kind, images, heatmaps, class_index, steps, baseline):
        batch, heatmaps, requested = self.prepare(images, heatmaps, class_index)
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}.")
        _, index = self.score_rows(batch, requested)
        if isinstance(baseline, str):
            if baseline != "blur":
                raise ValueError(f"Unknown baseline {baseline!r}; use a number, an array or 'blur'.")
            base = blurred(batch)
        else:
            base = np.broadcast_to(np.asarray(baseline, dtype=np.float32), batch.shape)
        n, h, w, _ = batch.shape
        fractions = np.linspace(0, 1, steps + 1)
        counts = np.round(fractions * h * w).astype(int)
        scores = np.zeros((n, steps + 1), dtype=np.float32)
        for b in range(n):
            rank = np.empty(h * w, dtype=np.int64)
            rank[pixel_order(heatmaps[b], (h, w))] = np.arange(h * w)
            # Step s has the counts[s] top-ranked pixels taken (deletion) or given (insertion).
            chosen = (rank[None, :] < counts[:, None]).reshape(steps + 1, h, w, 1)
            start, end = (batch[b], base[b]) if kind == "deletion" else (base[b], batch[b])
            stack = np.where(chosen, end, start).astype(np.float32)
            scores[b], _ = self.score_rows(stack, np.full(steps + 1, index[b]))
        return FaithfulnessCurve(kind, fractions, scores, index)


def deletion_curve(
    model, images, heatmaps, class_index=None, *, steps: int = 16, baseline=0.0,
    score: str = "probability", batch_size: int = 32,
) -> FaithfulnessCurve:
    """Class score as the most highlighted pixels are replaced by ``baseline`` (lower area
    is better). ``images`` are in the model's input space, so ``baseline=0`` is a zero
    input there (the mean colour for mean-subtracted inputs); ``"blur"`` uses a blurred
    copy. ``class_index=None`` follows each image's top class."""
    return _Curves(model, score, batch_size).run("deletion", images, heatmaps, class_index, steps, baseline)


def insertion_curve(
    model, images, heatmaps, class_index=None, *, steps: int = 16, baseline="blur",
    score: str = "probability", batch_size: int = 32,
) -> FaithfulnessCurve:
    """Class score as the most highlighted pixels are put back into ``baseline`` (higher
    area is better); the default baseline is a blurred copy of the image, as in RISE."""
    return _Curves(model, score, batch_size).run("insertion", images, heatmaps, class_index, steps, baseline)


@dataclass
class ConfidenceChange:
    """Class scores of images and of their explanation maps (heatmap times image)."""

    full: np.ndarray  # (batch,) Y: the class score of each image
    masked: np.ndarray  # (batch,) O: the class score of the image times its heatmap
    class_index: np.ndarray  # (batch,)

    @property
    def drop(self) -> np.ndarray:
        """Per image, max(0, Y - O) / Y in percent (0 where Y is 0: nothing to drop)."""
        full = self.full.astype(np.float64)
        lost = np.maximum(full - self.masked, 0)
        return 100 * np.divide(lost, full, out=np.zeros_like(full), where=full > 0)

    @property
    def increased(self) -> np.ndarray:
        """Per image, whether the explanation map scores higher than the image (O > Y)."""
        return self.masked > self.full

    @property
    def average_drop(self) -> float:
        """Average drop in percent, the mean of ``drop`` (lower is better)."""
        return float(self.drop.mean())

    @property
    def increase_in_confidence(self) -> float:
        """Increase in confidence: the percentage of images with O > Y (higher is better)."""
        return float(100 * self.increased.mean())


def confidence_change(
    model, images, heatmaps, class_index=None, *, score: str = "probability", batch_size: int = 32,
) -> ConfidenceChange:
    """Average drop and increase in confidence (Chattopadhay et al., 2018, sec. 6.2).

    For each image, Y is the class probability of the image and O that of its
    explanation map, the image multiplied pixel by pixel (all channels alike) by its
    heatmap upsampled bilinearly to the image. ``images`` are in the model's input space,
    so the multiplication pulls each pixel towards the zero input there, fully where the
    heatmap is 0: black for inputs in [0, 1], the mean colour for mean-subtracted inputs
    (as ``ScoreCAM`` masks). Heatmaps must lie in [0, 1] (``normalize_heatmaps``).
    The result gives ``average_drop`` = mean of max(0, Y - O) / Y x 100 and
    ``increase_in_confidence`` = % of images with O > Y, and per-image ``drop`` and
    ``increased`` for standard errors. ``class_index=None`` follows each image's top class.
    """
    curves = _Curves(model, score, batch_size)
    batch, heatmaps, requested = curves.prepare(images, heatmaps, class_index)
    if not np.all(np.isfinite(heatmaps)) or heatmaps.min() < 0 or heatmaps.max() > 1:
        raise ValueError(
            f"heatmaps must lie in [0, 1] to multiply the images, got values in "
            f"[{np.nanmin(heatmaps):g}, {np.nanmax(heatmaps):g}]; normalise them first (normalize_heatmaps)."
        )
    full, index = curves.score_rows(batch, requested)
    masks = upsample(heatmaps, batch.shape[1:3])[..., None]
    masked, _ = curves.score_rows(batch * masks, index)
    return ConfidenceChange(full, masked, index)
