"""Dataset and image loaders, and offline ImageNet decoding."""

import numpy as np
import pytest
from PIL import Image

from chollet_viz import datasets


def test_class_index_decodes_386_as_african_elephant():
    assert datasets.imagenet_class_name(386) == "African_elephant"
    assert datasets.imagenet_class_index()[386] == ("n02504458", "African_elephant")


def test_decode_predictions_orders_by_score():
    preds = np.zeros((2, 1000), dtype=np.float32)
    preds[0, [386, 101, 385]] = [0.9, 0.08, 0.02]
    preds[1, 281] = 1.0
    top = datasets.decode_predictions(preds, top=3)
    assert [name for _, name, _ in top[0]] == ["African_elephant", "tusker", "Indian_elephant"]
    assert top[0][0][2] == pytest.approx(0.9)
    assert top[1][0][1] == "tabby"


def test_decode_predictions_rejects_wrong_shape():
    with pytest.raises(ValueError, match=r"\(batch, 1000\).*\(1000,\)"):
        datasets.decode_predictions(np.zeros(1000))


def test_imagenet_class_out_of_range():
    with pytest.raises(ValueError, match="0..999"):
        datasets.imagenet_class_name(1000)


def test_load_registered_image_with_keras_resizing():
    full = datasets.load_image("cat.1700.jpg")
    assert full.shape == (333, 324, 3) and full.dtype == np.float32
    small = datasets.load_image("cat.1700.jpg", target_size=(150, 150))
    assert small.shape == (150, 150, 3)
    import keras

    reference = keras.utils.img_to_array(keras.utils.load_img(datasets.fetch("cat.1700.jpg"), target_size=(150, 150)))
    np.testing.assert_array_equal(small, reference)


@pytest.mark.parametrize("mode", ["L", "RGBA"])
def test_gray_and_rgba_images_become_rgb(tmp_path, mode):
    path = tmp_path / f"img_{mode}.png"
    Image.new(mode, (8, 6), color=200 if mode == "L" else (10, 20, 30, 128)).save(path)
    image = datasets.load_image(path)
    assert image.shape == (6, 8, 3)


def test_path_that_is_not_an_image(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not an image")
    with pytest.raises(ValueError, match="not an image"):
        datasets.load_image(path)


def test_missing_image_names_the_problem():
    with pytest.raises(FileNotFoundError, match="neither an existing file nor a registered image"):
        datasets.load_image("no_such_picture.jpg")


def test_dogs_vs_cats_split_sizes_and_labels():
    for split, n in [("train", 2000), ("validation", 1000), ("test", 1000)]:
        files, labels = datasets.dogs_vs_cats_files(split)
        assert len(files) == n and labels.sum() == n // 2
        assert files[0].name.startswith("cat.") and files[-1].name.startswith("dog.")
    files, _ = datasets.dogs_vs_cats_files("validation")
    assert files[0].name == "cat.1000.jpg" and files[-1].name == "dog.1499.jpg"
    with pytest.raises(ValueError, match="valid splits"):
        datasets.dogs_vs_cats_files("training")


def test_dogs_vs_cats_dataset_batches():
    ds = datasets.dogs_vs_cats_dataset("test", batch_size=8)
    images, labels = next(iter(ds))
    assert images.shape == (8, 150, 150, 3) and labels.shape == (8,)
    assert float(images.numpy().max()) <= 255.0


def test_offline_mnist_split_is_seeded_and_disjoint():
    (x_train, y_train), (x_val, y_val) = datasets.load_mnist(validation_size=2000, seed=0, online=False)
    assert x_train.shape == (8000, 28, 28) and x_val.shape == (2000, 28, 28)
    counts = np.bincount(np.concatenate([y_train, y_val]), minlength=10)
    assert counts.tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    (x_again, _), _ = datasets.load_mnist(validation_size=2000, seed=0, online=False)
    np.testing.assert_array_equal(x_train, x_again)
    train_rows = {row.tobytes() for row in x_train.reshape(8000, -1)}
    assert sum(row.tobytes() in train_rows for row in x_val.reshape(2000, -1)) == 0
