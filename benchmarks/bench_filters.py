"""Benchmark: the book's filter-pattern figure, package (batched, compiled) vs eager baseline.

The figure: block1_conv1, block2_conv1, block3_conv1, block4_conv1 of the ImageNet VGG16
conv base, the first 64 filters of each, 64x64 images, 40 normalised gradient steps.

- package: ``chollet_viz.filters.generate_patterns``, 64 filters per batch, model cut at
  the layer, step compiled with ``tf.function`` (tracing time included);
- baseline: the book's algorithm as a TF2 reader writes it: an extractor
  ``keras.Model(conv_base.inputs, layer.output)`` over the full conv base, eager
  ``GradientTape``, one filter at a time. It is timed on ``--sample`` filters per layer
  (evenly spaced among the 64) and extrapolated per filter to 64 filters;
- limit: the FLOP/s of one large float32 convolution (64 x 32 x 32 x 256 -> 256, 3x3),
  compiled, on the same machine, measured before and after each layer.

Each part runs in its own subprocess so that its peak memory (ru_maxrss) is its own, and
the parts alternate layer by layer so that a change in the machine's load (other jobs)
hits both sides alike. The
achieved throughput counts the convolutions' FLOPs only: forward plus the input-gradient
pass, which costs as much as the forward (weight gradients are never computed).

Run:  CHOLLET_VIZ_MIRROR=../shared/data python benchmarks/bench_filters.py [--layers ...] [--json PATH]

``--layers`` times a subset of the four layers (a smoke run); ``--json PATH`` also writes
the speed-ups, the fractions of the conv limit and the peak memory as rows for
``benchmarks/run_all.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from _common import add_json_option, peak_rss_mb, result_row, write_rows

LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1")


def conv_flops(model, size: int) -> float:
    """FLOPs of one image's forward pass through the Conv2D layers of ``model`` at size x size."""
    import keras

    from chollet_viz.layers import leaf_layers, replay

    convs = [(path, layer) for path, layer in leaf_layers(model) if isinstance(layer, keras.layers.Conv2D)]
    # Output shapes at this size from a replay laid out in one graph (a cut model's layers
    # also belong to the model it was cut from: their ``output`` is in that other graph).
    shapes = replay(model, (size, size, 3), inline=True).shapes
    total = 0.0
    for path, layer in convs:
        kh, kw, cin, cout = layer.kernel.shape
        total += 2.0 * shapes[path][1] * shapes[path][2] * kh * kw * cin * cout
    return total


def part_limit(args):
    import numpy as np
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(0).random((64, 32, 32, 256), dtype=np.float32))
    w = tf.constant(np.random.default_rng(1).normal(0, 0.01, (3, 3, 256, 256)).astype(np.float32))
    conv = tf.function(lambda x, w: tf.nn.conv2d(x, w, 1, "SAME"))
    conv(x, w).numpy()
    times = []
    for _ in range(7):
        t = time.perf_counter()
        conv(x, w).numpy()
        times.append(time.perf_counter() - t)
    flops = 2.0 * 64 * 32 * 32 * 3 * 3 * 256 * 256
    return {"conv_gflops_per_s": flops / np.median(times) / 1e9}


def part_eager(args):
    import keras
    import numpy as np
    import tensorflow as tf

    from chollet_viz.filters import book_start
    from chollet_viz.models import vgg16

    conv_base = vgg16()
    name = args.layer
    sample = np.linspace(0, args.filters - 1, args.sample).round().astype(int).tolist()
    starts = book_start(args.filters, args.size, seed=0)
    extractor = keras.Model(conv_base.inputs, conv_base.get_layer(name).output)
    extractor(starts[:1])  # warm-up: the first eager call builds kernels
    images, seconds = [], []
    for f in sample:
        t = time.perf_counter()
        x = tf.Variable(starts[f : f + 1])
        for _ in range(args.steps):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(extractor(x)[:, :, :, f])
            grads = tape.gradient(loss, x)
            grads /= tf.sqrt(tf.reduce_mean(tf.square(grads))) + 1e-5
            x.assign_add(grads)
        images.append(x.numpy()[0])
        seconds.append(time.perf_counter() - t)
    np.save(os.path.join(args.tmp, f"eager_{name}.npy"), np.stack(images))
    return {"sample": sample, "seconds_per_filter": float(np.mean(seconds))}


def part_package(args):
    import numpy as np

    from chollet_viz.filters import book_start, cut_model, generate_patterns
    from chollet_viz.models import vgg16

    conv_base = vgg16()
    name = args.layer
    starts = book_start(args.filters, args.size, seed=0)
    t = time.perf_counter()
    result = generate_patterns(
        conv_base, name, range(args.filters), start=starts, steps=args.steps,
        batch_size=args.filters, progress=False, precision=args.precision,
    )
    seconds = time.perf_counter() - t
    np.save(os.path.join(args.tmp, f"package_{args.precision}_{name}.npy"), result.images)
    flops = conv_flops(cut_model(conv_base, [name]), args.size)
    return {"seconds": seconds, "dead": len(result.dead), "conv_flops_per_image_forward": flops}


PARTS = {"limit": part_limit, "eager": part_eager, "package": part_package}


def run_part(part: str, args, layer: str = "", precision: str = "float32") -> dict:
    cmd = [sys.executable, __file__, "--part", part, "--tmp", args.tmp, "--sample", str(args.sample),
           "--size", str(args.size), "--steps", str(args.steps), "--filters", str(args.filters),
           "--layer", layer, "--precision", precision]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"part {part} {layer} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


AGREEMENT = 1e-2  # as chapter 5.4.2 asserts for the same comparison


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=4, help="baseline filters timed per layer")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--filters", type=int, default=64)
    parser.add_argument("--bf16", action="store_true", help="also time the package in bfloat16")
    parser.add_argument("--part", choices=sorted(PARTS))
    parser.add_argument("--layer", default="")
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--tmp")
    parser.add_argument("--layers", default=",".join(LAYERS),
                        help=f"comma-separated subset of {','.join(LAYERS)} (default all)")
    add_json_option(parser)
    args = parser.parse_args()
    layers = args.layers.split(",")
    for name in layers:
        if name not in LAYERS:
            parser.error(f"unknown layer {name!r}; valid layers are {', '.join(LAYERS)}")

    if args.part:
        result = PARTS[args.part](args)
        result["max_rss_mb"] = peak_rss_mb()
        print(json.dumps(result))
        return

    import tempfile

    import numpy as np

    print(f"Book's filter figure: {len(layers)} layers x {args.filters} filters, {args.size}x{args.size}, "
          f"{args.steps} steps, on {os.cpu_count()} CPUs.")
    print(f"Baseline: eager GradientTape, one filter at a time, {args.sample} filters per layer timed "
          f"and extrapolated to {args.filters}. Parts alternate layer by layer, each in its own process;")
    print("the conv limit is measured just before and after each layer's pair of runs.")
    header = (f"{'layer':<14}{'load':>5}{'eager s/filter':>15}{'package s/filter':>17}{'speed-up':>10}"
              f"{'GFLOP/s':>9}{'conv limit':>11}{'fraction':>9}{'dead':>6}")
    print(header, flush=True)
    rows, worst = {}, 0.0
    with tempfile.TemporaryDirectory() as tmp:
        args.tmp = tmp
        for name in layers:
            load = os.getloadavg()[0]
            before = run_part("limit", args)["conv_gflops_per_s"]
            eager = run_part("eager", args, name)
            package = run_part("package", args, name)
            bf16 = run_part("package", args, name, "bfloat16") if args.bf16 else None
            after = run_part("limit", args)["conv_gflops_per_s"]
            limit = (before + after) / 2
            flops = 2 * package["conv_flops_per_image_forward"] * args.steps * args.filters
            rows[name] = dict(eager=eager, package=package, bf16=bf16, limit=limit, flops=flops)
            e = np.load(os.path.join(tmp, f"eager_{name}.npy"))
            p = np.load(os.path.join(tmp, f"package_float32_{name}.npy"))[eager["sample"]]
            worst = max(worst, float(np.abs(e - p).max()))
            per = eager["seconds_per_filter"]
            pkg = package["seconds"] / args.filters
            rate = flops / package["seconds"] / 1e9
            print(f"{name:<14}{load:>5.1f}{per:>15.3f}{pkg:>17.3f}{per / pkg:>9.2f}x{rate:>9.1f}"
                  f"{limit:>11.1f}{rate / limit:>9.0%}{package['dead']:>6}", flush=True)

    total_eager = sum(r["eager"]["seconds_per_filter"] * args.filters for r in rows.values())
    total_package = sum(r["package"]["seconds"] for r in rows.values())
    total_flops = sum(r["flops"] for r in rows.values())
    mean_limit = np.mean([r["limit"] for r in rows.values()])
    rate = total_flops / total_package / 1e9
    n = len(layers) * args.filters
    print(f"{'all':<14}{'':>5}{total_eager / n:>15.3f}{total_package / n:>17.3f}{total_eager / total_package:>9.2f}x"
          f"{rate:>9.1f}{mean_limit:>11.1f}{rate / mean_limit:>9.0%}")
    print(f"Figure total: eager (extrapolated) {total_eager:.1f} s, package {total_package:.1f} s, "
          f"ratio {total_eager / total_package:.2f}x")
    print("Conv limit: FLOP/s of one 64x32x32x256->256 3x3 float32 convolution (compiled, median of 7).")
    peak = lambda key: max(r[key]["max_rss_mb"] for r in rows.values())  # noqa: E731
    print(f"Peak memory (ru_maxrss, largest over layers): eager {peak('eager'):.0f} MB, package {peak('package'):.0f} MB")
    # A verdict, not the number: the difference sits at float32 noise and moves between machines.
    same = f"eager and package images agree within {AGREEMENT} (pixel values ~128): {'yes' if worst <= AGREEMENT else 'NO'}"
    print(same)
    if args.bf16:
        t = sum(r["bf16"]["seconds"] for r in rows.values())
        print(f"Package in bfloat16 (opt-in, needs CPU bf16 support): {t:.1f} s, "
              f"{total_eager / t:.2f}x over eager, {total_package / t:.2f}x over float32; "
              f"peak {peak('bf16'):.0f} MB")

    setting = f"{args.filters} filters, {args.size}x{args.size}, {args.steps} steps"
    eager_base = (f"the book's algorithm, eager GradientTape, one filter at a time ({args.sample} timed per layer, "
                  "extrapolated; seconds, baseline / package)")
    limit_base = "the conv limit: FLOP/s of one 64x32x32x256->256 3x3 float32 convolution, compiled, same machine"
    out = []
    per_layer = [(name, r["eager"]["seconds_per_filter"] * args.filters, r["package"]["seconds"], r["flops"],
                  r["limit"], r["package"]["max_rss_mb"], f"{r['package']['dead']} dead filters")
                 for name, r in rows.items()]
    agreement = same
    if len(per_layer) > 1:
        per_layer.append((f"all {len(layers)} layers", total_eager, total_package, total_flops, mean_limit,
                          peak("package"), agreement))
    else:  # one layer: its row is the total
        per_layer[0] = (*per_layer[0][:-1], f"{per_layer[0][-1]}; {agreement}")
    for name, eager_s, package_s, flops, limit, peak_mib, note in per_layer:
        rate = flops / package_s / 1e9
        out.append(result_row("filters", f"speed-up of generate_patterns, {name}", eager_base,
                              eager_s / package_s, peak_mib, f"{setting}; package {package_s:.1f} s; {note}"))
        out.append(result_row("filters", f"fraction of the conv limit reached, {name}", limit_base,
                              rate / limit, peak_mib, f"package {rate:.1f} GFLOP/s, limit {limit:.1f} GFLOP/s"))
    out.append(result_row("filters", "peak memory of generate_patterns",
                          "the eager baseline's peak (ru_maxrss of each part's own process, largest over layers; "
                          "package / baseline)", peak("package") / peak("eager"), peak("package"),
                          f"eager {peak('eager'):.0f} MiB, package {peak('package'):.0f} MiB"))
    if args.bf16:
        t = sum(r["bf16"]["seconds"] for r in rows.values())
        out.append(result_row("filters", "speed-up of generate_patterns in bfloat16",
                              "generate_patterns in float32 (seconds, float32 / bfloat16)", total_package / t,
                              peak("bf16"), "opt-in, needs CPU bf16 support"))
    write_rows(args.json, out)


if __name__ == "__main__":
    main()
