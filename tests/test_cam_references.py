"""Every CAM method checked against a reference this project did not write.

Two kinds of reference, named in each test:

* tf-keras-vis 0.8.7 (a test-only dependency) where it has the method: Gradcam,
  GradcamPlusPlus (the authors' normalised alphas), Layercam, Scorecam (with and without
  ``max_N``). It is called on the layer we name (``seek_penultimate_conv_layer=False``),
  without its min-max scaling or resizing (``normalize_cam=False, expand_cam=False``), on
  the logit (the final softmax made linear, as our default score is the logit).
* A float64 NumPy re-derivation of the paper's formula, written below, from feature maps
  and gradients obtained independently: the model is split by hand into a base (input ->
  feature map) and a head (feature map -> logits, the last dense layer's pre-activation
  computed from its kernel), and the backend's own autodiff (``tf.GradientTape``,
  ``jax.grad``, ``torch.autograd``: ``_autodiff.gradient``) gives the gradient of each
  image's class logit with respect to the feature map. Nothing here calls the package's
  ScoredModel, replay or normalisation.

Heatmaps are compared after the same ReLU and division by the maximum on both sides
(each map in [0, 1]), so tolerances are absolute on that scale. Every method is tested
on a global-average-pooling (GAP) head and on a Flatten + Dense head (CAM on the GAP head
only, which it needs), with a different class for each image of the batch; Grad-CAM++
and LayerCAM also on a Sequential model and on a nested model (tf-keras-vis cannot tap a layer inside a nested model under Keras 3, so
those use the NumPy reference).

The NumPy references run under every Keras backend (``KERAS_BACKEND``); tf-keras-vis
forces TensorFlow, so its comparisons run on TensorFlow only (skipped elsewhere, or left
out of a test that also has a NumPy reference).
"""

import warnings

import keras
import numpy as np
import pytest
from _autodiff import BACKEND, gradient, numpy
from keras import layers

from chollet_viz import cam

TF_KERAS_VIS = BACKEND == "tensorflow"  # tf-keras-vis forces TensorFlow
tf_keras_vis_only = pytest.mark.skipif(
    not TF_KERAS_VIS, reason=f"tf-keras-vis forces TensorFlow (Keras runs on {BACKEND})"
)
if TF_KERAS_VIS:
    with warnings.catch_warnings():
        # tf-keras-vis 0.8.7 imports zoom from the deprecated scipy.ndimage.interpolation.
        warnings.simplefilter("ignore", DeprecationWarning)
        from tf_keras_vis.gradcam import Gradcam
        from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
        from tf_keras_vis.layercam import Layercam
        from tf_keras_vis.scorecam import Scorecam
        from tf_keras_vis.utils.scores import CategoricalScore

# tf-keras-vis calls one-input models with a list of inputs, which Keras 3 warns about.
pytestmark = pytest.mark.filterwarnings("ignore:The structure of `inputs` doesn't match:UserWarning")

# float32 (ours, and tf-keras-vis) against float64 (NumPy) on maps scaled to [0, 1].
ATOL = 1e-5
# tf-keras-vis' Score-CAM scales each mask by (max - min + 1e-7), ours by (max - min):
# a relative difference of 1e-7 / (max - min) in each mask, hence in each weight.
SCORE_CAM_ATOL = 1e-4
# Normalised Grad-CAM++ alphas on a Flatten head: eq. 19 has a pole where 2 + S_k g = 0
# (g < 0, so it adds nothing to the weight itself), but the alphas near it enter each
# channel's normalising sum. On flatten_model one position lies within 0.002 of the pole,
# where float32 NumPy itself is 5e-5 from float64.
NORMALISED_ALPHAS_ATOL = 1e-4


# --- tiny models, each with the base/head split the NumPy reference uses ---------------


def _split_chain(model, layer_name):
    """Base (input -> the layer's output) and head (that output -> logits) of a model that
    is a chain of layers; the head's last layer is a Dense whose pre-activation (kernel and
    bias, no softmax) is the logit."""
    chain = model.layers
    i = [layer.name for layer in chain].index(layer_name)
    base = keras.Model(model.inputs, chain[i].output)
    *middle, last = chain[i + 1 :]

    def head(features):
        for layer in middle:
            features = layer(features)
        return keras.ops.matmul(features, last.kernel) + last.bias

    return base, head


def gap_model():
    """conv -> conv -> global average pooling -> dense + softmax; target layer "conv"."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 3))
    x = layers.Conv2D(6, 3, padding="same", activation="relu", name="conv_a")(inputs)
    x = layers.Conv2D(5, 3, padding="same", activation="relu", name="conv")(x)
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, layers.Dense(4, activation="softmax", name="dense")(x), name="gap")
    return model, *_split_chain(model, "conv")


def flatten_model():
    """conv (padding "same", so the feature map has the input's 16 x 16 resolution) ->
    Flatten -> dense logits; target layer "conv"."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(inputs)
    model = keras.Model(inputs, layers.Dense(3, name="logits")(layers.Flatten()(x)), name="flatten")
    return model, *_split_chain(model, "conv")


def sequential_model():
    """A Sequential model: conv -> conv -> Flatten -> dense + softmax; target layer "conv"."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((10, 10, 3)),
            layers.Conv2D(4, 3, activation="relu", name="conv_a"),
            layers.Conv2D(5, 3, activation="relu", name="conv"),
            layers.Flatten(),
            layers.Dense(3, activation="softmax"),
        ],
        name="sequential",
    )
    return model, *_split_chain(model, "conv")


def nested_model():
    """A Functional model whose base is a nested Functional model (target layer "conv",
    its last layer) and whose head is a nested Sequential model (Flatten -> dense logits)."""
    keras.utils.set_random_seed(0)
    base_in = keras.Input((10, 10, 3))
    y = layers.Conv2D(4, 3, activation="relu", name="conv_a")(base_in)
    base = keras.Model(base_in, layers.Conv2D(5, 3, activation="relu", name="conv")(y), name="base")
    head = keras.Sequential([keras.Input((6, 6, 5)), layers.Flatten(), layers.Dense(3)], name="head")
    inputs = keras.Input((10, 10, 3))
    return keras.Model(inputs, head(base(inputs)), name="outer"), base, head


def pooled_model():
    """conv -> max pooling -> conv (8 x 8 map for a 16 x 16 input) -> GAP -> dense logits."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(6, 3, padding="same", activation="relu")(inputs)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(3, name="logits")(x), name="pooled"), None, None


MODELS = {"gap": gap_model, "flatten": flatten_model, "sequential": sequential_model, "nested": nested_model}
HEADS = ["gap", "flatten"]  # the two heads every method is tested on


def images(model, n=3, seed=1):
    shape = tuple(model.inputs[0].shape[1:])
    return np.random.default_rng(seed).uniform(0, 1, (n, *shape)).astype(np.float32)


CLASSES = [0, 2, 1]  # one class per image, different for each


# --- the NumPy side ----------------------------------------------------------------------


def features_and_gradients(base, head, x, classes):
    """Feature maps A (b, h, w, K) and d logit_c / d A, per image, in float64."""
    features = numpy(base(x))
    column = np.asarray(classes, np.int32)[:, None]
    grads = gradient(lambda f: keras.ops.take_along_axis(head(f), column, axis=1)[:, 0], features)
    return features.astype(np.float64), grads.astype(np.float64)


def scaled(maps):
    """ReLU, then each map divided by its maximum (a map with no positive value stays 0)."""
    maps = np.maximum(np.asarray(maps, np.float64), 0)
    peak = maps.reshape(len(maps), -1).max(axis=1).reshape(-1, 1, 1)
    return np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0)


def weighted_sum(A, weights):
    """sum_k weight_k A_k, with one weight per channel (b, K) or per position (b, h, w, K)."""
    if weights.ndim == 2:
        weights = weights[:, None, None, :]
    return (weights * A).sum(axis=-1)


def grad_cam_plus_plus_weights(A, g, normalize_alphas):
    """Chattopadhay et al. 2018, eq. 19 (the score's exponential, so only first derivatives):

        alpha_ij^k = g_ij^2 / (2 g_ij^2 + (sum_ab A_ab^k) g_ij^3),  alpha = 0 where g = 0,
        w_k = sum_ij alpha_ij^k relu(g_ij^k);

    with ``normalize_alphas`` each channel's alphas are first divided by their sum (the
    authors' code; 0 when the sum is 0)."""
    total = A.sum(axis=(1, 2), keepdims=True)
    g2 = g**2
    denom = 2 * g2 + total * g**3
    alpha = np.divide(g2, denom, out=np.zeros_like(g2), where=g2 > 0)
    if normalize_alphas:
        s = alpha.sum(axis=(1, 2), keepdims=True)
        alpha = np.divide(alpha, s, out=np.zeros_like(alpha), where=s != 0)
    return (alpha * np.maximum(g, 0)).sum(axis=(1, 2))


def x_grad_cam_weights(A, g):
    """Fu et al. 2020, eq. 11: w_k = sum_ij (A_ij^k / sum_ab A_ab^k) g_ij^k (0 for a zero channel)."""
    total = A.sum(axis=(1, 2), keepdims=True)
    share = np.divide(A, total, out=np.zeros_like(A), where=total != 0)
    return (share * g).sum(axis=(1, 2))


def eigen_cam_maps(A):
    """Muhammad & Yeasin 2020: the feature map projected on its first principal component.
    Positions are samples, channels variables: centre each channel over positions, take the
    first right singular vector v (NumPy SVD), map = (A - mean) v. Sign rule (a singular
    vector's sign is arbitrary): flip the map if it anti-correlates with the channel-summed
    activation (sum_k A_k minus its mean over positions)."""
    b, h, w, k = A.shape
    maps = []
    for a in A.reshape(b, h * w, k):
        centred = a - a.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        projection = centred @ vt[0]
        total = a.sum(axis=1)
        if projection @ (total - total.mean()) < 0:
            projection = -projection
        maps.append(projection.reshape(h, w))
    return np.stack(maps)


# --- the tf-keras-vis side -----------------------------------------------------------------


def _linear_output(model):
    """tf-keras-vis model_modifier: the final softmax becomes linear, so the score is the
    logit. (Its ReplaceToLinear needs ``model.output_names``, which a Keras 3 Sequential
    model lacks; this is the same change on the output layer.)"""
    model.layers[-1].activation = keras.activations.linear


def tf_keras_vis(method, model, x, classes, **kwargs):
    """Raw maps (b, h, w) from tf-keras-vis on layer "conv", scored on the logit."""
    modifier = _linear_output if model.layers[-1].get_config().get("activation") == "softmax" else None
    visualizer = method(model, model_modifier=modifier)
    maps = visualizer(
        CategoricalScore(list(classes)), x, penultimate_layer="conv",
        seek_penultimate_conv_layer=False, normalize_cam=False, expand_cam=False, **kwargs,
    )
    return np.asarray(maps, np.float64)


def correlation(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


# --- CAM ---------------------------------------------------------------------------------


def test_cam_weights_are_the_dense_kernel_columns():
    """Reference: the GAP model's dense kernel read directly, map in float64 NumPy.
    (A Flatten head has no CAM; tests/test_cam.py checks that it is refused.)"""
    model, base, _ = gap_model()
    x = images(model)
    result = cam.CAM(model, "conv").explain(x, CLASSES)
    kernel = model.get_layer("dense").get_weights()[0].astype(np.float64)  # (channels, classes)
    columns = kernel[:, CLASSES].T
    np.testing.assert_array_equal(result.weights, columns.astype(np.float32))
    A = numpy(base(x)).astype(np.float64)
    np.testing.assert_allclose(result.heatmaps, scaled(weighted_sum(A, columns)), atol=ATOL)
    np.testing.assert_array_equal(result.class_index, CLASSES)


# --- Grad-CAM ----------------------------------------------------------------------------


@pytest.mark.parametrize("head", HEADS)
def test_grad_cam_against_tf_keras_vis_and_numpy(head):
    """References: tf-keras-vis Gradcam, and Selvaraju et al. 2017 eq. 1-2 in float64
    NumPy (w_k = mean_ij g_ij^k, map = relu(sum_k w_k A_k))."""
    model, base, head_fn = MODELS[head]()
    x = images(model)
    result = cam.GradCAM(model, "conv").explain(x, CLASSES)
    A, g = features_and_gradients(base, head_fn, x, CLASSES)
    weights = g.mean(axis=(1, 2))
    np.testing.assert_allclose(result.weights, weights, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(result.heatmaps, scaled(weighted_sum(A, weights)), atol=ATOL)
    if TF_KERAS_VIS:
        np.testing.assert_allclose(result.heatmaps, scaled(tf_keras_vis(Gradcam, model, x, CLASSES)), atol=ATOL)


# --- Grad-CAM++ ----------------------------------------------------------------------------


@pytest.mark.parametrize("head", [*HEADS, "sequential", "nested"])
def test_grad_cam_plus_plus_paper_against_numpy_eq_19(head):
    """Reference: the paper's eq. 19 in float64 NumPy (grad_cam_plus_plus_weights)."""
    model, base, head_fn = MODELS[head]()
    x = images(model)
    result = cam.GradCAMPlusPlus(model, "conv").explain(x, CLASSES)
    A, g = features_and_gradients(base, head_fn, x, CLASSES)
    weights = grad_cam_plus_plus_weights(A, g, normalize_alphas=False)
    np.testing.assert_allclose(result.weights, weights, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(result.heatmaps, scaled(weighted_sum(A, weights)), atol=ATOL)


@pytest.mark.parametrize("head", [*HEADS, "sequential", "nested"])
def test_grad_cam_plus_plus_normalised_alphas(head):
    """References: tf-keras-vis GradcamPlusPlus (it normalises the alphas as the authors'
    code does; not on the nested model, which it cannot tap), and the same rule in float64
    NumPy. tf-keras-vis' weights carry a factor exp(score) per image (it differentiates
    exp(S)), which the scaling to [0, 1] removes."""
    model, base, head_fn = MODELS[head]()
    x = images(model)
    result = cam.GradCAMPlusPlus(model, "conv", normalize_alphas=True).explain(x, CLASSES)
    A, g = features_and_gradients(base, head_fn, x, CLASSES)
    weights = grad_cam_plus_plus_weights(A, g, normalize_alphas=True)
    np.testing.assert_allclose(result.weights, weights, rtol=1e-3, atol=1e-7)
    tolerance = dict(atol=NORMALISED_ALPHAS_ATOL)
    np.testing.assert_allclose(result.heatmaps, scaled(weighted_sum(A, weights)), **tolerance)
    if head != "nested" and TF_KERAS_VIS:
        reference = scaled(tf_keras_vis(GradcamPlusPlus, model, x, CLASSES))
        np.testing.assert_allclose(result.heatmaps, reference, **tolerance)


def test_grad_cam_plus_plus_on_a_gap_head_in_closed_form():
    """Reference: eq. 19 worked out for a GAP + dense head, from the dense kernel read
    directly (no autodiff). The gradient of the logit is c_k = W_kc / n at all n = h w
    positions, so alpha_k = 1 / (2 + c_k S_k) with S_k = sum_ab A_ab^k and the paper's
    weight is n relu(c_k) / (2 + c_k S_k); normalised alphas are 1 / n, giving relu(c_k).
    The two variants differ even here (by a factor per channel), so both are pinned."""
    model, base, _ = gap_model()
    x = images(model)
    A = numpy(base(x)).astype(np.float64)
    n = A.shape[1] * A.shape[2]
    kernel = model.get_layer("dense").get_weights()[0].astype(np.float64)
    c = kernel[:, CLASSES].T / n  # (images, channels)
    S = A.sum(axis=(1, 2))
    paper = cam.GradCAMPlusPlus(model, "conv").explain(x, CLASSES)
    normalised = cam.GradCAMPlusPlus(model, "conv", normalize_alphas=True).explain(x, CLASSES)
    np.testing.assert_allclose(paper.weights, n * np.maximum(c, 0) / (2 + c * S), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(normalised.weights, np.maximum(c, 0), rtol=1e-5, atol=1e-8)


def test_grad_cam_plus_plus_variants_differ_on_a_flatten_head():
    """Reference: the NumPy eq. 19 both ways: on the Flatten head the paper's and the
    normalised alphas give visibly different maps (else the tests above could not tell
    the two apart)."""
    model, base, head_fn = flatten_model()
    x = images(model)
    A, g = features_and_gradients(base, head_fn, x, CLASSES)
    paper = scaled(weighted_sum(A, grad_cam_plus_plus_weights(A, g, False)))
    normalised = scaled(weighted_sum(A, grad_cam_plus_plus_weights(A, g, True)))
    assert np.abs(paper - normalised).max() > 0.1


# --- LayerCAM, HiResCAM, XGrad-CAM ---------------------------------------------------------


@pytest.mark.parametrize("head", [*HEADS, "sequential", "nested"])
def test_layer_cam(head):
    """References: tf-keras-vis Layercam (not on the nested model, which it cannot tap), and
    Jiang et al. 2021 eq. 5-6 in float64 NumPy: relu(sum_k relu(g_ij^k) A_ij^k)."""
    model, base, head_fn = MODELS[head]()
    x = images(model)
    result = cam.LayerCAM(model, "conv").explain(x, CLASSES)
    A, g = features_and_gradients(base, head_fn, x, CLASSES)
    np.testing.assert_allclose(result.heatmaps, scaled(weighted_sum(A, np.maximum(g, 0))), atol=ATOL)
    if head != "nested" and TF_KERAS_VIS:
        reference = scaled(tf_keras_vis(Layercam, model, x, CLASSES))
        np.testing.assert_allclose(result.heatmaps, reference, atol=ATOL)


@pytest.mark.parametrize("head", HEADS)
def test_hires_cam(head):
    """Reference: Draelos & Carin 2020 in float64 NumPy: relu(sum_k g_ij^k A_ij^k)."""
    model, base, head_fn = MODELS[head]()
    x = images(model)
    result = cam.HiResCAM(model, "conv").explain(x, CLASSES)
    A, g = features_and_gradients(base, head_fn, x, CLASSES)
    np.testing.assert_allclose(result.heatmaps, scaled(weighted_sum(A, g)), atol=ATOL)


@pytest.mark.parametrize("head", HEADS)
def test_x_grad_cam(head):
    """Reference: Fu et al. 2020 eq. 11 in float64 NumPy (x_grad_cam_weights)."""
    model, base, head_fn = MODELS[head]()
    x = images(model)
    result = cam.XGradCAM(model, "conv").explain(x, CLASSES)
    A, g = features_and_gradients(base, head_fn, x, CLASSES)
    weights = x_grad_cam_weights(A, g)
    np.testing.assert_allclose(result.weights, weights, rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(result.heatmaps, scaled(weighted_sum(A, weights)), atol=ATOL)


# --- EigenCAM ------------------------------------------------------------------------------


@pytest.mark.parametrize("head", HEADS)
def test_eigen_cam(head):
    """Reference: NumPy SVD in float64 (eigen_cam_maps, with its sign rule). EigenCAM uses no
    class: the per-image classes must not change the map."""
    model, base, _ = MODELS[head]()
    x = images(model)
    ours = cam.EigenCAM(model, "conv")(x, CLASSES)
    reference = scaled(eigen_cam_maps(numpy(base(x)).astype(np.float64)))
    np.testing.assert_allclose(ours, reference, atol=1e-4)  # float32 SVD against float64
    np.testing.assert_array_equal(cam.EigenCAM(model, "conv")(x, [1, 1, 1]), ours)


# --- Score-CAM and Faster Score-CAM ----------------------------------------------------------


@tf_keras_vis_only
@pytest.mark.parametrize("head", HEADS)
def test_score_cam_against_tf_keras_vis(head):
    """Reference: tf-keras-vis Scorecam. Its score is the softmax of the logits (it applies
    a softmax to the outputs of the model made linear), as ours; its masks are upsampled by
    scipy zoom, ours by keras.ops.image.resize, which agree here because the feature map has the
    input's resolution (the Flatten model's conv has padding "same", the GAP model pools
    only after the target layer)."""
    model, *_ = MODELS[head]()
    x = images(model)
    result = cam.ScoreCAM(model, "conv").explain(x, CLASSES)
    reference = tf_keras_vis(Scorecam, model, x, CLASSES)
    np.testing.assert_allclose(result.heatmaps, scaled(reference), atol=SCORE_CAM_ATOL)
    np.testing.assert_allclose(result.raw, np.maximum(reference, 0), rtol=1e-3, atol=1e-6)


@tf_keras_vis_only
@pytest.mark.parametrize("head", HEADS)
def test_faster_score_cam_against_tf_keras_vis_max_n(head):
    """Reference: tf-keras-vis Scorecam with max_N (channels of largest spatial std). It
    takes the union of every image's top channels over a batch, so it is called one image
    at a time; ours picks each image's own channels in one batched call."""
    model, *_ = MODELS[head]()
    x = images(model)
    k = 3
    result = cam.FasterScoreCAM(model, "conv", max_channels=k).explain(x, CLASSES)
    for i, c in enumerate(CLASSES):
        reference = tf_keras_vis(Scorecam, model, x[i : i + 1], [c], max_N=k)
        np.testing.assert_allclose(result.heatmaps[i], scaled(reference)[0], atol=SCORE_CAM_ATOL)
    assert np.all((result.weights != 0).sum(axis=1) <= k)


@tf_keras_vis_only
def test_score_cam_on_a_pooled_feature_map_correlates_with_tf_keras_vis():
    """Reference: tf-keras-vis Scorecam on an 8 x 8 map of a 16 x 16 input. Its masks are
    upsampled with corners aligned (scipy zoom, order 1), ours with half-pixel centres
    (keras.ops.image.resize bilinear): not the same masks, so only the maps' correlation (each
    image above 0.999) and a loose bound on their difference (0.02) are tested."""
    model, *_ = pooled_model()
    x = images(model)
    ours = cam.ScoreCAM(model, "conv")(x, CLASSES)
    reference = scaled(tf_keras_vis(Scorecam, model, x, CLASSES))
    for i in range(len(x)):
        assert correlation(ours[i], reference[i]) > 0.999, i
    np.testing.assert_allclose(ours, reference, atol=0.02)


# --- degenerate maps: zeros, never NaN ---------------------------------------------------------


ALL_METHODS = {
    "CAM": cam.CAM,
    "Grad-CAM": cam.GradCAM,
    "Grad-CAM++": cam.GradCAMPlusPlus,
    "Grad-CAM++ normalised": lambda m, l: cam.GradCAMPlusPlus(m, l, normalize_alphas=True),
    "XGrad-CAM": cam.XGradCAM,
    "HiResCAM": cam.HiResCAM,
    "LayerCAM": cam.LayerCAM,
    "Score-CAM": cam.ScoreCAM,
    "Faster Score-CAM": lambda m, l: cam.FasterScoreCAM(m, l, max_channels=2),
    "EigenCAM": cam.EigenCAM,
}


def assert_all_zero(result, name):
    for field in ("heatmaps", "raw", "weights"):
        assert np.all(np.isfinite(getattr(result, field))), f"{name}: {field} not finite"
    assert np.all(result.heatmaps == 0), name


@pytest.mark.parametrize("head", HEADS)
def test_all_zero_feature_maps_give_zero_maps_for_every_method(head):
    """Reference: the answer itself; a zero feature map weighs into a zero map whatever the
    weights (CAM only on the GAP head, which it needs)."""
    model, *_ = MODELS[head]()
    conv = model.get_layer("conv")
    conv.set_weights([np.zeros_like(w) for w in conv.get_weights()])
    x = images(model)
    for name, method in ALL_METHODS.items():
        if name == "CAM" and head != "gap":
            continue
        assert_all_zero(method(model, "conv").explain(x, CLASSES), name)


@pytest.mark.parametrize("head", HEADS)
def test_zero_gradients_give_zero_maps(head):
    """Reference: the answer itself. Class 1's dense column and bias are zeroed, so its
    logit is 0 for every input and every gradient is 0: every class-dependent method must
    give zeros (Score-CAM scored on the logit, whose masked scores are then all 0). EigenCAM
    uses no class and is not concerned."""
    model, *_ = MODELS[head]()
    dense = model.layers[-1]
    kernel, bias = dense.get_weights()
    kernel[:, 1] = 0
    bias[1] = 0
    dense.set_weights([kernel, bias])
    x = images(model)
    methods = {name: m for name, m in ALL_METHODS.items() if "Score" not in name and name != "EigenCAM"}
    methods["Score-CAM on the logit"] = lambda m, l: cam.ScoreCAM(m, l, score="logit")
    for name, method in methods.items():
        if name == "CAM" and head != "gap":
            continue
        assert_all_zero(method(model, "conv").explain(x, 1), name)
