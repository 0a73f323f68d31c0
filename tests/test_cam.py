"""Tests of chollet_viz.cam on tiny models whose answers are known.

They run under every Keras backend (``KERAS_BACKEND``); the references' gradients come from
the backend's own autodiff (``_autodiff.gradient``).
"""

import keras
import numpy as np
import pytest
from _autodiff import gradient, numpy
from keras import layers

from chollet_viz import cam

# Package against a reference split by hand, both float32: 1e-5 on maps in [0, 1]. Under
# JAX the package's pass is compiled by XLA (jax.jit) and the reference runs eagerly, so
# float32 sums come in another order: 2.1e-5 measured on the Sequential case, hence 1e-4.
MANUAL_ATOL = 1e-5 if keras.backend.backend() == "tensorflow" else 1e-4


def gap_dense_model(n_classes=4, activation="softmax", seed=0):
    """conv -> conv -> global average pooling -> dense: the architecture CAM needs."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((12, 12, 3))
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_a")(inputs)
    x = layers.Conv2D(6, 3, padding="same", activation="relu", name="conv_b")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(n_classes, activation=activation, name="dense")(x)
    model = keras.Model(inputs, outputs, name="gap_dense")
    if keras.backend.backend() != "tensorflow":
        # Keras' seeded initialisers draw other numbers on JAX and PyTorch; weights drawn
        # with NumPy (glorot-like scale) are the same there. On TensorFlow the model keeps
        # the seeded Keras weights the tests were written with.
        rng = np.random.default_rng(seed)
        model.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32) for w in model.get_weights()])
    return model


def images(n=4, size=12, seed=1):
    return np.random.default_rng(seed).uniform(0, 1, (n, size, size, 3)).astype(np.float32)


def hand_model():
    """2x2x1 image -> 1x1 conv with kernel [1, -1] (A0 = x, A1 = -x) -> flatten -> dense.

    Class 1's dense column gives channel 0 the gradients [1, 1, 1, 1] (mean 1) and
    channel 1 the gradients [0.5, 0.5, -0.5, 1.5] (mean 0.5) at positions (0,0), (0,1),
    (1,0), (1,1). Class 0's column is all zeros.
    """
    inputs = keras.Input((2, 2, 1))
    a = layers.Conv2D(2, 1, use_bias=False, name="conv")(inputs)
    x = layers.Flatten()(a)
    logits = layers.Dense(2, use_bias=False, name="logits")(x)
    model = keras.Model(inputs, logits)
    model.get_layer("conv").set_weights([np.array([1.0, -1.0], np.float32).reshape(1, 1, 1, 2)])
    column = np.zeros((2, 2, 2), np.float32)  # Flatten order is (row, column, channel)
    column[..., 0] = 1.0
    column[..., 1] = [[0.5, 0.5], [-0.5, 1.5]]
    kernel = np.stack([np.zeros(8, np.float32), column.ravel()], axis=1)
    model.get_layer("logits").set_weights([kernel])
    return model


HAND_IMAGE = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32).reshape(1, 2, 2, 1)


def test_grad_cam_equals_cam_up_to_a_positive_scale_on_gap_dense():
    model = gap_dense_model()
    x = images(5)
    classes = [0, 1, 2, 3, 1]
    grad = cam.GradCAM(model, "conv_b").explain(x, classes)
    plain = cam.CAM(model, "conv_b").explain(x, classes)
    # With the logit as score, d logit / d A_ij^k = W_kc / (h w) at every position.
    np.testing.assert_allclose(grad.weights * 12 * 12, plain.weights, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(plain.heatmaps.max(axis=(1, 2)), 1.0)
    np.testing.assert_allclose(grad.heatmaps, plain.heatmaps, atol=1e-5)


def test_hand_weighted_model_grad_cam():
    result = cam.GradCAM(hand_model(), "conv").explain(HAND_IMAGE, 1)
    np.testing.assert_allclose(result.weights, [[1.0, 0.5]], atol=1e-6)
    # relu(1 * x + 0.5 * (-x)) = x / 2
    np.testing.assert_allclose(result.raw[0], [[0.5, 1.0], [1.5, 2.0]], atol=1e-6)
    np.testing.assert_allclose(result.heatmaps[0], [[0.25, 0.5], [0.75, 1.0]], atol=1e-6)
    assert result.score[0] == pytest.approx(1 * 10 + (-0.5 - 1.0 + 1.5 - 6.0))


def test_hand_weighted_model_grad_cam_plus_plus():
    """Reference: the paper's eq. 19 worked by hand (Chattopadhay et al. 2018),
    alpha_ij = g_ij^2 / (2 g_ij^2 + S g_ij^3) with S = sum_ab A_ab, weight = sum alpha relu(g).

    Image x = [[1, 2], [3, 4]]; A0 = x (S0 = 10), A1 = -x (S1 = -10); class 1.
    Channel 0, g = 1 everywhere: alpha = 1 / (2 + 10) = 1/12, w0 = 4 * (1/12) * 1 = 1/3.
    Channel 1, g = [1/2, 1/2, -1/2, 3/2]:
      g = 1/2:  g^2 = 1/4, g^3 = 1/8,  denominator 1/2 - 10/8 = -3/4,     alpha = -1/3;
      g = -1/2: g^2 = 1/4, g^3 = -1/8, denominator 1/2 + 10/8 = 7/4,      alpha = 1/7;
      g = 3/2:  g^2 = 9/4, g^3 = 27/8, denominator 9/2 - 270/8 = -117/4,  alpha = -1/13;
      w1 = 2 * (-1/3) * (1/2) + (1/7) * 0 + (-1/13) * (3/2) = -1/3 - 3/26 = -35/78.
    Map: relu(w0 x + w1 (-x)) = (1/3 + 35/78) x = (61/78) x; scaled to its maximum, x / 4.
    """
    result = cam.GradCAMPlusPlus(hand_model(), "conv").explain(HAND_IMAGE, 1)
    np.testing.assert_allclose(result.weights, [[1 / 3, -35 / 78]], rtol=1e-6)
    x = HAND_IMAGE[0, ..., 0]
    np.testing.assert_allclose(result.raw[0], 61 / 78 * x, rtol=1e-6)
    np.testing.assert_allclose(result.heatmaps[0], x / 4, rtol=1e-6)


def test_hand_weighted_model_grad_cam_plus_plus_normalised_alphas():
    """Reference: the same alphas by hand, each channel's divided by their sum (the authors'
    code and tf-keras-vis).

    Channel 0: alphas 1/12 (sum 4/12), normalised 1/4 each: w0 = 4 * (1/4) * 1 = 1.
    Channel 1: alphas [-1/3, -1/3, 1/7, -1/13], sum -2/3 + 1/7 - 1/13 = -164/273;
      w1 = (-35/78) / (-164/273) = (35/78) (273/164) = 245/328.
    Map: relu(1 x - (245/328) x) = (83/328) x; scaled, x / 4 again.
    """
    result = cam.GradCAMPlusPlus(hand_model(), "conv", normalize_alphas=True).explain(HAND_IMAGE, 1)
    np.testing.assert_allclose(result.weights, [[1.0, 245 / 328]], rtol=1e-6)
    x = HAND_IMAGE[0, ..., 0]
    np.testing.assert_allclose(result.raw[0], 83 / 328 * x, rtol=1e-5)
    np.testing.assert_allclose(result.heatmaps[0], x / 4, rtol=1e-5)


def test_zero_class_column_gives_zero_heatmaps_not_nan():
    # Class 0's dense column is zero: every gradient is zero.
    model = hand_model()
    for method in (cam.GradCAM, cam.GradCAMPlusPlus):
        maps = method(model, "conv")(HAND_IMAGE, 0)
        assert np.all(np.isfinite(maps)) and np.all(maps == 0)


def test_all_zero_feature_map_gives_zero_heatmaps_not_nan():
    model = gap_dense_model()
    model.get_layer("conv_b").set_weights([np.zeros_like(w) for w in model.get_layer("conv_b").get_weights()])
    x = images(2)
    for method in (cam.CAM, cam.GradCAM, cam.GradCAMPlusPlus, cam.ScoreCAM):
        maps = method(model, "conv_b")(x, 1)
        assert np.all(np.isfinite(maps)) and np.all(maps == 0), method.__name__


def test_normalize_heatmaps_handles_zero_and_nan():
    maps = np.array([[[0.0, 0.0]], [[-1.0, 2.0]], [[np.nan, 1.0]]], np.float32)
    out = cam.normalize_heatmaps(maps)
    np.testing.assert_array_equal(out, [[[0, 0]], [[0, 1]], [[0, 0]]])


@pytest.mark.parametrize("method", [cam.GradCAM, cam.GradCAMPlusPlus, cam.CAM, cam.ScoreCAM])
def test_batch_equals_one_image_at_a_time(method):
    model = gap_dense_model()
    x = images(4)
    classes = [3, 0, 2, 1]
    explainer = method(model, "conv_b")
    batch = explainer.explain(x, classes)
    for i in range(len(x)):
        single = explainer.explain(x[i : i + 1], classes[i])
        np.testing.assert_allclose(batch.heatmaps[i], single.heatmaps[0], atol=1e-5)
        np.testing.assert_allclose(batch.weights[i], single.weights[0], rtol=1e-4, atol=1e-6)


def test_top_class_is_explained_by_default():
    model = gap_dense_model()
    x = images(3)
    result = cam.GradCAM(model).explain(x)
    np.testing.assert_array_equal(result.class_index, model.predict(x, verbose=0).argmax(-1))
    assert result.layer == "conv_b"  # the default is the last layer with a 4-D output


def manual_grad_cam(base, head, x, class_index):
    """Grad-CAM written out for a model split into base (up to the layer) and head."""
    features = numpy(base(x))
    grads = gradient(lambda f: keras.ops.take(head(f), class_index, axis=1), features)
    weights = grads.mean(axis=(1, 2))
    return cam.normalize_heatmaps(np.einsum("bhwk,bk->bhw", features, weights))


def test_layer_inside_a_nested_functional_model():
    keras.utils.set_random_seed(0)
    base_in = keras.Input((10, 10, 3))
    y = layers.Conv2D(4, 3, activation="relu", name="inner_1")(base_in)
    y = layers.Conv2D(5, 3, activation="relu", name="inner_2")(y)
    base = keras.Model(base_in, y, name="base")
    base.trainable = False  # frozen, as a pretrained base usually is
    head = keras.Sequential([keras.Input((6, 6, 5)), layers.Flatten(), layers.Dense(3)], name="head")
    inputs = keras.Input((10, 10, 3))
    model = keras.Model(inputs, head(base(inputs)), name="outer")
    x = images(2, 10)
    maps = cam.GradCAM(model, "inner_2")(x, 2)
    np.testing.assert_allclose(maps, manual_grad_cam(base, head, x, 2), atol=MANUAL_ATOL)
    assert cam.conv_layers(model) == ["base/inner_1", "base/inner_2"]
    np.testing.assert_allclose(cam.GradCAM(model, "base/inner_2")(x, 2), maps, atol=1e-6)


def test_sequential_models_without_input_nested_in_sequential():
    keras.utils.set_random_seed(0)
    base = keras.Sequential([layers.Conv2D(4, 3, activation="relu", name="s1"), layers.Conv2D(5, 3, name="s2")])
    head = keras.Sequential([layers.GlobalAveragePooling2D(), layers.Dense(3, activation="softmax")])
    model = keras.Sequential([base, head])  # never built, no keras.Input anywhere
    x = images(2, 10)
    maps = cam.GradCAM(model, "s2")(x, 1)
    # The head's softmax is dropped: the class score is the logit.
    logits_head = keras.Sequential([head.layers[0], layers.Dense(3, name="twin")])
    logits_head.build((None, 6, 6, 5))
    logits_head.layers[1].set_weights(head.layers[1].get_weights())
    np.testing.assert_allclose(maps, manual_grad_cam(base, logits_head, x, 1), atol=MANUAL_ATOL)


def test_layer_two_levels_deep_with_the_softmax_in_a_nested_head():
    keras.utils.set_random_seed(0)
    inner_in = keras.Input((10, 10, 3))
    inner = keras.Model(inner_in, layers.Conv2D(5, 3, activation="relu", name="deep")(inner_in), name="inner")
    middle_in = keras.Input((10, 10, 3))
    middle = keras.Model(middle_in, layers.Conv2D(4, 1, name="mix")(inner(middle_in)), name="middle")
    head = keras.Sequential([layers.GlobalAveragePooling2D(), layers.Dense(3, activation="softmax")], name="head")
    model = keras.Sequential([keras.Input((10, 10, 3)), middle, head], name="outer")
    x = images(2, 10)
    result = cam.GradCAM(model, "deep").explain(x, [0, 2])
    assert result.layer == "middle/inner/deep"
    # Reference: the same computation split by hand; the class score is the logit.
    logits_head = keras.Sequential([layers.GlobalAveragePooling2D(), layers.Dense(3)])
    logits_head.build((None, 8, 8, 4))
    logits_head.layers[-1].set_weights(head.layers[-1].get_weights())
    rest = keras.Sequential([middle.get_layer("mix"), logits_head])
    for i, c in enumerate([0, 2]):
        expected = manual_grad_cam(inner, rest, x[i : i + 1], c)
        np.testing.assert_allclose(result.heatmaps[i], expected[0], atol=MANUAL_ATOL)
    # Building the replay left the model as it was: it still outputs probabilities.
    np.testing.assert_allclose(model.predict(x, verbose=0).sum(axis=1), 1.0, rtol=1e-5)


def test_softmax_is_dropped_by_default_and_kept_for_probability():
    model = gap_dense_model(activation="softmax")
    twin = gap_dense_model(activation=None)  # same seed: same weights, logits out
    x = images(3)
    np.testing.assert_allclose(
        cam.GradCAM(model, "conv_b")(x, 2), cam.GradCAM(twin, "conv_b")(x, 2), atol=1e-5
    )
    prob = cam.GradCAM(model, "conv_b", score="probability").explain(x, 2)
    np.testing.assert_allclose(prob.score, model.predict(x, verbose=0)[:, 2], rtol=1e-5)
    # The logit-explaining model's probability mode applies the softmax itself.
    twin_prob = cam.GradCAM(twin, "conv_b", score="probability").explain(x, 2)
    np.testing.assert_allclose(twin_prob.heatmaps, prob.heatmaps, atol=1e-5)


@pytest.mark.parametrize("final", ["activation", "softmax_layer", "multilabel_sigmoid"])
def test_final_activation_layers_are_dropped(final):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 3))
    x = layers.Conv2D(6, 3, padding="same", activation="relu", name="conv")(inputs)
    logits = layers.Dense(4, name="logits")(layers.GlobalAveragePooling2D()(x))
    last = {
        "activation": layers.Activation("softmax"),
        "softmax_layer": layers.Softmax(),
        "multilabel_sigmoid": layers.Activation("sigmoid"),
    }[final]
    model = keras.Model(inputs, last(logits))
    logits_model = keras.Model(inputs, logits)
    x = images(2)
    explainer = cam.GradCAM(model, "conv")
    np.testing.assert_allclose(explainer.class_logits(x), logits_model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    prob = cam.GradCAM(model, "conv", score="probability").explain(x, [1, 3])
    np.testing.assert_allclose(prob.score, model.predict(x, verbose=0)[[0, 1], [1, 3]], rtol=1e-5)


def test_single_sigmoid_unit_scores_both_classes():
    model = gap_dense_model(n_classes=1, activation="sigmoid")
    x = images(2)
    p = model.predict(x, verbose=0)[:, 0]
    dog = cam.GradCAM(model, "conv_b", score="probability").explain(x, 1)
    cat = cam.GradCAM(model, "conv_b", score="probability").explain(x, 0)
    np.testing.assert_allclose(dog.score, p, rtol=1e-5)
    np.testing.assert_allclose(cat.score, 1 - p, rtol=1e-5)
    # The logits of the two classes are z and -z: their channel weights are opposite.
    logit_dog = cam.GradCAM(model, "conv_b").explain(x, 1)
    logit_cat = cam.GradCAM(model, "conv_b").explain(x, 0)
    np.testing.assert_allclose(logit_cat.weights, -logit_dog.weights, atol=1e-7)
    np.testing.assert_allclose(cam.CAM(model, "conv_b")(x, 0), logit_cat.heatmaps, atol=1e-5)


def test_unknown_layer_lists_the_conv_layers():
    with pytest.raises(ValueError) as info:
        cam.GradCAM(gap_dense_model(), "block5_conv3")(images(1))
    message = str(info.value)
    assert "'block5_conv3'" in message
    assert "conv_a (12, 12, 8)" in message and "conv_b (12, 12, 6)" in message
    assert "dense" not in message.split("output:")[1]


def test_class_index_out_of_range_is_rejected():
    with pytest.raises(ValueError, match=r"Class index 4 is out of range.*valid indices are 0\.\.3"):
        cam.GradCAM(gap_dense_model(), "conv_b")(images(2), [1, 4])
    with pytest.raises(ValueError, match="one per image"):
        cam.GradCAM(gap_dense_model(), "conv_b")(images(2), [1, 2, 3])


def test_layer_without_4d_output_is_rejected():
    with pytest.raises(ValueError, match=r"Layer 'gap' outputs shape \(None, 6\), not a 4-D.*conv_a.*conv_b"):
        cam.GradCAM(gap_dense_model(), "gap")(images(1))


ALL_METHODS = [cam.CAM, cam.GradCAM, cam.GradCAMPlusPlus, cam.XGradCAM, cam.HiResCAM, cam.LayerCAM,
               cam.ScoreCAM, cam.FasterScoreCAM, cam.EigenCAM]


@pytest.mark.parametrize("method", ALL_METHODS, ids=lambda m: m.__name__)
def test_empty_batch_is_rejected(method):
    explainer = method(gap_dense_model(), "conv_b")
    empty = np.zeros((0, 12, 12, 3), np.float32)
    for call in (explainer.explain, explainer):
        with pytest.raises(ValueError, match=r"empty batch of images \(0, 12, 12, 3\); give at least one image"):
            call(empty)


def test_score_cam_rejects_no_channels_and_empty_batches_of_masks():
    model = gap_dense_model()
    with pytest.raises(ValueError, match="max_channels must be None .* or at least 1, got 0"):
        cam.ScoreCAM(model, "conv_b", max_channels=0)
    with pytest.raises(ValueError, match="max_channels must be None .* or at least 1, got 0"):
        cam.FasterScoreCAM(model, "conv_b", max_channels=0)
    with pytest.raises(ValueError, match="batch_size must be at least 1, got 0"):
        cam.ScoreCAM(model, "conv_b", batch_size=0)


def test_overlay_takes_a_batch_of_one_heatmap_and_rejects_a_batch_of_two():
    image = np.full((8, 8, 3), 100.0, np.float32)
    heat = np.array([[0.0, 1.0], [1.0, 0.0]], np.float32)
    np.testing.assert_array_equal(cam.overlay(image, heat[None]), cam.overlay(image, heat))
    with pytest.raises(ValueError, match=r"one heatmap of shape \(h, w\) or \(1, h, w\), got shape \(2, 2, 2\)"):
        cam.overlay(image, np.stack([heat, heat]))
    with pytest.raises(ValueError, match=r"one RGB image of shape \(height, width, 3\), got shape \(2, 8, 8, 3\)"):
        cam.overlay(np.stack([image, image]), heat)


def test_cam_needs_gap_and_dense():
    with pytest.raises(ValueError, match="global average pooling and a dense layer with 2 inputs"):
        cam.CAM(hand_model(), "conv")(HAND_IMAGE, 1)


def test_guided_backprop_passes_only_positive_gradients_through_active_units():
    # Three active hidden units (each sums the four inputs) feed the logit with weights
    # 1, -1 and 2: the plain gradient is 1 - 1 + 2 per input, the guided one drops -1.
    model = keras.Sequential([keras.Input((1, 1, 4)), layers.Dense(3, activation="relu", name="hidden"),
                              layers.Flatten(), layers.Dense(1, name="out")])
    model.get_layer("hidden").set_weights([np.ones((4, 3), np.float32), np.zeros(3, np.float32)])
    model.get_layer("out").set_weights([np.array([[1.0], [-1.0], [2.0]], np.float32), np.zeros(1, np.float32)])
    x = np.ones((1, 1, 1, 4), np.float32)
    plain = gradient(lambda t: model(t)[:, 0], x)
    np.testing.assert_allclose(plain.ravel(), [2.0] * 4)
    guided = cam.GuidedBackprop(model)(x, 1)
    np.testing.assert_allclose(guided.ravel(), [3.0] * 4)
    assert model.get_layer("hidden").activation.__name__ == "relu"  # the model is untouched
    # and still has its ordinary gradient
    np.testing.assert_allclose(gradient(lambda t: model(t)[:, 0], x).ravel(), [2.0] * 4)


def test_guided_grad_cam_shape_and_support():
    model = gap_dense_model()
    x = images(2)
    out = cam.guided_grad_cam(model, x, "conv_b", [0, 1])
    assert out.shape == x.shape and np.all(np.isfinite(out))


def toy_linear_model():
    """score = 4 x00 + 3 x01 + 2 x10 + 1 x11 on a 2x2x1 image, as a single logit."""
    model = keras.Sequential([keras.Input((2, 2, 1)), layers.Flatten(), layers.Dense(1, use_bias=False)])
    model.layers[-1].set_weights([np.array([[4.0], [3.0], [2.0], [1.0]], np.float32)])
    return model


def test_deletion_and_insertion_on_a_known_answer():
    model = toy_linear_model()
    x = np.ones((1, 2, 2, 1), np.float32)
    heatmap = np.array([[[1.0, 0.75], [0.5, 0.25]]], np.float32)  # ranks the pixels 4 > 3 > 2 > 1
    deletion = cam.deletion_curve(model, x, heatmap, 1, steps=4, baseline=0.0, score="logit")
    np.testing.assert_allclose(deletion.fractions, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(deletion.scores[0], [10, 6, 3, 1, 0])
    assert deletion.auc[0] == pytest.approx(0.25 * (8 + 4.5 + 2 + 0.5))  # 3.75
    insertion = cam.insertion_curve(model, x, heatmap, 1, steps=4, baseline=0.0, score="logit")
    np.testing.assert_allclose(insertion.scores[0], [0, 4, 7, 9, 10])
    assert insertion.auc[0] == pytest.approx(0.25 * (2 + 5.5 + 8 + 9.5))  # 6.25
    # The reverse ranking is the least faithful: deletion area grows, insertion shrinks.
    worst = heatmap[:, ::-1, ::-1]
    assert cam.deletion_curve(model, x, worst, 1, steps=4, score="logit").auc[0] == pytest.approx(6.25)
    assert cam.insertion_curve(model, x, worst, 1, steps=4, baseline=0.0, score="logit").auc[0] == pytest.approx(3.75)


def test_upsample_and_overlay(tmp_path):
    heat = np.array([[0.0, 1.0], [1.0, 0.0]], np.float32)
    big = cam.upsample(heat, (8, 8))
    assert big.shape == (8, 8) and big.min() >= 0 and big.max() <= 1
    image = np.full((8, 8, 3), 100.0, np.float32)
    out = cam.overlay(image, heat, path=tmp_path / "overlay.png")
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert (tmp_path / "overlay.png").stat().st_size > 0


@pytest.mark.network
def test_book_vgg16_elephant_numbers():
    """The book's section 5.4.3 numbers, where Keras can download VGG16's ImageNet head."""
    from keras.applications.vgg16 import preprocess_input

    from chollet_viz import datasets, models
    from chollet_viz.data import AssetError

    try:
        model = models.vgg16(include_top=True)
    except AssetError as exc:
        pytest.skip(f"VGG16's ImageNet head could not be downloaded: {exc}")
    x = preprocess_input(datasets.load_image("creative_commons_elephant.jpg", (224, 224))[None])
    preds = model.predict(x, verbose=0)
    top = datasets.decode_predictions(preds, top=3)[0]
    assert [name for _, name, _ in top] == ["African_elephant", "tusker", "Indian_elephant"]
    np.testing.assert_allclose([p for *_, p in top], [0.909, 0.086, 0.004], atol=0.006)
    assert int(np.argmax(preds[0])) == 386
    heat = cam.GradCAM(model, "block5_conv3", score="probability")(x, 386)
    assert heat.shape == (1, 14, 14) and heat.max() == pytest.approx(1.0)


def test_cam_explorer_shows_the_top_classes():
    from chollet_viz.widgets.cam import CAMExplorer

    model = gap_dense_model(n_classes=5)
    image = images(1)[0] * 255
    explorer = CAMExplorer(model, image, preprocess=lambda x: x / 255, top=3, class_names=list("abcde"))
    probs = model.predict(image[None] / 255, verbose=0)[0]
    assert explorer.classes == list(np.argsort(-probs)[:3])
    expected = cam.GradCAM(model)(np.repeat(image[None] / 255, 3, axis=0), explorer.classes)
    np.testing.assert_allclose(explorer.heatmaps(), expected, atol=1e-6)
    first = explorer.view.value
    explorer.class_menu.value = explorer.classes[1]
    assert explorer.view.value != first
    assert "showing " + "abcde"[explorer.classes[1]] in repr(explorer)
    with pytest.raises(ValueError, match="5 classes"):
        CAMExplorer(model, image, class_names=["a"])
