"""Does a heatmap point at what the model uses? Deletion and insertion curves.

Petsiuk et al. (RISE, 2018): rank the pixels by heatmap value; *deletion* replaces the
most highlighted pixels first by a baseline and records the class score as more and more
are gone; *insertion* starts from the baseline and puts the most highlighted pixels back
first. A faithful heatmap makes the deletion curve fall fast (small area under it) and
the insertion curve rise fast (large area). Areas are over the fraction of pixels, 0..1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from ._core import ScoredModel, as_batch, class_index_of_top, compile_fn
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


def blurred(images, factor: int = 8) -> np.ndarray:
    """A strongly blurred copy: area-downsample by ``factor``, bilinear back up."""
    batch, single = as_batch(images)
    h, w = batch.shape[1:3]
    small = tf.image.resize(batch, (max(h // factor, 1), max(w // factor, 1)), method="area")
    out = tf.image.resize(small, (h, w), method="bilinear").numpy()
    return out[0] if single else out


def pixel_order(heatmap, size) -> np.ndarray:
    """Pixel indices (flattened) from the most to the least highlighted; ties keep order."""
    return np.argsort(-upsample(heatmap, size).ravel(), kind="stable")


class _Curves:
    def __init__(self, model, score, batch_size):
        self.scored = ScoredModel(model, False, score=score)
        self.batch_size = int(batch_size)
        self._fn = compile_fn(self._scores, True)

    def _scores(self, x, requested):
        logits, _ = self.scored.logits_and_features(x)
        index = tf.where(requested < 0, class_index_of_top(logits), requested)
        return self.scored.class_score(logits, index), index

    def run(self, kind, images, heatmaps, class_index, steps, baseline):
        batch, _ = as_batch(images)
        self.scored.build(batch.shape)
        heatmaps = np.asarray(heatmaps, dtype=np.float32)
        heatmaps = heatmaps[None] if heatmaps.ndim == 2 else heatmaps
        if len(heatmaps) != len(batch):
            raise ValueError(f"Got {len(heatmaps)} heatmaps for {len(batch)} images.")
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}.")
        requested = self.scored.class_indices(class_index, len(batch))
        _, index = self._fn(tf.constant(batch), tf.constant(requested))
        index = index.numpy()
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
            for i in range(0, steps + 1, self.batch_size):
                part = stack[i : i + self.batch_size]
                s, _ = self._fn(tf.constant(part), tf.constant(np.full(len(part), index[b], np.int32)))
                scores[b, i : i + len(part)] = s.numpy()
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
