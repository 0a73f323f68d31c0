"""Deconvnet reconstructions on VGG16 against one forward pass of the conv base, same run.

Times, for one 224x224 image (``cat.1700.jpg``):

* baseline: one compiled forward pass of the VGG16 convolutional base;
* all five pooling layers x both signals (whole map, strongest activation) with
  ``Deconvnet.reconstruct_all`` (one forward pass with switches, five backward passes
  of two stacked signals), compiled and eager;
* the same ten projections as deconvnet-rule gradients (``Deconvnet.gradient_all``).

Prints medians, ratios to the forward pass (candidates take turns in every round, so a
busy machine slows all of them alike) and the peak resident memory. Run:

    CHOLLET_VIZ_MIRROR=../shared/data TF_CPP_MIN_LOG_LEVEL=3 python benchmarks/bench_deconvnet.py [--json PATH]

``--json PATH`` also writes the ratios as rows for ``benchmarks/run_all.py``.
"""

from __future__ import annotations

import argparse
import statistics

import keras
import tensorflow as tf

from chollet_viz import datasets, models
from chollet_viz.deconvnet import Deconvnet, preprocess_input

from _common import add_json_option, interleaved_seconds, peak_rss_mb, result_row, write_rows


def multiply_add_ratio(model, deconv) -> float:
    """Multiply-adds of the ten projections plus their forward pass, over one forward pass.

    A transposed convolution costs what its convolution costs, so projecting back from a
    pooling layer costs the convolutions below it; the rest (pooling, ReLU) is small.
    """
    per_layer, below = {}, 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            _, h, w, _ = layer.output.shape
            below += h * w * kh * kw * cin * cout
        elif layer.name in deconv.pool_layers:
            per_layer[layer.name] = below
    return (below + 2 * sum(per_layer.values())) / below


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    add_json_option(parser)
    args = parser.parse_args()

    model = models.vgg16(include_top=False, input_shape=(224, 224, 3))
    image = preprocess_input(datasets.load_image("cat.1700.jpg", target_size=(224, 224))[None])
    x = tf.constant(image)

    @tf.function
    def forward(t):
        return model(t, training=False)

    compiled, eager = Deconvnet(model), Deconvnet(model, compile=False)
    print(f"after loading VGG16: peak RSS {peak_rss_mb():.0f} MB")

    baseline = "forward pass of the conv base (compiled)"
    candidates = {
        baseline: lambda: forward(x).numpy(),
        "reconstruct_all, 5 layers x 2 modes (compiled)": lambda: compiled.reconstruct_all(x),
        "reconstruct_all, 5 layers x 2 modes (eager)": lambda: eager.reconstruct_all(x),
        "gradient_all, deconvnet rule (compiled)": lambda: compiled.gradient_all(x),
    }
    times = interleaved_seconds(candidates, args.repeats)
    print(f"{'what':<50} {'median s':>9} {'x forward':>10}   (median of per-round ratios, {args.repeats} rounds)")
    rows = []
    image_note = f"VGG16 conv base, one 224x224 image, median of {args.repeats} round{'s' * (args.repeats > 1)}"
    for name, seconds in times.items():
        ratio = statistics.median(t / b for t, b in zip(seconds, times[baseline]))
        print(f"{name:<50} {statistics.median(seconds):9.3f} {ratio:10.2f}")
        if name != baseline:
            rows.append(result_row("deconvnet", f"time of {name}", baseline, ratio, peak_rss_mb(),
                                   f"{image_note}; {statistics.median(seconds):.3f} s"))
    names = list(candidates)
    speedup = statistics.median(e / c for e, c in zip(times[names[2]], times[names[1]]))
    print(f"tf.function speed-up of reconstruct_all: {speedup:.2f}x")
    expected = multiply_add_ratio(model, compiled)
    print(f"expected from multiply-adds alone (dense convolutions): {expected:.2f}x forward")
    print(f"peak RSS {peak_rss_mb():.0f} MB")
    rows.append(result_row("deconvnet", "tf.function speed-up of reconstruct_all",
                           "reconstruct_all eager (seconds, eager / compiled)", speedup, peak_rss_mb(), image_note))
    rows.append(result_row("deconvnet", "multiply-adds of the ten projections and their forward pass",
                           "multiply-adds of one forward pass", expected, None,
                           "counted, not timed: what the compiled reconstruct_all would cost if only convolutions counted"))
    write_rows(args.json, rows)


if __name__ == "__main__":
    main()
