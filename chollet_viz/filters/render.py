"""The render loop: gradient ascent on a batch of images, compiled, with dead-image reporting.

``render(model, objective, param, ...)`` cuts ``model`` at the layers the objective reads,
compiles one ascent step with ``tf.function`` and runs it ``steps`` times over the whole
batch. What changes between methods is only the parts passed in:

- the book's method: ``Pixels`` in the model's space, no transforms, no preprocessing,
  ``NormalizedAscent(1.0)`` for 40 steps;
- a regularised (Lucid-style) rendering: ``fourier_image``, ``standard_transforms()``,
  ``vgg16_preprocess`` and Adam.

An image whose objective is exactly zero at every step never moved: its filter is dead
for that start (a ReLU that never fires has zero gradient), and it is listed in
``RenderResult.dead`` rather than passed off as a pattern.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from ..progress import progress as progress_bar
from ._layers import cut_model
from .objectives import Objective
from .transforms import compose

__all__ = ["NormalizedAscent", "RenderResult", "normalize_gradient", "render", "deprocess_image", "to_uint8"]


def normalize_gradient(grads: tf.Tensor, epsilon: float = 1e-5) -> tf.Tensor:
    """The book's normalisation, per image: divide by the gradient's root mean square + epsilon."""
    axes = list(range(1, len(grads.shape)))
    rms = tf.sqrt(tf.reduce_mean(tf.square(grads), axis=axes, keepdims=True))
    return grads / (rms + epsilon)


class NormalizedAscent:
    """The book's update: ``x += step * g / (rms(g) + 1e-5)``, each image on its own.

    Normalising makes every step the same size whatever the layer's scale, so one step
    size (1.0 in the model's 0-255-like input space) works for every filter.
    """

    def __init__(self, step: float = 1.0, epsilon: float = 1e-5):
        self.step = float(step)
        self.epsilon = float(epsilon)

    def build(self, variables):
        pass

    def apply(self, grads, variables):
        for g, v in zip(grads, variables):
            v.assign_add(self.step * normalize_gradient(g, self.epsilon))


class _KerasAscent:
    """A Keras optimizer turned to ascent (it minimises, so it gets the negated gradient)."""

    def __init__(self, optimizer: keras.optimizers.Optimizer):
        self.optimizer = optimizer

    def build(self, variables):
        self.optimizer.build(variables)

    def apply(self, grads, variables):
        self.optimizer.apply_gradients([(-g, v) for g, v in zip(grads, variables)])


def deprocess_image(x: np.ndarray) -> np.ndarray:
    """The book's display conversion, per image: centre, scale to std 0.1, add 0.5, clip, 0-255.

    ``x`` is one image (h, w, c) or a batch (n, h, w, c); returns uint8 of the same shape.
    Channels keep their order: for the book's VGG16 patterns that is the model's BGR order,
    shown as if it were RGB, exactly as the book's figures were made.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim not in (3, 4):
        raise ValueError(f"Expected an image (h, w, c) or a batch (n, h, w, c), got shape {x.shape}.")
    axes = (-3, -2, -1)
    x = x - x.mean(axis=axes, keepdims=True)
    x = x / (x.std(axis=axes, keepdims=True) + 1e-5)
    x = np.clip(x * 0.1 + 0.5, 0, 1)
    return (x * 255).astype(np.uint8)


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] to uint8 0-255."""
    return np.round(np.clip(np.asarray(rgb), 0, 1) * 255).astype(np.uint8)


@dataclass
class RenderResult:
    """What ``render`` returns.

    ``images``: (n, h, w, 3) as the parameterisation produced them (RGB in [0, 1], or the
    model's input space for ``Pixels``); ``history``: (steps + 1, n) objective of every
    image before each step and after the last; ``labels``: what each image maximises;
    ``dead``: the labels whose objective stayed exactly zero throughout.
    """

    images: np.ndarray
    history: np.ndarray
    labels: list
    dead: list
    space: str
    seconds: float
    description: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def final(self) -> np.ndarray:
        return self.history[-1]

    def to_uint8(self) -> np.ndarray:
        """Displayable uint8 images: the book's deprocessing for the model's space, else RGB."""
        return deprocess_image(self.images) if self.space == "model" else to_uint8(self.images)

    def summary(self) -> str:
        dead = f"{len(self.dead)} dead (objective stayed 0)" + (f": {self.dead}" if self.dead else "")
        return f"{self.description}: {len(self.labels)} images, {dead}"

    def __repr__(self) -> str:
        return f"RenderResult({self.summary()})"


def _with_precision(model: keras.Model, precision: str) -> keras.Model:
    if precision == "float32":
        return model
    if precision != "bfloat16":
        raise ValueError(f"precision must be 'float32' or 'bfloat16', got {precision!r}.")

    # Same layers and weights, computing in bfloat16 (variables stay float32). Fast only on
    # CPUs with bfloat16 instructions (AVX512-BF16, AMX) and on GPUs.
    def clone(layer):
        config = layer.get_config()
        config["dtype"] = "mixed_bfloat16"
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def render(
    model: keras.Model,
    objective: Objective,
    param,
    *,
    steps: int = 256,
    optimizer=None,
    transforms=(),
    preprocess=None,
    labels=None,
    seed: int = 0,
    progress: bool = True,
    description: str | None = None,
    precision: str = "float32",
) -> RenderResult:
    """Maximise ``objective`` over the images of ``param`` by gradient ascent.

    ``optimizer`` is a Keras optimizer (default Adam, learning rate 0.05) or
    ``NormalizedAscent``; ``transforms`` are applied, in order, to the images before
    ``preprocess`` maps them into the model's input space. ``seed`` fixes the random
    transforms. ``progress`` shows a bar over the steps (see ``chollet_viz.progress``).
    """
    if not isinstance(objective, Objective):
        raise TypeError(f"objective must be an Objective (see chollet_viz.filters.objectives), got {objective!r}.")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}.")
    batch = int(param.shape[0])
    objective.check(model, batch)
    labels = list(range(batch)) if labels is None else list(labels)
    if len(labels) != batch:
        raise ValueError(f"{len(labels)} labels for a batch of {batch} images.")
    description = description or objective.description

    names = objective.layers
    cut = _with_precision(cut_model(model, names), precision)
    update = optimizer if isinstance(optimizer, NormalizedAscent) else _KerasAscent(optimizer or keras.optimizers.Adam(0.05))
    update.build(param.variables)
    rng = tf.random.Generator.from_seed(seed)
    transform = compose(*transforms)
    prepare = preprocess or (lambda x: x)

    def scores(x):
        outputs = cut(x)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return objective({n: tf.cast(o, tf.float32) for n, o in zip(names, outputs)})

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            value = scores(prepare(transform(param(), rng)))
            loss = tf.reduce_sum(value)
        grads = tape.gradient(loss, param.variables)
        if any(g is None for g in grads):
            raise ValueError(f"{description} does not depend on the image: its gradient is None.")
        update.apply(grads, param.variables)
        return value

    start = time.perf_counter()
    history = []
    for _ in progress_bar(range(steps), description, enabled=progress):
        history.append(step().numpy())
    history.append(scores(prepare(param())).numpy())  # after the last step, no transforms
    history = np.stack(history).astype(np.float64)
    images = param().numpy()
    seconds = time.perf_counter() - start

    dead = [label for label, column in zip(labels, history.T) if np.all(column == 0)]
    return RenderResult(images, history, labels, dead, param.space, seconds, description)
