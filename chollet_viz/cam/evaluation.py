"""Many heatmap methods on many images: faithfulness per image, its summary, and a cache.

``evaluate`` runs a set of methods on a set of images, each explained for a given class,
and measures per image and per method

- the deletion and insertion areas (``deletion_curve``, ``insertion_curve``: class
  probability, ``steps`` steps; deletion to the zero input, insertion from a blurred copy),
- Average Drop and Increase in Confidence (Chattopadhay et al., 2018; ``confidence_change``),
- the time the method took: the wall time of its call on the batch, divided by the
  batch's size (after one untimed warm-up call, so tracing is not counted),

and, as a baseline, the same for maps of seeded uniform random numbers at the layer's
resolution. ``Evaluation.summary`` gives mean and standard error per method.

The comparing-CAM-methods chapter reads its 200-image table from a cached run:

    python -m chollet_viz.cam.evaluation     # half an hour on 2 idle CPU cores, over an hour on busy ones

writes ``data/cam_comparison_efficientnet_lite0.json`` (per-image rows, image names,
classes, settings, versions, the machine) and registers it with its sha256;
``load_results`` reads and verifies it, and ``check_cached`` recomputes a few images and
compares them with the cached rows, so the cache is re-verified without recomputing it.
Times depend on the machine (and on what else it was running); the file records which.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import keras
import numpy as np

from .. import backend
from ._core import ScoredModel, as_batch
from .faithfulness import _Curves, confidence_change

RESULTS_NAME = "cam_comparison_efficientnet_lite0"
RANDOM = "random"
METRICS = ("deletion", "insertion", "average_drop", "increase", "seconds")
# What a recomputation on another machine may differ by (float32 round-off moves the
# class probabilities by ~1e-6 and can swap pixels of nearly equal heat in the order).
TOLERANCES = {"deletion": 2e-3, "insertion": 2e-3, "average_drop": 0.2, "increase": 0.0}  # drop in %
FORMAT = 1


# --- methods -----------------------------------------------------------------------------


@dataclass
class Method:
    """A heatmap method for the comparison.

    ``fn(images, class_index) -> heatmaps (batch, h, w)`` in [0, 1], at any resolution
    (they are upsampled to the images). Each image must get the same map whatever batch it
    is in, so that any image can be recomputed on its own. ``settings`` says how the
    method was configured; it is recorded with the results.
    """

    fn: Callable[[np.ndarray, np.ndarray], np.ndarray]
    settings: str = ""

    def __call__(self, images, class_index) -> np.ndarray:
        return self.fn(images, class_index)


def cam_method(method, settings: str = "") -> Method:
    """A ``ClassActivationMethod`` (Grad-CAM, Score-CAM, ...) as a comparison ``Method``."""
    return Method(lambda x, c: method.explain(x, c).heatmaps, settings)


def attribution_method(method, reduce: str | None = None, per_image: bool = False, settings: str = "") -> Method:
    """A ``PixelAttribution`` as a comparison ``Method``: its heatmaps (``reduce`` as in
    ``attribution_heatmaps``; default the method's own). ``per_image=True`` explains one
    image per call, for methods whose random draws depend on the batch (SmoothGrad)."""

    def fn(x, c):
        if not per_image:
            return method.explain(x, c).heatmaps(reduce)
        return np.concatenate([method.explain(x[i : i + 1], c[i : i + 1]).heatmaps(reduce) for i in range(len(x))])

    return Method(fn, settings)


def guided_grad_cam_method(model, layer, settings: str = "") -> Method:
    """Guided Grad-CAM as ``guided_grad_cam`` computes it (guided backpropagation times the
    upsampled Grad-CAM map), with both methods built once so they are traced once; the
    heatmap is the largest absolute value over colour channels, as for a gradient."""
    from .attribution import attribution_heatmaps
    from .guided import GuidedBackprop
    from .methods import GradCAM, upsample

    grad_cam, backprop = GradCAM(model, layer), GuidedBackprop(model)

    def fn(x, c):
        cams = grad_cam.explain(x, c)
        guided = backprop.explain(x, cams.class_index).attributions
        return attribution_heatmaps(guided * upsample(cams.heatmaps, x.shape[1:3])[..., None], "abs_max")

    return Method(fn, settings)


def comparison_methods(
    model,
    layer: str = "head_relu",
    *,
    score_cam_channels: int = 32,
    smoothgrad_samples: int = 16,
    ig_steps: int = 16,
    occlusion_patch: int = 56,
    occlusion_stride: int = 42,
) -> dict[str, Method]:
    """The chapter's methods; the defaults are the reduced costs its 200-image table uses
    (``DEFAULT_METHOD_ARGUMENTS``).

    Gradient methods explain the class logit (the package's default), Score-CAM and
    occlusion the probability (as their papers do).
    """
    from . import attribution as attr
    from . import methods as m

    cams = {
        "Grad-CAM": (m.GradCAM, {}),
        "Grad-CAM++": (m.GradCAMPlusPlus, {}),
        "XGrad-CAM": (m.XGradCAM, {}),
        "HiResCAM": (m.HiResCAM, {}),
        "LayerCAM": (m.LayerCAM, {}),
        "Faster Score-CAM": (m.FasterScoreCAM, {"max_channels": score_cam_channels, "batch_size": 32}),
        "EigenCAM": (m.EigenCAM, {}),
    }
    out = {}
    for name, (cls, kwargs) in cams.items():
        described = ", ".join(f"{k}={v}" for k, v in kwargs.items() if k != "batch_size")
        out[name] = cam_method(cls(model, layer, **kwargs), f"layer {layer}" + (f", {described}" if described else ""))
    out["guided Grad-CAM"] = guided_grad_cam_method(model, layer, f"Grad-CAM at {layer}; |gradient| max over colours")
    out["Saliency"] = attribution_method(attr.Saliency(model), settings="|gradient| max over colours")
    out["SmoothGrad"] = attribution_method(
        attr.SmoothGrad(model, samples=smoothgrad_samples, noise_level=0.15, seed=0),
        per_image=True,
        settings=f"{smoothgrad_samples} samples, noise 15% of the image's range, seed 0 per image",
    )
    out["Integrated Gradients"] = attribution_method(
        attr.IntegratedGradients(model, steps=ig_steps, baseline=0.0),
        settings=f"{ig_steps} steps (trapezoid), zero-input (grey) baseline; positive part of the channel sum",
    )
    out["Occlusion"] = attribution_method(
        attr.Occlusion(model, patch=occlusion_patch, stride=occlusion_stride, baseline=0.0),
        settings=f"{occlusion_patch}x{occlusion_patch} grey patch, stride {occlusion_stride}, probability drop",
    )
    return out


def random_maps(positions, shape, seed: int = 0) -> np.ndarray:
    """Uniform random maps (len(positions), *shape), seeded per image position so that any
    image's map can be drawn again on its own."""
    return np.stack([np.random.default_rng([seed, int(p)]).random(shape) for p in positions]).astype(np.float32)


# --- the results -------------------------------------------------------------------------


@dataclass
class Evaluation:
    """Per-image results: ``results[method][metric]`` is an array (n,) in image order."""

    images: list[str]  # image names
    class_index: np.ndarray  # (n,) the class each image is explained for
    probability: np.ndarray  # (n,) that class's probability for the intact image
    results: dict[str, dict[str, np.ndarray]]
    settings: dict = field(default_factory=dict)
    machine: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    extras: dict = field(default_factory=dict)  # further cached results (JSON-ready)

    @property
    def methods(self) -> list[str]:
        return list(self.results)

    def __len__(self) -> int:
        return len(self.images)

    def summary(self) -> dict[str, dict[str, tuple[float, float]]]:
        """Mean and standard error (sample std with ddof=1, over sqrt(n)) per method and metric."""
        return {method: {metric: mean_and_standard_error(values) for metric, values in rows.items()}
                for method, rows in self.results.items()}

    def table(self) -> str:
        """The summary as a text table, mean ± standard error: areas, Average Drop in %,
        Increase in Confidence in % of images, milliseconds per image."""
        scale = {"increase": 100.0, "seconds": 1000.0}
        heads = {"deletion": "deletion AUC", "insertion": "insertion AUC", "average_drop": "avg drop %",
                 "increase": "increase %", "seconds": "ms / image"}
        digits = {"deletion": 3, "insertion": 3, "average_drop": 1, "increase": 1, "seconds": 0}
        width = max(len(m) for m in self.methods) + 2
        lines = [f"{'':{width}s}" + "".join(f"{heads[k]:>16s}" for k in METRICS)]
        for method, rows in self.summary().items():
            cells = []
            for k in METRICS:
                mean, se = (v * scale.get(k, 1.0) for v in rows[k])
                cells.append("-" if method == RANDOM and k == "seconds" else f"{mean:.{digits[k]}f} ± {se:.{digits[k]}f}")
            lines.append(f"{method:{width}s}" + "".join(f"{c:>16s}" for c in cells))
        return "\n".join(lines)

    def subset(self, positions) -> Evaluation:
        positions = list(positions)
        return Evaluation(
            [self.images[p] for p in positions], self.class_index[positions], self.probability[positions],
            {m: {k: v[positions] for k, v in rows.items()} for m, rows in self.results.items()},
            dict(self.settings), dict(self.machine), dict(self.versions), dict(self.extras),
        )

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "settings": self.settings,
            "machine": self.machine,
            "versions": self.versions,
            "images": list(self.images),
            "class_index": [int(c) for c in self.class_index],
            "probability": [round(float(p), 7) for p in self.probability],
            "results": {m: {k: [round(float(v), 7) for v in values] for k, values in rows.items()}
                        for m, rows in self.results.items()},
            "extras": self.extras,
        }

    @classmethod
    def from_json(cls, document: dict, source: str = "the document") -> Evaluation:
        missing = [k for k in ("format", "images", "class_index", "probability", "results") if k not in document]
        if missing:
            raise ValueError(f"{source} is not a CAM comparison result: it lacks {', '.join(missing)}.")
        if document["format"] != FORMAT:
            raise ValueError(f"{source} has format {document['format']}; this version reads format {FORMAT}.")
        n = len(document["images"])
        results = {}
        for method, rows in document["results"].items():
            absent = [k for k in METRICS if k not in rows]
            if absent or any(len(v) != n for v in rows.values()):
                raise ValueError(f"{source}: method {method!r} lacks {absent} or has rows of the wrong length (not {n}).")
            results[method] = {k: np.asarray(rows[k], dtype=np.float64) for k in METRICS}
        return cls(list(document["images"]), np.asarray(document["class_index"], dtype=np.int32),
                   np.asarray(document["probability"], dtype=np.float64), results,
                   document.get("settings", {}), document.get("machine", {}), document.get("versions", {}),
                   document.get("extras", {}))


def mean_and_standard_error(values) -> tuple[float, float]:
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return float(values.mean()) if len(values) else float("nan"), float("nan")
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values)))


# --- running -----------------------------------------------------------------------------


def _checked_maps(maps, name, n) -> np.ndarray:
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim != 3 or len(maps) != n:
        raise ValueError(f"Method {name!r} returned heatmaps of shape {maps.shape}; expected ({n}, height, width).")
    if not np.all(np.isfinite(maps)) or maps.min() < 0 or maps.max() > 1:
        raise ValueError(f"Method {name!r} returned heatmaps outside [0, 1] (or not finite); normalise them first.")
    return maps


def feature_shape(model, layer, image_shape) -> tuple[int, int]:
    """(height, width) of ``layer``'s feature map for images of ``image_shape`` (h, w, c)."""
    scored = ScoredModel(model, layer)
    scored.build((None, *image_shape))
    return tuple(int(d) for d in scored.replayed.outputs[1].shape[1:3])


def _same_as(maps: Mapping[str, np.ndarray], tolerance: float | None) -> dict[str, np.ndarray]:
    """Per method, per image: the first method listed earlier whose map of that image is the
    same within ``tolerance`` (max absolute difference at the maps' resolution), or ""."""
    out, seen = {}, []
    for name, m in maps.items():
        same = np.full(len(m), "", dtype=object)
        if tolerance is not None:
            for other in seen:
                if maps[other].shape == m.shape:
                    equal = (same == "") & (np.abs(maps[other] - m).reshape(len(m), -1).max(axis=1) <= tolerance)
                    same[equal] = other
        out[name] = same
        seen.append(name)
    return out


def add_confidence(evaluation: Evaluation, model, images, maps: Mapping[str, np.ndarray],
                   same_map_tolerance: float | None = 1e-5, max_images: int = 256) -> Evaluation:
    """Fill in Average Drop (%) and Increase in Confidence (0/1) per image from the methods'
    heatmaps ``maps[method]`` (n, h, w), with ``confidence_change`` (class probability);
    images with the same map as a method listed earlier get that method's values.

    ``confidence_change`` traces its model anew at each call, so the maps of several
    methods go into one call, up to ``max_images`` images, upsampled to the images first
    (as ``confidence_change`` itself upsamples them; at the images' size that is exact).
    """
    from .methods import upsample

    same = _same_as(maps, same_map_tolerance)
    todo = {name: same[name] == "" for name in maps}
    groups, count = [[]], 0
    for name in maps:
        k = int(todo[name].sum())
        if k and groups[-1] and count + k > max_images:
            groups.append([])
            count = 0
        if k:
            groups[-1].append(name)
            count += k
    size = np.asarray(images).shape[1:3]
    for group in (g for g in groups if g):
        change = confidence_change(
            model,
            np.concatenate([images[todo[name]] for name in group]),
            np.concatenate([upsample(maps[name][todo[name]], size) for name in group]),
            np.concatenate([evaluation.class_index[todo[name]] for name in group]),
        )
        start = 0
        for name in group:
            k = int(todo[name].sum())
            evaluation.results[name]["average_drop"][todo[name]] = change.drop[start : start + k]
            evaluation.results[name]["increase"][todo[name]] = change.increased[start : start + k]
            start += k
    for name in maps:  # in order: a method's values are there before a later one copies them
        for i in np.flatnonzero(~todo[name]):
            for k in ("average_drop", "increase"):
                evaluation.results[name][k][i] = evaluation.results[same[name][i]][k][i]
    evaluation.settings["average_drop"] = "faithfulness.confidence_change (probability), drop in %"
    return evaluation


def evaluate(
    model,
    layer,
    methods: Mapping[str, Callable],
    images,
    class_index,
    *,
    names: Sequence[str] | None = None,
    positions: Sequence[int] | None = None,
    steps: int = 16,
    batch_size: int = 4,
    seed: int = 0,
    random_baseline: bool = True,
    same_map_tolerance: float | None = 1e-5,
    warmup: bool = True,
    progress: Callable[[Evaluation, float], None] | None = None,
    keep_maps: Callable[[str, int, np.ndarray], None] | None = None,
) -> Evaluation:
    """Faithfulness of each method's heatmaps for ``images`` (in the model's input space),
    each explained for ``class_index`` (one per image), and each method's time per image.

    ``methods`` maps names to ``Method``s (or plain ``fn(images, class_index)``). The
    images go in batches of ``batch_size``; ``positions`` (default 0..n-1) are the images'
    places in the whole set, which seed the random maps.

    An image whose map from a method equals (within ``same_map_tolerance``, max absolute
    difference at the map's resolution) its map from a method listed earlier gets that
    method's faithfulness numbers, which depend only on the image and the map; its time
    is its own. ``Evaluation.settings["same_maps"]`` counts how often that happened.
    ``None`` computes everything.

    ``progress(partial, seconds)`` is called after every batch (the partial rows lack
    Average Drop and Increase, computed at the end for all images at once);
    ``keep_maps(method, first_position, maps)`` receives every batch's maps.
    """
    batch, _ = as_batch(images)
    n = len(batch)
    if RANDOM in methods:
        raise ValueError(f"{RANDOM!r} is the name of the random baseline; rename that method.")
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be an integer of at least 1, got {batch_size!r}.")
    scored = ScoredModel(model, False)
    scored.build(batch.shape)
    classes = scored.class_indices(np.asarray(class_index), n)
    names = [str(i) for i in range(n)] if names is None else list(names)
    positions = np.arange(n) if positions is None else np.asarray(positions)
    if len(names) != n or len(positions) != n:
        raise ValueError(f"Got {len(names)} names and {len(positions)} positions for {n} images.")
    all_methods = dict(methods)
    shape = feature_shape(model, layer, batch.shape[1:]) if random_baseline else None
    if random_baseline:
        all_methods[RANDOM] = Method(None, f"uniform random maps {shape}, seed {seed} per image position")

    def call(name, method, x, c, p):
        if name == RANDOM:
            return random_maps(p, shape, seed)
        return method(x, c)

    if warmup:  # trace every compiled function once, untimed
        sizes = sorted({min(batch_size, n - s) for s in range(0, n, batch_size)}, reverse=True)
        for name, method in all_methods.items():
            for size in sizes:
                call(name, method, batch[:size], classes[:size], positions[:size])

    deletion = _Curves(model, "probability", 32)
    insertion = _Curves(model, "probability", 32)
    rows = {m: {k: np.full(n, np.nan) for k in METRICS} for m in all_methods}
    kept = {m: [] for m in all_methods}
    probability = np.full(n, np.nan)
    began = time.perf_counter()
    for s in range(0, n, batch_size):
        x, c, p = batch[s : s + batch_size], classes[s : s + batch_size], positions[s : s + batch_size]
        b = len(x)
        computed = {}
        for name, method in all_methods.items():
            t = time.perf_counter()
            maps = call(name, method, x, c, p)
            rows[name]["seconds"][s : s + b] = (time.perf_counter() - t) / b
            computed[name] = _checked_maps(maps, name, b)
            kept[name].append(computed[name])
            if keep_maps is not None:
                keep_maps(name, int(p[0]), computed[name])
        for name, same in _same_as(computed, same_map_tolerance).items():
            row, todo = rows[name], same == ""
            for i in np.flatnonzero(~todo):
                for k in ("deletion", "insertion"):
                    row[k][s + i] = rows[same[i]][k][s + i]
            if todo.any():
                xs, ms, cs = x[todo], computed[name][todo], c[todo]
                row["deletion"][s : s + b][todo] = deletion.run("deletion", xs, ms, cs, steps, 0.0).auc
                row["insertion"][s : s + b][todo] = insertion.run("insertion", xs, ms, cs, steps, "blur").auc
        if progress is not None:
            stop = s + b
            progress(Evaluation(names[:stop], classes[:stop], probability[:stop],
                                {m: {k: v[:stop] for k, v in r.items()} for m, r in rows.items()}),
                     time.perf_counter() - began)
    maps = {m: np.concatenate(v) for m, v in kept.items()}
    same = _same_as(maps, same_map_tolerance)
    evaluation = Evaluation(names, classes, probability, rows, {
        "steps": steps, "batch_size": batch_size, "seed": seed, "score": "probability",
        "deletion_baseline": "zero input", "insertion_baseline": "blur (area /8, bilinear up)",
        "same_map_tolerance": same_map_tolerance, "layer": str(layer),
        "same_maps": {m: {o: int((v == o).sum()) for o in set(v) - {""}} for m, v in same.items()},
        "methods": {m: getattr(f, "settings", "") for m, f in all_methods.items()},
    })
    add_confidence(evaluation, model, batch, maps, same_map_tolerance)
    evaluation.probability = deletion.score_rows(batch, classes)[0].astype(np.float64)
    return evaluation


# --- the cache ---------------------------------------------------------------------------


def _accelerator() -> str:
    """The devices other than CPUs that Keras' backend sees, as ``keras.distribution`` lists them."""
    try:
        devices = keras.distribution.list_devices()
    except (AttributeError, RuntimeError):  # the torch backend has no distribution library
        return f"unknown (keras.distribution lists no devices on the {keras.backend.backend()} backend)"
    others = [d for d in devices if not str(d).lower().startswith("cpu")]
    return ", ".join(map(str, others)) if others else "none (CPU)"


def machine_description(note: str = "") -> dict:
    """The machine the times were measured on."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    out = {"platform": platform.platform(), "cpu": cpu, "cores": usable, "accelerator": _accelerator()}
    try:  # other work on the machine slows the methods down: say how busy it was
        out["load_average_1_5_15_min"] = [round(v, 1) for v in os.getloadavg()]
    except OSError:
        pass
    if note:
        out["note"] = note
    return out


def versions() -> dict:
    """Versions of what computed the results (and the project's commit, in a checkout)."""
    import subprocess
    import sys

    from .. import __version__

    name = backend.name()
    # Keras has imported its backend's library; its distribution's name varies
    # (tensorflow, tensorflow-cpu, ...), so the module says its own version.
    library = getattr(sys.modules.get(name), "__version__", "unknown")
    out = {"chollet_viz": __version__, "python": sys.version.split()[0], "keras_backend": name, name: library,
           "keras": keras.__version__, "numpy": np.__version__}
    try:
        root = Path(__file__).resolve().parents[2]
        out["commit"] = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=root, capture_output=True,
                                       text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        out["commit"] = "unknown"
    return out


def save_results(evaluation: Evaluation, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_text(json.dumps(evaluation.to_json(), indent=1) + "\n")
    os.replace(tmp, path)
    return path


def load_results(path=None, *, sha256: str | None = None) -> Evaluation:
    """The cached comparison: the registered file (``path=None``; its sha256 is checked by
    the registry), or ``path``, checked against ``sha256`` when given."""
    from .. import data

    if path is None:
        path = data.fetch(RESULTS_NAME)  # raises AssetError on a sha256 mismatch
    else:
        path = Path(path)
        if sha256 is not None:
            actual = data.sha256_of(path)
            if actual != sha256:
                raise data.AssetError(
                    f"{path} has sha256 {actual}, expected {sha256}: the cached comparison was "
                    "changed or corrupted. Restore it, or recompute it with "
                    "`python -m chollet_viz.cam.evaluation`."
                )
    return Evaluation.from_json(json.loads(Path(path).read_text()), str(path))


# --- the chapter's image set ---------------------------------------------------------------


def test_image_names(per_class: int = 100) -> list[str]:
    """The first ``per_class`` cats and dogs of the Dogs-vs-Cats test split, in numeric
    order, as paths relative to the data set's folder ("test/cats/cat.1500.jpg")."""
    from ..data import fetch
    from ..datasets import dogs_vs_cats_files

    files, labels = dogs_vs_cats_files("test")
    root = fetch("dogs_vs_cats")
    chosen = [f for label in (0, 1) for f in [f for f, l in zip(files, labels) if l == label][:per_class]]
    return [Path(f).relative_to(root).as_posix() for f in chosen]


def load_images(names, size=(224, 224)) -> np.ndarray:
    """The named Dogs-vs-Cats images, RGB 0..255, resized as ``datasets.load_image`` does."""
    from ..data import fetch
    from ..datasets import load_image

    root = fetch("dogs_vs_cats")
    return np.stack([load_image(root / name, target_size=size) for name in names])


# --- re-verifying the cache ------------------------------------------------------------------


@dataclass
class CacheCheck:
    """Recomputed rows against the cached ones."""

    positions: list[int]
    differences: dict[str, dict[str, float]]  # method -> metric -> largest |recomputed - cached|
    tolerances: dict[str, float]
    mismatches: list[str]
    class_mismatches: list[str]

    @property
    def ok(self) -> bool:
        return not self.mismatches and not self.class_mismatches

    def verdict(self) -> str:
        n, m = len(self.positions), len(self.differences)
        tol = ", ".join(f"{k} {v:g}" for k, v in self.tolerances.items())
        if self.ok:
            return (f"cache verified: {n} images recomputed, {m} methods, every metric within its "
                    f"tolerance ({tol}); the explained classes are the model's top-1 classes")
        return "cache check FAILED: " + "; ".join(self.class_mismatches + self.mismatches)


def check_cached(
    cached: Evaluation,
    model,
    methods: Mapping[str, Callable],
    positions: Sequence[int],
    *,
    images=None,
    preprocess=None,
    tolerances: Mapping[str, float] | None = None,
    strict: bool = True,
) -> CacheCheck:
    """Recompute the images at ``positions`` of the cached evaluation with ``methods`` (the
    same settings) and compare each metric except the time with the cached rows.

    The images are loaded by name (``load_images``) and passed through ``preprocess``
    unless ``images`` (already in the model's input space) are given. The top-1 class of
    each image must still be the cached class. ``strict`` raises ``AssertionError`` on
    any difference beyond ``tolerances`` (default ``TOLERANCES``).
    """
    positions = [int(p) for p in positions]
    tolerances = dict(TOLERANCES if tolerances is None else tolerances)
    expected = cached.subset(positions)
    if images is None:
        images = load_images(expected.images)
        images = preprocess(images) if preprocess is not None else images
    images = np.asarray(images, np.float32)
    settings = cached.settings
    scored = ScoredModel(model, False)
    scored.build(images.shape)
    logits, _ = scored.logits_and_features(keras.ops.convert_to_tensor(images))
    top = backend.to_numpy(logits).argmax(axis=1)
    class_mismatches = [f"{expected.images[i]}: top-1 class {top[i]}, cached {expected.class_index[i]}"
                        for i in range(len(top)) if top[i] != expected.class_index[i]]
    unknown = set(methods) - set(cached.results)
    if unknown:
        raise ValueError(f"Methods {sorted(unknown)} are not in the cached results ({cached.methods}).")
    again = evaluate(
        model, settings.get("layer"), methods, images, expected.class_index, names=expected.images,
        positions=positions, steps=settings.get("steps", 16), batch_size=len(images),
        seed=settings.get("seed", 0), random_baseline=RANDOM in cached.results,
        same_map_tolerance=settings.get("same_map_tolerance", 1e-5), warmup=False,
    )
    differences, mismatches = {}, []
    for method, rows in again.results.items():
        differences[method] = {}
        for metric, tol in tolerances.items():
            diff = np.abs(rows[metric] - expected.results[method][metric])
            differences[method][metric] = float(diff.max())
            for i in np.flatnonzero(~(diff <= tol)):
                mismatches.append(f"{method} {metric} on {expected.images[i]}: recomputed "
                                  f"{rows[metric][i]:.4f}, cached {expected.results[method][metric][i]:.4f}")
    check = CacheCheck(positions, differences, tolerances, mismatches, class_mismatches)
    if strict and not check.ok:
        raise AssertionError(check.verdict())
    return check


# --- full against faster Score-CAM ----------------------------------------------------------


CHAPTER_PICTURES = {  # the comparing-CAM-methods chapter's five pictures: name -> source
    "elephants": "creative_commons_elephant.jpg",
    "cat.1700": "cat.1700.jpg",
    "dog.1508": "test/dogs/dog.1508.jpg",
    "dog.1511": "test/dogs/dog.1511.jpg",
    "cat.1505": "test/cats/cat.1505.jpg",
}


def chapter_pictures(size=(224, 224)) -> tuple[list[str], np.ndarray]:
    """The chapter's five pictures (names, RGB 0..255): registered images or Dogs-vs-Cats files."""
    from ..data import fetch
    from ..datasets import load_image

    root = fetch("dogs_vs_cats")
    images = [load_image(root / src if src.startswith("test/") else src, target_size=size)
              for src in CHAPTER_PICTURES.values()]
    return list(CHAPTER_PICTURES), np.stack(images)


def map_agreement(maps, reference) -> tuple[np.ndarray, np.ndarray]:
    """Per image: Pearson correlation of two maps and their largest absolute difference.
    A constant map correlates 0 with anything (not NaN)."""
    a = np.asarray(maps, np.float64).reshape(len(maps), -1)
    b = np.asarray(reference, np.float64).reshape(len(reference), -1)
    a, b = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    corr = np.divide((a * b).sum(axis=1), norm, out=np.zeros(len(a)), where=norm > 0)
    diff = np.abs(np.asarray(maps, np.float64) - np.asarray(reference, np.float64)).reshape(len(a), -1).max(axis=1)
    return corr, diff


def score_cam_comparison(model, layer, images, class_index, channels=(16, 32, 64, 128)) -> dict:
    """Score-CAM on all channels and on the ``channels`` of largest spatial std, for
    ``images`` (model input space): the maps, JSON-ready, and the full method's time."""
    from .methods import ScoreCAM

    full = ScoreCAM(model, layer, batch_size=64)
    # Timed with its tracing, a few seconds against minutes of forward passes.
    t = time.perf_counter()
    full_maps = full.explain(images, class_index).heatmaps
    seconds = (time.perf_counter() - t) / len(images)
    faster = {str(k): ScoreCAM(model, layer, max_channels=k, batch_size=64).explain(images, class_index).heatmaps
              for k in channels}
    def js(m):
        return np.round(np.asarray(m, np.float64), 6).tolist()
    return {"layer": str(layer), "class_index": [int(c) for c in class_index], "full": js(full_maps),
            "full_seconds_per_image": round(seconds, 2), "faster": {k: js(v) for k, v in faster.items()}}


# --- the command line ------------------------------------------------------------------------


DEFAULT_PATH = Path(__file__).resolve().parents[2] / "data" / f"{RESULTS_NAME}.json"
# How the cached table was made: the arguments of comparison_methods.
DEFAULT_METHOD_ARGUMENTS = dict(score_cam_channels=32, smoothgrad_samples=16, ig_steps=16,
                                occlusion_patch=56, occlusion_stride=42)
DESCRIPTION = (
    "Per-image deletion and insertion areas, Average Drop, Increase in Confidence and time per "
    "image of the CAM methods and pixel attributions, with a random-map baseline, on the first 100 "
    "cats and 100 dogs of the Dogs-vs-Cats test split with EfficientNet-Lite0 at head_relu; and full "
    "against faster Score-CAM maps of the comparing-CAM-methods chapter's five pictures "
    "(python -m chollet_viz.cam.evaluation)."
)


def _load_kept_maps(folder: Path, methods) -> dict[str, np.ndarray]:
    out = {}
    for method in methods:
        files = sorted(folder.glob(f"{method.replace(' ', '_')}.[0-9][0-9][0-9][0-9].npy"))
        if not files:
            raise FileNotFoundError(f"No kept maps of {method!r} in {folder}.")
        out[method] = np.concatenate([np.load(f) for f in files])
    return out


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description="Compare the CAM methods and pixel attributions on "
                                     "Dogs-vs-Cats test images with EfficientNet-Lite0; cache the results.")
    parser.add_argument("--per-class", type=int, default=100, help="images per class (default 100)")
    parser.add_argument("--steps", type=int, default=8, help="deletion/insertion steps (default 8)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--start", type=int, default=0, help="evaluate only images start..stop-1 of the set")
    parser.add_argument("--stop", type=int, default=None)
    parser.add_argument("--out", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--partial", type=Path, help="progress file, rewritten after every batch")
    parser.add_argument("--maps", type=Path, help="folder to keep every batch's maps in (.npy)")
    parser.add_argument("--machine-note", default="", help="what else the machine was running")
    parser.add_argument("--only", choices=("score-cam", "confidence"),
                        help="redo one part of the existing OUT: the full-against-faster Score-CAM maps, "
                        "or Average Drop and Increase from the maps kept in --maps")
    parser.add_argument("--skip-score-cam", action="store_true", help="leave out the full-against-faster Score-CAM maps")
    parser.add_argument("--no-register", action="store_true", help="do not record OUT in data/registry.json")
    args = parser.parse_args(argv)

    from ..efficientnet import preprocess_input
    from ..models import efficientnet_lite0

    model = efficientnet_lite0()
    layer = "head_relu"

    def top_classes(x):
        return np.concatenate([backend.to_numpy(model(keras.ops.convert_to_tensor(x[i : i + 25]), training=False))
                               .argmax(1) for i in range(0, len(x), 25)])

    if args.only is None:
        everything = test_image_names(args.per_class)
        stop = len(everything) if args.stop is None else args.stop
        names, positions = everything[args.start : stop], list(range(len(everything)))[args.start : stop]
        x = preprocess_input(load_images(names))
        methods = comparison_methods(model, layer, **DEFAULT_METHOD_ARGUMENTS)
        began = time.time()

        def progress(part, seconds):
            if args.partial is not None:
                save_results(part, args.partial)
            left = (len(x) - len(part)) * seconds / len(part)
            print(f"{time.strftime('%H:%M:%S')} {len(part)}/{len(x)} images, {seconds:.0f} s, about "
                  f"{left / 60:.0f} min left", flush=True)

        keep = None
        if args.maps is not None:
            args.maps.mkdir(parents=True, exist_ok=True)

            def keep(method, first, maps):
                np.save(args.maps / f"{method.replace(' ', '_')}.{first:04d}.npy", maps)

        result = evaluate(model, layer, methods, x, top_classes(x), names=names, positions=positions,
                          steps=args.steps, batch_size=args.batch_size, progress=progress, keep_maps=keep)
        result.settings.update(
            method_arguments=DEFAULT_METHOD_ARGUMENTS,
            images=f"first {args.per_class} cats and dogs of the Dogs-vs-Cats test split, 224x224",
            model="EfficientNet-Lite0 (chollet_viz.models.efficientnet_lite0), each image's top-1 ImageNet class",
            wall_seconds=round(time.time() - began),
        )
        result.machine = machine_description(args.machine_note)
        result.versions = versions()
    else:
        result = Evaluation.from_json(json.loads(args.out.read_text()), str(args.out))
    if args.only == "confidence":
        if args.maps is None:
            parser.error("--only confidence needs --maps, the folder of the kept maps")
        x = preprocess_input(load_images(result.images))
        add_confidence(result, model, x, _load_kept_maps(args.maps, result.methods),
                       result.settings.get("same_map_tolerance", 1e-5))
    if args.only == "score-cam" or (args.only is None and not args.skip_score_cam):
        names, pictures = chapter_pictures()
        x = preprocess_input(pictures)
        result.extras["score_cam"] = dict(pictures=names, **score_cam_comparison(model, layer, x, top_classes(x)))
        print(f"{time.strftime('%H:%M:%S')} full against faster Score-CAM done", flush=True)
    save_results(result, args.out)
    print(f"wrote {args.out}", flush=True)
    if not args.no_register:
        from ..data import register_project_file

        register_project_file(RESULTS_NAME, args.out, DESCRIPTION)
        print(f"registered {RESULTS_NAME}", flush=True)


if __name__ == "__main__":
    main()
