"""Zeiler & Fergus deconvnet: unpooling, the transposed convolution, and the gradient views.

Runs under every Keras backend. References, never computed with ``chollet_viz.backend``
or the module under test:
- a float64 NumPy re-derivation written here: max pooling with switches (first maximum
  of a window in row-major order, TensorFlow's padding rule), unpooling, the three ReLU
  rules and the transposed convolution as the explicit adjoint of the convolution;
- peer libraries where the backend has them: TensorFlow's ``max_pool_with_argmax``
  (TensorFlow only) and PyTorch's ``max_pool2d(return_indices=True)`` (PyTorch only);
- the backend's own autodiff (``tests/_autodiff.py``) for the ordinary gradient.
Tolerances: float32 results against float64 references within 1e-5 of the largest
magnitude (``_close``); switches and unpooled values exactly.
"""

import keras
import numpy as np
import pytest

from chollet_viz import deconvnet as dc
from chollet_viz.data import AssetError

from _autodiff import BACKEND, gradient
from _autodiff import numpy as to_numpy

# A hand-made 4x4 map; its 2x2 windows have the unique maxima 5, 8, 9 and 7.
MAP = np.array([[1, 5, 2, 0], [3, 4, 8, 6], [0, 9, 7, 1], [2, 1, 3, 4]], dtype=np.float32)
UNPOOLED = np.array([[0, 5, 0, 0], [0, 0, 8, 0], [0, 9, 7, 0], [0, 0, 0, 0]], dtype=np.float32)


def _close(got, expected, what=""):
    """float32 against a float64 reference: within 1e-5 of the reference's largest magnitude."""
    expected = np.asarray(expected, np.float64)
    scale = np.abs(expected).max()
    assert scale > 0, f"{what}: an all-zero reference cannot fail"
    np.testing.assert_allclose(to_numpy(got), expected, rtol=0, atol=1e-5 * scale, err_msg=what)


# --------------------------------------------------------------------------- NumPy reference


def _extent(size, k, s, padding):
    """Windows along one axis and the padding before the first one (TensorFlow's rule)."""
    if padding == "valid":
        return (size - k) // s + 1, 0
    out = -(-size // s)
    return out, max((out - 1) * s + k - size, 0) // 2


def np_pool(x, k, s, padding="valid"):
    """Max pooling by loops, float64; switches = flat index (y * W + x) * C + c of the
    first maximum of each window in row-major order (padded positions never count)."""
    b, h, w, c = x.shape
    oh, top = _extent(h, k, s, padding)
    ow, left = _extent(w, k, s, padding)
    pooled, switches = np.zeros((b, oh, ow, c)), np.zeros((b, oh, ow, c), np.int64)
    for n in range(b):
        for i in range(oh):
            for j in range(ow):
                rows = [r for r in range(i * s - top, i * s - top + k) if 0 <= r < h]
                cols = [q for q in range(j * s - left, j * s - left + k) if 0 <= q < w]
                for ch in range(c):
                    window = [(x[n, r, q, ch], r, q) for r in rows for q in cols]  # row-major
                    best = max(window, key=lambda t: t[0])  # max() keeps the first of equals
                    pooled[n, i, j, ch] = best[0]
                    switches[n, i, j, ch] = (best[1] * w + best[2]) * c + ch
    return pooled, switches


def np_unpool(values, switches, shape):
    b = values.shape[0]
    out = np.zeros((b, int(np.prod(shape))))
    for n in range(b):
        np.add.at(out[n], switches[n].ravel(), values[n].ravel())
    return out.reshape((b, *shape))


def _conv_padding(size, k, s, padding):
    if padding == "valid":
        return (size - k) // s + 1, 0
    out = -(-size // s)
    return out, max((out - 1) * s + k - size, 0) // 2


def np_conv(x, kernel, s=1, padding="same"):
    """Cross-correlation (what Conv2D computes) as a sum over kernel offsets, float64."""
    b, h, w, _ = x.shape
    kh, kw, _, cout = kernel.shape
    oh, top = _conv_padding(h, kh, s, padding)
    ow, left = _conv_padding(w, kw, s, padding)
    xp = np.zeros((b, (oh - 1) * s + kh, (ow - 1) * s + kw, x.shape[-1]))
    rows, cols = min(h, xp.shape[1] - top), min(w, xp.shape[2] - left)
    xp[:, top : top + rows, left : left + cols] = x[:, :rows, :cols]
    out = np.zeros((b, oh, ow, cout))
    for dy in range(kh):
        for dx in range(kw):
            out += xp[:, dy : dy + (oh - 1) * s + 1 : s, dx : dx + (ow - 1) * s + 1 : s] @ kernel[dy, dx]
    return out


def np_conv_transpose(y, kernel, in_shape, s=1, padding="same"):
    """The adjoint of ``np_conv``: every output value sent back to the inputs it read."""
    b, oh, ow, _ = y.shape
    h, w, cin = in_shape
    kh, kw = kernel.shape[:2]
    _, top = _conv_padding(h, kh, s, padding)
    _, left = _conv_padding(w, kw, s, padding)
    xp = np.zeros((b, (oh - 1) * s + kh, (ow - 1) * s + kw, cin))
    for dy in range(kh):
        for dx in range(kw):
            xp[:, dy : dy + (oh - 1) * s + 1 : s, dx : dx + (ow - 1) * s + 1 : s] += y @ kernel[dy, dx].T
    out = np.zeros((b, h, w, cin))
    rows, cols = min(h, xp.shape[1] - top), min(w, xp.shape[2] - left)
    out[:, :rows, :cols] = xp[:, top : top + rows, left : left + cols]
    return out


def np_relu_rule(signal, z, rule):
    if rule == "deconvnet":
        return np.maximum(signal, 0)
    if rule == "guided":
        return np.maximum(signal, 0) * (z > 0)
    return signal * (z > 0)


def np_signal(fmap, mode, channel=None):
    if channel is not None:
        fmap = fmap * (np.arange(fmap.shape[-1]) == channel)
    if mode == "full":
        return fmap
    flat = fmap.reshape(len(fmap), -1)
    keep = np.zeros_like(flat)
    keep[np.arange(len(flat)), flat.argmax(axis=1)] = 1
    return (flat * keep).reshape(fmap.shape)


def np_deconvnet(model_layers, images, stop, mode, rule, channel=None):
    """Zeiler & Fergus by hand, float64: forward with switches up to layer ``stop``, then
    unpool -> ReLU rule -> transposed convolution with each layer's own kernel."""
    x, record = images.astype(np.float64), []
    for layer in model_layers:
        if isinstance(layer, keras.layers.Conv2D):
            kernel = to_numpy(layer.kernel).astype(np.float64)
            z = np_conv(x, kernel, layer.strides[0], layer.padding) + to_numpy(layer.bias)
            record.append(("conv", layer, x.shape[1:], z))
            x = np.maximum(z, 0) if layer.activation.__name__ == "relu" else z
        else:
            pooled, switches = np_pool(x, layer.pool_size[0], layer.strides[0], layer.padding)
            record.append(("pool", layer, x.shape[1:], switches))
            x = pooled
        if layer.name == stop:
            break
    signal = np_signal(x, mode, channel)
    for kind, layer, shape, saved in reversed(record):
        if kind == "pool":
            signal = np_unpool(signal, saved, shape)
        else:
            if layer.activation.__name__ == "relu":
                signal = np_relu_rule(signal, saved, rule)
            kernel = to_numpy(layer.kernel).astype(np.float64)
            signal = np_conv_transpose(signal, kernel, shape, layer.strides[0], layer.padding)
    return x, signal


# --------------------------------------------------------------------------- pooling and switches


def _batch_of_two():
    """Two images of two channels: (MAP, MAP.T) and both rotated; the windows map onto windows."""
    first = np.stack([MAP, MAP.T], axis=-1)
    second = np.rot90(first, axes=(0, 1))
    expected = np.stack([np.stack([UNPOOLED, UNPOOLED.T], -1), np.rot90(np.stack([UNPOOLED, UNPOOLED.T], -1), axes=(0, 1))])
    return np.stack([first, second]), expected


def test_max_unpool_puts_each_value_at_its_argmax():
    x, expected = _batch_of_two()  # known answer: UNPOOLED written by hand
    pooled, switches = dc.max_pool_with_switches(x)
    np.testing.assert_array_equal(to_numpy(pooled)[0, ..., 0], [[5, 8], [9, 7]])
    # A switch indexes inside its own image: (y * width + x) * channels + c; 5 is at (0, 1).
    assert int(to_numpy(switches)[0, 0, 0, 0]) == (0 * 4 + 1) * 2 + 0
    np.testing.assert_array_equal(to_numpy(dc.max_unpool(pooled, switches, x.shape)), expected)
    mask = dc.switch_mask(switches, x.shape, 2)
    np.testing.assert_array_equal(to_numpy(dc.unpool_with_mask(pooled, mask, 2)), expected)


def _tied_maps():
    """Windows with ties: all-zero windows (as after a ReLU), two or four equal maxima at
    every pair of positions, on two images of three channels; sizes 6x6 and 7x7."""
    rng = np.random.default_rng(5)
    maps = []
    for size in (6, 7):
        x = rng.integers(0, 3, size=(2, size, size, 3)).astype(np.float32)  # many ties
        x[0, :2, :2, 0] = 0.0  # an all-zero window
        x[1, 2:4, 2:4, 1] = 2.0  # four equal maxima
        maps.append(x)
    return maps


@pytest.mark.parametrize(("k", "s", "padding"), [(2, 2, "valid"), (3, 2, "valid"), (3, 2, "same"), (2, 1, "valid"), (2, 2, "same")])
def test_switches_break_ties_at_the_first_maximum_in_row_major_order(k, s, padding):
    for x in _tied_maps():  # 6x6 and 7x7: odd sizes leave a row and a column out of 2x2 windows
        pooled, switches = dc.max_pool_with_switches(x, k, s, padding)
        expected_pooled, expected_switches = np_pool(x, k, s, padding)  # NumPy reference
        np.testing.assert_array_equal(to_numpy(pooled), expected_pooled)
        np.testing.assert_array_equal(to_numpy(switches), expected_switches)
        g = np.random.default_rng(1).normal(size=expected_pooled.shape).astype(np.float32)
        np.testing.assert_allclose(
            to_numpy(dc.max_unpool(g, switches, x.shape)), np_unpool(g, expected_switches, x.shape[1:]), rtol=0, atol=1e-6
        )
        if dc.windows_tile((k, k), (s, s), *x.shape[1:3]):
            mask = dc.switch_mask(switches, x.shape, k)
            np.testing.assert_array_equal(to_numpy(dc.unpool_with_mask(g, mask, k)), np_unpool(g, expected_switches, x.shape[1:]))


@pytest.mark.skipif(BACKEND != "tensorflow", reason="peer reference tf.nn.max_pool_with_argmax is TensorFlow's")
@pytest.mark.parametrize(("k", "s", "padding"), [(2, 2, "VALID"), (3, 2, "VALID"), (3, 2, "SAME"), (2, 1, "VALID")])
def test_switches_equal_tensorflows_max_pool_with_argmax_on_ties(k, s, padding):
    import tensorflow as tf

    for x in _tied_maps():
        pooled, switches = tf.nn.max_pool_with_argmax(x, k, s, padding, include_batch_in_index=False)
        got_pooled, got_switches = dc.max_pool_with_switches(x, k, s, padding.lower())
        np.testing.assert_array_equal(to_numpy(got_pooled), pooled.numpy())
        np.testing.assert_array_equal(to_numpy(got_switches), switches.numpy())


@pytest.mark.skipif(BACKEND != "torch", reason="peer reference torch.nn.functional.max_pool2d is PyTorch's")
@pytest.mark.parametrize(("k", "s"), [(2, 2), (3, 2), (2, 1)])
def test_switches_equal_torchs_max_pool2d_indices_on_ties(k, s):
    import torch

    for x in _tied_maps():
        pooled, indices = torch.nn.functional.max_pool2d(torch.tensor(x).permute(0, 3, 1, 2), k, s, return_indices=True)
        # PyTorch indexes y * W + x inside each channel plane; ours is (y * W + x) * C + c.
        channels = x.shape[-1]
        expected = indices.permute(0, 2, 3, 1).numpy() * channels + np.arange(channels)
        got_pooled, got_switches = dc.max_pool_with_switches(x, k, s)
        np.testing.assert_array_equal(to_numpy(got_pooled), pooled.permute(0, 2, 3, 1).numpy())
        np.testing.assert_array_equal(to_numpy(got_switches), expected)


@pytest.mark.parametrize(("k", "s"), [(2, 2), (3, 2), (2, 1)])
def test_max_unpool_is_the_backends_gradient_of_max_pooling_even_on_ties(k, s):
    # The reconstruction equals the gradient route only if the backend's max-pooling
    # gradient breaks ties as the switches do. Reference: the backend's own autodiff.
    for x in [*_tied_maps(), np.random.default_rng(0).permutation(2 * 5 * 5 * 3).reshape(2, 5, 5, 3).astype(np.float32)]:
        pooled, switches = dc.max_pool_with_switches(x, k, s)
        g = np.random.default_rng(1).normal(size=to_numpy(pooled).shape).astype(np.float32)
        g_tensor = keras.ops.convert_to_tensor(g)
        expected = gradient(lambda t: keras.ops.sum(keras.ops.max_pool(t, k, s, "valid") * g_tensor, axis=(1, 2, 3)), x)
        np.testing.assert_allclose(to_numpy(dc.max_unpool(g, switches, x.shape)), expected, rtol=0, atol=1e-6)


def test_bad_pooling_arguments_say_what_is_valid():
    with pytest.raises(ValueError, match=r"padding 'full'.*'valid' and 'same'"):
        dc.max_pool_with_switches(np.zeros((1, 4, 4, 1), np.float32), 2, 2, "full")
    with pytest.raises(ValueError, match="3-wide pooling window does not fit in a map 2 wide"):
        dc.max_pool_with_switches(np.zeros((1, 2, 2, 1), np.float32), 3, 1)


# --------------------------------------------------------------------------- transposed convolution


@pytest.mark.parametrize(
    ("kernel_size", "strides", "padding"),
    [(3, 1, "same"), (3, 2, "same"), (3, 2, "valid"), (5, 1, "valid"), (2, 2, "same"), (4, 2, "same"), (1, 3, "valid")],
)
def test_conv_and_conv_transpose_against_numpy(kernel_size, strides, padding):
    # Reference: the NumPy cross-correlation and its explicit adjoint, float64, on an odd
    # 9x8 input (strided windows do not fit exactly).
    rng = np.random.default_rng(kernel_size * 10 + strides)
    x = rng.normal(size=(2, 9, 8, 3)).astype(np.float32)
    kernel = rng.normal(size=(kernel_size, kernel_size, 3, 4)).astype(np.float32)
    expected_y = np_conv(x.astype(np.float64), kernel.astype(np.float64), strides, padding)
    _close(dc.conv(x, kernel, strides, padding), expected_y, "conv")
    y = rng.normal(size=expected_y.shape).astype(np.float32)
    expected = np_conv_transpose(y.astype(np.float64), kernel.astype(np.float64), x.shape[1:], strides, padding)
    _close(dc.conv_transpose(y, kernel, x.shape, strides, padding), expected, "conv_transpose")
    # The adjoint identity <conv(x), y> = <x, convT(y)>, float32 rounding relative to |x||y|.
    lhs = float(np.sum(to_numpy(dc.conv(x, kernel, strides, padding)) * y))
    rhs = float(np.sum(x * to_numpy(dc.conv_transpose(y, kernel, x.shape, strides, padding))))
    assert abs(lhs - rhs) <= 1e-5 * np.linalg.norm(x) * np.linalg.norm(y)


def test_conv_transpose_rejects_a_shape_the_convolution_cannot_have_read():
    kernel = np.ones((3, 3, 2, 4), np.float32)
    with pytest.raises(ValueError, match=r"map of size 4 does not come from a convolution \(kernel 3, stride 1"):
        dc.conv_transpose(np.ones((1, 4, 4, 4), np.float32), kernel, (9, 9, 2))


# --------------------------------------------------------------------------- the Deconvnet


def _tiny_vgg():
    """A seeded VGG-like chain: tiling pools (fast unpooling) and an overlapping one (scatter)."""
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((18, 18, 3)),
            keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv1"),
            keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv2"),
            keras.layers.MaxPooling2D(2, name="pool1"),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv3"),
            keras.layers.MaxPooling2D(3, strides=2, name="pool2"),  # 9x9 -> 4x4, windows overlap
            keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv4"),
            keras.layers.MaxPooling2D(2, name="pool3"),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ]
    )


@pytest.fixture(scope="module")
def tiny():
    model = _tiny_vgg()
    images = np.random.default_rng(0).normal(size=(2, 18, 18, 3)).astype(np.float32)  # two different images
    return model, dc.Deconvnet(model), images


def _keras_maps(model, names, images):
    return [to_numpy(m) for m in keras.Model(model.inputs[0], [model.get_layer(n).output for n in names])(images)]


def test_forward_with_switches_reproduces_the_keras_feature_maps(tiny):
    model, deconv, images = tiny
    assert deconv.pool_layers == ("pool1", "pool2", "pool3")
    for name, fmap in zip(deconv.pool_layers, _keras_maps(model, deconv.pool_layers, images)):
        np.testing.assert_allclose(deconv.feature_map(images, name), fmap, atol=1e-5)


@pytest.mark.parametrize("rule", dc.RULES)
def test_reconstruction_and_gradient_equal_the_numpy_deconvnet(tiny, rule):
    # Reference: np_deconvnet, the whole method re-derived in float64; a batch of two
    # different images, every pooling layer (tiling 2x2 and overlapping 3x3 stride 2).
    model, deconv, images = tiny
    reconstructions = deconv.reconstruct_all(images, rule=rule)
    gradients = deconv.gradient_all(images, rule=rule)
    for name in deconv.pool_layers:
        for mode in dc.MODES:
            _, expected = np_deconvnet(model.layers, images, name, mode, rule)
            _close(reconstructions[name][mode], expected, f"reconstruction {name} {mode}")
            _close(gradients[name][mode], expected, f"gradient {name} {mode}")


def test_one_channel_and_the_eager_path(tiny):
    model, deconv, images = tiny
    _, expected = np_deconvnet(model.layers, images, "pool2", "max", "guided", channel=3)  # NumPy reference
    _close(deconv.reconstruct(images, "pool2", "max", rule="guided", channel=3), expected, "reconstruct channel 3")
    _close(deconv.gradient(images, "pool2", "max", rule="guided", channel=3), expected, "gradient channel 3")
    eager = dc.Deconvnet(model, compile=False)
    _, expected = np_deconvnet(model.layers, images, "pool3", "full", "deconvnet")
    _close(eager.reconstruct(images, "pool3"), expected, "eager reconstruct")
    _close(eager.gradient(images, "pool3"), expected, "eager gradient")


def test_each_image_of_a_batch_is_reconstructed_on_its_own(tiny):
    _, deconv, images = tiny
    together = deconv.reconstruct_all(images, ("pool3",))["pool3"]["max"]
    for i in range(len(images)):
        alone = deconv.reconstruct(images[i], "pool3", "max")  # a single 3-D image gets a batch axis
        assert alone.shape == (1, 18, 18, 3)
        np.testing.assert_allclose(together[i], alone[0], rtol=0, atol=1e-6 * np.abs(alone).max())
    assert not np.allclose(together[0], together[1])  # the two images differ


def test_batches_of_changing_size(tiny):
    # After a few batch sizes tf.function traces with an unknown batch dimension: the
    # overlapping pool's switches and scatter must not need it. Reference: NumPy.
    model, deconv, _ = tiny
    rng = np.random.default_rng(8)
    for n in (1, 3, 4):
        images = rng.normal(size=(n, 18, 18, 3)).astype(np.float32)
        _, expected = np_deconvnet(model.layers, images, "pool3", "max", "guided")
        _close(deconv.reconstruct(images, "pool3", "max", rule="guided"), expected, f"batch of {n}")
        _close(deconv.gradient(images, "pool3", "max", rule="guided"), expected, f"gradient, batch of {n}")


def test_backprop_rule_equals_the_ordinary_gradient_of_the_keras_model(tiny):
    # Independent of the rebuilt forward pass: the backend differentiates the model itself.
    model, deconv, images = tiny
    reconstructions = deconv.reconstruct_all(images, rule="backprop")
    for name, fmap in zip(deconv.pool_layers, _keras_maps(model, deconv.pool_layers, images)):
        cut = keras.Model(model.inputs[0], model.get_layer(name).output)
        for mode in dc.MODES:
            signal = keras.ops.convert_to_tensor(np_signal(fmap, mode).astype(np.float32))
            expected = gradient(lambda t: keras.ops.sum(cut(t) * signal, axis=(1, 2, 3)), images)
            _close(reconstructions[name][mode], expected, f"{name} {mode}")


def test_odd_sizes_and_same_padded_pooling():
    # 17x17 input: a 2x2 'valid' pool drops the last row and column, a 3x3 stride-2 'same'
    # pool pads; neither tiles, so unpooling goes through the switches. Reference: NumPy.
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((17, 17, 2)),
            keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1"),
            keras.layers.MaxPooling2D(2, name="pool1"),  # 17 -> 8
            keras.layers.Conv2D(4, 3, padding="valid", activation="relu", name="conv2"),  # 8 -> 6
            keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool2"),  # 6 -> 3
            keras.layers.Conv2D(3, 3, strides=2, padding="same", activation="linear", name="conv3"),  # 3 -> 2
            keras.layers.MaxPooling2D(2, name="pool3"),  # 2 -> 1
        ]
    )
    images = np.random.default_rng(4).normal(size=(3, 17, 17, 2)).astype(np.float32)
    deconv = dc.Deconvnet(model)
    for name in deconv.pool_layers:
        fmap, expected = np_deconvnet(model.layers, images, name, "full", "deconvnet")
        np.testing.assert_allclose(deconv.feature_map(images, name), fmap, rtol=0, atol=1e-5 * np.abs(fmap).max())
        _close(deconv.reconstruct(images, name), expected, f"reconstruct {name}")
        _close(deconv.gradient(images, name), expected, f"gradient {name}")


def test_a_chain_nested_in_a_classifier_is_read_from_the_base():
    keras.utils.set_random_seed(6)
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(5, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(name="pool2")(x)
    base = keras.Model(inputs, x, name="base")
    classifier = keras.Sequential([keras.Input((12, 12, 3)), base, keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    images = np.random.default_rng(7).normal(size=(2, 12, 12, 3)).astype(np.float32)
    deconv = dc.Deconvnet(classifier)
    assert deconv.pool_layers == ("pool1", "pool2")
    _, expected = np_deconvnet(base.layers[1:], images, "pool2", "max", "deconvnet")  # NumPy reference
    _close(deconv.reconstruct(images, "base/pool2", "max"), expected, "nested, by path")
    _close(deconv.gradient(images, "pool2", "max"), expected, "nested, by name")


def test_known_answer_deconvnet_ignores_forward_masks_guided_keeps_them():
    # conv1 splits x into relu(x) and relu(-x), conv2 adds them: the model computes |x|,
    # pooled over the 2x2 image. The maximum |-3| is at (1, 0). Going back, the deconvnet
    # rule passes both halves and they cancel (1 - 1 = 0); guided backprop and the
    # ordinary gradient keep only the half that was on, giving d|x|/dx * 3 = -3 there.
    model = keras.Sequential(
        [
            keras.Input((2, 2, 1)),
            keras.layers.Conv2D(2, 1, activation="relu", use_bias=False, name="split"),
            keras.layers.Conv2D(1, 1, activation="relu", use_bias=False, name="join"),
            keras.layers.MaxPooling2D(2, name="pool"),
        ]
    )
    model.get_layer("split").set_weights([np.array([1.0, -1.0], np.float32).reshape(1, 1, 1, 2)])
    model.get_layer("join").set_weights([np.ones((1, 1, 2, 1), np.float32)])
    deconv = dc.Deconvnet(model)
    x = np.array([[1.0, -2.0], [-3.0, 0.5]], np.float32).reshape(1, 2, 2, 1)
    np.testing.assert_array_equal(deconv.feature_map(x, "pool"), [[[[3.0]]]])
    expected_guided = np.array([[0.0, 0.0], [-3.0, 0.0]], np.float32).reshape(1, 2, 2, 1)
    for route in (deconv.reconstruct, deconv.gradient):
        np.testing.assert_array_equal(route(x, "pool", rule="deconvnet"), np.zeros_like(x))
        np.testing.assert_array_equal(route(x, "pool", rule="guided"), expected_guided)
        np.testing.assert_array_equal(route(x, "pool", rule="backprop"), expected_guided)


def test_strongest_activation_reconstruction_stays_in_its_receptive_field(tiny):
    # pool1 unit (y, x) pools input rows 2y..2y+1; two 3x3 "same" convs widen that by 2
    # on each side, so its reconstruction lives in rows 2y-2 .. 2y+3 (and likewise columns).
    _, deconv, images = tiny
    fmap = deconv.feature_map(images[:1], "pool1")
    _, y, x, _ = dc.strongest_activation(fmap)
    top, bottom, left, right = dc.support_box(deconv.reconstruct(images[:1], "pool1", "max")[0])
    assert max(2 * y - 2, 0) <= top < bottom <= min(2 * y + 4, 18)
    assert max(2 * x - 2, 0) <= left < right <= min(2 * x + 4, 18)


def test_select_signal_keeps_one_activation_and_handles_dead_maps():
    fmap = np.random.default_rng(3).uniform(size=(2, 3, 3, 4)).astype(np.float32)
    signal = to_numpy(dc.select_signal(fmap, "max"))
    np.testing.assert_array_equal(signal, np_signal(fmap, "max"))  # NumPy reference
    assert [np.count_nonzero(s) for s in signal] == [1, 1]
    only_channel_2 = to_numpy(dc.select_signal(fmap, "full", channel=2))
    np.testing.assert_array_equal(only_channel_2, np_signal(fmap, "full", channel=2))
    assert np.count_nonzero(only_channel_2[..., [0, 1, 3]]) == 0
    dead = to_numpy(dc.select_signal(np.zeros((1, 3, 3, 4), np.float32), "max"))
    assert not dead.any() and not np.isnan(dead).any()
    shown = dc.deprocess(np.zeros((4, 4, 3), np.float32))  # an all-zero reconstruction
    np.testing.assert_array_equal(shown, np.full((4, 4, 3), 0.5, np.float32))


def test_a_dead_feature_map_reconstructs_to_zeros_without_nan():
    model = _tiny_vgg()
    deconv = dc.Deconvnet(model)
    images = np.full((1, 18, 18, 3), -1e3, np.float32)  # large negative input: most ReLUs are off
    for route in (deconv.reconstruct_all, deconv.gradient_all):
        for modes in route(images).values():
            for out in modes.values():
                assert np.isfinite(out).all()


def test_bad_names_list_the_valid_ones(tiny):
    _, deconv, images = tiny
    with pytest.raises(ValueError, match=r"'conv2'.*\['pool1', 'pool2', 'pool3'\]"):
        deconv.reconstruct(images, "conv2")
    with pytest.raises(ValueError, match=r"'block9_pool'.*\['pool1', 'pool2', 'pool3'\]"):
        deconv.gradient(images, "block9_pool")
    with pytest.raises(ValueError, match=r"'mean'.*\('full', 'max'\)"):
        deconv.reconstruct(images, "pool1", mode="mean")
    with pytest.raises(ValueError, match=r"'smooth'.*\('deconvnet', 'guided', 'backprop'\)"):
        deconv.reconstruct(images, "pool1", rule="smooth")
    with pytest.raises(ValueError, match=r"channel 8 is out of range.*0\.\.7"):
        deconv.reconstruct(images, "pool3", channel=8)
    with pytest.raises(ValueError, match=r"Expected images of shape \(batch, 18, 18, 3\), got \(2, 16, 16, 3\)"):
        deconv.reconstruct(images[:, :16, :16], "pool1")
    with pytest.raises(ValueError, match="no pooling|nothing to reconstruct"):
        dc.Deconvnet(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))


def test_preprocess_works_on_a_copy_and_round_trips():
    image = np.random.default_rng(0).integers(0, 256, size=(5, 5, 3)).astype(np.float32)
    before = image.copy()
    x = dc.preprocess_input(image)
    np.testing.assert_array_equal(image, before)
    np.testing.assert_allclose(x[0, 0], before[0, 0, ::-1] - dc.VGG16_BGR_MEAN, atol=1e-4)
    np.testing.assert_array_equal(dc.undo_preprocess(x), before.astype(np.uint8))


@pytest.fixture(scope="module")
def small_vgg16():
    from chollet_viz import models

    try:
        return models.vgg16(include_top=False, input_shape=(64, 64, 3))
    except AssetError as exc:
        pytest.skip(f"ImageNet VGG16 weights unavailable: {exc}")


def test_real_vgg16_block1_against_numpy_and_blocks_1_2_reconstruction_equals_gradient(small_vgg16):
    deconv = dc.Deconvnet(small_vgg16)
    assert deconv.pool_layers == tuple(f"block{i}_pool" for i in range(1, 6))
    image = dc.preprocess_input(np.random.default_rng(0).uniform(0, 255, size=(1, 64, 64, 3)))
    layers = ("block1_pool", "block2_pool")
    reconstructions = deconv.reconstruct_all(image, layers)
    gradients = deconv.gradient_all(image, layers)
    # Block 1 by the NumPy re-derivation (two convolutions and a pool at 64x64: cheap).
    _, expected = np_deconvnet(small_vgg16.layers[1:], image, "block1_pool", "max", "deconvnet")
    _close(reconstructions["block1_pool"]["max"], expected, "block1_pool max against NumPy")
    for name in layers:
        expected = to_numpy(keras.Model(small_vgg16.inputs[0], small_vgg16.get_layer(name).output)(image))
        np.testing.assert_allclose(deconv.feature_map(image, name), expected, rtol=1e-5, atol=1e-3)
        for mode in dc.MODES:
            scale = np.abs(gradients[name][mode]).max()
            np.testing.assert_allclose(reconstructions[name][mode], gradients[name][mode], rtol=0, atol=1e-5 * scale)


def test_a_branching_model_stops_the_chain_where_it_branches():
    inputs = keras.Input((8, 8, 3))
    side = keras.layers.Conv2D(2, 3, padding="same", name="side")(inputs)
    main = keras.layers.Conv2D(2, 3, padding="same", name="main")(inputs)
    pooled = keras.layers.MaxPooling2D(name="main_pool")(main)
    model = keras.Model(inputs, [side, pooled])
    # Walking model.layers in order would run "side" then "main" as if chained.
    with pytest.raises(ValueError, match="nothing to reconstruct"):
        dc.Deconvnet(model)
