"""The CAM family and the pixel attributions, timed against the fastest forward pass of the same model.

    CHOLLET_VIZ_MIRROR=../shared/data python benchmarks/bench_cam.py [--quick]
        [--models vgg16-gap,efficientnet,small-convnet] [--repeats 7] [--batch 32]
        [--full-scorecam efficientnet,small-convnet] [--json PATH]

Models: ``vgg16-gap`` (ImageNet VGG16 conv base, global average pooling, a dense layer;
block5_conv3), ``efficientnet`` (EfficientNet-Lite0 at head_relu) and ``small-convnet``
(the book's small convnet, Flatten + Dense head, at conv2d_4). ``--quick`` is a smoke
run: EfficientNet and the small convnet, small time budgets (often one timed round),
the many-pass methods at half their work, a batch of 8.

For each model, in one process and one run:

1. The baseline. Several ways of running the model forward on one image are timed in
   turns, and the fastest is the baseline every other time is divided by: a
   ``tf.function`` of ``model(x, training=False)``, the same with XLA
   (``jit_compile=True``), ``model.predict_on_batch``, the concrete function frozen into
   a graph of constants (``convert_variables_to_constants_v2``, which lets Grappler fold
   the constant arithmetic), and, for models with batch normalisation after a
   convolution, that normalisation folded into the convolution's kernel and bias, as a
   ``tf.function`` and frozen. Each candidate's logits are checked against the model's.
   Every candidate starts from the NumPy image and ends with a NumPy result, as the
   methods do (they take NumPy arrays and return NumPy heatmaps), so the conversions
   are in every measurement alike.
2. Each method's time for one image, in two groups timed in turns with the baseline: the
   methods that cost about one forward and backward pass (the gradient CAMs, EigenCAM,
   saliency, and tf-keras-vis' Gradcam, GradcamPlusPlus, Layercam and Saliency), and
   those that cost many passes (Faster Score-CAM and tf-keras-vis' Scorecam with as many
   channels, SmoothGrad, Integrated Gradients, occlusion). In every round the baseline
   runs just before each method, so that its many calls sample the machine's load over
   the whole group, and a method's "x forward" is its median time over the median of
   all those forward calls. A group gets as many rounds as fit in its time budget (the
   first round's cost decides; at least three for the one-pass methods, one for the
   others, at most ``--repeats``), after one untimed warm-up call of each method
   (tracing). Times are medians.
3. The full Score-CAM, on one image, against the faster one: the time ratio and how far
   apart their heatmaps are.
4. The agreement with tf-keras-vis (0.8.7, a test-only reference, not a project
   dependency) for the methods both have: Pearson correlation and largest absolute
   difference of the heatmaps, both sides divided by their maximum, at the feature
   map's resolution (``expand_cam=False``, so no resizing convention enters). Score-CAM
   upsamples its masks (tf-keras-vis: ``scipy.ndimage.zoom``, corners aligned; ours:
   ``tf.image.resize``, half-pixel centres), so its weights differ a little: read its
   correlation. SmoothGrad gets the same noise on both sides (NumPy's legacy generator
   seeded alike) and tf-keras-vis is asked for the mean of the signed gradients (its
   default averages their absolute values), so the two maps should agree closely.
   Grad-CAM++ is compared twice: with ``normalize_alphas=True`` (the authors' code, which
   tf-keras-vis follows) and in the paper's form (eq. 19), which differs on heads where
   the gradient varies over positions.
5. Throughput for a batch of ``--batch`` images, forward against Grad-CAM; peak memory.

Machine load from other processes changes absolute times; the ratios are what to read.
``--json PATH`` also writes them as rows (with each model's peak memory) for
``benchmarks/run_all.py``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from chollet_viz import cam, datasets, models  # noqa: E402

from _common import add_json_option, interleaved_seconds, peak_rss_mb, result_row, write_rows  # noqa: E402

try:  # the pixel attributions (chollet_viz/cam/attribution.py), where the package has them
    from chollet_viz.cam import attribution
except ImportError:
    attribution = None



@dataclass(frozen=True)
class Work:
    """How much work the many-pass methods do: their time grows in proportion."""

    channels: int = 64  # Faster Score-CAM (FasterScoreCAM's default) and tf-keras-vis' max_N
    samples: int = 8  # SmoothGrad, ours and tf-keras-vis' (the paper uses up to 50)
    steps: int = 8  # Integrated Gradients, trapezoid rule: steps + 1 gradients (default 50)
    grid: int = 5  # occlusion: patches of 2/(grid+1) of the image moved by 1/(grid+1)


QUICK_WORK = Work(channels=16, samples=4, steps=4, grid=3)
SMOOTH_NOISE = 0.15  # ours by default; tf-keras-vis' smooth_noise is set to the same

# Agreements are printed as a verdict below these (anything smaller is float32 noise).
DIFF_FLOOR = 1e-4
CORR_CEILING = 0.9999
LOGIT_TOLERANCE = 1e-4  # forward candidates: largest |logit difference| / largest |logit|


# --- the models --------------------------------------------------------------------------


@dataclass
class Subject:
    key: str
    model: keras.Model
    layer: str
    x: np.ndarray  # one preprocessed image, (1, h, w, c) float32
    class_index: int
    about: str
    notes: list = field(default_factory=list)


def _elephant(size, preprocess):
    image = datasets.load_image("creative_commons_elephant.jpg", (size, size))
    return np.asarray(preprocess(image[None].copy()), dtype=np.float32)


def vgg16_gap() -> Subject:
    """ImageNet VGG16 conv base + global average pooling + a dense layer (2 classes)."""
    keras.utils.set_random_seed(0)
    base = models.vgg16(include_top=False, input_shape=(224, 224, 3))
    # Built flat on the base's own graph: tf-keras-vis cannot reach into a nested model
    # ("Output ... is not connected to inputs"); chollet_viz.cam handles both.
    x = keras.layers.GlobalAveragePooling2D()(base.output)
    model = keras.Model(base.input, keras.layers.Dense(2, activation="softmax")(x))
    return Subject("vgg16-gap", model, "block5_conv3", _elephant(224, models.vgg16_preprocess), 1,
                   "ImageNet VGG16 conv base + GAP + dense (2 classes, seeded), elephant image")


def efficientnet() -> Subject:
    from chollet_viz.efficientnet import preprocess_input

    return Subject("efficientnet", models.efficientnet_lite0(), "head_relu", _elephant(224, preprocess_input), 386,
                   "EfficientNet-Lite0 (ImageNet), elephant image, class 386 (African elephant)")


def small_convnet() -> Subject:
    """The book's small convnet (Flatten + Dense head, one sigmoid unit), on a test cat."""
    files, labels = datasets.dogs_vs_cats_files("test")
    named = [i for i, f in enumerate(files) if f.stem == "cat.1505"]
    i = named[0] if named else 0
    x = datasets.load_image(files[i], (150, 150))[None] / np.float32(255)
    return Subject("small-convnet", models.cats_and_dogs_small(pretrained=True), "conv2d_4", x.astype(np.float32),
                   int(labels[i]), f"the book's small convnet (Flatten head, 1 sigmoid unit), test image {files[i].stem}")


MODELS = {"vgg16-gap": vgg16_gap, "efficientnet": efficientnet, "small-convnet": small_convnet}


# --- the forward-pass candidates ---------------------------------------------------------


class _PassThrough(keras.layers.Layer):
    """Stands where a batch normalisation was folded into the convolution before it."""

    def call(self, x, training=None, mask=None):
        return x


def fold_batchnorm(model):
    """The model with each inference-mode BatchNormalization that alone follows a linear
    Conv2D or DepthwiseConv2D folded into that convolution's kernel and bias (the same
    function up to float rounding); also the number of layers folded. Top level only."""
    convs = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)
    pairs = {}
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization) or len(layer._inbound_nodes) != 1:
            continue
        source = layer._inbound_nodes[0].input_tensors[0]._keras_history.operation
        if (isinstance(source, convs) and len(source._outbound_nodes) == 1
                and source.activation is keras.activations.linear and layer.axis in (-1, 3, [-1], [3])):
            pairs[id(source)] = layer
    if not pairs:
        return model, 0
    folded_bns = {id(bn) for bn in pairs.values()}

    def clone(layer):
        if id(layer) in pairs:
            bn = pairs[id(layer)]
            scale = np.asarray(bn.gamma) if bn.scale else 1.0
            scale = scale / np.sqrt(np.asarray(bn.moving_variance) + bn.epsilon)
            shift = (np.asarray(bn.beta) if bn.center else 0.0) - np.asarray(bn.moving_mean) * scale
            weights = layer.get_weights()
            kernel, bias = weights[0], (weights[1] if layer.use_bias else 0.0)
            if isinstance(layer, keras.layers.DepthwiseConv2D):  # output channel = in * multiplier + m
                kernel = kernel * scale.reshape(kernel.shape[2], kernel.shape[3])
            else:
                kernel = kernel * scale
            config = dict(layer.get_config(), use_bias=True)
            new = type(layer).from_config(config)
            new.build(layer.input.shape)
            new.set_weights([kernel, bias * scale + shift])
            return new
        if id(layer) in folded_bns:
            return _PassThrough(name=layer.name)
        return layer  # shared, with its weights

    return keras.models.clone_model(model, clone_function=clone), len(pairs)


def _frozen(model, x):
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    spec = tf.TensorSpec((None, *x.shape[1:]), tf.float32)
    concrete = tf.function(lambda t: model(t, training=False)).get_concrete_function(spec)
    return convert_variables_to_constants_v2(concrete)


def forward_candidates(model, x) -> dict:
    """Ways to run ``model`` forward: each maps a NumPy batch to NumPy logits."""
    plain = tf.function(lambda t: model(t, training=False), reduce_retracing=True)
    xla = tf.function(lambda t: model(t, training=False), jit_compile=True, reduce_retracing=True)
    frozen = _frozen(model, x)
    out = {
        "tf.function": lambda xs: plain(tf.constant(xs)).numpy(),
        "tf.function, XLA": lambda xs: xla(tf.constant(xs)).numpy(),
        "predict_on_batch": lambda xs: np.asarray(model.predict_on_batch(xs)),
        "frozen graph": lambda xs: frozen(tf.constant(xs))[0].numpy(),
    }
    folded, n = fold_batchnorm(model)
    if n:
        folded_fn = tf.function(lambda t: folded(t, training=False), reduce_retracing=True)
        folded_frozen = _frozen(folded, x)
        out[f"BN folded ({n}), tf.function"] = lambda xs: folded_fn(tf.constant(xs)).numpy()
        out[f"BN folded ({n}), frozen graph"] = lambda xs: folded_frozen(tf.constant(xs))[0].numpy()
    return out


# --- measuring ---------------------------------------------------------------------------


def timed_group(runs: dict, max_repeats: int, budget_s: float, baseline=None, min_rounds: int = 1):
    """Medians (s) of ``runs`` timed in turns, each one's ratio, and the number of rounds.

    As many rounds as fit in ``budget_s`` at the first round's cost, at least
    ``min_rounds``, at most ``max_repeats``. With a ``baseline`` callable, it runs just before each
    candidate in every round, so that its times sample the machine's load over the
    whole group; ``"baseline"`` gets the median of all of them, and each ratio is a
    candidate's median over that. (A ratio to the one baseline call next to it would
    carry the noise of that single short call.) Without, the ratios are to the fastest
    candidate. The callers warm every candidate up first (tracing is not timed).
    """
    order = {}
    for name, fn in runs.items():
        if baseline is not None:
            order[("baseline", name)] = baseline
        order[name] = fn
    times = interleaved_seconds(order, 1, warmup=0)
    cost = sum(t[0] for t in times.values())
    rounds = int(max(1, min_rounds, min(max_repeats, budget_s // cost)))
    for key, t in interleaved_seconds(order, rounds - 1, warmup=0).items():
        times[key] += t
    medians = {name: statistics.median(times[name]) for name in runs}
    if baseline is None:
        base = min(medians.values())
    else:
        base = medians["baseline"] = statistics.median(
            t for key, ts in times.items() if isinstance(key, tuple) for t in ts)
    return medians, {name: m / base for name, m in medians.items()}, rounds


def agreement(ours, theirs) -> str:
    """Pearson r and largest |difference| of two heatmap stacks, each divided by its maximum."""
    a, b = cam.normalize_heatmaps(ours).ravel(), cam.normalize_heatmaps(theirs).ravel()
    if a.shape != b.shape:
        return f"shapes differ: {np.shape(ours)} vs {np.shape(theirs)}"
    diff = float(np.abs(a - b).max())
    r = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")
    r_text = f"r > {CORR_CEILING}" if r > CORR_CEILING else f"r = {r:.4f}"
    diff_text = f"max|d| < {DIFF_FLOOR:.0e}" if diff < DIFF_FLOOR else f"max|d| = {diff:.3f}"
    return f"{r_text}, {diff_text}"


# --- the methods -------------------------------------------------------------------------


def labels(work: Work) -> dict:
    return dict(
        faster=f"Faster Score-CAM ({work.channels} channels)",
        smooth=f"SmoothGrad ({work.samples} samples)",
        ig=f"Integrated Gradients ({work.steps} steps)",
        tkv_score=f"tf-keras-vis Scorecam (max_N={work.channels})",
        tkv_smooth=f"tf-keras-vis SmoothGrad ({work.samples} samples)",
    )


@contextmanager
def _set(obj, **values):
    """Attributes of ``obj`` set for a while (warm-up calls that trace the same functions)."""
    saved = {k: getattr(obj, k) for k in values}
    for k, v in values.items():
        setattr(obj, k, v)
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(obj, k, v)


def our_methods(s: Subject, work: Work):
    """(cheap, many, warm): label -> callable returning heatmaps (1, h, w); warm: label ->
    a cheaper call that traces the same compiled functions."""
    x, ci, layer, m = s.x, s.class_index, s.layer, s.model
    name = labels(work)

    def run(method):
        return lambda: method(x, ci)

    cheap = {
        "Grad-CAM": run(cam.GradCAM(m, layer)),
        "Grad-CAM (eager)": run(cam.GradCAM(m, layer, compiled=False)),
        "Grad-CAM++ (paper eq. 19)": run(cam.GradCAMPlusPlus(m, layer)),
        "Grad-CAM++ (normalised alphas)": run(cam.GradCAMPlusPlus(m, layer, normalize_alphas=True)),
        "XGrad-CAM": run(cam.XGradCAM(m, layer)),
        "HiResCAM": run(cam.HiResCAM(m, layer)),
        "LayerCAM": run(cam.LayerCAM(m, layer)),
        "EigenCAM": run(cam.EigenCAM(m, layer)),
    }
    faster = cam.FasterScoreCAM(m, layer, max_channels=work.channels)
    many = {name["faster"]: run(faster)}

    def warm_faster():  # one chunk of masked images instead of all
        with _set(faster, max_channels=min(work.channels, faster.batch_size)):
            faster(x, ci)

    warm = {name["faster"]: warm_faster}
    if attribution is None:
        s.notes.append("chollet_viz.cam.attribution is not there: Saliency, SmoothGrad, "
                       "Integrated Gradients and Occlusion are not timed.")
        return cheap, many, warm
    try:
        h, w = x.shape[1:3]
        patch, stride = 2 * h // (work.grid + 1), h // (work.grid + 1)
        n_occ = len(attribution.Occlusion.positions(h, patch, stride)) * len(
            attribution.Occlusion.positions(w, patch, stride))
        saliency = attribution.Saliency(m, abs_max=True)
        smooth = attribution.SmoothGrad(m, samples=work.samples, noise_level=SMOOTH_NOISE, abs_max=True)
        ig = attribution.IntegratedGradients(m, steps=work.steps)
        # All occluded images in one pass: one traced shape.
        occlusion = attribution.Occlusion(m, patch=patch, stride=stride, batch_size=max(32, n_occ))
    except Exception as exc:  # an API that changed under the benchmark: say so, go on
        s.notes.append(f"pixel attributions not timed: {type(exc).__name__}: {exc}")
        return cheap, many, warm

    def smoothgrad():
        # A fresh generator seeded as tf-keras-vis' global one: the same noise on both
        # sides (both draw all samples' normal deviates in one call, in the same order).
        with _set(smooth, seed=np.random.RandomState(0)):
            return smooth.explain(x, ci).heatmaps()

    cheap["Saliency"] = lambda: saliency.explain(x, ci).heatmaps()
    many[name["smooth"]] = smoothgrad
    many[name["ig"]] = lambda: ig.explain(x, ci).heatmaps()
    many[f"Occlusion ({n_occ} patches of {patch}px)"] = lambda: occlusion.explain(x, ci).heatmaps()
    return cheap, many, warm


def tf_keras_vis_methods(s: Subject, work: Work):
    """(cheap, many, warm, pairs): tf-keras-vis callables returning raw maps (1, h, w),
    cheaper warm-up calls, and which of ours each is compared with. Empty where
    tf-keras-vis is not installed."""
    try:
        from tf_keras_vis.gradcam import Gradcam
        from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
        from tf_keras_vis.layercam import Layercam
        from tf_keras_vis.saliency import Saliency
        from tf_keras_vis.scorecam import Scorecam
        from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
        from tf_keras_vis.utils.scores import BinaryScore, CategoricalScore
    except ImportError:
        s.notes.append("tf-keras-vis is not installed: no comparison.")
        return {}, {}, {}, {}
    x, ci, layer = s.x, s.class_index, s.layer
    name = labels(work)
    model = s.model
    binary = model.outputs[0].shape[-1] == 1
    score = BinaryScore([bool(ci)]) if binary else CategoricalScore([ci])
    if isinstance(model, keras.Sequential):
        # tf-keras-vis' ReplaceToLinear needs ``output_names``, which a Keras 3 Sequential
        # model lacks: give it the same layers as a Functional model.
        model = keras.Model(model.inputs, model.outputs)
        s.notes.append("tf-keras-vis is given the Sequential model as a Functional model of the same layers.")
    # Explain the logit as we do: tf-keras-vis swaps the final activation on one clone,
    # which every tf-keras-vis method then shares.
    gradcam = Gradcam(model, model_modifier=ReplaceToLinear(), clone=True)
    linear = gradcam.model
    # seek_penultimate_conv_layer=False: use the layer named (otherwise from a ReLU layer
    # such as EfficientNet's head_relu it moves back to the convolution before its BN).
    at = dict(penultimate_layer=layer, seek_penultimate_conv_layer=False, expand_cam=False, normalize_cam=False)
    plusplus, layercam = GradcamPlusPlus(linear, clone=False), Layercam(linear, clone=False)
    saliency = Saliency(linear, clone=False)
    cheap = {
        "tf-keras-vis Gradcam": lambda: np.asarray(gradcam(score, x, **at)),
        "tf-keras-vis GradcamPlusPlus": lambda: np.asarray(plusplus(score, x, **at)),
        "tf-keras-vis Layercam": lambda: np.asarray(layercam(score, x, **at)),
    }
    pairs = {
        "tf-keras-vis Gradcam": ["Grad-CAM"],
        "tf-keras-vis GradcamPlusPlus": ["Grad-CAM++ (normalised alphas)", "Grad-CAM++ (paper eq. 19)"],
        "tf-keras-vis Layercam": ["LayerCAM"],
        "tf-keras-vis Saliency": ["Saliency"],
        name["tkv_score"]: [name["faster"]],
        name["tkv_smooth"]: [name["smooth"]],
    }
    many, warm = {}, {}
    if binary:
        s.notes.append("tf-keras-vis Scorecam is not run: it scores a softmax over the model's outputs, "
                       "which is 1 for a single sigmoid unit.")
    else:
        # Scorecam takes the softmax of what the model outputs, so it gets the logits too:
        # its weights are then the class probabilities of the masked images, as ours.
        scorecam = Scorecam(linear, clone=False)
        many[name["tkv_score"]] = lambda: np.asarray(scorecam(score, x, max_N=work.channels, batch_size=32, **at))
        # One batch of masked images traces model.predict's function as the full call does.
        warm[name["tkv_score"]] = lambda: scorecam(score, x, max_N=min(work.channels, 32), batch_size=32, **at)
    if attribution is not None:
        cheap["tf-keras-vis Saliency"] = lambda: np.asarray(saliency(score, x, normalize_map=False))

        def smooth(samples=work.samples):
            np.random.seed(0)  # tf-keras-vis draws its noise from NumPy's global generator
            # gradient_modifier=None: average the signed gradients, as the paper and ours
            # do (by default tf-keras-vis averages their absolute values); the channels
            # are then reduced as ours, largest absolute value.
            grads = saliency(score, x, smooth_samples=samples, smooth_noise=SMOOTH_NOISE,
                             gradient_modifier=None, keepdims=True, normalize_map=False)
            return np.abs(np.asarray(grads)).max(axis=-1)

        many[name["tkv_smooth"]] = smooth
        warm[name["tkv_smooth"]] = lambda: smooth(1)  # eager, one sample at a time
    return cheap, many, warm, pairs


# --- one model ---------------------------------------------------------------------------


def warmed(label, fn, maps, notes, warm=None):
    """``fn`` wrapped to keep its latest result in ``maps[label]``, after one untimed call
    (or ``warm``, a cheaper call that traces the same compiled functions); None if that
    call fails, which is noted (one method must not stop the run)."""
    def run():
        maps[label] = np.asarray(fn())

    try:
        (warm or run)()
    except Exception as exc:
        notes.append(f"{label} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
        return None
    return run


def choose_forward(s: Subject, args):
    """The candidates that compute the model's function (``forward_candidates``) and the
    name of the fastest on one image; prints their times."""
    x = s.x
    candidates = forward_candidates(s.model, x)
    reference = np.asarray(s.model(tf.constant(x), training=False))
    scale = float(np.abs(reference).max()) or 1.0
    for name, fn in list(candidates.items()):  # one that computes something else cannot be the baseline
        if not np.abs(fn(x) - reference).max() <= LOGIT_TOLERANCE * scale:
            s.notes.append(f"forward candidate {name!r} dropped: its outputs differ from model(x) by more "
                           f"than {LOGIT_TOLERANCE:.0e} x the largest |output|")
            candidates.pop(name)
    # The check above was each candidate's warm-up call.
    times, _, rounds = timed_group({k: (lambda fn=fn: fn(x)) for k, fn in candidates.items()},
                                   args.repeats, args.budget)
    ranked = sorted(times, key=times.get)
    best = ranked[0]
    print(f"  forward candidates, one image (median of {rounds} round{'s' * (rounds > 1)}; each agrees with model(x) within "
          f"{LOGIT_TOLERANCE:.0e} x the largest |output|):")
    for name in ranked:
        print(f"    {name:34s} {times[name] * 1000:8.1f} ms  {times[name] / times[best]:6.2f}x the fastest")
    plain = "" if best == "tf.function" else f", {times['tf.function'] / times[best]:.2f}x faster than a plain tf.function"
    print(f"  baseline: {best}, {times[ranked[1]] / times[best]:.2f}x faster than the runner-up ({ranked[1]}){plain}")
    return candidates, ranked, times


def bench_model(s: Subject, args) -> None:
    print(f"\n=== {s.key}: {s.about}; layer {s.layer}, class {s.class_index}, one image {tuple(s.x.shape[1:])}")
    x, ci, work = s.x, s.class_index, args.work
    name = labels(work)

    # 1. The baseline.
    candidates, ranked, forward_times = choose_forward(s, args)
    best = ranked[0]
    forward = candidates[best]
    run_forward = lambda: forward(x)  # noqa: E731

    # 2. The methods, in two groups, each timed in turns with the baseline.
    ours_cheap, ours_many, warm = our_methods(s, work)
    theirs_cheap, theirs_many, theirs_warm, pairs = tf_keras_vis_methods(s, work)
    warm.update(theirs_warm)
    rows = []  # (label, seconds, x forward)
    maps = {}  # each method's latest heatmaps, compared below
    failed = []  # methods whose warm-up call failed (noted), so not timed
    # The one-pass methods get at least 3 rounds: one call of each says little on a busy machine.
    for group, budget, at_least in (({**ours_cheap, **theirs_cheap}, args.budget, min(3, args.repeats)),
                                    ({**ours_many, **theirs_many}, args.budget_many, 1)):
        runs = {}
        for label, fn in group.items():
            run = warmed(label, fn, maps, s.notes, warm.get(label))
            if run is not None:
                runs[label] = run
        failed += [label for label in group if label not in runs]
        t, ratio, rounds = timed_group(runs, args.repeats, budget, baseline=run_forward, min_rounds=at_least)
        rows.append((f"forward ({rounds} round{'s' * (rounds > 1)})", t["baseline"], 1.0))
        rows += [(label, t[label], ratio[label]) for label in runs]

    # 3. The full Score-CAM against the faster one, on one image.
    full_line = full_vs_faster = None
    if s.key in args.full_scorecam and name["faster"] in maps:
        full = cam.ScoreCAM(s.model, s.layer)

        def warm_full():  # trace the same chunk function on one chunk only
            with _set(full, max_channels=full.batch_size):
                full(x, ci)

        label = "Score-CAM (full)"
        run = warmed(label, lambda: full(x, ci)[None], maps, s.notes, warm_full)
        if run is not None:
            t, ratio, rounds = timed_group({label: run}, args.repeats_full, float("inf"), baseline=run_forward)
            channels = full.scored.replayed.outputs[1].shape[-1]
            rows.append((f"forward ({rounds} round{'s' * (rounds > 1)})", t["baseline"], 1.0))
            rows.append((f"Score-CAM (full, {channels} channels)", t[label], ratio[label]))
            faster_ratio = dict((r[0], r[2]) for r in rows)[name["faster"]]
            full_vs_faster = (ratio[label] / faster_ratio, f"{channels} channels; heatmaps "
                              f"{agreement(maps[label], maps[name['faster']])}")
            full_line = (f"  full vs faster Score-CAM: {ratio[label] / faster_ratio:.1f}x the time "
                         f"(ratio of their x-forward figures; faster: the {work.channels} channels of largest "
                         f"spatial std); heatmaps {agreement(maps[label], maps[name['faster']])}")
        else:
            failed.append(label)
    elif name["faster"] in maps:
        s.notes.append(f"full Score-CAM not timed on {s.key} (name it in --full-scorecam to time it).")

    # The table.
    agree = {theirs: "; ".join(f"{o}: {agreement(maps[o], maps[theirs])}" for o in ours if o in maps)
             for theirs, ours in pairs.items() if theirs in maps}
    print(f"  baseline for 'x forward': {best}, run just before each method in every round; "
          "x forward = the method's median over the median of all those forward calls")
    print(f"  {'method':40s} {'ms/image':>9s} {'x forward':>10s}   agreement with ours (r, max|d|, both / max)")
    for label, sec, ratio in rows:
        print(f"  {label:40s} {sec * 1000:9.1f} {ratio:10.2f}   {agree.get(label, '')}")
    if full_line:
        print(full_line)
    for note in s.notes:
        print(f"  note: {note}")

    # The key results as rows for --json (benchmarks/run_all.py); peak memory filled in below.
    against = f"fastest forward pass, one image ({best})"
    out = [(f"{s.key}: fastest forward pass ({best})",
            "a plain tf.function of model(x) (seconds, tf.function / fastest)",
            forward_times["tf.function"] / forward_times[best], f"runner-up: {ranked[1]}")]
    out += [(f"{s.key}: time of {label}, one image", against, ratio, agree.get(label, ""))
            for label, sec, ratio in rows if not label.startswith("forward (")]
    out += [(f"{s.key}: time of {label}, one image", against, None,
             next((n for n in s.notes if n.startswith(f"{label} failed")), "failed")) for label in failed]
    if full_vs_faster:
        out.append((f"{s.key}: time of the full Score-CAM", f"{name['faster']} (seconds, full / faster)",
                    *full_vs_faster))

    # 5. Throughput for a batch: the two fastest forward passes at one image and the plain
    # tf.function (the fastest at one image need not be at many); the fastest is the baseline.
    if args.batch > 1:
        xb = np.repeat(x, args.batch, axis=0)
        gradcam = cam.GradCAM(s.model, s.layer)
        runs = {f"forward ({k})": (lambda fn=candidates[k]: fn(xb)) for k in dict.fromkeys([*ranked[:2], "tf.function"])}
        runs["Grad-CAM"] = lambda: gradcam(xb, ci)
        for fn in runs.values():
            fn()  # warm-up: tracing (and XLA compiling) for the batch's shape
        t, _, rounds = timed_group(runs, args.repeats, args.budget_batch)
        base = min((k for k in runs if k != "Grad-CAM"), key=t.get)
        speeds = ", ".join(f"{k} {args.batch / t[k]:.1f}" for k in runs if k != "Grad-CAM")
        print(f"  batch of {args.batch} (median of {rounds} round{'s' * (rounds > 1)}), images/s: {speeds}, "
              f"Grad-CAM {args.batch / t['Grad-CAM']:.1f} ({t['Grad-CAM'] / t[base]:.2f}x the faster forward)")
        out.append((f"{s.key}: time of Grad-CAM, batch of {args.batch}",
                    f"the faster forward pass on the same batch ({base[len('forward ('):-1]})",
                    t["Grad-CAM"] / t[base], f"images/s: {speeds}, Grad-CAM {args.batch / t['Grad-CAM']:.1f}"))
    print(f"  peak resident memory so far: {peak_rss_mb():.0f} MB")
    peak = peak_rss_mb()  # this process so far: every model before this one is included
    args.rows += [result_row("cam", *row[:3], peak, row[3]) for row in out]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None,
                        help=f"comma-separated, of {', '.join(MODELS)} (default all; quick: efficientnet,small-convnet)")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: small time budgets, the many-pass methods at {QUICK_WORK}, batch 8")
    parser.add_argument("--repeats", type=int, default=None, help="most timed rounds per group (default 7; quick 3)")
    parser.add_argument("--batch", type=int, default=None, help="batch for the throughput (default 32; quick 8)")
    parser.add_argument("--full-scorecam", default=None,
                        help="models on which to time the full Score-CAM (default efficientnet,small-convnet; "
                             "quick: small-convnet); VGG16's 512 channels take minutes")
    add_json_option(parser)
    args = parser.parse_args()
    args.rows = []  # filled by bench_model, written with --json
    quick = args.quick
    args.models = (args.models or ("efficientnet,small-convnet" if quick else ",".join(MODELS))).split(",")
    for key in args.models:
        if key not in MODELS:
            parser.error(f"unknown model {key!r}; valid models are {', '.join(MODELS)}")
    args.repeats = args.repeats or (3 if quick else 7)
    args.repeats_full = 1  # minutes on EfficientNet; one long call averages the load
    args.batch = args.batch or (8 if quick else 32)
    full = args.full_scorecam if args.full_scorecam is not None else (
        "small-convnet" if quick else "efficientnet,small-convnet")
    args.full_scorecam = full.split(",")
    args.work = QUICK_WORK if quick else Work()
    # Seconds of timed rounds per group; a group gets at least one round.
    args.budget, args.budget_many, args.budget_batch = (5, 0, 0) if quick else (45, 30, 20)
    # tf-keras-vis calls the models with a list where Keras expects the named input.
    warnings.filterwarnings("ignore", message="The structure of `inputs` doesn't match")
    keras.config.disable_interactive_logging()  # no progress bars from tf-keras-vis' model.predict
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPU cores; "
          f"{'quick' if quick else 'default'} run: at most {args.repeats} timed round{'s' * (args.repeats > 1)} per group; {args.work}")
    start = time.perf_counter()
    for key in args.models:
        bench_model(MODELS[key](), args)
    print(f"\npeak resident memory: {peak_rss_mb():.0f} MB; total {time.perf_counter() - start:.0f} s")
    write_rows(args.json, args.rows)


if __name__ == "__main__":
    main()
