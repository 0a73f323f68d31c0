"""Activation models, channel ranking, input checks, dead-channel mosaics and the explorer."""

import base64
import io
import warnings

import matplotlib

matplotlib.use("Agg")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from keras import layers  # noqa: E402
from PIL import Image  # noqa: E402

from chollet_viz import plotting  # noqa: E402
from chollet_viz.activations import (  # noqa: E402
    activation_model,
    activations,
    channel_means,
    image_batch,
    layer_paths,
    rank_channels,
)
from chollet_viz.widgets.activations import ActivationExplorer, activation_explorer  # noqa: E402

KERNEL = np.array([[1.0, 0.0, -1.0], [2.0, 0.5, -2.0], [1.0, 0.0, -1.0]], dtype=np.float32)
BIAS = 0.25


def numpy_conv_relu(image, kernel, bias):
    """Valid 2-D cross-correlation of one channel (what Conv2D computes), then ReLU."""
    kh, kw = kernel.shape
    h, w = image.shape[0] - kh + 1, image.shape[1] - kw + 1
    out = np.array([[np.sum(image[i : i + kh, j : j + kw] * kernel) for j in range(w)] for i in range(h)])
    return np.maximum(out + bias, 0)


def numpy_maxpool2(x):
    h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
    return x[:h, :w].reshape(h // 2, 2, w // 2, 2).max(axis=(1, 3))


def known_conv_base(name="base", size=8):
    """Functional model: one 3x3 filter with a hand-set kernel, ReLU, 2x2 max-pooling."""
    inputs = keras.Input((size, size, 1))
    x = layers.Conv2D(1, 3, activation="relu", name="conv")(inputs)
    x = layers.MaxPooling2D(2, name="pool")(x)
    model = keras.Model(inputs, x, name=name)
    model.get_layer("conv").set_weights([KERNEL[:, :, None, None], np.array([BIAS], np.float32)])
    return model


@pytest.fixture
def digit():
    return np.random.default_rng(0).normal(size=(8, 8)).astype(np.float32)


def test_known_answer_conv_and_pool(digit):
    model = known_conv_base()
    conv, pool = activation_model(model, layers=["conv", "pool"])(digit[None, :, :, None])
    expected = numpy_conv_relu(digit, KERNEL, BIAS)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(conv)[0, :, :, 0], expected, atol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(pool)[0, :, :, 0], numpy_maxpool2(expected), atol=1e-5)


def test_sequential_model_follows_the_requested_order(digit):
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            layers.Conv2D(1, 3, activation="relu", name="conv"),
            layers.MaxPooling2D(2, name="pool"),
            layers.Flatten(name="flat"),
            layers.Dense(2, name="dense"),
        ]
    )
    model.get_layer("conv").set_weights([KERNEL[:, :, None, None], np.array([BIAS], np.float32)])
    got = activations(model, digit, layers=["dense", "conv"])
    assert list(got) == ["dense", "conv"]
    np.testing.assert_allclose(got["conv"][0, :, :, 0], numpy_conv_relu(digit, KERNEL, BIAS), atol=1e-5)
    np.testing.assert_allclose(got["dense"], keras.ops.convert_to_numpy(model(digit[None, :, :, None])), atol=1e-5)
    # Layer objects work as well as names, and the default is every layer.
    assert layer_paths(model, layers=model.layers[:2]) == ["conv", "pool"]
    assert layer_paths(model) == ["conv", "pool", "flat", "dense"]


def test_layers_of_a_nested_base_in_a_sequential_model(digit):
    base = known_conv_base()
    model = keras.Sequential([keras.Input((8, 8, 1)), base, layers.Flatten(name="flat"), layers.Dense(1, name="out")])
    with pytest.raises(ValueError):  # the naive way: the inner output is in another graph
        keras.Model(model.inputs, base.get_layer("conv").output)
    got = activations(model, digit, layers=["conv", "base/pool", "out"])
    assert list(got) == ["base/conv", "base/pool", "out"]  # keys are full paths
    expected = numpy_conv_relu(digit, KERNEL, BIAS)
    np.testing.assert_allclose(got["base/conv"][0, :, :, 0], expected, atol=1e-5)
    np.testing.assert_allclose(got["base/pool"][0, :, :, 0], numpy_maxpool2(expected), atol=1e-5)
    np.testing.assert_allclose(got["out"], keras.ops.convert_to_numpy(model(digit[None, :, :, None])), atol=1e-5)


def test_layers_two_levels_down_in_a_functional_model(digit):
    base = known_conv_base()
    middle = keras.Sequential([keras.Input((8, 8, 1)), base, layers.Flatten(name="flat")], name="middle")
    inputs = keras.Input((8, 8, 1))
    x = layers.Rescaling(2.0, name="double")(inputs)  # the nested base sees 2 * image
    outputs = layers.Dense(1, name="head")(middle(x))
    model = keras.Model(inputs, outputs, name="outer")
    got = activations(model, digit, layers=["middle/base/conv", "head"])
    np.testing.assert_allclose(got["middle/base/conv"][0, :, :, 0], numpy_conv_relu(2 * digit, KERNEL, BIAS), atol=1e-4)
    np.testing.assert_allclose(got["head"], keras.ops.convert_to_numpy(model(digit[None, :, :, None])), atol=1e-5)
    assert layer_paths(model, layer_types=(layers.Conv2D, layers.MaxPooling2D)) == ["middle/base/conv", "middle/base/pool"]


def test_a_nested_model_itself_can_be_tapped(digit):
    base = known_conv_base()
    inputs = keras.Input((8, 8, 1))
    x = layers.Rescaling(2.0, name="double")(inputs)
    model = keras.Model(inputs, layers.Flatten(name="flat")(base(x)), name="outer")
    got = activations(model, digit, layers=["base", "base/conv"])
    expected = numpy_conv_relu(2 * digit, KERNEL, BIAS)
    np.testing.assert_allclose(got["base"][0, :, :, 0], numpy_maxpool2(expected), atol=1e-4)
    np.testing.assert_allclose(got["base/conv"][0, :, :, 0], expected, atol=1e-4)


def test_same_name_in_two_nested_models_asks_for_a_path(digit):
    inputs = keras.Input((8, 8, 1))
    left, right = known_conv_base("left"), known_conv_base("right")
    model = keras.Model(inputs, layers.Add(name="sum")([left(inputs), right(-inputs)]))
    with pytest.raises(ValueError, match="ambiguous.*left/conv.*right/conv"):
        activation_model(model, layers=["conv"])
    got = activations(model, digit, layers=["right/conv", "left/conv"])
    np.testing.assert_allclose(got["left/conv"][0, :, :, 0], numpy_conv_relu(digit, KERNEL, BIAS), atol=1e-5)
    np.testing.assert_allclose(got["right/conv"][0, :, :, 0], numpy_conv_relu(-digit, KERNEL, BIAS), atol=1e-5)


def test_nested_sequential_built_without_input(digit):
    # Keras 3 builds a Sequential's graph only when it is first called: reach into it anyway.
    inner = keras.Sequential([layers.Conv2D(1, 3, activation="relu", name="conv")], name="inner")
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, layers.Flatten(name="flat")(inner(inputs)))
    inner.get_layer("conv").set_weights([KERNEL[:, :, None, None], np.array([BIAS], np.float32)])
    got = activations(model, digit, layers=["conv"])
    np.testing.assert_allclose(got["inner/conv"][0, :, :, 0], numpy_conv_relu(digit, KERNEL, BIAS), atol=1e-5)


def test_a_base_shared_by_two_models_is_read_in_the_right_one(digit):
    base = known_conv_base()
    built = {}
    for scale in (2.0, 3.0):  # the base is called once in each model's graph
        inputs = keras.Input((8, 8, 1))
        built[scale] = keras.Model(inputs, base(layers.Rescaling(scale)(inputs)))
    for scale, model in built.items():
        got = activations(model, digit, layers=["base/conv"])
        np.testing.assert_allclose(got["base/conv"][0, :, :, 0], numpy_conv_relu(scale * digit, KERNEL, BIAS), atol=1e-4)


def test_unknown_layer_name_lists_the_layers_that_exist():
    model = known_conv_base()
    with pytest.raises(ValueError, match="Model 'base' has no layer named 'conv_9'") as info:
        activation_model(model, layers=["conv", "conv_9"])
    assert "conv, pool" in str(info.value)


def test_bad_layer_arguments():
    model = known_conv_base()
    with pytest.raises(ValueError, match="no layer of type Dense.*Conv2D, MaxPooling2D"):
        activation_model(model, layer_types=layers.Dense)
    with pytest.raises(ValueError, match="either layers .* or layer_types"):
        activation_model(model, layers=["conv"], layer_types=layers.Conv2D)
    with pytest.raises(TypeError, match="Keras layer classes"):
        activation_model(model, layer_types=np.ndarray)
    with pytest.raises(ValueError, match="empty"):
        activation_model(model, layers=[])


def test_sequential_without_input_is_explained_then_works_once_built():
    model = keras.Sequential([layers.Conv2D(2, 3, name="conv")], name="unbuilt")
    with pytest.raises(ValueError, match=r"no defined input.*unbuilt\.build"):
        activation_model(model, layers=["conv"])
    model.build((None, 8, 8, 1))
    assert activation_model(model, layers=["conv"]).output_shape == (None, 6, 6, 2)


def test_rank_channels_by_mean():
    # Channel means 0.1, 3, 2, 3, -1: the tie (channels 1 and 3) keeps channel order.
    maps = np.ones((4, 4, 5), np.float32) * np.array([0.1, 3, 2, 3, -1], np.float32)
    np.testing.assert_allclose(channel_means(maps), [0.1, 3, 2, 3, -1], atol=1e-6)
    assert rank_channels(maps, top=3).tolist() == [1, 3, 2]
    assert rank_channels(maps[None], top=None).tolist() == [1, 3, 2, 0, 4]
    random = np.random.default_rng(1).random((7, 7, 64))
    brute = sorted(range(64), key=lambda c: -random[..., c].mean())[:5]
    assert rank_channels(random).tolist() == brute


@pytest.mark.parametrize("top", [0, -1, 2.5, True])
def test_rank_channels_rejects_bad_top(top):
    with pytest.raises(ValueError, match="positive integer"):
        rank_channels(np.zeros((2, 2, 3)), top=top)


def test_rank_channels_rejects_a_batch():
    with pytest.raises(ValueError, match="batch of 2"):
        rank_channels(np.zeros((2, 3, 3, 4)))


@pytest.fixture(scope="module")
def rgb_model():
    return keras.Sequential([keras.Input((6, 5, 3)), layers.Conv2D(1, 1, name="conv")], name="rgb")


def test_gray_and_rgba_arrays_become_rgb(rgb_model):
    gray = np.arange(30, dtype=np.float32).reshape(6, 5)
    for image in (gray, gray[..., None]):
        batch = image_batch(image, rgb_model)
        assert batch.shape == (1, 6, 5, 3)
        for c in range(3):
            np.testing.assert_array_equal(batch[0, :, :, c], gray)
    rgba = np.random.default_rng(2).integers(0, 256, (2, 6, 5, 4)).astype(np.uint8)
    batch = image_batch(rgba, rgb_model)
    assert batch.dtype == np.float32
    np.testing.assert_array_equal(batch, rgba[..., :3])


def test_rgb_becomes_gray_for_a_one_channel_model():
    model = keras.Sequential([keras.Input((4, 4, 1)), layers.Conv2D(1, 1, name="conv")])
    rgb = np.zeros((4, 4, 3), np.float32)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 100, 200, 50
    np.testing.assert_allclose(image_batch(rgb, model), np.full((1, 4, 4, 1), 0.299 * 100 + 0.587 * 200 + 0.114 * 50), rtol=1e-6)


@pytest.mark.parametrize(
    "shape, match",
    [
        ((6, 6, 3), r"shape \(6, 6, 3\) \(width 6, not 5\)"),
        ((7, 5), r"height 7, not 6"),
        ((6, 5, 2), "got 2 channels"),
        ((1, 1, 6, 5, 3), "got an array of shape"),
        ((0, 6, 5, 3), "got an array of shape"),
    ],
)
def test_wrong_shapes_are_rejected_with_the_expected_shape(rgb_model, shape, match):
    with pytest.raises(ValueError, match=match) as info:
        image_batch(np.zeros(shape), rgb_model)
    assert "(6, 5, 3)" in str(info.value)


def test_non_numeric_input_is_rejected(rgb_model):
    with pytest.raises(TypeError, match="numeric array"):
        image_batch([["a"]], rgb_model)


def test_image_files_are_resized_and_converted(tmp_path, rgb_model):
    gray = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10)
    Image.fromarray(gray, mode="L").save(tmp_path / "gray.png")
    rgba = np.random.default_rng(3).integers(0, 256, (12, 10, 4)).astype(np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    batch = image_batch(tmp_path / "gray.png", rgb_model)
    assert batch.shape == (1, 6, 5, 3)
    np.testing.assert_array_equal(batch[0, ..., 0], batch[0, ..., 2])
    # Nearest-neighbour halving (as keras.utils.load_img) keeps one pixel of each 2x2 block.
    assert set(np.unique(batch)).issubset(set(gray.ravel().astype(np.float32)))
    assert image_batch(str(tmp_path / "rgba.png"), rgb_model).shape == (1, 6, 5, 3)


def test_a_path_that_is_not_an_image(tmp_path, rgb_model):
    fake = tmp_path / "notes.jpg"
    fake.write_text("not a picture")
    with pytest.raises(ValueError, match="not an image file"):
        image_batch(fake, rgb_model)
    with pytest.raises(ValueError, match="is a folder"):
        image_batch(tmp_path, rgb_model)
    with pytest.raises(FileNotFoundError, match="neither an existing file nor a registered"):
        image_batch(tmp_path / "missing.jpg", rgb_model)


def test_preprocess_is_applied(digit):
    model = known_conv_base()
    got = activations(model, digit * 255, layers=["conv"], preprocess=lambda x: x / 255)
    np.testing.assert_allclose(got["conv"][0, :, :, 0], numpy_conv_relu(digit, KERNEL, BIAS), atol=1e-4)


# --- mosaics with dead channels (plotting.py, owned by the lead) ---------------------------


@pytest.fixture
def maps_with_dead_channels():
    maps = np.random.default_rng(4).random((5, 6, 20)).astype(np.float32)
    maps[..., 3] = 0.0  # a dead ReLU channel
    maps[..., 17] = 2.5  # constant but not zero
    return maps


def test_book_normalisation_warns_on_dead_channels(maps_with_dead_channels):
    # Shows that the warning guard below can fail: the book's formula divides by zero.
    dead = maps_with_dead_channels[..., 3]
    with pytest.warns(RuntimeWarning):
        (dead - dead.mean()) / dead.std()


def test_mosaic_of_dead_channels_is_blank_without_warnings(maps_with_dead_channels):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mosaic = plotting.channel_mosaic(maps_with_dead_channels[None], ncols=16)
        ax = plotting.show_mosaic(mosaic, title="dead channels")
        ax.figure.savefig(io.BytesIO(), format="png")
    assert mosaic.shape == (2 * 5, 16 * 6)  # 20 channels, 16 per row: rows computed, not fixed
    tiles = {c: mosaic[(c // 16) * 5 : (c // 16) * 5 + 5, (c % 16) * 6 : (c % 16) * 6 + 6] for c in range(20)}
    assert np.all(tiles[3] == 128) and np.all(tiles[17] == 128)
    live = [c for c in range(20) if c not in (3, 17)]
    assert all(tiles[c].std() > 10 for c in live)
    # The book's normalisation on a live channel: mean 128, std 64 before clipping to uint8.
    x = maps_with_dead_channels[..., 0]
    book = np.clip((x - x.mean()) / x.std() * 64 + 128, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(tiles[0], book)
    # Unused tiles at the end of the last row are filled, not garbage.
    assert np.all(mosaic[5:, 4 * 6 :] == 0)


def test_mosaic_of_an_all_dead_layer(maps_with_dead_channels):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mosaic = plotting.channel_mosaic(np.zeros((3, 3, 8), np.float32), ncols=16)
    assert mosaic.shape == (3, 8 * 3) and np.all(mosaic == 128)


# --- the explorer widget --------------------------------------------------------------


def decode_png(data):
    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.fixture
def explorer(maps_with_dead_channels):
    acts = {"early": maps_with_dead_channels[None], "late": np.random.default_rng(5).random((1, 3, 3, 4))}
    image = np.random.default_rng(6).integers(0, 256, (20, 24)).astype(np.float32)  # gray input
    return activation_explorer(acts, image=image, channel=3)


def test_explorer_changes_layer_and_channel(explorer):
    first = bytes(explorer.view.value)
    assert decode_png(first).ndim == 3
    assert explorer.channel_slider.max == 19 and explorer.channel == 3
    explorer.channel_slider.value = 5
    assert bytes(explorer.view.value) != first
    explorer.channel_slider.value = 12
    explorer.layer_menu.value = "late"
    assert explorer.channel_slider.max == 3 and explorer.channel == 3  # clamped to the new layer
    assert repr(explorer) == "ActivationExplorer(2 layers; showing late, channel 3)"


def test_explorer_bundle_has_the_widget_and_a_static_figure(explorer):
    bundle = explorer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"] == repr(explorer)
    stills = [mime for mime in ("image/png", "image/jpeg") if mime in bundle]
    assert len(stills) == 1  # one still image, the smaller kind (plotting.smaller_image)
    png = bytes(explorer.view.value)
    assert decode_png(png).shape[1] > decode_png(png).shape[0]  # three panels side by side
    still = base64.b64decode(bundle[stills[0]])
    if stills == ["image/png"]:
        assert still == png
    else:  # the same picture re-encoded: PIL decodes it to the PNG's size and close colours
        jpeg = np.asarray(Image.open(io.BytesIO(still)).convert("RGB"), dtype=float)
        reference = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=float)
        assert jpeg.shape == reference.shape and np.abs(jpeg - reference).mean() < 4


def test_explorer_figure_names_dead_channels(explorer):
    fig = explorer.figure()
    assert "dead" in fig.axes[1].get_title()
    explorer.channel_slider.value = 0
    assert "rank" in explorer.figure().axes[1].get_title()


def test_explorer_rejects_bad_arguments():
    with pytest.raises(ValueError, match="non-empty"):
        ActivationExplorer({})
    with pytest.raises(ValueError, match="Unknown layer 'x'.*a"):
        ActivationExplorer({"a": np.zeros((2, 2, 3))}, layer="x")
    with pytest.raises(ValueError, match="channels 0..2"):
        ActivationExplorer({"a": np.zeros((2, 2, 3))}, channel=3)
    with pytest.raises(ValueError, match="expected one image's activation"):
        ActivationExplorer({"a": np.zeros((2, 2, 2, 3))})


def test_explorer_converts_gray_pictures_and_rejects_two_channels():
    acts = {"a": np.ones((2, 2, 3))}
    gray = np.arange(16, dtype=np.float32).reshape(4, 4)
    explorer = ActivationExplorer(acts, image=gray)
    np.testing.assert_array_equal(explorer.image, np.repeat(gray[..., None], 3, axis=-1))
    with pytest.raises(ValueError, match=r"got 2 channels where 3 are needed.*RGBA \(4\)"):
        ActivationExplorer(acts, image=np.zeros((4, 4, 2)))
