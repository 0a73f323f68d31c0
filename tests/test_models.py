"""The book's small convnet, the ImageNet VGG16 conv base, and the MNIST CNN."""

import socket

import keras
import numpy as np
import pytest

from chollet_viz import models
from chollet_viz.data import AssetError

# (layer name, output shape without batch, parameters) as printed by the book's summary.
BOOK_SMALL_CONVNET = [
    ("conv2d_1", (148, 148, 32), 896),
    ("max_pooling2d_1", (74, 74, 32), 0),
    ("conv2d_2", (72, 72, 64), 18496),
    ("max_pooling2d_2", (36, 36, 64), 0),
    ("conv2d_3", (34, 34, 128), 73856),
    ("max_pooling2d_3", (17, 17, 128), 0),
    ("conv2d_4", (15, 15, 128), 147584),
    ("max_pooling2d_4", (7, 7, 128), 0),
    ("flatten", (6272,), 0),
    ("dropout", (6272,), 0),
    ("dense_1", (512,), 3211776),
    ("dense_2", (1,), 513),
]


def test_small_convnet_matches_the_book_layer_for_layer():
    model = models.cats_and_dogs_small()
    got = [(layer.name, tuple(layer.output.shape[1:]), layer.count_params()) for layer in model.layers]
    assert got == BOOK_SMALL_CONVNET
    assert model.count_params() == 3_453_121


@pytest.fixture(scope="module")
def vgg_base():
    return models.vgg16(include_top=False)


def test_vgg16_conv_base_has_the_imagenet_weights(vgg_base):
    assert vgg_base.count_params() == 14_714_688
    kernel, bias = vgg_base.get_layer("block1_conv1").get_weights()
    assert kernel[0, 0, 0, 0] == pytest.approx(0.42947057, abs=1e-7)
    assert bias[25] == pytest.approx(0.7446502, abs=1e-7)
    conv_layers = [layer.name for layer in vgg_base.layers if "conv" in layer.name]
    assert len(conv_layers) == 13


def test_vgg16_conv_base_accepts_an_input_shape():
    model = models.vgg16(include_top=False, input_shape=(64, 64, 3))
    assert tuple(model.output.shape[1:]) == (2, 2, 512)


def _online() -> bool:
    try:
        socket.create_connection(("storage.googleapis.com", 443), timeout=2).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(_online(), reason="checks the offline error; the network is reachable here")
def test_vgg16_head_offline_explains_why_and_prints_nothing(capsys):
    with pytest.raises(AssetError, match="classifier head is not available offline"):
        models.vgg16(include_top=True)
    # Keras' "Downloading data from ..." line of the failed attempt must not reach a chapter.
    assert capsys.readouterr().out == ""


def test_mnist_cnn_shapes():
    model = models.mnist_cnn()
    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in model.layers}
    assert shapes["conv_1"] == (28, 28, 16) and shapes["conv_2"] == (14, 14, 32)
    assert shapes["logits"] == (10,)
    logits = model(np.zeros((2, 28, 28, 1), dtype=np.float32))
    assert logits.shape == (2, 10)


def test_vgg16_preprocess_equals_keras_and_leaves_its_input_alone():
    images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    before = images.copy()
    expected = keras.applications.vgg16.preprocess_input(images.copy())
    np.testing.assert_allclose(np.asarray(models.vgg16_preprocess(images)), expected, atol=1e-4)
    np.testing.assert_array_equal(images, before)
    assert np.asarray(models.vgg16_preprocess(images.astype("uint8"))).dtype == np.float32


def _numpy_small_convnet(weights_file, images):
    """The small convnet's forward pass in float64 NumPy, on the arrays read straight from
    the shipped ``.weights.h5`` (Keras 3 stores each layer's variables under
    ``layers/<auto name>/vars/<i>``: conv2d, conv2d_1, ..., dense, dense_1, in layer order)."""
    import h5py

    with h5py.File(weights_file, "r") as f:
        var = lambda layer, i: np.asarray(f[f"layers/{layer}/vars/{i}"], np.float64)  # noqa: E731
        convs = [(var(n, 0), var(n, 1)) for n in ("conv2d", "conv2d_1", "conv2d_2", "conv2d_3")]
        dense = [(var(n, 0), var(n, 1)) for n in ("dense", "dense_1")]
    x = np.asarray(images, np.float64)
    for kernel, bias in convs:  # 3x3 "valid" cross-correlation (HWIO kernel), ReLU, 2x2 max pooling
        h, w = x.shape[1] - 2, x.shape[2] - 2
        x = sum(x[:, dy : dy + h, dx : dx + w] @ kernel[dy, dx] for dy in range(3) for dx in range(3)) + bias
        x = np.maximum(x, 0)
        h, w = h // 2, w // 2
        x = x[:, : 2 * h, : 2 * w].reshape(len(x), h, 2, w, 2, -1).max(axis=(2, 4))
    x = x.reshape(len(x), -1)  # Flatten: row-major over (height, width, channels)
    x = np.maximum(x @ dense[0][0] + dense[0][1], 0)  # Dropout is the identity at inference
    return 1 / (1 + np.exp(-(x @ dense[1][0] + dense[1][1])))


def test_trained_small_convnet_gives_the_shipped_weights_outputs_on_this_backend():
    """The shipped weights load on every Keras backend: the model's probabilities equal a
    float64 NumPy forward pass on the weight file's own arrays (float32 through four
    convolutions and a 6272x512 dense layer: within 1e-5)."""
    from chollet_viz.data import fetch
    from chollet_viz.datasets import dogs_vs_cats_files, load_image

    files, labels = dogs_vs_cats_files("test")
    chosen = [0, 1, len(files) - 2, len(files) - 1]  # two cats, two dogs
    assert list(labels[chosen]) == [0, 0, 1, 1]
    images = np.stack([load_image(files[i], (150, 150)) / 255 for i in chosen]).astype("float32")
    expected = _numpy_small_convnet(fetch("cats_and_dogs_small"), images)
    got = np.asarray(models.cats_and_dogs_small(pretrained=True).predict(images, verbose=0), np.float64)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    # Trained, not a constant: the four images get clearly different probabilities.
    assert np.ptp(expected) > 0.1
