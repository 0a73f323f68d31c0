"""Train the book's small cats-vs-dogs convnet (section 5.2, with augmentation and dropout).

    python -m chollet_viz.train                # the book's recipe: 100 epochs of 100 steps
    python -m chollet_viz.train --epochs 2     # a quick smoke run

The recipe follows the book: 150x150 inputs rescaled to [0, 1]; rotation (40 degrees),
width and height shifts (0.2), shear (0.2 radians), zoom (0.2) and horizontal flips,
composed and resampled once as Keras 2.0's ImageDataGenerator did (see
``chollet_viz.augmentation``); RMSprop with learning rate 1e-4 and Keras 2's epsilon;
binary cross-entropy; batches of 32, 100 steps per epoch, 100 epochs; validation on the
1,000 validation images. The weights of the epoch with the best validation accuracy are
kept, as ``ModelCheckpoint(save_best_only=True)`` would keep them; the held-out test
split then measures them. Training is resumable: the model and optimizer state are backed
up after every epoch, and a stopped run continues where it stopped when the same command
is run again. The per-epoch history is written as JSON as it grows.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import keras

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "data"
# Keras 2's RMSprop divides by sqrt(v) + 1e-8; Keras 3's by sqrt(v + epsilon). With the
# Keras 3 default (1e-7) every weight whose squared gradients average below ~1e-7 takes
# steps several times shorter than the book's did; 1e-16 inside the root matches 1e-8 outside.
BOOK_RMSPROP_EPSILON = 1e-16


def training_datasets(batch_size: int, seed: int, augment: bool = True):
    import tensorflow as tf

    from .augmentation import random_book_transform
    from .datasets import dogs_vs_cats_arrays

    x_train, y_train = dogs_vs_cats_arrays("train")
    x_val, y_val = dogs_vs_cats_arrays("validation")

    def prepare(x, y):
        return tf.cast(x, tf.float32) / 255.0, y

    def transform(step, batch):
        x, y = batch
        if not augment:
            return x, y
        # Stateless per-batch seeds: the same run always sees the same augmented batches.
        return random_book_transform(x, tf.stack([tf.constant(seed, tf.int64), step])), y

    train = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .shuffle(len(y_train), seed=seed, reshuffle_each_iteration=True)
        .repeat()  # the book's generator loops forever; an epoch is steps_per_epoch batches
        .batch(batch_size)
        .map(prepare)
        .enumerate()
        .map(transform, num_parallel_calls=1)
        .prefetch(2)
    )
    val = tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(batch_size).map(prepare).cache()
    return train, val


class JsonHistory(keras.callbacks.Callback):
    """Keeps a JSON file of per-epoch metrics in step with the epochs training completed."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path

    def on_train_begin(self, logs=None):
        self.records = json.loads(self.path.read_text()) if self.path.exists() else []

    def on_epoch_end(self, epoch, logs=None):
        # A resumed run restarts after its last backup; drop records of later epochs.
        self.records = [r for r in self.records if r["epoch"] < epoch + 1]
        self.records.append({"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}})
        self.path.write_text(json.dumps(self.records, indent=1) + "\n")


def _without_optimizer(model: keras.Model) -> keras.Model:
    """A copy holding only the model's weights: ``save_weights`` of a compiled model also
    writes the optimizer state, which only resuming needs."""
    from .models import cats_and_dogs_small

    copy = cats_and_dogs_small()
    copy.set_weights(model.get_weights())
    return copy


class KeepBest(keras.callbacks.Callback):
    """Saves the weights of the epoch with the best validation accuracy so far.

    As ``ModelCheckpoint(save_best_only=True)`` (the first of equal scores wins), but a
    resumed run starts from the best score in the JSON history instead of forgetting it.
    """

    def __init__(self, path: Path, history_path: Path):
        super().__init__()
        self.path, self.history_path = path, history_path

    def on_train_begin(self, logs=None):
        records = json.loads(self.history_path.read_text()) if self.history_path.exists() else []
        scores = [r["val_accuracy"] for r in records]
        self.best = max(scores) if scores and self.path.exists() else -1.0

    def on_epoch_end(self, epoch, logs=None):
        if logs["val_accuracy"] > self.best:
            self.best = float(logs["val_accuracy"])
            _without_optimizer(self.model).save_weights(self.path)


def best_epoch(history: list[dict]) -> dict:
    """The record of the epoch whose weights ship: the first with the best val_accuracy."""
    return max(history, key=lambda r: (r["val_accuracy"], -r["epoch"]))


def train(
    epochs=100, steps_per_epoch=100, batch_size=32, seed=1337, out_dir=DEFAULT_OUT, register=None, augment=True
):
    """Train (or resume); keep the weights of the best validation epoch and register them.

    The weights saved are those of the epoch with the best validation accuracy (the
    validation split picks the epoch; the test split, never seen in training or in that
    choice, measures the result). The default output folder also registers them.
    ``augment=False`` trains on the plain images, as section 5.2 does before it augments.
    """
    from .models import cats_and_dogs_small

    out_dir = Path(out_dir)
    shipped = out_dir.resolve() == DEFAULT_OUT.resolve()
    if shipped and not augment:
        raise ValueError(
            f"Training without augmentation would replace the course's model in {DEFAULT_OUT}; "
            "choose another output folder (--out-dir runs/plain)."
        )
    if register is None:
        register = shipped
    out_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(seed)
    train_ds, val_ds = training_datasets(batch_size, seed, augment)
    weights = out_dir / "cats_and_dogs_small.weights.h5"
    history = out_dir / "cats_and_dogs_small_history.json"
    model = cats_and_dogs_small()
    model.compile(
        optimizer=keras.optimizers.RMSprop(learning_rate=1e-4, epsilon=BOOK_RMSPROP_EPSILON),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(
        train_ds,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        validation_data=val_ds,
        callbacks=[
            keras.callbacks.BackupAndRestore(str(out_dir / "training_backup"), delete_checkpoint=False),
            JsonHistory(history),
            KeepBest(weights, history),
        ],
        shuffle=False,  # the dataset shuffles itself
        verbose=2,
    )
    if register:
        from .data import register_project_file

        register_project_file(
            "cats_and_dogs_small",
            weights,
            f"The book's small convnet (section 5.2) trained by `python -m chollet_viz.train` "
            f"({epochs} epochs of {steps_per_epoch} steps, batch {batch_size}, seed {seed}); "
            f"the weights of its best validation epoch, {best_epoch(json.loads(history.read_text()))['epoch']}.",
        )
        register_project_file(
            "cats_and_dogs_small_history",
            history,
            "Per-epoch training and validation accuracy and loss of the shipped small convnet.",
        )
    return model


def evaluate(out_dir=DEFAULT_OUT, batch_size=32, register=None) -> dict:
    """Accuracy and loss of the saved weights on the validation and held-out test splits,
    with the epoch they come from when the training history is there.

    For the default output folder (or ``register=True``) the results are registered as
    ``cats_and_dogs_small_evaluation`` and quoted in the weights' registry description.
    """
    from .datasets import dogs_vs_cats_dataset
    from .models import cats_and_dogs_small

    out_dir = Path(out_dir)
    model = cats_and_dogs_small()
    model.load_weights(out_dir / "cats_and_dogs_small.weights.h5")
    model.compile(loss="binary_crossentropy", metrics=["accuracy"])
    results = {}
    for split in ("validation", "test"):
        ds = dogs_vs_cats_dataset(split, batch_size=batch_size).map(lambda x, y: (x / 255.0, y))
        loss, accuracy = model.evaluate(ds, verbose=0)
        results[split] = {"accuracy": round(float(accuracy), 4), "loss": round(float(loss), 4)}
    history = out_dir / "cats_and_dogs_small_history.json"
    if history.exists():
        results["epoch"] = best_epoch(json.loads(history.read_text()))["epoch"]
    path = out_dir / "cats_and_dogs_small_evaluation.json"
    path.write_text(json.dumps(results, indent=1) + "\n")
    if register is None:
        register = out_dir.resolve() == DEFAULT_OUT.resolve()
    if register:
        _register_accuracy(out_dir / "cats_and_dogs_small.weights.h5", path, results)
    return results


def _register_accuracy(weights: Path, evaluation: Path, results: dict) -> None:
    from .data import get_asset, register_project_file

    marker = " Accuracy of these weights:"
    base = get_asset("cats_and_dogs_small").description.split(marker)[0]
    accuracy = f"validation {results['validation']['accuracy']:.3f}, test {results['test']['accuracy']:.3f}."
    register_project_file("cats_and_dogs_small", weights, f"{base}{marker} {accuracy}")
    register_project_file(
        "cats_and_dogs_small_evaluation",
        evaluation,
        "Accuracy and loss of the shipped small convnet on the validation and held-out test "
        "splits, and the training epoch its weights come from (python -m chollet_viz.train --evaluate-only).",
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--steps-per-epoch", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--no-augmentation", action="store_true", help="train on the plain images")
    parser.add_argument("--evaluate-only", action="store_true", help="only evaluate the saved weights")
    args = parser.parse_args(argv)
    if not args.evaluate_only:
        train(args.epochs, args.steps_per_epoch, args.batch_size, args.seed, args.out_dir, augment=not args.no_augmentation)
    print(json.dumps(evaluate(args.out_dir, args.batch_size)))


if __name__ == "__main__":
    main()
