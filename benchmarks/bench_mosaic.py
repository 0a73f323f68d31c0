"""Rendering every channel of the small convnet's eight conv/pool layers: mosaic vs subplots.

Both ways draw the same picture for ``cat.1700.jpg`` (704 channel maps, 16 per row, the
book's per-channel normalisation, one figure per layer of the same size, saved as PNG
with matplotlib's Agg backend):

* package: ``plotting.channel_mosaic`` tiles each layer with NumPy and
  ``plotting.show_mosaic`` draws it with one ``imshow``;
* baseline: one ``subplot`` and one ``imshow`` per channel, as the MNIST feature-map
  blog does.

Activations are computed once, before timing. Prints median seconds, the ratio, and the
peak memory of each way (Python allocations, from ``tracemalloc``, measured in separate
runs from the timings) plus the process's peak resident memory. Run:

    CHOLLET_VIZ_MIRROR=../shared/data TF_CPP_MIN_LOG_LEVEL=3 python benchmarks/bench_mosaic.py [--json PATH]

``--json PATH`` also writes the two ratios as rows for ``benchmarks/run_all.py``.
"""

from __future__ import annotations

import argparse
import io
import math
import tracemalloc

import matplotlib

matplotlib.use("Agg")

import keras  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from chollet_viz import models, plotting  # noqa: E402
from chollet_viz.activations import activations  # noqa: E402
from chollet_viz.data import AssetError  # noqa: E402

from _common import add_json_option, median_seconds, peak_rss_mb, result_row, write_rows  # noqa: E402

NCOLS = 16
DPI = 72


def small_convnet(weights: str | None):
    if weights:
        model = models.cats_and_dogs_small()
        model.load_weights(weights)
        return model, weights
    try:
        return models.cats_and_dogs_small(pretrained=True), "trained (registry)"
    except AssetError:
        keras.utils.set_random_seed(0)
        return models.cats_and_dogs_small(), "random, seed 0 (trained weights not registered)"


def figure_size(maps: np.ndarray) -> tuple[float, float]:
    # The book's choice: one inch per channel tile, 16 tiles per row.
    rows = math.ceil(maps.shape[-1] / NCOLS)
    return NCOLS, rows * maps.shape[0] / maps.shape[1]


def render_package(acts: dict) -> list[bytes]:
    pngs = []
    for name, act in acts.items():
        fig, ax = plt.subplots(figsize=figure_size(act[0]))
        plotting.show_mosaic(plotting.channel_mosaic(act, ncols=NCOLS), title=name, ax=ax)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=DPI)
        plt.close(fig)
        pngs.append(buffer.getvalue())
    return pngs


def render_subplots(acts: dict) -> list[bytes]:
    pngs = []
    for name, act in acts.items():
        maps = plotting.standardize_channels(act[0])  # same normalisation, dead channels safe
        channels = maps.shape[-1]
        rows = math.ceil(channels / NCOLS)
        fig = plt.figure(figsize=figure_size(act[0]))
        for i in range(channels):
            ax = fig.add_subplot(rows, NCOLS, i + 1)
            ax.imshow(maps[..., i], aspect="auto", cmap="viridis")
            ax.axis("off")
        fig.suptitle(name)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=DPI)
        plt.close(fig)
        pngs.append(buffer.getvalue())
    return pngs


def traced_peak_mb(fn, acts) -> float:
    tracemalloc.start()
    fn(acts)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--weights", help="a .weights.h5 file for the small convnet (default: the registered one)")
    add_json_option(parser)
    args = parser.parse_args()

    model, weights = small_convnet(args.weights)
    names = [layer.name for layer in model.layers[:8]]
    acts = activations(model, "cat.1700.jpg", layers=names, preprocess=lambda x: x / 255)
    channels = sum(a.shape[-1] for a in acts.values())
    dead = sum(int(np.sum(~a.any(axis=(0, 1, 2)))) for a in acts.values())
    print(f"small convnet ({weights}); {len(acts)} layers, {channels} channels ({dead} dead); "
          f"{NCOLS} per row, {DPI} dpi; median of {args.repeats}")

    # The warm-up call covers fonts, colormaps and caches.
    times = median_seconds({"package": lambda: render_package(acts), "subplots": lambda: render_subplots(acts)}, args.repeats)
    package, subplots = times["package"], times["subplots"]
    package_mb = traced_peak_mb(render_package, acts)
    subplots_mb = traced_peak_mb(render_subplots, acts)

    print(f"{'':<34}{'seconds':>9}{'peak MB (tracemalloc)':>24}")
    print(f"{'package: NumPy tiling, 1 imshow':<34}{package:>9.3f}{package_mb:>24.1f}")
    print(f"{'baseline: 1 subplot per channel':<34}{subplots:>9.3f}{subplots_mb:>24.1f}")
    print(f"ratio (baseline / package): {subplots / package:.1f}x faster, "
          f"{subplots_mb / package_mb:.1f}x less traced memory")
    print(f"process peak resident memory: {peak_rss_mb():.0f} MB")

    about = f"{channels} channel maps of {len(acts)} layers to PNG, small convnet ({weights}), median of {args.repeats}"
    write_rows(args.json, [
        result_row("mosaic", "speed-up of the mosaic (NumPy tiling, 1 imshow per layer)",
                   "one subplot and one imshow per channel (seconds, baseline / package)",
                   subplots / package, peak_rss_mb(),
                   f"{about}: package {package:.3f} s, baseline {subplots:.3f} s"),
        result_row("mosaic", "memory saved by the mosaic (Python allocations)",
                   "one subplot per channel (tracemalloc peak, baseline / package)",
                   subplots_mb / package_mb, peak_rss_mb(),
                   f"tracemalloc peaks: package {package_mb:.1f} MiB, baseline {subplots_mb:.1f} MiB"),
    ])


if __name__ == "__main__":
    main()
