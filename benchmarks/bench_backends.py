"""Benchmark: the book's filter grid and Grad-CAM on TensorFlow, JAX and PyTorch, one run.

    CHOLLET_VIZ_MIRROR=../shared/data python benchmarks/bench_backends.py
        [--backends tensorflow,jax,torch] [--filters 8] [--steps 5] [--size 64] [--json PATH]

One subprocess per backend, in turn (``KERAS_BACKEND`` set before Keras is imported; this
Python, which needs the three backends: ``pip install -e '.[jax,torch]'``), each loading
VGG16 once and timing every layer then Grad-CAM; a change in the machine's load between
the backends' processes moves their ratios, so read them as rough. Everything is a
ratio; wall times are only printed.

Filters (the book's figure: VGG16's block1_conv1 ... block4_conv1, 64x64 images, the
book's normalised step; ``--filters`` filters of each layer and ``--steps`` steps, by
default 8 and 5, a 64th of the figure's 64 x 40 (2 shared CPU cores)):

- ``package``: ``chollet_viz.filters.generate_patterns`` as a user calls it: the model cut
  at the layer, all filters in one batch, the step compiled by ``backend.Ascent``
  (``tf.function``, ``jax.jit`` which is XLA, eager PyTorch), compilation included;
- ``step``: the same compiled step, timed after a warm-up call (compilation excluded);
- ``fused``: all ``--steps`` steps in one compiled call (a Python loop traced into one
  graph; for PyTorch, eager, the same loop), after a warm-up call;
- baseline: the book's algorithm as a TF2 reader writes it, TensorFlow eager
  ``GradientTape`` on an extractor over the whole conv base, one filter at a time (one
  filter timed, scaled to ``--filters``);
- limit: the FLOP/s of one large float32 convolution (64 x 32 x 32 x 256 -> 256, 3x3),
  compiled, in the TensorFlow process, before and after the filters (mean). A pattern
  step's FLOPs are its convolutions' forward plus the input-gradient pass (as costly).

Grad-CAM per image: ``cam.GradCAM`` at block5_conv3 of VGG16's conv base + global average
pooling + a dense layer (NumPy weights), one 224x224 image, compiled; the baseline is the
same method uncompiled (``compiled=False``) on TensorFlow. The fraction of the limit counts
the forward convolutions (the gradient stops at block5_conv3).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import add_json_option, peak_rss_mb, result_row, write_rows  # noqa: E402

LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1")
BACKENDS = ("tensorflow", "jax", "torch")


# --- inside one backend's process --------------------------------------------------------


@functools.cache
def _base():
    from chollet_viz.models import vgg16

    return vgg16()


def part_limit(args):
    # The convolution limit is bench_filters.py's, measured the same way (TensorFlow).
    from bench_filters import part_limit as measure

    return measure(args)


def part_filters(args):
    import keras
    import numpy as np

    from bench_filters import conv_flops
    from chollet_viz import backend
    from chollet_viz.filters import book_start, cut_model, generate_patterns, normalize_gradient

    base = _base()
    name, n, steps = args.layer_name, args.filters, args.steps
    starts = book_start(n, args.size, seed=0)
    out = {"backend": backend.name()}

    t = time.perf_counter()
    result = generate_patterns(base, name, range(n), start=starts, steps=steps, batch_size=n, progress=False)
    out["package_s"] = time.perf_counter() - t

    cut = cut_model(base, [name])
    index = keras.ops.convert_to_tensor(np.arange(n, dtype=np.int32).reshape(-1, 1, 1, 1))

    def score(x):
        return keras.ops.mean(keras.ops.squeeze(keras.ops.take_along_axis(cut(x), index, axis=3), 3), axis=(1, 2))

    def one_step(x):
        _, (g,) = backend.value_and_grad(score, x)
        return x + normalize_gradient(g)

    def fused(x):
        for _ in range(steps):
            x = one_step(x)
        return x

    step_fn, fused_fn = backend.compile(one_step, state=cut), backend.compile(fused, state=cut)
    x0 = keras.ops.convert_to_tensor(starts)
    backend.to_numpy(step_fn(x0))  # warm-up: tracing, compilation
    t = time.perf_counter()
    x = x0
    for _ in range(steps):
        x = step_fn(x)
    stepped = backend.to_numpy(x)
    out["step_s"] = time.perf_counter() - t
    backend.to_numpy(fused_fn(x0))
    t = time.perf_counter()
    fused_out = backend.to_numpy(fused_fn(x0))
    out["fused_s"] = time.perf_counter() - t
    # The three paths do the same arithmetic: a check, not a timing.
    out["max_diff_paths"] = float(max(np.abs(stepped - result.images).max(), np.abs(fused_out - result.images).max()))
    out["flops"] = 2 * conv_flops(cut, args.size) * steps * n

    if out["backend"] == "tensorflow":  # the baseline: the book's loop, eager, one filter at a time
        import tensorflow as tf

        extractor = keras.Model(base.inputs, base.get_layer(name).output)
        extractor(starts[:1])
        t = time.perf_counter()
        v = tf.Variable(starts[:1])
        for _ in range(steps):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(extractor(v)[:, :, :, 0])
            grads = tape.gradient(loss, v)
            grads /= tf.sqrt(tf.reduce_mean(tf.square(grads))) + 1e-5
            v.assign_add(grads)
        v.numpy()
        out["eager_s"] = (time.perf_counter() - t) * n
    return out


def part_gradcam(args):
    import keras
    import numpy as np

    from bench_filters import conv_flops
    from chollet_viz import backend, cam
    from chollet_viz.models import vgg16

    conv = vgg16(input_shape=(224, 224, 3))
    inputs = keras.Input((224, 224, 3))
    x = keras.layers.GlobalAveragePooling2D()(conv(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, name="logits")(x))
    dense = model.get_layer("logits")
    rng = np.random.default_rng(0)
    dense.set_weights([rng.normal(0, 0.05, w.shape).astype(np.float32) for w in dense.get_weights()])
    image = (rng.random((1, 224, 224, 3)) * 255 - 120).astype(np.float32)
    out = {"backend": backend.name(), "flops": conv_flops(conv, 224)}
    variants = {"compiled": cam.GradCAM(model, "block5_conv3")}
    if out["backend"] == "tensorflow":
        variants["eager"] = cam.GradCAM(model, "block5_conv3", compiled=False)
    heat = {}
    for label, method in variants.items():
        heat[label] = method(image, 0)  # warm-up
    times = {label: [] for label in variants}
    for _ in range(args.repeats):
        for label, method in variants.items():
            t = time.perf_counter()
            method(image, 0)
            times[label].append(time.perf_counter() - t)
    for label in variants:
        out[f"{label}_s"] = statistics.median(times[label])
    out["heatmap"] = np.asarray(heat["compiled"]).tolist()
    return out


def part_all(args):
    """Everything for one backend in one process (VGG16 loaded once): the limit before and
    after (TensorFlow), each layer's filters, then Grad-CAM."""
    import keras

    out = {"filters": {}}
    tf = keras.backend.backend() == "tensorflow"
    if tf:
        out["limits"] = [part_limit(args)["conv_gflops_per_s"]]
    for layer in args.layer.split(","):
        args.layer_name = layer
        out["filters"][layer] = part_filters(args)
        out["filters"][layer]["max_rss_mb"] = peak_rss_mb()
        print(f"# {keras.backend.backend()} {layer} done", file=sys.stderr, flush=True)
    if tf:
        out["limits"].append(part_limit(args)["conv_gflops_per_s"])
    out["gradcam"] = part_gradcam(args)
    out["gradcam"]["max_rss_mb"] = peak_rss_mb()
    return out


PARTS = {"all": part_all}


# --- the driver ------------------------------------------------------------------------------


def run_part(part: str, backend: str, args, layer: str = "") -> dict:
    cmd = [args.python, __file__, "--part", part, "--layer", layer, "--filters", str(args.filters),
           "--steps", str(args.steps), "--size", str(args.size), "--repeats", str(args.repeats)]
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(HERE.parent), env.get("PYTHONPATH", "")])
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if done.returncode:
        sys.exit(f"part {part} {layer} on {backend} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--layers", default=",".join(LAYERS))
    parser.add_argument("--filters", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2, help="Grad-CAM calls timed per backend (median)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter with the three backends")
    parser.add_argument("--part", choices=sorted(PARTS))
    parser.add_argument("--layer", default="")
    parser.add_argument("--keep", action="store_true", help=argparse.SUPPRESS)
    add_json_option(parser)
    args = parser.parse_args()
    if args.part:
        result = PARTS[args.part](args)
        result["max_rss_mb"] = peak_rss_mb()
        print(json.dumps(result))
        return
    backends, layers = args.backends.split(","), args.layers.split(",")
    for b in backends:
        if b not in BACKENDS:
            parser.error(f"unknown backend {b!r}; valid: {', '.join(BACKENDS)}")
    if "tensorflow" not in backends:
        parser.error("the baseline and the limit are measured on TensorFlow: keep it in --backends")
    for b in list(backends):  # a backend this Python lacks is left out, and said so
        module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[b]
        probe = subprocess.run([args.python, "-c", f"import {module}"], capture_output=True, check=False)
        if probe.returncode:
            print(f"{b}: not installed for {args.python}, left out (pip install -e '.[jax,torch]').")
            backends.remove(b)
    scale = (64 * 40) / (args.filters * args.steps)
    print(f"Filter grid: {len(layers)} layers x {args.filters} filters x {args.steps} steps at {args.size}px "
          f"(the book's figure is 64 x 40: times scaled by {scale:g}); {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}.", flush=True)

    runs, cams = {}, {}
    for b in backends:  # one process per backend, in turn (the load is sampled per backend)
        done = run_part("all", b, args, ",".join(layers))
        runs[b], cams[b] = done["filters"], done["gradcam"]
        if b == "tensorflow":
            limits = done["limits"]
        for layer, r in runs[b].items():
            print(f"  {layer:<13} {b:<10} package {r['package_s']:6.2f} s, step {r['step_s']:6.2f} s, "
                  f"fused {r['fused_s']:6.2f} s" + (f", eager {r['eager_s']:6.2f} s" if "eager_s" in r else ""),
                  flush=True)
    limit = sum(limits) / len(limits)
    eager = {layer: runs["tensorflow"][layer]["eager_s"] for layer in layers}
    rows_out, table = [], []

    def fraction(flops, seconds):
        return flops / seconds / 1e9 / limit

    print(f"\nConv limit {limit:.0f} GFLOP/s (TensorFlow, mean of {limits[0]:.0f} before and {limits[1]:.0f} after).")
    print("Ratios: x eager = TF eager baseline time / this time; % limit = achieved conv FLOP/s / limit.")
    head = f"{'layer':<14}{'backend':<11}" + "".join(f"{v + ' x eager':>17}{'% limit':>9}" for v in ("package", "step", "fused"))
    print(head)
    for layer in layers + ["all"]:
        for b in backends:
            pick = layers if layer == "all" else [layer]
            cells, rowvals = "", {}
            for v in ("package", "step", "fused"):
                seconds = sum(runs[b][l][f"{v}_s"] for l in pick)
                flops = sum(runs[b][l]["flops"] for l in pick)
                speed, frac = sum(eager[l] for l in pick) / seconds, fraction(flops, seconds)
                rowvals[v] = (speed, frac)
                cells += f"{speed:>16.2f}x{frac:>9.0%}"
            print(f"{layer:<14}{b:<11}{cells}")
            table.append((layer, b, rowvals))
            note = f"{args.filters} filters x {args.steps} steps at {args.size}px (scaled x{scale:g} to the figure)"
            for v, words in (("package", "generate_patterns (compilation included)"), ("step", "the compiled step"),
                             ("fused", f"{args.steps} steps fused in one compiled call")):
                rows_out.append(result_row("backends", f"{b}: {words}, {layer}", "TensorFlow eager baseline (time / time)",
                                           rowvals[v][0], runs[b][pick[0]]["max_rss_mb"], note))
                rows_out.append(result_row("backends", f"{b}: {words}, {layer}, fraction of the conv limit",
                                           "the conv limit (TensorFlow, FLOP/s / FLOP/s)", rowvals[v][1], None, ""))
    worst = max(r["max_diff_paths"] for b in backends for r in runs[b].values())
    print(f"package, step and fused images agree within 1e-2 on every backend (pixel values ~128): {'yes' if worst <= 1e-2 else 'NO'}")

    print(f"\nGrad-CAM per image (VGG16 224px, block5_conv3): TF eager {cams['tensorflow']['eager_s']:.3f} s")
    import numpy as np

    ref = np.asarray(cams["tensorflow"]["heatmap"])
    for b in backends:
        c = cams[b]
        speed, frac = cams["tensorflow"]["eager_s"] / c["compiled_s"], fraction(c["flops"], c["compiled_s"])
        same = np.abs(np.asarray(c["heatmap"]) - ref).max() <= 1e-4
        print(f"  {b:<10} compiled {c['compiled_s']:.3f} s: {speed:.2f}x eager, {frac:.0%} of the limit; heatmap as TF's within 1e-4: {'yes' if same else 'NO'}")
        table.append(("Grad-CAM", b, {"compiled": (speed, frac)}))
        rows_out.append(result_row("backends", f"{b}: Grad-CAM per image, compiled", "TensorFlow eager Grad-CAM (time / time)",
                                   speed, c["max_rss_mb"], "VGG16 conv base + GAP + dense, 224px, block5_conv3"))
        rows_out.append(result_row("backends", f"{b}: Grad-CAM per image, fraction of the conv limit",
                                   "the conv limit (TensorFlow, FLOP/s / FLOP/s)", frac, None, "forward convolutions"))
    write_rows(args.json, rows_out)


if __name__ == "__main__":
    main()
