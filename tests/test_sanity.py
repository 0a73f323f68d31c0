"""Tests of chollet_viz.cam.sanity, the cascading randomisation test of Adebayo et al. (2018).

References, per test: the re-initialisation is checked against the trained weights and
against the bound of the Glorot-uniform initializer (limit sqrt(6 / (fan_in + fan_out)),
Glorot & Bengio 2010) written out here; the Spearman values against float64 NumPy
re-derivations in each test (1 - 6 sum d^2 / (n (n^2 - 1)) without ties, Pearson
correlation of average ranks with ties); SSIM's identity case is exact. Tiny models
only; no trained model is needed.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest
from _autodiff import gradient

from chollet_viz.cam import sanity

TRAINED = 3.0  # "trained" weights start here: outside every Glorot bound of these models


def _glorot_limit(kernel_shape) -> float:
    # Keras' fan-in/fan-out of a dense (in, out) or conv (kh, kw, in, out) kernel.
    receptive = int(np.prod(kernel_shape[:-2])) if len(kernel_shape) > 2 else 1
    fan_in, fan_out = kernel_shape[-2] * receptive, kernel_shape[-1] * receptive
    return float(np.sqrt(6.0 / (fan_in + fan_out)))


def _pretend_trained(model, seed=0):
    """Weights no initializer of these layers could draw: |w| >= TRAINED (biases too)."""
    rng = np.random.default_rng(seed)
    model.set_weights([(TRAINED + rng.random(w.shape)).astype(np.float32) for w in model.get_weights()])
    return model


def tiny_sequential():
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3, activation="relu", name="conv_a"),
            keras.layers.MaxPooling2D(2, name="pool"),
            keras.layers.Conv2D(4, 3, activation="relu", name="conv_b"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(6, activation="relu", name="dense_a"),
            keras.layers.Dense(1, activation="sigmoid", name="dense_b"),
        ],
        name="tiny",
    )
    return _pretend_trained(model)


def tiny_nested():
    inner = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, activation="relu", name="conv_in")], name="inner"
    )
    x = keras.Input((8, 8, 3))
    y = inner(x)
    y = keras.layers.GlobalAveragePooling2D(name="gap")(y)
    y = keras.layers.Dense(3, activation="softmax", name="head")(y)
    return _pretend_trained(keras.Model(x, y, name="outer"))


def _by_layer(model):
    """{layer path: [weights]} of every weighted leaf layer."""
    from chollet_viz.replay import leaf_layers

    return {path: [np.array(w) for w in layer.get_weights()] for path, layer in leaf_layers(model) if layer.weights}


# --- which layers, in which order ----------------------------------------------------------


def test_weighted_layers_top_first_sequential_and_nested():
    assert sanity.weighted_layers(tiny_sequential()) == ["dense_b", "dense_a", "conv_b", "conv_a"]
    assert sanity.weighted_layers(tiny_nested()) == ["head", "inner/conv_in"]


@pytest.mark.parametrize("make", [tiny_sequential, tiny_nested])
def test_randomized_copy_reinitializes_exactly_the_top_k(make):
    model = make()
    order = sanity.weighted_layers(model)
    trained = _by_layer(model)
    for k in range(len(order) + 1):
        copy = _by_layer(sanity.randomized_copy(model, k, seed=0))
        for position, path in enumerate(order):
            kernel, bias = copy[path]
            if position < k:
                # Re-drawn by the layer's own initializers: Glorot-uniform kernel, zero bias.
                assert np.all(np.abs(kernel) <= _glorot_limit(kernel.shape) + 1e-7), (k, path)
                assert kernel.std() > 0, (k, path)
                np.testing.assert_array_equal(bias, 0)
            else:
                for new, old in zip(copy[path], trained[path]):
                    np.testing.assert_array_equal(new, old, err_msg=f"k={k}, {path} should be untouched")


def test_original_model_is_never_modified():
    model = tiny_sequential()
    before = [w.copy() for w in model.get_weights()]
    sanity.randomized_copy(model, 4, seed=0)
    for step in sanity.cascading_randomization(model, seed=0):
        assert step.model is not model
    for new, old in zip(model.get_weights(), before):
        np.testing.assert_array_equal(new, old)


def test_deterministic_with_the_seed_and_independent_of_k():
    model = tiny_sequential()
    a = sanity.randomized_copy(model, 4, seed=0).get_weights()
    b = sanity.randomized_copy(model, 4, seed=0).get_weights()
    c = sanity.randomized_copy(model, 4, seed=1).get_weights()
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    kernels = [i for i, w in enumerate(a) if w.ndim > 1]
    assert all(not np.array_equal(a[i], c[i]) for i in kernels)
    # A layer's random weights are the same whether it is the only one re-initialised or not.
    np.testing.assert_array_equal(_by_layer(sanity.randomized_copy(model, 1, 0))["dense_b"][0],
                                  _by_layer(sanity.randomized_copy(model, 4, 0))["dense_b"][0])


def test_cascade_steps_match_randomized_copies():
    model = tiny_sequential()
    order = sanity.weighted_layers(model)
    steps = []
    for step in sanity.cascading_randomization(model, seed=3):
        expected = sanity.randomized_copy(model, step.k, seed=3).get_weights()
        for x, y in zip(step.model.get_weights(), expected):
            np.testing.assert_array_equal(x, y)
        steps.append((step.k, step.layer))
    assert steps == [(0, None)] + [(i + 1, path) for i, path in enumerate(order)]


def test_bad_input_is_named():
    model = tiny_sequential()
    with pytest.raises(ValueError, match=r"k must be an integer in 0\.\.4"):
        sanity.randomized_copy(model, 5)
    with pytest.raises(ValueError, match="not built"):
        sanity.weighted_layers(keras.Sequential([keras.layers.Dense(2)]))
    with pytest.raises(TypeError, match="keras.Model"):
        sanity.weighted_layers("model")
    with pytest.raises(ValueError, match="same shape"):
        sanity.similarity(np.zeros((1, 4, 4)), np.zeros((1, 4, 5)))
    with pytest.raises(ValueError, match=r"one integer per image \(2\)"):
        sanity.cascading_test(model, {"gradient": _input_gradient}, np.zeros((2, 8, 8, 3)), [0, 1, 1])
    with pytest.raises(ValueError, match="at least one method"):
        sanity.cascading_test(model, {}, np.zeros((2, 8, 8, 3)))
    with pytest.raises(ValueError, match="non-empty batch"):
        sanity.cascading_test(model, {"gradient": _input_gradient}, np.zeros((0, 8, 8, 3)))
    with pytest.raises(ValueError, match="at least 7x7"):
        sanity.ssim(np.zeros((1, 6, 9)), np.zeros((1, 6, 9)))
    with pytest.raises(ValueError, match=r"\(batch, h, w\)"):
        sanity.as_maps(np.zeros((4, 4)))


class _Scale(keras.layers.Layer):
    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="w")

    def call(self, x):
        return x * self.w


def test_layer_without_initializer_attribute_is_named():
    x = keras.Input((3,))
    model = keras.Model(x, keras.layers.Dense(1)(_Scale(name="scale")(x)))
    with pytest.raises(ValueError, match=r"'scale' has a weight 'w' but no attribute 'w_initializer'"):
        sanity.randomized_copy(model, 2)


# --- similarity measures ------------------------------------------------------------------


def test_identical_maps_score_one():
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(2, 16, 16))
    sims = sanity.similarity(maps, maps.copy())
    for measure in sanity.MEASURES:
        np.testing.assert_allclose(sims[measure], 1.0, atol=1e-12, err_msg=measure)


def test_reversed_ranking_scores_minus_one():
    a = np.arange(64, dtype=np.float64).reshape(1, 8, 8) + 1.0  # positive: |a| = a
    sims = sanity.similarity(a, a.max() + 1 - a)  # positive, in reverse order
    np.testing.assert_allclose(sims["spearman_abs"], -1.0, atol=1e-12)
    np.testing.assert_allclose(sims["spearman"], -1.0, atol=1e-12)
    # The signed map's negative reverses the signed ranking and keeps the absolute one.
    sims = sanity.similarity(a, -a)
    np.testing.assert_allclose(sims["spearman"], -1.0, atol=1e-12)
    np.testing.assert_allclose(sims["spearman_abs"], 1.0, atol=1e-12)


def test_spearman_against_hand_computation():
    # No ties: rho = 1 - 6 sum d^2 / (n (n^2 - 1)) on the ranks, float64.
    a = np.array([[0.1, 0.7, 0.3], [0.9, 0.5, 0.2]])
    b = np.array([[0.2, 0.4, 0.1], [0.8, 0.9, 0.3]])
    rank = lambda v: np.argsort(np.argsort(v.ravel())).astype(np.float64) + 1  # noqa: E731
    d = rank(a) - rank(b)
    n = a.size
    expected = 1 - 6 * np.sum(d**2) / (n * (n**2 - 1))
    # By hand: ranks (1, 5, 3, 6, 4, 2) and (2, 4, 1, 5, 6, 3), sum d^2 = 12, n (n^2 - 1) = 210.
    assert expected == pytest.approx(1 - 6 * 12 / 210, abs=1e-15)
    assert sanity.spearman(a[None], b[None], absolute=False)[0] == pytest.approx(expected, abs=1e-12)
    assert sanity.spearman(a[None], b[None], absolute=True)[0] == pytest.approx(expected, abs=1e-12)  # a, b > 0

    # Signs and ties: Spearman is the Pearson correlation of the average ranks.
    s = np.array([[-3.0, 1.0, 2.0], [-1.0, 0.5, 2.0]])
    t = np.array([[1.0, -2.0, 3.0], [0.0, 0.5, -4.0]])

    def average_ranks(v):
        v = v.ravel()
        return np.array([np.sum(v < x) + (np.sum(v == x) + 1) / 2 for x in v])

    def pearson(x, y):
        x, y = x - x.mean(), y - y.mean()
        return np.sum(x * y) / np.sqrt(np.sum(x * x) * np.sum(y * y))

    signed = sanity.spearman(s[None], t[None], absolute=False)[0]
    absolute = sanity.spearman(s[None], t[None], absolute=True)[0]
    assert signed == pytest.approx(pearson(average_ranks(s), average_ranks(t)), abs=1e-12)
    assert absolute == pytest.approx(pearson(average_ranks(np.abs(s)), average_ranks(np.abs(t))), abs=1e-12)
    assert signed < 0 < absolute  # the signs decide here: the two measures disagree


def test_pixel_attributions_are_reduced_over_channels():
    attr = np.array([[[[1.0, -2.0, 0.5]], [[-1.0, -1.0, 3.0]]]])  # (1, 2, 1, 3)
    absolute, signed = sanity.as_maps(attr)
    np.testing.assert_array_equal(absolute, [[[3.5], [5.0]]])
    np.testing.assert_array_equal(signed, [[[-0.5], [1.0]]])


def test_normalisation_for_ssim_clips_at_the_99th_percentile():
    m = np.arange(100, dtype=np.float64).reshape(1, 10, 10)
    p99 = 98 + 0.01 * 1  # linear interpolation between the 99th and 100th values: 98 + 0.01 * (99 - 98)
    np.testing.assert_allclose(sanity.normalize_for_ssim(m), np.clip(m / p99, 0, 1), atol=1e-12)
    np.testing.assert_array_equal(sanity.normalize_for_ssim(np.full((1, 4, 4), 2.0)), 0)


def test_constant_maps_give_nan_spearman_without_warning_and_finite_ssim():
    zeros = np.zeros((1, 8, 8))
    other = np.random.default_rng(0).random((1, 8, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sims = sanity.similarity(zeros, other)
        same = sanity.similarity(zeros, zeros)
    assert np.isnan(sims["spearman"][0]) and np.isnan(sims["spearman_abs"][0])
    assert np.isfinite(sims["ssim"][0]) and sims["ssim"][0] < 0.5
    assert same["ssim"][0] == pytest.approx(1.0)


# --- the whole experiment -----------------------------------------------------------------


def _input_gradient(model):
    """Gradient of the class logit (the sigmoid's input, signed by the class) w.r.t. the image,
    by the backend's own autodiff (eager: the weights are read at every call)."""
    *body, last = model.layers

    def explain(images, classes):
        sign = keras.ops.convert_to_tensor((2.0 * np.asarray(classes) - 1).astype(np.float32))

        def score(x):
            h = x
            for layer in body:
                h = layer(h, training=False)
            return (keras.ops.matmul(h, last.kernel)[:, 0] + last.bias[0]) * sign

        return gradient(score, images)

    return explain


def test_cascading_test_result_shape_and_meaning():
    model = tiny_sequential()
    images = np.random.default_rng(0).random((3, 8, 8, 3)).astype(np.float32)
    seen = []

    def image_only(_model):  # an "edge detector": ignores the model entirely
        def explain(x, classes):
            seen.append(np.array(classes))
            return x.sum(axis=-1)

        return explain

    classes = np.array([1, 0, 1])
    result = sanity.cascading_test(
        model, {"image only": image_only, "gradient": _input_gradient}, images, classes, seed=0
    )
    assert result.methods == ["image only", "gradient"]
    assert result.layers == ["trained", "dense_b", "dense_a", "conv_b", "conv_a"]
    for measure in sanity.MEASURES:
        assert result.scores[measure].shape == (2, 5, 3)
        assert result.reference[measure].shape == (2, 3)
        # Step 0 compares the trained model's map with itself.
        np.testing.assert_allclose(result.scores[measure][:, 0], 1.0, atol=1e-12)
        # A map that ignores the model passes through the cascade unchanged.
        np.testing.assert_allclose(result.scores[measure][0], 1.0, atol=1e-12)
    # The class explained stays the one asked for at every step.
    assert all(np.array_equal(c, classes) for c in seen)
    np.testing.assert_array_equal(result.class_index, classes)
    # The input gradient of a fully re-initialised model is another map.
    assert np.nanmean(result.scores["spearman_abs"][1, -1]) < 0.9
    assert result.maps["gradient"].shape == (5, 3, 8, 8)
    rows = result.rows()
    assert len(rows) == 2 * 5 * 3
    assert rows[0] == {"method": "image only", "k": 0, "layer": "trained", "image": 0,
                       "spearman_abs": pytest.approx(1.0), "spearman": pytest.approx(1.0), "ssim": pytest.approx(1.0)}


def test_cascading_test_default_class_is_the_trained_top_class():
    model = tiny_sequential()
    images = np.random.default_rng(1).random((2, 8, 8, 3)).astype(np.float32)
    expected = (model.predict(images, verbose=0)[:, 0] > 0.5).astype(np.int32)
    result = sanity.cascading_test(model, {"gradient": _input_gradient}, images, reference=False, keep_maps=False)
    np.testing.assert_array_equal(result.class_index, expected)
    assert result.reference == {} and result.maps == {}


def test_mean_and_sem_skip_undefined_values():
    scores = np.array([[[1.0, 0.5, np.nan, 0.0]]])  # (1 method, 1 step, 4 images)
    result = sanity.SanityResult(["m"], ["trained"], np.zeros(4, np.int32),
                                 {m: scores for m in sanity.MEASURES})
    mean, sem, n = result.mean_and_sem("spearman")
    values = np.array([1.0, 0.5, 0.0])  # float64 by hand: mean 0.5, sample std 0.5, sem 0.5 / sqrt(3)
    assert n[0, 0] == 3
    assert mean[0, 0] == pytest.approx(values.mean(), abs=1e-12)
    assert sem[0, 0] == pytest.approx(values.std(ddof=1) / np.sqrt(3), abs=1e-12)
    with pytest.raises(ValueError, match="valid measures"):
        result.mean_and_sem("pearson")
