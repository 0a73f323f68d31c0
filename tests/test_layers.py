"""Tests for chollet_viz.layers: finding layers (names, paths, nested and Sequential models,
errors that list what is valid) and the tapped and cut models every part of the package uses.

References, never computed by the module under test: a ``keras.Model`` built by hand on
the graph that holds the layer (the nested base's own graph), or the model's layers called
one after the other by hand. Same layers and weights on the same float32 input: the
tolerance is 1e-5 absolute (float32 rounding of a different graph layout).
"""

import keras
import numpy as np
import pytest
from keras import layers

from chollet_viz import activations as A
from chollet_viz import cam
from chollet_viz import deconvnet as dc
from chollet_viz import filters as F
from chollet_viz import layers as L

from _autodiff import numpy as to_numpy  # tensors of any backend (PyTorch: detached) as NumPy

ATOL = 1e-5


def images(n, size, channels=3, seed=0):
    return np.random.default_rng(seed).random((n, size, size, channels)).astype(np.float32)


def by_hand(model_layers, x, stop=None):
    """Call the layers one after the other (entering nothing): the output, and the output
    after layer ``stop``."""
    tapped = None
    for layer in model_layers:
        x = layer(x)
        if layer.name == stop:
            tapped = x
    return to_numpy(x), None if tapped is None else to_numpy(tapped)


@pytest.fixture(scope="module")
def conv_pool_base():
    """A conv-pool chain (as the deconvnet supports), on its own graph."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = layers.MaxPooling2D(name="pool1")(x)
    x = layers.Conv2D(6, 3, padding="same", activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(name="pool2")(x)
    return keras.Model(inputs, x, name="base")


@pytest.fixture(scope="module")
def classifier(conv_pool_base):
    """The base nested in a Sequential classifier with a Flatten + Dense head."""
    keras.utils.set_random_seed(1)
    return keras.Sequential(
        [keras.Input((16, 16, 3)), conv_pool_base, layers.Flatten(name="flat"), layers.Dense(3, name="logits")],
        name="classifier",
    )


@pytest.fixture(scope="module")
def mobilenet_in_sequential():
    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3), alpha=0.35, include_top=False)
    model = keras.Sequential(
        [keras.Input((96, 96, 3)), base, layers.GlobalAveragePooling2D(name="gap"), layers.Dense(2, name="logits")],
        name="pets",
    )
    return base, model


# --- the bug: filters reach a nested layer as activations and CAM do ----------------


def test_filters_reach_a_layer_of_mobilenetv2_nested_in_a_sequential(mobilenet_in_sequential):
    base, model = mobilenet_in_sequential
    name = "block_1_expand_relu"
    start = F.book_start(2, 96, seed=0)
    result = F.generate_patterns(model, name, [0, 1], size=96, steps=2, start=start, progress=False)
    assert result.images.shape == (2, 96, 96, 3) and result.labels == [0, 1]
    # Reference: the base's own graph, cut by hand. The first entry of the history is the
    # book's loss at the start, the filter's mean activation.
    reference = keras.Model(base.input, base.get_layer(name).output)
    maps = to_numpy(reference(start))
    np.testing.assert_allclose(result.history[0], [maps[0, ..., 0].mean(), maps[1, ..., 1].mean()], rtol=1e-5, atol=ATOL)
    assert not np.allclose(result.images, start)  # two steps moved the images
    assert F.conv_layer_names(model)[0] == f"{base.name}/Conv1"


def test_the_same_nested_layer_is_found_by_activations_cam_and_filters(mobilenet_in_sequential):
    base, model = mobilenet_in_sequential
    name = "block_1_expand_relu"
    x = images(2, 96, seed=3)
    expected = to_numpy(keras.Model(base.input, base.get_layer(name).output)(x))  # reference
    path = f"{base.name}/{name}"

    got = A.activations(model, x, layers=[name])
    assert list(got) == [path]
    np.testing.assert_allclose(got[path], expected, atol=ATOL)

    explainer = cam.GradCAM(model, name)
    explainer.explain(x)
    assert explainer.layer == path
    _, features = explainer.scored.logits_and_features(x)
    np.testing.assert_allclose(to_numpy(features), expected, atol=ATOL)

    for request in (name, path):  # by name and by path
        np.testing.assert_allclose(to_numpy(F.cut_model(model, [request])(x)), expected, atol=ATOL)


# --- one layer, four parts of the package --------------------------------------------------


def test_deconvnet_activations_cam_and_filters_agree_on_a_nested_conv_pool_base(classifier, conv_pool_base):
    x = images(2, 16, seed=4)
    _, expected = by_hand(conv_pool_base.layers[1:], x, stop="pool2")  # reference
    deconv = dc.Deconvnet(classifier)  # the chain is read from the nested base
    assert deconv.pool_layers == ("pool1", "pool2")
    np.testing.assert_allclose(deconv.feature_map(x, "pool2"), expected, atol=ATOL)
    np.testing.assert_allclose(A.activations(classifier, x, layers=["pool2"])["base/pool2"], expected, atol=ATOL)
    np.testing.assert_allclose(to_numpy(F.cut_model(classifier, ["base/pool2"])(x)), expected, atol=ATOL)
    explainer = cam.GradCAM(classifier, "pool2")
    explainer.explain(x)
    np.testing.assert_allclose(to_numpy(explainer.scored.logits_and_features(x)[1]), expected, atol=ATOL)
    assert explainer.layer == "base/pool2"


# --- the tapped and the cut model ----------------------------------------------------------


def test_tapped_model_of_a_sequential_convnet_with_a_flatten_dense_head():
    keras.utils.set_random_seed(2)
    model = keras.Sequential(
        [
            keras.Input((10, 10, 1)),
            layers.Conv2D(3, 3, activation="relu", name="conv1"),
            layers.MaxPooling2D(name="pool"),
            layers.Conv2D(4, 2, activation="relu", name="conv2"),
            layers.Flatten(name="flat"),
            layers.Dense(5, activation="softmax", name="probs"),
        ]
    )
    x = images(3, 10, channels=1, seed=5)
    out, tapped = by_hand(model.layers, x, stop="conv2")  # reference: the layers in order
    replayed = L.tapped_model(model, ["conv2"])
    got_out, got_tap = replayed.model(x)
    np.testing.assert_allclose(to_numpy(got_out), out, atol=ATOL)
    np.testing.assert_allclose(to_numpy(got_tap), tapped, atol=ATOL)
    assert replayed.shapes["flat"] == (None, 36)  # 3 x 3 x 4
    cut = L.cut_model(model, ["conv2", "pool"])
    got_conv2, got_pool = cut(x)
    np.testing.assert_allclose(to_numpy(got_conv2), tapped, atol=ATOL)
    np.testing.assert_allclose(to_numpy(got_pool), to_numpy(model.layers[1](model.layers[0](x))), atol=ATOL)
    assert "probs" not in [layer.name for layer in cut.layers]  # nothing after the deepest tap


def test_cut_model_leaves_out_the_rest_of_a_nested_base(mobilenet_in_sequential):
    base, model = mobilenet_in_sequential
    cut = L.cut_model(model, ["block_1_expand_relu"])
    names = {layer.name for layer in cut.layers}
    assert "Conv1" in names and "block_1_expand_relu" in names
    assert "block_2_expand" not in names and "out_relu" not in names and "logits" not in names


def test_path_lookup_two_levels_down_and_ambiguous_names():
    inner = keras.Sequential([keras.Input((6, 6, 2)), layers.Conv2D(2, 1, name="conv")], name="inner")
    left_in = keras.Input((6, 6, 2))
    left = keras.Model(left_in, inner(left_in), name="left")
    right_in = keras.Input((6, 6, 2))
    right = keras.Model(right_in, layers.Conv2D(2, 1, name="conv")(right_in), name="right")
    inputs = keras.Input((6, 6, 2))
    model = keras.Model(inputs, layers.Add(name="sum")([left(inputs), right(inputs)]), name="outer")
    path, layer = L.find_layer(model, "left/inner/conv")
    assert path == "left/inner/conv" and layer is inner.layers[0]
    assert L.find_layer(model, right.layers[-1])[0] == "right/conv"  # a Layer object
    assert L.find_layer(model, "inner")[0] == "left/inner"  # a nested model by name
    with pytest.raises(ValueError, match=r"'conv' is ambiguous in model 'outer': it names left/inner/conv, right/conv"):
        L.find_layer(model, "conv")
    x = images(1, 6, channels=2, seed=6)
    expected = to_numpy(inner.layers[0](x))  # reference: the layer called by hand
    np.testing.assert_allclose(to_numpy(L.cut_model(model, "left/inner/conv")(x)), expected, atol=ATOL)


# --- errors ------------------------------------------------------------------------------


def test_unknown_names_list_what_is_valid_with_close_matches_first(classifier):
    with pytest.raises(ValueError) as info:
        L.find_layer(classifier, "conv_2")
    message = str(info.value)
    assert message.startswith("Model 'classifier' has no layer named 'conv_2'; did you mean 'base/conv2'")
    assert "Its layers are: base, base/conv1, base/pool1, base/conv2, base/pool2, flat, logits." in message
    # Each part of the package says what is valid for it.
    with pytest.raises(ValueError, match=r"no layer named 'conv_2'; did you mean .*Its convolution layers are: base/conv1, base/conv2"):
        F.generate_patterns(classifier, "conv_2", [0], size=16, steps=1, progress=False)
    with pytest.raises(ValueError, match=r"no layer named 'conv_2'; did you mean .*4-D .* output: base/conv1 \(16, 16, 4\)"):
        cam.GradCAM(classifier, "conv_2")(images(1, 16))
    with pytest.raises(ValueError, match=r"no layer named 'pool_2'; did you mean 'base/pool2'.*\['pool1', 'pool2'\]"):
        dc.Deconvnet(classifier).feature_map(images(1, 16), "pool_2")
    with pytest.raises(ValueError, match=r"'base/conv2' is not a pooling layer.*\['pool1', 'pool2'\]"):
        dc.Deconvnet(classifier).feature_map(images(1, 16), "conv2")
    with pytest.raises(ValueError, match=r"has no layer named 'nothing_like_it'\. Its layers are"):
        L.find_layer(classifier, "nothing_like_it")  # no close match: no guess
    with pytest.raises(TypeError, match="string, an 'outer/inner' path or a Layer object"):
        L.find_layer(classifier, 3)


def test_a_sequential_model_without_input_gets_a_clear_error():
    model = keras.Sequential([layers.Conv2D(2, 3, name="conv")])
    with pytest.raises(ValueError, match=r"no defined input yet.*keras\.Input"):
        L.cut_model(model, ["conv"])


def test_the_old_import_paths_still_work():
    from chollet_viz import replay as old

    assert old.replay is L.replay and old.leaf_layers is L.leaf_layers and old.is_container is L.is_container
    assert F.cut_model is not None and A.layer_paths is L.layer_paths
