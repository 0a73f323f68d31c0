"""Loaders for the course's data: single images, Dogs-vs-Cats, MNIST, ImageNet classes."""

from __future__ import annotations

import gzip
import json
import os
from functools import cache
from pathlib import Path

import numpy as np

from .data import AssetError, fetch

DOGS_VS_CATS_SPLITS = ("train", "validation", "test")
DOGS_VS_CATS_CLASSES = ("cats", "dogs")  # label 0 = cat, 1 = dog, as flow_from_directory gives


def load_image(path_or_name: str | os.PathLike, target_size=None) -> np.ndarray:
    """Load an RGB image as a float32 array of shape (height, width, 3), values 0..255.

    ``path_or_name`` is a file path or the name of a registered image asset such as
    ``"cat.1700.jpg"``. ``target_size=(height, width)`` resizes with nearest-neighbour
    interpolation, as ``keras.utils.load_img`` does. Grayscale and RGBA images are
    converted to RGB.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path_or_name)
    if not path.exists():
        try:
            path = fetch(str(path_or_name))
        except AssetError as exc:
            raise FileNotFoundError(
                f"{path_or_name!r} is neither an existing file nor a registered image asset. {exc}"
            ) from None
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            if target_size is not None:
                height, width = target_size
                img = img.resize((width, height), Image.NEAREST)
            return np.asarray(img, dtype=np.float32)
    except UnidentifiedImageError:
        raise ValueError(f"{path} is not an image file that Pillow can read.") from None


def dogs_vs_cats_files(split: str) -> tuple[list[Path], np.ndarray]:
    """File paths and labels (0 = cat, 1 = dog) of one split, cats first, in numeric order."""
    if split not in DOGS_VS_CATS_SPLITS:
        raise ValueError(f"Unknown split {split!r}; valid splits are {DOGS_VS_CATS_SPLITS}.")
    root = fetch("dogs_vs_cats")
    files, labels = [], []
    for label, cls in enumerate(DOGS_VS_CATS_CLASSES):
        names = sorted((root / split / cls).glob("*.jpg"), key=lambda p: int(p.stem.split(".")[1]))
        files += names
        labels += [label] * len(names)
    return files, np.asarray(labels, dtype=np.float32)


def dogs_vs_cats_arrays(split: str, image_size=(150, 150)) -> tuple[np.ndarray, np.ndarray]:
    """One split as (images, labels): uint8 images of shape (n, *image_size, 3)."""
    files, labels = dogs_vs_cats_files(split)
    images = np.stack([load_image(f, image_size).astype(np.uint8) for f in files])
    return images, labels


def dogs_vs_cats_dataset(split: str, image_size=(150, 150), batch_size=32, shuffle=False, seed=0):
    """One split as a ``tf.data.Dataset`` of (float32 images in 0..255, labels)."""
    import tensorflow as tf

    images, labels = dogs_vs_cats_arrays(split, image_size)
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    return ds.map(lambda x, y: (tf.cast(x, tf.float32), y)).batch(batch_size)


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_mnist(validation_size=2000, seed=0, online=None):
    """MNIST as ((x_train, y_train), (x_val, y_val)), uint8 images of shape (n, 28, 28).

    Online (the default when no mirror is set) this is ``keras.datasets.mnist``: its
    60,000 training digits, validated on its 10,000 test digits. Offline only the
    10,000-digit test set exists, so it is split with a fixed seed into
    ``10000 - validation_size`` training and ``validation_size`` validation digits.
    """
    from .data import mirror_dir

    if online is None:
        online = mirror_dir() is None
    if online:
        import keras

        (x_train, y_train), (x_val, y_val) = keras.datasets.mnist.load_data()
        return (x_train, y_train), (x_val, y_val)
    images = _read_idx(fetch("mnist_test_images"))
    labels = _read_idx(fetch("mnist_test_labels"))
    order = np.random.default_rng(seed).permutation(len(labels))
    val, train = order[:validation_size], order[validation_size:]
    return (images[train], labels[train]), (images[val], labels[val])


@cache
def imagenet_class_index() -> dict[int, tuple[str, str]]:
    raw = json.loads(fetch("imagenet_class_index.json").read_text())
    return {int(k): (v[0], v[1]) for k, v in raw.items()}


def imagenet_class_name(index: int) -> str:
    classes = imagenet_class_index()
    if index not in classes:
        raise ValueError(f"ImageNet class index {index} is out of range 0..{len(classes) - 1}.")
    return classes[index][1]


def decode_predictions(preds, top=5):
    """Top-``top`` ImageNet classes per row: lists of (wordnet id, name, score).

    Works like ``keras.applications.imagenet_utils.decode_predictions`` but reads the
    class index through the asset registry, so it also works offline.
    """
    preds = np.asarray(preds)
    if preds.ndim != 2 or preds.shape[1] != 1000:
        raise ValueError(f"Expected predictions of shape (batch, 1000), got {preds.shape}.")
    classes = imagenet_class_index()
    results = []
    for row in preds:
        best = np.argsort(row)[::-1][:top]
        results.append([(*classes[int(i)], float(row[i])) for i in best])
    return results
