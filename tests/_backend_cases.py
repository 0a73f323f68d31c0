"""Shared by tests/test_backend.py and tests/test_backends_agree.py (not collected by
pytest: no ``test_`` prefix).

- ``tapped_gradients``: a prototype of the CAM family's d score / d features written
  once for every backend. Keras 3 has no backend-neutral "gradient with respect to an
  intermediate tensor" (JAX differentiates functions of their arguments only), so the
  tapped layer's output gets an offset ``delta`` added, zero in value, and the feature
  gradient becomes the gradient with respect to ``delta``, an input. The offset is
  inserted with ``replay``'s ``substitute`` hook. A second ``keras.Input`` cannot carry
  it: ``replay`` builds ``keras.Model(inputs, outputs)`` on its one input, and Keras
  refuses an output that depends on another input ("not connected to inputs"). So
  ``delta`` is held by the offset layer during the call instead.
- ``small_convnet`` and ``seeded_weights``: the model the backends are compared on.
- ``cam_numbers``: the CAM family's heatmaps on that model (``chollet_viz.cam``, which
  now runs on the backend seam).
- Run as a script (``python _backend_cases.py WEIGHTS.npz OUT.npz``) it writes that
  model's key numbers under the backend ``KERAS_BACKEND`` names.
"""

from __future__ import annotations

import sys

import keras
import numpy as np

from chollet_viz import backend
from chollet_viz.replay import leaf_layers, replay

INPUT_SHAPE = (8, 8, 3)


class _Offset(keras.layers.Layer):
    """Adds ``self.delta`` (set only while a gradient is taken) to its input."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.delta = None

    def call(self, x):
        return x if self.delta is None else x + self.delta


class TappedModel:
    """``model`` replayed as ``x -> [output, features of layer path]``, with the offset."""

    def __init__(self, model, path, input_shape):
        layers = dict(leaf_layers(model))
        tapped = layers[path]
        self.offset = _Offset(name="feature_offset")

        def substitute(layer):
            if layer is tapped:
                return lambda *args, **kwargs: self.offset(layer(*args, **kwargs))
            return None

        result = replay(model, input_shape, taps=[tapped], substitute=substitute)
        self.model = result.model
        self.feature_shape = tuple(result.model.outputs[1].shape[1:])

    def __call__(self, x, delta=None):
        self.offset.delta = delta
        try:
            output, features = self.model(x, training=False)
        finally:
            self.offset.delta = None
        return output, features


def tapped_gradients(tapped: TappedModel, x, class_index):
    """Per-sample score ``output[b, class_index[b]]``, its features, d score / d features
    and d score / d x."""
    x = keras.ops.convert_to_tensor(np.asarray(x, np.float32))
    index = keras.ops.convert_to_tensor(np.asarray(class_index, np.int32))
    delta = keras.ops.zeros((x.shape[0], *tapped.feature_shape))

    def score(x, delta):
        output, features = tapped(x, delta)
        picked = keras.ops.take_along_axis(output, index[:, None], axis=1)[:, 0]
        return picked, features

    (value, features), (dx, dfeatures) = backend.value_and_grad(score, x, delta, has_aux=True)
    return value, features, dfeatures, dx


# --- the model the backends are compared on ---------------------------------------------


def small_convnet(head: str = "gap"):
    """conv-relu, conv-relu6, pool, conv-relu (ReLUs as layers), then a GAP or Flatten+Dense head; the features
    are a nested Sequential inside a Functional model."""
    features = keras.Sequential(
        [
            keras.Input(INPUT_SHAPE),
            keras.layers.Conv2D(4, 3, padding="same", name="conv1"),
            keras.layers.ReLU(name="relu1"),
            keras.layers.Conv2D(4, 3, padding="same", name="conv2"),
            keras.layers.ReLU(max_value=6.0, name="relu6"),
            keras.layers.MaxPooling2D(2, name="pool"),
            keras.layers.Conv2D(5, 3, padding="valid", name="conv3"),
            keras.layers.ReLU(name="relu3"),
        ],
        name="features",
    )
    inputs = keras.Input(INPUT_SHAPE)
    h = features(inputs)
    h = keras.layers.GlobalAveragePooling2D()(h) if head == "gap" else keras.layers.Flatten()(h)
    outputs = keras.layers.Dense(3, name="logits")(h)
    return keras.Model(inputs, outputs, name=f"small_{head}")


def seeded_weights(model, seed: int = 0) -> list[np.ndarray]:
    """Weights drawn with NumPy, the same whatever the backend (scaled so that some units
    of each ReLU are off and a few of the ReLU6 pass 6)."""
    rng = np.random.default_rng(seed)
    return [rng.normal(0.0, 0.6, w.shape).astype(np.float32) for w in model.get_weights()]


def seeded_images(batch: int = 3, seed: int = 1) -> np.ndarray:
    images = np.random.default_rng(seed).normal(0.0, 2.0, (batch, *INPUT_SHAPE)).astype(np.float32)
    images[-1] = 0.0  # an all-zero image: every gradient must stay finite
    return images


def _rule_model(model, rule):
    """``model`` replayed with every ReLU / ReLU6 layer under ``rule`` (same weights;
    the small convnet has its ReLUs as layers of their own)."""

    def substitute(layer):
        if isinstance(layer, keras.layers.ReLU):
            return backend.relu(rule, layer.max_value)
        return None

    return replay(model, INPUT_SHAPE, substitute=substitute).model


def key_numbers(weights: dict) -> dict:
    """Logits, input gradients under each ReLU rule (guided also compiled), and the feature
    gradient at relu3 (conv3 after its ReLU), of the small convnet with ``weights`` (both heads)."""
    images = seeded_images()
    index = np.array([0, 2, 1], np.int32)  # a different class per image
    out = {}
    for head in ("gap", "flatten"):
        model = small_convnet(head)
        model.set_weights(weights[head])
        out[f"{head}/logits"] = backend.to_numpy(model(images, training=False))
        for rule in backend.RULES:
            ruled = _rule_model(model, rule)

            def grad(x, ruled=ruled):
                def score(x):
                    return keras.ops.take_along_axis(ruled(x, training=False), index[:, None], axis=1)[:, 0]

                return backend.value_and_grad(score, x)

            out[f"{head}/{rule}/input_grad"] = backend.to_numpy(grad(images)[1][0])
            if rule == "guided":  # compiling is slow on JAX: once per head is enough
                compiled = backend.compile(grad, state=ruled)
                out[f"{head}/{rule}/input_grad_compiled"] = backend.to_numpy(compiled(images)[1][0])
        tapped = TappedModel(model, "features/relu3", INPUT_SHAPE)
        _, features, dfeatures, _ = tapped_gradients(tapped, images, index)
        out[f"{head}/relu3/features"] = backend.to_numpy(features)
        out[f"{head}/relu3/feature_grad"] = backend.to_numpy(dfeatures)
    return out


CAM_METHODS = ("GradCAM", "GradCAMPlusPlus", "LayerCAM", "ScoreCAM")
CAM_LAYER = "features/relu6"  # 8 x 8 x 4: the image's resolution, so Score-CAM's masks are the maps


def cam_numbers(weights: dict) -> dict:
    """Heatmaps (and channel weights) of Grad-CAM, Grad-CAM++, LayerCAM and Score-CAM at
    ``CAM_LAYER`` on the small convnet with ``weights`` (both heads), a different class
    per image and an all-zero image; keys start with ``cam/``."""
    from chollet_viz import cam

    images = seeded_images()
    index = [0, 2, 1]
    out = {}
    for head in ("gap", "flatten"):
        model = small_convnet(head)
        model.set_weights(weights[head])
        for name in CAM_METHODS:
            result = getattr(cam, name)(model, CAM_LAYER).explain(images, index)
            out[f"cam/{head}/{name}/heatmaps"] = result.heatmaps
            if result.weights.ndim == 2:  # per-channel weights (LayerCAM's are per position)
                out[f"cam/{head}/{name}/weights"] = result.weights
    return out


def main(weights_path: str, out_path: str) -> None:
    stored = np.load(weights_path)
    weights = {head: [stored[f"{head}/{i}"] for i in range(int(stored[f"{head}/n"]))] for head in ("gap", "flatten")}
    np.savez(out_path, backend=backend.name(), **key_numbers(weights), **cam_numbers(weights))


if __name__ == "__main__":
    main(*sys.argv[1:])
