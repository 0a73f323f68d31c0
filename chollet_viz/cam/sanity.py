"""Sanity checks for saliency maps (Adebayo et al., 2018): the model-parameter randomisation test.

A map that explains a model's decision must change when the model's learned weights are
destroyed. The cascading test re-initialises the weighted layers one at a time, from the
output down, recomputes each method's map after every step and compares it with the map
of the trained model:

- Spearman rank correlation of the absolute values, and of the signed values (the paper
  reports both; ``scipy.stats.spearmanr``),
- SSIM (``skimage.metrics.structural_similarity``) of the two maps after the authors'
  normalisation for display, the one of the PAIR ``saliency`` library they use
  (``VisualizeImageGrayscale``): absolute value, minus the minimum, divided by the 99th
  percentile (minus the minimum), clipped to [0, 1].

Pixel attributions of shape (batch, h, w, channels) are reduced to one map per image as
that library does: the sum over channels of the absolute values for the absolute map, the
plain sum for the signed map.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping

import keras
import numpy as np

from .. import backend
from ..layers import leaf_layers
from ._core import ScoredModel, class_index_of_top

MEASURES = ("spearman_abs", "spearman", "ssim")

# A method builder takes a model and returns ``explain(images, class_index) -> maps`` with
# maps (batch, h, w) or (batch, h, w, channels) at input resolution. The builder is called
# once per model copy, so compiled functions are traced once and reused after each
# in-place re-initialisation.
MethodBuilder = Callable[[keras.Model], Callable[[np.ndarray, np.ndarray], np.ndarray]]


# --- cascading randomisation -------------------------------------------------------------


def weighted_layers(model) -> list[str]:
    """Paths of the leaf layers that hold weights, from the output down (the cascade's order)."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"Expected a keras.Model, got {type(model).__name__}.")
    if not model.built:
        raise ValueError(
            f"Model {model.name!r} is not built, so its layers have no weights yet; build it "
            "(call it on a batch, or give it a keras.Input) first."
        )
    return [path for path, layer in leaf_layers(model) if layer.weights][::-1]


def _layer_seed(seed: int, position: int) -> int:
    # One seed per (seed, layer position from the top): a layer gets the same random
    # weights whether it is the last one re-initialised or one of many.
    return int(np.random.SeedSequence([seed, position]).generate_state(1)[0] & 0x7FFFFFFF)


def _initializer(layer, variable, seed: int):
    """The layer's own initializer of ``variable`` (``kernel`` -> ``kernel_initializer``), seeded."""
    name = variable.name.split("/")[-1]
    init = getattr(layer, f"{name}_initializer", None)
    if init is None:
        raise ValueError(
            f"Layer {layer.name!r} has a weight {name!r} but no attribute {name + '_initializer'!r}, "
            "so it cannot be re-initialised the way it was created; the cascade supports layers "
            "that keep an initializer per weight (Dense, Conv2D, BatchNormalization, ...)."
        )
    init = keras.initializers.get(init)
    config = init.get_config()
    if "seed" in config:  # constant initializers (zeros, ones) take no seed
        init = type(init).from_config({**config, "seed": seed})
    return init


def _reinitialize(layer, seed: int) -> None:
    for i, variable in enumerate(layer.weights):
        init = _initializer(layer, variable, _layer_seed(seed, i))
        variable.assign(np.asarray(init(tuple(variable.shape), dtype=variable.dtype)))


def _copy(model) -> keras.Model:
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def _check_k(k, n_layers: int) -> None:
    if not isinstance(k, (int, np.integer)) or not 0 <= k <= n_layers:
        raise ValueError(f"k must be an integer in 0..{n_layers} (the model has {n_layers} weighted layers), got {k!r}.")


def _randomize_top(clone, paths: list[str], k: int, seed: int) -> None:
    layers = dict(leaf_layers(clone))
    for position, path in enumerate(paths[:k]):
        _reinitialize(layers[path], _layer_seed(seed, position))


def randomized_copy(model, k: int, seed: int = 0) -> keras.Model:
    """A copy of ``model`` whose top ``k`` weighted layers are re-initialised; ``model`` is untouched.

    Each layer is re-drawn with its own initializers (``kernel_initializer``, ...) seeded
    from ``seed`` and the layer's position from the top, so the result is deterministic
    and a layer's random weights do not depend on ``k``.
    """
    paths = weighted_layers(model)
    _check_k(k, len(paths))
    clone = _copy(model)
    _randomize_top(clone, paths, k, seed)
    return clone


@dataclass
class RandomizationStep:
    k: int  # number of weighted layers re-initialised, from the top
    layer: str | None  # the layer re-initialised at this step (None for the trained model)
    model: keras.Model  # the working copy, with the top k layers re-initialised


def cascading_randomization(model, seed: int = 0) -> Iterator[RandomizationStep]:
    """Yield steps k = 0 (the trained weights) .. L (every weighted layer re-initialised).

    One working copy is made and re-initialised in place, layer by layer, so that the
    methods built on it (and their compiled functions) are reused: the copy yielded at
    step k is the same object as at step k - 1, one layer further randomised. Its weights
    equal ``randomized_copy(model, k, seed)``'s. ``model`` itself is never modified.
    """
    paths = weighted_layers(model)
    clone = _copy(model)
    layers = dict(leaf_layers(clone))
    yield RandomizationStep(0, None, clone)
    for position, path in enumerate(paths):
        _reinitialize(layers[path], _layer_seed(seed, position))
        yield RandomizationStep(position + 1, path, clone)


# --- similarity of two maps ---------------------------------------------------------------


def as_maps(attributions) -> tuple[np.ndarray, np.ndarray]:
    """(absolute maps, signed maps), each (batch, h, w), from maps or pixel attributions.

    A (batch, h, w, channels) attribution is summed over channels (of its absolute values
    for the absolute map), as the PAIR saliency library the paper uses does.
    """
    a = np.asarray(attributions, dtype=np.float64)
    if a.ndim == 4:
        return np.abs(a).sum(axis=-1), a.sum(axis=-1)
    if a.ndim == 3:
        return np.abs(a), a
    raise ValueError(
        f"Expected maps (batch, h, w) or pixel attributions (batch, h, w, channels), got shape {a.shape}."
    )


def normalize_for_ssim(maps) -> np.ndarray:
    """The paper's display normalisation of absolute maps (batch, h, w) to [0, 1].

    ``(m - min) / (p99 - min)`` clipped to [0, 1], per map (``VisualizeImageGrayscale``
    of the PAIR saliency library); a map whose 99th percentile equals its minimum becomes
    all zeros instead of NaN.
    """
    m = np.asarray(maps, dtype=np.float64)
    flat = m.reshape(len(m), -1)
    low = flat.min(axis=1)
    span = np.percentile(flat, 99, axis=1) - low
    ok = span > 0
    scaled = (flat - low[:, None]) / np.where(ok, span, 1)[:, None]
    scaled[~ok] = 0
    return np.clip(scaled, 0, 1).reshape(m.shape)


def _spearman(a, b) -> float:
    from scipy.stats import spearmanr

    a, b = a.ravel(), b.ravel()
    # A constant map has no ranking, so the correlation is undefined: NaN, counted by the
    # caller, rather than scipy's warning.
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def _pair_of_maps(reference, maps):
    ref, new = as_maps(reference), as_maps(maps)
    if ref[0].shape != new[0].shape:
        raise ValueError(f"Maps to compare must have the same shape, got {ref[0].shape} and {new[0].shape}.")
    return ref, new


def spearman(reference, maps, absolute: bool = True) -> np.ndarray:
    """Per-image Spearman rank correlation (batch,) of ``maps`` with ``reference``, of the
    absolute values or of the signed values; NaN where either map is constant."""
    (ref_abs, ref_signed), (new_abs, new_signed) = _pair_of_maps(reference, maps)
    pairs = zip(ref_abs, new_abs) if absolute else zip(ref_signed, new_signed)
    return np.array([_spearman(r, n) for r, n in pairs])


def ssim(reference, maps) -> np.ndarray:
    """Per-image SSIM (batch,) of the absolute maps, each normalised by ``normalize_for_ssim``
    (``structural_similarity`` with its default 7x7 window, data range 1)."""
    from skimage.metrics import structural_similarity

    (ref_abs, _), (new_abs, _) = _pair_of_maps(reference, maps)
    if min(ref_abs.shape[1:]) < 7:
        raise ValueError(f"SSIM uses a 7x7 window, so maps must be at least 7x7; got {ref_abs.shape[1:]}.")
    ref_n, new_n = normalize_for_ssim(ref_abs), normalize_for_ssim(new_abs)
    return np.array([structural_similarity(r, n, data_range=1.0) for r, n in zip(ref_n, new_n)])


def similarity(reference, maps) -> dict[str, np.ndarray]:
    """Per-image similarity of ``maps`` to ``reference`` (same shapes, maps or attributions):
    ``{"spearman_abs", "spearman", "ssim"}``, each of shape (batch,)."""
    return {
        "spearman_abs": spearman(reference, maps, absolute=True),
        "spearman": spearman(reference, maps, absolute=False),
        "ssim": ssim(reference, maps),
    }


# --- the experiment -----------------------------------------------------------------------


@dataclass
class SanityResult:
    """The cascading test's outcome for several methods on a fixed set of images.

    ``scores[measure]`` has shape (methods, steps, images); step 0 compares the trained
    model with itself. ``reference[measure]`` (methods, images) compares two independent
    full randomisations (seeds ``seed`` and ``seed + 1``), the level similarity falls to
    when nothing learned is left. ``maps[method]`` (steps, images, h, w) holds the
    absolute maps, for figures.
    """

    methods: list[str]
    layers: list[str]  # "trained", then the layer re-initialised at each step
    class_index: np.ndarray  # (images,) the class explained, the same at every step
    scores: dict[str, np.ndarray]
    reference: dict[str, np.ndarray] = field(default_factory=dict)
    maps: dict[str, np.ndarray] = field(default_factory=dict)

    def mean_and_sem(self, measure: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mean and standard error over images, (methods, steps) each, and the count of
        images with a defined value (Spearman is undefined for a constant map)."""
        if measure not in MEASURES:
            raise ValueError(f"Unknown measure {measure!r}; valid measures are {MEASURES}.")
        values = self.scores[measure]
        valid = np.isfinite(values)
        n = valid.sum(axis=-1)
        mean = np.where(valid, values, 0).sum(axis=-1) / np.maximum(n, 1)
        mean = np.where(n > 0, mean, np.nan)
        deviation = np.where(valid, values - mean[..., None], 0)
        std = np.sqrt((deviation**2).sum(axis=-1) / np.maximum(n - 1, 1))
        sem = np.where(n > 1, std / np.sqrt(np.maximum(n, 1)), np.nan)
        return mean, sem, n

    def rows(self) -> list[dict]:
        """One record per (method, step, image): the tidy form of ``scores``."""
        out = []
        for m, method in enumerate(self.methods):
            for k, layer in enumerate(self.layers):
                for i in range(len(self.class_index)):
                    row = {"method": method, "k": k, "layer": layer, "image": i}
                    row.update({measure: float(self.scores[measure][m, k, i]) for measure in MEASURES})
                    out.append(row)
        return out


def cascading_test(
    model,
    methods: Mapping[str, MethodBuilder],
    images,
    class_index=None,
    *,
    seed: int = 0,
    reference: bool = True,
    keep_maps: bool = True,
) -> SanityResult:
    """Run the cascading randomisation test of every method on ``images``.

    ``methods`` maps a name to a builder: ``builder(model)`` returns
    ``explain(images, class_index)`` giving maps (b, h, w) or pixel attributions
    (b, h, w, c) at input resolution. ``class_index`` (one per image, or ``None`` for the
    trained model's top class) stays fixed while the model is destroyed, so every step
    explains the same class. With ``reference=True`` two further independent full
    randomisations give the random-versus-random level.
    """
    if not methods:
        raise ValueError("Give at least one method to test.")
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"Expected a non-empty batch of images (batch, h, w, channels), got shape {images.shape}.")
    if class_index is None:
        # The top class from the logits, as every method decides it (one sigmoid unit: logit > 0).
        scored = ScoredModel(model, False)
        scored.build(images.shape)
        logits, _ = scored.logits_and_features(keras.ops.convert_to_tensor(images))
        class_index = backend.to_numpy(class_index_of_top(logits))
    index = np.asarray(class_index)
    if index.ndim > 1 or (index.ndim == 1 and len(index) != len(images)) or not np.issubdtype(index.dtype, np.integer):
        raise ValueError(
            f"class_index must be None, one integer or one integer per image ({len(images)}), got {class_index!r}."
        )
    class_index = np.broadcast_to(index.astype(np.int32), (len(images),)).copy()

    names = list(methods)
    scores = {measure: [] for measure in MEASURES}
    maps = {name: [] for name in names}
    layers, explainers, trained = ["trained"], {}, {}
    for step in cascading_randomization(model, seed):
        if step.k == 0:
            explainers = {name: build(step.model) for name, build in methods.items()}
        else:
            layers.append(step.layer)
        per_method = {measure: [] for measure in MEASURES}
        for name in names:
            out = np.asarray(explainers[name](images, class_index))
            if step.k == 0:
                trained[name] = out
            sims = similarity(trained[name], out)
            for measure in MEASURES:
                per_method[measure].append(sims[measure])
            if keep_maps:
                maps[name].append(as_maps(out)[0].astype(np.float32))
        for measure in MEASURES:
            scores[measure].append(per_method[measure])
    result = SanityResult(
        methods=names,
        layers=layers,
        class_index=class_index,
        # (steps, methods, images) -> (methods, steps, images)
        scores={m: np.swapaxes(np.asarray(v), 0, 1) for m, v in scores.items()},
        maps={name: np.stack(v) for name, v in maps.items()} if keep_maps else {},
    )
    if reference:
        n = len(layers) - 1
        a, b = randomized_copy(model, n, seed), randomized_copy(model, n, seed + 1)
        sims = {}
        for name, build in methods.items():
            sims[name] = similarity(np.asarray(build(a)(images, class_index)), np.asarray(build(b)(images, class_index)))
        result.reference = {measure: np.stack([sims[name][measure] for name in names]) for measure in MEASURES}
    return result


__all__ = [
    "MEASURES",
    "RandomizationStep",
    "SanityResult",
    "as_maps",
    "cascading_randomization",
    "cascading_test",
    "normalize_for_ssim",
    "randomized_copy",
    "similarity",
    "spearman",
    "ssim",
    "weighted_layers",
]
