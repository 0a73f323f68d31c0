"""Zeiler & Fergus deconvnet: unpooling, the transposed convolution, and the gradient views."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from chollet_viz import deconvnet as dc
from chollet_viz.data import AssetError

# A hand-made 4x4 map; its 2x2 windows have the unique maxima 5, 8, 9 and 7.
MAP = np.array([[1, 5, 2, 0], [3, 4, 8, 6], [0, 9, 7, 1], [2, 1, 3, 4]], dtype=np.float32)
UNPOOLED = np.array([[0, 5, 0, 0], [0, 0, 8, 0], [0, 9, 7, 0], [0, 0, 0, 0]], dtype=np.float32)


def _batch_of_two():
    """Two images of two channels: (MAP, MAP.T) and both rotated; the windows map onto windows."""
    first = np.stack([MAP, MAP.T], axis=-1)
    second = np.rot90(first, axes=(0, 1))
    expected = np.stack([np.stack([UNPOOLED, UNPOOLED.T], -1), np.rot90(np.stack([UNPOOLED, UNPOOLED.T], -1), axes=(0, 1))])
    return np.stack([first, second]), expected


def test_max_unpool_puts_each_value_at_its_argmax():
    x, expected = _batch_of_two()
    pooled, switches = dc.max_pool_with_switches(x)
    np.testing.assert_array_equal(pooled.numpy()[0, ..., 0], [[5, 8], [9, 7]])
    # A switch indexes inside its own image: (y * width + x) * channels + c; 5 is at (0, 1).
    assert int(switches[0, 0, 0, 0]) == (0 * 4 + 1) * 2 + 0
    np.testing.assert_array_equal(dc.max_unpool(pooled, switches, x.shape).numpy(), expected)
    mask = dc.switch_mask(switches, x.shape, 2)
    np.testing.assert_array_equal(dc.unpool_with_mask(pooled, mask, 2).numpy(), expected)


def test_max_unpool_is_the_gradient_of_max_pooling_with_overlapping_windows():
    # The seed's illustration: 2x2 windows at stride 1 overlap, so maxima are shared.
    x = tf.constant(np.random.default_rng(0).permutation(2 * 5 * 5 * 3).reshape(2, 5, 5, 3), tf.float32)
    g = tf.constant(np.random.default_rng(1).normal(size=(2, 4, 4, 3)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.nn.max_pool2d(x, 2, 1, "VALID")
    pooled, switches = dc.max_pool_with_switches(x, 2, 1)
    np.testing.assert_array_equal(pooled.numpy(), y.numpy())
    np.testing.assert_allclose(dc.max_unpool(g, switches, x.shape).numpy(), tape.gradient(y, x, g).numpy(), atol=1e-6)


@pytest.mark.parametrize(
    ("kernel_size", "strides", "padding"), [(3, 1, "same"), (3, 2, "same"), (3, 2, "valid"), (5, 1, "valid")]
)
def test_conv_transpose_is_the_adjoint_of_conv(kernel_size, strides, padding):
    rng = np.random.default_rng(kernel_size * 10 + strides)
    x = tf.constant(rng.normal(size=(2, 9, 8, 3)))  # float64
    kernel = tf.constant(rng.normal(size=(kernel_size, kernel_size, 3, 4)))
    y = tf.constant(rng.normal(size=dc.conv(x, kernel, strides, padding).shape))
    lhs = tf.reduce_sum(dc.conv(x, kernel, strides, padding) * y)
    rhs = tf.reduce_sum(x * dc.conv_transpose(y, kernel, x.shape, strides, padding))
    assert float(lhs) == pytest.approx(float(rhs), rel=1e-12)


def test_conv_transpose_is_the_adjoint_of_conv_in_float32():
    rng = np.random.default_rng(7)
    x = tf.constant(rng.normal(size=(1, 16, 16, 8)), tf.float32)
    kernel = tf.constant(rng.normal(size=(3, 3, 8, 16)), tf.float32)
    y = tf.constant(rng.normal(size=(1, 16, 16, 16)), tf.float32)
    lhs = float(tf.reduce_sum(dc.conv(x, kernel) * y))
    rhs = float(tf.reduce_sum(x * dc.conv_transpose(y, kernel, x.shape)))
    scale = float(tf.norm(x) * tf.norm(y))  # float32 rounding is relative to this, not to the sum
    assert abs(lhs - rhs) <= 1e-5 * scale


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
    images = np.random.default_rng(0).normal(size=(2, 18, 18, 3)).astype(np.float32)
    return model, dc.Deconvnet(model), images


def test_forward_with_switches_reproduces_the_keras_feature_maps(tiny):
    model, deconv, images = tiny
    assert deconv.pool_layers == ("pool1", "pool2", "pool3")
    expected = keras.Model(model.inputs[0], [model.get_layer(name).output for name in deconv.pool_layers])(images)
    for name, fmap in zip(deconv.pool_layers, expected):
        np.testing.assert_allclose(deconv.feature_map(images, name), fmap.numpy(), atol=1e-5)


@pytest.mark.parametrize("rule", dc.RULES)
def test_reconstruction_equals_the_gradient_under_the_same_relu_rule(tiny, rule):
    # Tolerance: 1e-5 of the largest magnitude (float32; the two routes run the same kernels).
    _, deconv, images = tiny
    reconstructions = deconv.reconstruct_all(images, rule=rule)
    gradients = deconv.gradient_all(images, rule=rule)
    for name in deconv.pool_layers:
        for mode in dc.MODES:
            got, expected = reconstructions[name][mode], gradients[name][mode]
            scale = np.abs(expected).max()
            assert scale > 0, (name, mode)
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * scale, err_msg=f"{name} {mode}")


def test_backprop_rule_equals_the_ordinary_gradient_of_the_keras_model(tiny):
    # Independent of the rebuilt forward pass: TensorFlow differentiates the model itself.
    model, deconv, images = tiny
    x = tf.constant(images)
    names = deconv.pool_layers
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        maps = keras.Model(model.inputs[0], [model.get_layer(name).output for name in names])(x)
    reconstructions = deconv.reconstruct_all(images, rule="backprop")
    for name, fmap in zip(names, maps):
        for mode in dc.MODES:
            expected = tape.gradient(fmap, x, output_gradients=dc.select_signal(fmap, mode)).numpy()
            got = reconstructions[name][mode]
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


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
    np.testing.assert_array_equal(deconv.reconstruct(x, "pool", rule="deconvnet"), np.zeros_like(x))
    np.testing.assert_array_equal(deconv.reconstruct(x, "pool", rule="guided"), expected_guided)
    np.testing.assert_array_equal(deconv.reconstruct(x, "pool", rule="backprop"), expected_guided)


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
    fmap = tf.constant(np.random.default_rng(3).uniform(size=(2, 3, 3, 4)), tf.float32)
    signal = dc.select_signal(fmap, "max").numpy()
    assert [np.count_nonzero(s) for s in signal] == [1, 1]
    np.testing.assert_array_equal(signal.max(axis=(1, 2, 3)), fmap.numpy().max(axis=(1, 2, 3)))
    only_channel_2 = dc.select_signal(fmap, "full", channel=2).numpy()
    assert np.count_nonzero(only_channel_2[..., [0, 1, 3]]) == 0
    dead = dc.select_signal(tf.zeros((1, 3, 3, 4)), "max").numpy()
    assert not dead.any()
    shown = dc.deprocess(np.zeros((4, 4, 3), np.float32))  # an all-zero reconstruction
    np.testing.assert_array_equal(shown, np.full((4, 4, 3), 0.5, np.float32))


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


def test_real_vgg16_blocks_1_and_2_reconstruction_equals_deconvnet_gradient(small_vgg16):
    deconv = dc.Deconvnet(small_vgg16)
    assert deconv.pool_layers == tuple(f"block{i}_pool" for i in range(1, 6))
    image = dc.preprocess_input(np.random.default_rng(0).uniform(0, 255, size=(1, 64, 64, 3)))
    layers = ("block1_pool", "block2_pool")
    reconstructions = deconv.reconstruct_all(image, layers)
    gradients = deconv.gradient_all(image, layers)
    for name in layers:
        expected = keras.Model(small_vgg16.inputs[0], small_vgg16.get_layer(name).output)(image).numpy()
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
