"""The render loop: gradient ascent on a batch of images, compiled, with dead-image reporting.

``render(model, objective, param, ...)`` cuts ``model`` at the layers the objective reads,
compiles one ascent step (``chollet_viz.backend.Ascent``: ``tf.function``, ``jax.jit`` or
eager PyTorch) and runs it ``steps`` times over the whole batch. The random transforms'
parameters are drawn with NumPy outside the step and passed in, so a seed gives the same
transforms on every backend. What changes between methods is only the parts passed in:

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

from .. import backend
from ..progress import progress as progress_bar
from ._layers import cut_model
from .objectives import Objective
from .transforms import compose

__all__ = ["NormalizedAscent", "RenderResult", "normalize_gradient", "render", "deprocess_image", "to_uint8"]


def normalize_gradient(grads, epsilon: float = 1e-5):
    """The book's normalisation, per image: divide by the gradient's root mean square + epsilon."""
    grads = keras.ops.convert_to_tensor(grads)
    axes = tuple(range(1, len(grads.shape)))
    rms = keras.ops.sqrt(keras.ops.mean(keras.ops.square(grads), axis=axes, keepdims=True))
    return grads / (rms + epsilon)


class NormalizedAscent:
    """The book's update: ``x += step * g / (rms(g) + 1e-5)``, each image on its own.

    Normalising makes every step the same size whatever the layer's scale, so one step
    size (1.0 in the model's 0-255-like input space) works for every filter.
    """

    def __init__(self, step: float = 1.0, epsilon: float = 1e-5):
        self.step = float(step)
        self.epsilon = float(epsilon)

    def __call__(self, grads, values):
        """The new values: an update function for ``backend.Ascent``."""
        return [v + self.step * normalize_gradient(g, self.epsilon) for g, v in zip(grads, values)]

    def apply(self, grads, variables):
        """The same step applied in place to ``keras.Variable``s."""
        for variable, new in zip(variables, self(grads, [v.value for v in variables])):
            variable.assign(new)


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
    if optimizer is None:
        optimizer = keras.optimizers.Adam(0.05)
    if not isinstance(optimizer, (NormalizedAscent, keras.optimizers.Optimizer)):
        raise TypeError(f"optimizer must be a Keras optimizer or NormalizedAscent, got {optimizer!r}.")
    # The param's own variables are optimised in place: afterwards param() is the result.
    ascent = backend.Ascent(param.variables, optimizer, state=cut)
    transform = compose(*transforms)
    rng = np.random.default_rng(seed)
    prepare = preprocess or (lambda x: x)

    def scores(images):
        outputs = cut(prepare(images))
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return objective({n: keras.ops.cast(o, "float32") for n, o in zip(names, outputs)})

    def score(*args):  # the variables' values, then the transforms' parameters
        *values, params = args
        return scores(transform.apply(param.images(*values), params))

    start = time.perf_counter()
    history = []
    for _ in progress_bar(range(steps), description, enabled=progress):
        params = keras.ops.convert_to_tensor(transform.draw(rng))
        history.append(backend.to_numpy(ascent.step(score, params)))
    history.append(backend.to_numpy(scores(param())))  # after the last step, no transforms
    history = np.stack(history).astype(np.float64)
    images = backend.to_numpy(param())
    seconds = time.perf_counter() - start

    dead = [label for label, column in zip(labels, history.T) if np.all(column == 0)]
    return RenderResult(images, history, labels, dead, param.space, seconds, description)
