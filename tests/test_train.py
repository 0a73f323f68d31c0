"""The training script: the book's recipe, resumable, with a growing JSON history."""

import functools
import json

import numpy as np
import pytest

from chollet_viz import datasets, train

# Each training_datasets() call decodes the 3,000 training and validation JPEGs; the tests
# here call it six times. Decoded once for the module instead: the same arrays.
_decoded_once = functools.cache(datasets.dogs_vs_cats_arrays)


@pytest.fixture(autouse=True)
def _decode_once(monkeypatch):
    monkeypatch.setattr(datasets, "dogs_vs_cats_arrays", _decoded_once)


def test_training_batches_are_augmented_and_reproducible():
    def first_batches(seed, augment=True):
        train_ds, _ = train.training_datasets(batch_size=4, seed=seed, augment=augment)
        return [x.numpy() for x, _ in train_ds.take(2)]

    batches = first_batches(0)
    assert batches[0].shape == (4, 150, 150, 3) and batches[0].dtype == np.float32
    assert 0 <= batches[0].min() and batches[0].max() <= 1
    for again, first in zip(first_batches(0), batches):
        np.testing.assert_array_equal(again, first)
    # The same images, un-augmented: augmentation changes them, pixel for pixel.
    plain = first_batches(0, augment=False)
    assert all(np.isin(b, p).mean() > 0.99 for b, p in zip(batches, plain))  # resampled, not blended
    assert not any(np.array_equal(b, p) for b, p in zip(batches, plain))


def test_training_resumes_where_it_stopped(tmp_path, monkeypatch):
    # What is tested is the bookkeeping of epochs: two validation batches stand in for the
    # 1,000 validation images, whose forward passes made this test take minutes on PyTorch.
    full = train.training_datasets

    def two_validation_batches(*args, **kwargs):
        train_ds, val_ds = full(*args, **kwargs)
        return train_ds, val_ds.take(2)

    monkeypatch.setattr(train, "training_datasets", two_validation_batches)
    train.train(epochs=1, steps_per_epoch=1, batch_size=4, out_dir=tmp_path)
    history = json.loads((tmp_path / "cats_and_dogs_small_history.json").read_text())
    assert [r["epoch"] for r in history] == [1]
    assert (tmp_path / "training_backup").is_dir()
    # Asking for two epochs now runs only the second one, continuing the first run.
    train.train(epochs=2, steps_per_epoch=1, batch_size=4, out_dir=tmp_path)
    history = json.loads((tmp_path / "cats_and_dogs_small_history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2]
    assert {"accuracy", "loss", "val_accuracy", "val_loss"} <= set(history[-1])
    assert (tmp_path / "cats_and_dogs_small.weights.h5").is_file()


def test_evaluate_reports_both_held_out_splits(tmp_path, monkeypatch):
    import tensorflow as tf

    from chollet_viz.models import cats_and_dogs_small

    # Each split's first and last 8 images (cats come first, dogs last) stand in for its
    # 1,000: the same balance, and minutes less of forward passes on PyTorch.
    asked = []

    def sixteen_images(split, batch_size=32, **_):
        asked.append(split)
        files, labels = datasets.dogs_vs_cats_files(split)
        keep = [*range(8), *range(len(files) - 8, len(files))]
        assert labels[keep].mean() == 0.5
        images = np.stack([datasets.load_image(files[i], (150, 150)) for i in keep])
        return tf.data.Dataset.from_tensor_slices((images, labels[keep])).batch(batch_size)

    monkeypatch.setattr(datasets, "dogs_vs_cats_dataset", sixteen_images)
    # A known answer: a model that says "dog" (sigmoid(10)) for every image. The images are
    # balanced, so its accuracy is 0.5 and its loss is the mean of -log(sigmoid(10))
    # over dogs and -log(1 - sigmoid(10)) = 10 + log(1 + e^-10) over cats.
    model = cats_and_dogs_small()
    kernel, _ = model.get_layer("dense_2").get_weights()
    model.get_layer("dense_2").set_weights([np.zeros_like(kernel), np.array([10.0], dtype="float32")])
    model.save_weights(tmp_path / "cats_and_dogs_small.weights.h5")
    results = train.evaluate(tmp_path)
    assert asked == ["validation", "test"]
    expected_loss = (np.log1p(np.exp(-10.0)) + 10 + np.log1p(np.exp(-10.0))) / 2
    for split in ("validation", "test"):
        assert results[split]["accuracy"] == 0.5
        assert results[split]["loss"] == pytest.approx(expected_loss, abs=1e-3)
    saved = json.loads((tmp_path / "cats_and_dogs_small_evaluation.json").read_text())
    assert saved == results


def test_training_without_augmentation_refuses_to_replace_the_shipped_model():
    with pytest.raises(ValueError, match="--out-dir"):
        train.train(epochs=1, augment=False)


def test_keep_best_saves_only_improvements_and_remembers_them_on_resume(tmp_path):
    from chollet_viz.models import cats_and_dogs_small

    path, history = tmp_path / "best.weights.h5", tmp_path / "history.json"
    model = cats_and_dogs_small()
    keep = train.KeepBest(path, history)
    keep.set_model(model)
    keep.on_train_begin()

    def first_kernel():
        saved = cats_and_dogs_small()
        saved.load_weights(path)
        return saved.get_layer("conv2d_1").get_weights()[0]

    def shift_weights(delta):
        model.set_weights([w + delta for w in model.get_weights()])

    keep.on_epoch_end(0, {"val_accuracy": 0.6})
    saved_at_06 = first_kernel()
    shift_weights(1.0)
    keep.on_epoch_end(1, {"val_accuracy": 0.6})  # a tie is no improvement
    keep.on_epoch_end(2, {"val_accuracy": 0.5})
    np.testing.assert_array_equal(first_kernel(), saved_at_06)
    keep.on_epoch_end(3, {"val_accuracy": 0.7})
    np.testing.assert_allclose(first_kernel(), saved_at_06 + 1.0, atol=1e-6)

    # A resumed run reads the best score so far from the history, so a worse epoch after
    # the restart does not replace the saved weights.
    history.write_text(json.dumps([{"epoch": e, "val_accuracy": v} for e, v in [(1, 0.6), (2, 0.6), (3, 0.5), (4, 0.7)]]))
    resumed = train.KeepBest(path, history)
    resumed.set_model(model)
    resumed.on_train_begin()
    shift_weights(1.0)
    resumed.on_epoch_end(4, {"val_accuracy": 0.65})
    np.testing.assert_allclose(first_kernel(), saved_at_06 + 1.0, atol=1e-6)


def test_best_epoch_is_the_first_with_the_best_validation_accuracy():
    history = [{"epoch": e, "val_accuracy": v} for e, v in [(1, 0.5), (2, 0.8), (3, 0.7), (4, 0.8)]]
    assert train.best_epoch(history)["epoch"] == 2
