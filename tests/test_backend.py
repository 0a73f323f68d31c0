"""chollet_viz.backend under whichever backend KERAS_BACKEND selects.

References the project did not write: gradients derived by hand and computed in float64
NumPy (d/dx sum x sin x; a convnet's input gradient from its weights), and the guided /
deconvnet rules as the papers state them, applied with NumPy to hand-made arrays.
float32 results are compared with atol 1e-5 relative to the reference's scale (rtol
1e-4) unless a test says otherwise.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from chollet_viz import backend

from _backend_cases import INPUT_SHAPE, TappedModel, seeded_weights, small_convnet, tapped_gradients

RTOL, ATOL = 1e-4, 1e-5


def close(actual, expected, rtol=RTOL, atol=ATOL):
    expected = np.asarray(backend.to_numpy(expected), np.float64)
    scale = max(1.0, float(np.abs(expected).max())) if expected.size else 1.0
    np.testing.assert_allclose(backend.to_numpy(actual), expected, rtol=rtol, atol=atol * scale)


def test_backend_is_supported():
    assert backend.name() == keras.backend.backend() in backend.BACKENDS


def test_no_backend_library_is_imported_at_module_level():
    # Importing the module must not pull TensorFlow (or JAX, PyTorch) into a process that
    # runs another backend: they are imported inside the functions of their backend only.
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(backend))
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {a.name.split(".")[0] for n in top if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in top if isinstance(n, ast.ImportFrom) and n.module}
    assert names.isdisjoint({"tensorflow", "jax", "torch"}), names


def test_unsupported_backend_error_names_the_valid_ones(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "numpy")
    with pytest.raises(RuntimeError, match="'numpy'.*tensorflow, jax, torch.*KERAS_BACKEND"):
        backend.value_and_grad(lambda x: x, np.ones(2, np.float32))


# --- value_and_grad ----------------------------------------------------------------------


def test_gradient_of_x_sin_x_per_sample():
    # d/dx sum_i x_i sin x_i = sin x + x cos x (by hand); each row is its own sample.
    x = np.array([[-2.0, -0.5, 0.0, 0.3], [1.0, 2.5, -3.0, 4.0]], np.float32)
    score, (grad,) = backend.value_and_grad(lambda t: keras.ops.sum(t * keras.ops.sin(t), axis=1), x)
    x64 = x.astype(np.float64)
    close(score, np.sum(x64 * np.sin(x64), axis=1))
    close(grad, np.sin(x64) + x64 * np.cos(x64))


def test_several_inputs_aux_and_an_unused_input():
    # f(a, b) = sum(a * b**2): df/da = b**2, df/db = 2ab (by hand); c is not used -> zeros.
    a = np.array([[1.0, -2.0]], np.float32)
    b = np.array([[3.0, 0.5]], np.float32)
    c = np.array([[7.0]], np.float32)

    def f(a, b, c):
        return keras.ops.sum(a * b**2, axis=1), {"b2": b**2}

    (score, aux), (ga, gb, gc) = backend.value_and_grad(f, a, b, c, has_aux=True)
    close(score, [9.0 - 0.5])
    close(aux["b2"], b.astype(np.float64) ** 2)
    close(ga, b.astype(np.float64) ** 2)
    close(gb, 2 * a.astype(np.float64) * b)
    close(gc, np.zeros_like(c))


def test_integer_input_is_refused_with_a_reason():
    with pytest.raises(TypeError, match="int32.*floating-point.*closure"):
        backend.value_and_grad(lambda x, k: x, np.ones(2, np.float32), np.array([1], np.int32))


def _conv_valid(x, kernel, bias):
    """float64 'valid' stride-1 NHWC convolution (cross-correlation, as Keras computes)."""
    kh, kw = kernel.shape[:2]
    b, h, w, _ = x.shape
    out = np.zeros((b, h - kh + 1, w - kw + 1, kernel.shape[3]))
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            out[:, i, j] = np.tensordot(x[:, i : i + kh, j : j + kw], kernel, axes=([1, 2, 3], [0, 1, 2]))
    return out + bias


def _conv_valid_input_grad(upstream, kernel, input_shape):
    """d (sum upstream * conv(x)) / dx: each output position spreads its kernel back."""
    kh, kw = kernel.shape[:2]
    grad = np.zeros(input_shape)
    for i in range(upstream.shape[1]):
        for j in range(upstream.shape[2]):
            grad[:, i : i + kh, j : j + kw] += np.einsum("bf,hwcf->bhwc", upstream[:, i, j], kernel)
    return grad


def _conv_dense_model(head):
    """Conv(3x3 valid, relu) -> GAP or Flatten -> Dense, the conv in a nested Sequential."""
    conv = keras.Sequential([keras.Input((5, 5, 2)), keras.layers.Conv2D(3, 3, activation="relu")], name="conv")
    inputs = keras.Input((5, 5, 2))
    h = conv(inputs)
    h = keras.layers.GlobalAveragePooling2D()(h) if head == "gap" else keras.layers.Flatten()(h)
    model = keras.Model(inputs, keras.layers.Dense(4)(h))
    rng = np.random.default_rng(3)
    model.set_weights([rng.normal(0, 0.7, w.shape).astype(np.float32) for w in model.get_weights()])
    return model


@pytest.mark.parametrize("head", ["gap", "flatten"])
def test_model_input_gradient_against_weights_by_hand(head):
    """score_b = logit of class k_b (a different class per image); by the chain rule
    d score / dx = conv^T((dense column k_b reshaped or spread by the GAP) * [pre > 0])."""
    model = _conv_dense_model(head)
    kernel, bias, dense, dense_bias = (w.astype(np.float64) for w in model.get_weights())
    x = np.random.default_rng(4).normal(0, 1, (3, 5, 5, 2)).astype(np.float32)
    x[2] = 0.0  # an all-zero image: the gradient is finite (the ReLU sees only the bias)
    index = np.array([2, 0, 3])

    pre = _conv_valid(x.astype(np.float64), kernel, bias)
    features = np.maximum(pre, 0)
    pooled = features.mean(axis=(1, 2)) if head == "gap" else features.reshape(3, -1)
    logits = pooled @ dense + dense_bias
    column = dense[:, index].T  # (b, features)
    upstream = (np.broadcast_to(column[:, None, None, :] / 9, pre.shape) if head == "gap" else column.reshape(pre.shape))
    expected = _conv_valid_input_grad(upstream * (pre > 0), kernel, x.shape)

    def score(t):
        return keras.ops.take_along_axis(model(t, training=False), keras.ops.convert_to_tensor(index[:, None]), axis=1)[:, 0]

    value, (grad,) = backend.value_and_grad(score, x)
    close(value, logits[np.arange(3), index])
    close(grad, expected)
    assert np.isfinite(backend.to_numpy(grad)).all()


def test_batch_independence():
    # Each image's gradient in a batch equals its gradient computed alone.
    model = _conv_dense_model("flatten")
    x = np.random.default_rng(5).normal(0, 1, (3, 5, 5, 2)).astype(np.float32)
    index = np.array([1, 3, 0])

    def gradient(images, classes):
        k = keras.ops.convert_to_tensor(classes[:, None])
        return backend.value_and_grad(lambda t: keras.ops.take_along_axis(model(t, training=False), k, axis=1)[:, 0], images)[1][0]

    together = backend.to_numpy(gradient(x, index))
    for b in range(3):
        close(together[b : b + 1], backend.to_numpy(gradient(x[b : b + 1], index[b : b + 1])), rtol=1e-5, atol=1e-6)


def test_all_zero_input_gives_finite_zero_gradient_through_relu():
    # relu(0) has gradient 0 by convention (TF, JAX and PyTorch agree): no NaN, all zero.
    for rule in backend.RULES:
        grad = backend.value_and_grad(lambda t: keras.ops.sum(backend.relu(rule, 6)(t), axis=1), np.zeros((2, 3), np.float32))[1][0]
        g = backend.to_numpy(grad)
        assert np.isfinite(g).all()
        expected = np.ones((2, 3)) if rule == "deconvnet" else np.zeros((2, 3))  # deconvnet ignores x
        close(g, expected)


# --- ReLU rules ------------------------------------------------------------------------

# x with negatives, zeros, values in (0, 6), exactly 6 and above 6; dy with both signs and zeros.
X = np.array([[-3.0, -0.0, 0.0, 0.5, 2.0, 5.9, 6.0, 7.5], [1.0, -1.0, 3.0, 8.0, 0.0, -2.0, 4.0, 6.5]], np.float32)
DY = np.array([[1.0, 2.0, -1.0, 3.0, -2.0, 0.5, 1.0, 2.0], [0.0, 1.0, 1.5, -1.0, 2.0, -3.0, -0.5, 4.0]], np.float32)


def _numpy_rule(rule, x, dy, max_value):
    """The rules as Springenberg et al. (guided) and Zeiler & Fergus (deconvnet) state them."""
    active = (x > 0) if max_value is None else (x > 0) & (x < max_value)
    if rule == "backprop":
        return dy * active
    if rule == "guided":
        return dy * (active & (dy > 0))
    return np.maximum(dy, 0)  # deconvnet: rectify the signal, whatever the forward input


@pytest.mark.parametrize("max_value", [None, 6.0])
@pytest.mark.parametrize("rule", backend.RULES)
def test_relu_rules_against_numpy(rule, max_value):
    f = backend.relu(rule, max_value)
    dy = keras.ops.convert_to_tensor(DY)
    x64 = X.astype(np.float64)
    forward = np.maximum(x64, 0) if max_value is None else np.clip(x64, 0, max_value)

    def score(t):
        y = f(t)
        return keras.ops.sum(y * dy, axis=1), y

    (_, y), (grad,) = backend.value_and_grad(score, X, has_aux=True)
    close(y, forward, rtol=0, atol=0)
    close(grad, _numpy_rule(rule, x64, DY.astype(np.float64), max_value), rtol=0, atol=0)
    compiled = backend.compile(lambda t: backend.value_and_grad(score, t, has_aux=True)[1][0])
    close(compiled(X), _numpy_rule(rule, x64, DY.astype(np.float64), max_value), rtol=0, atol=0)


def test_relu_rule_works_inside_a_functional_model():
    # As a layer's activation and as a layer in a model being built (symbolic tensors).
    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(8, activation=backend.relu("guided"), kernel_initializer="identity", use_bias=False)(inputs)
    model = keras.Model(inputs, backend.relu("deconvnet", 6)(hidden))
    dy = keras.ops.convert_to_tensor(DY)
    grad = backend.value_and_grad(lambda t: keras.ops.sum(model(t) * dy, axis=1), X)[1][0]
    # deconvnet's signal max(dy, 0) then guided's gate x > 0 and max(dy, 0) > 0.
    x64, dy64 = X.astype(np.float64), DY.astype(np.float64)
    close(grad, np.maximum(dy64, 0) * (x64 > 0), rtol=0, atol=0)


def test_unknown_rule_and_bad_max_value():
    with pytest.raises(ValueError, match="'guide'.*backprop.*guided.*deconvnet"):
        backend.relu("guide")
    with pytest.raises(ValueError, match="max_value must be positive"):
        backend.relu("guided", 0)


# --- compile --------------------------------------------------------------------------


def test_compiled_agrees_with_eager_and_follows_new_weights():
    model = small_convnet("flatten")
    model.set_weights(seeded_weights(model))
    x = np.random.default_rng(6).normal(0, 1, (2, *INPUT_SHAPE)).astype(np.float32)

    def grad(images, k):  # k is a Python int: static under jax.jit, a constant under tf.function
        return backend.value_and_grad(lambda t: model(t, training=False)[:, k], images)

    compiled = backend.compile(grad, state=model)
    for k in (0, 2):
        eager_score, (eager_grad,) = grad(x, k)
        score, (g,) = compiled(x, k)
        close(score, backend.to_numpy(eager_score), rtol=1e-5, atol=1e-6)
        close(g, backend.to_numpy(eager_grad), rtol=1e-5, atol=1e-6)
    # Weights changed after the first trace (as a sanity check's randomisation does):
    # the compiled function must see them, not constants baked in at tracing.
    model.set_weights([w * 0.5 for w in model.get_weights()])
    close(compiled(x, 0)[0], backend.to_numpy(grad(x, 0)[0]), rtol=1e-5, atol=1e-6)


def test_compiled_refuses_unhashable_arguments_clearly():
    compiled = backend.compile(lambda t, options: t * 2)
    if backend.name() != "jax":
        pytest.skip("only jax.jit needs hashable non-array arguments")
    with pytest.raises(TypeError, match="arrays or hashable"):
        compiled(np.ones(2, np.float32), [1, 2])


# --- an image being optimised ----------------------------------------------------------

TARGET = np.array([[0.5, -1.0, 2.0], [3.0, 0.0, -4.0]], np.float32)


def _closeness(x):
    """Score -sum (x - t)^2 per image; its gradient is -2 (x - t) (by hand)."""
    return -keras.ops.sum(keras.ops.subtract(x, TARGET) ** 2, axis=1)


def test_ascent_with_a_keras_optimizer_against_numpy_adam():
    """5 compiled Adam ascent steps; the reference is Adam as Keras computes it (Kingma &
    Ba, epsilon added to sqrt(v)) in float64 NumPy on the hand-derived gradient."""
    x0 = np.zeros((2, 3), np.float32)
    ascent = backend.Ascent(x0, keras.optimizers.Adam(learning_rate=0.1))
    scores = [backend.to_numpy(ascent.step(_closeness)) for _ in range(5)]

    ref, m, v = x0.astype(np.float64), 0.0, 0.0
    b1, b2, eps, lr = 0.9, 0.999, 1e-7, 0.1
    for t in range(1, 6):
        close(scores[t - 1], -np.sum((ref - TARGET) ** 2, axis=1))  # the score before the step
        g = 2 * (ref - TARGET)  # gradient of the loss, -score
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g**2
        ref = ref - lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)
    close(ascent.values[0], ref, rtol=1e-5, atol=1e-6)


def test_ascent_with_the_book_normalised_step_and_an_argument():
    """x += step * g / (rms(g) + 1e-5) per image (the book's update) with a step size
    passed as an array argument; NumPy float64 reference."""

    def update(grads, values):
        out = []
        for g, x in zip(grads, values):
            rms = keras.ops.sqrt(keras.ops.mean(g**2, axis=1, keepdims=True))
            out.append(x + g / (rms + 1e-5))
        return out

    def score(x, scale):
        return keras.ops.multiply(_closeness(x), scale)

    x0 = np.ones((2, 3), np.float32)
    ascent = backend.Ascent([x0], update)
    for _ in range(3):
        ascent.step(score, np.float32(2.0))
    ref = x0.astype(np.float64)
    for _ in range(3):
        g = -2 * (ref - TARGET) * 2.0
        ref = ref + g / (np.sqrt(np.mean(g**2, axis=1, keepdims=True)) + 1e-5)
    close(ascent.values[0], ref, rtol=1e-5, atol=1e-5)


def test_ascent_on_a_model_follows_its_weights():
    """score = w . x (a bias-free Dense unit), so g = w (by hand) and plain steps
    x += 0.1 g move x by 0.1 w each; after set_weights the same step uses the new w."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, use_bias=False)])
    w1, w2 = np.array([[1.0], [-2.0], [0.5]], np.float32), np.array([[0.0], [1.0], [3.0]], np.float32)
    model.set_weights([w1])
    ascent = backend.Ascent(np.zeros((1, 3), np.float32), lambda grads, values: [values[0] + 0.1 * grads[0]], state=model)

    def score(x):
        return model(x, training=False)[:, 0]

    for _ in range(2):
        ascent.step(score)
    model.set_weights([w2])
    ascent.step(score)
    close(ascent.values[0], 0.2 * w1.T.astype(np.float64) + 0.1 * w2.T, rtol=1e-6, atol=1e-6)


def test_ascent_refuses_a_non_optimizer():
    with pytest.raises(TypeError, match="Keras optimizer or a function"):
        backend.Ascent(np.zeros(2), optimizer="adam")


# --- the CAM family's feature gradient, as an input gradient --------------------------


@pytest.mark.parametrize("head", ["gap", "flatten"])
def test_feature_gradient_through_a_zero_offset(head):
    """d logit_k / d A for features A feeding the head directly, by hand:
    GAP: W[:, k] / (h w) at every position; Flatten: W[:, k] reshaped to A's shape."""
    model = small_convnet(head)
    model.set_weights(seeded_weights(model))
    tapped = TappedModel(model, "features/relu3", INPUT_SHAPE)
    x = np.random.default_rng(7).normal(0, 2, (3, *INPUT_SHAPE)).astype(np.float32)
    index = np.array([0, 2, 1])
    value, features, dfeatures, dx = tapped_gradients(tapped, x, index)

    dense = model.get_layer("logits").get_weights()[0].astype(np.float64)
    shape = tapped.feature_shape
    if head == "gap":
        expected = np.broadcast_to(dense[:, index].T[:, None, None, :] / (shape[0] * shape[1]), (3, *shape))
    else:
        expected = dense[:, index].T.reshape(3, *shape)
    close(dfeatures, expected)
    # The offset is zero: features and scores are the untouched model's.
    close(value, backend.to_numpy(model(x, training=False))[np.arange(3), index])
    close(features, model.get_layer("features")(x, training=False), rtol=1e-5, atol=1e-6)
    assert np.abs(backend.to_numpy(dx)).max() > 0  # the input gradient comes in the same pass
