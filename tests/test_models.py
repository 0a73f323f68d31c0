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
