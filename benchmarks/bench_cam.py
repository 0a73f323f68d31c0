"""Grad-CAM latency and throughput against a bare forward pass of the same model.

    python benchmarks/bench_cam.py [--models vgg16-gap,efficientnet] [--repeats 7] [--batch 32]

For each model, in the same run: one compiled forward pass (the floor: Grad-CAM needs a
forward pass plus a partial backward pass), ``chollet_viz.cam.GradCAM`` compiled and
eager, and tf-keras-vis ``Gradcam`` when it is installed (not a project dependency),
with the largest heatmap difference to ours. Measurements of the methods alternate
within each repetition so that a change of machine load hits them alike; medians are
reported. Then throughput for a batch of ``--batch`` images.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from chollet_viz import cam, datasets, models  # noqa: E402

from _common import median_seconds, peak_rss_mb  # noqa: E402


def vgg16_gap():
    """ImageNet VGG16 conv base + global average pooling + a dense layer (2 classes)."""
    keras.utils.set_random_seed(0)
    base = models.vgg16(include_top=False, input_shape=(224, 224, 3))
    # Built flat on the base's own graph: tf-keras-vis cannot reach into a nested model
    # ("Output ... is not connected to inputs"); chollet_viz.cam handles both.
    x = keras.layers.GlobalAveragePooling2D()(base.output)
    model = keras.Model(base.input, keras.layers.Dense(2, activation="softmax")(x))
    preprocess = keras.applications.vgg16.preprocess_input
    return model, "block5_conv3", preprocess


def efficientnet():
    from chollet_viz.efficientnet import preprocess_input

    return models.efficientnet_lite0(), "head_relu", preprocess_input


MODELS = {"vgg16-gap": vgg16_gap, "efficientnet": efficientnet}


def tf_keras_vis_gradcam(model, layer):
    try:
        from tf_keras_vis.gradcam import Gradcam
        from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
        from tf_keras_vis.utils.scores import CategoricalScore
    except ImportError:
        return None
    # Explain the logit as we do: tf-keras-vis swaps the final activation on a clone.
    gradcam = Gradcam(model, model_modifier=ReplaceToLinear(), clone=True)

    def run(x, class_index):
        score = CategoricalScore([class_index] * len(x))
        # Without seek_penultimate_conv_layer=False it would move from a ReLU layer such as
        # EfficientNet's head_relu back to the nearest convolution (head_conv, before BN).
        return np.asarray(gradcam(score, x, penultimate_layer=layer, seek_penultimate_conv_layer=False,
                                  expand_cam=False, normalize_cam=True))

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="vgg16-gap,efficientnet")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()

    image = datasets.load_image("creative_commons_elephant.jpg", (224, 224))
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPU cores")
    for key in args.models.split(","):
        model, layer, preprocess = MODELS[key]()
        x1 = preprocess(image[None].copy())
        xb = np.repeat(x1, args.batch, axis=0)
        class_index = 1 if key == "vgg16-gap" else 386
        forward = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        compiled = cam.GradCAM(model, layer)
        eager = cam.GradCAM(model, layer, compiled=False)
        runs = {
            "forward (compiled)": lambda: forward(tf.constant(x1)).numpy(),
            "Grad-CAM (compiled)": lambda: compiled(x1, class_index),
        }
        theirs = tf_keras_vis_gradcam(model, layer)
        if theirs is not None:
            try:
                theirs(x1, class_index)
                runs["tf-keras-vis Gradcam"] = lambda: theirs(x1, class_index)
            except Exception as exc:  # report, do not stop the benchmark
                print(f"tf-keras-vis Gradcam failed on {key}: {str(exc).splitlines()[0]}")
                theirs = None
        times = median_seconds(runs, args.repeats, warmup=2)
        times["Grad-CAM (eager)"] = median_seconds({"e": lambda: eager(x1, class_index)}, max(args.repeats // 2, 2))["e"]
        base = times["forward (compiled)"]
        print(f"\n{key}: Grad-CAM at {layer}, batch of 1, median of {args.repeats}")
        for name, t in times.items():
            print(f"  {name:24s} {t * 1000:8.1f} ms   {t / base:5.2f}x forward")
        print(f"  compiled vs eager Grad-CAM: {times['Grad-CAM (eager)'] / times['Grad-CAM (compiled)']:.2f}x faster")
        if theirs is not None:
            # tf-keras-vis scales each map to [0, 1] by min and max; we divide by the max
            # (the book's choice), so compare the same min-max scaling of our raw map.
            raw = compiled.explain(x1, class_index).raw
            low, high = raw.min(axis=(1, 2), keepdims=True), raw.max(axis=(1, 2), keepdims=True)
            diff = np.abs(theirs(x1, class_index) - (raw - low) / (high - low + 1e-7)).max()
            print(f"  tf-keras-vis vs ours: {times['tf-keras-vis Gradcam'] / times['Grad-CAM (compiled)']:.2f}x "
                  f"our time; largest heatmap difference {diff:.1e} (both min-max scaled)")
        else:
            print("  tf-keras-vis is not installed: no comparison")
        batch_times = median_seconds(
            {
                "forward": lambda: forward(tf.constant(xb)).numpy(),
                "Grad-CAM": lambda: compiled(xb, class_index),
            },
            max(args.repeats // 3, 2),
            1,
        )
        print(f"  batch of {args.batch}: forward {args.batch / batch_times['forward']:.1f} images/s, "
              f"Grad-CAM {args.batch / batch_times['Grad-CAM']:.1f} images/s "
              f"({batch_times['Grad-CAM'] / batch_times['forward']:.2f}x forward)")
    print(f"\npeak resident memory: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
