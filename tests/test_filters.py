"""Tests for chollet_viz.filters: the book's gradient ascent and the regularised renderer.

Small hand-made or seeded VGG-like models keep this file fast; nothing here needs VGG16.
Runs under every Keras backend: gradients a reference needs come from the backend's own
autodiff (``_autodiff.gradient``), never from ``chollet_viz.backend``. The filters' numbers
across backends are compared in tests/test_backends_agree.py.
"""

import keras
import numpy as np
import pytest
from _autodiff import gradient, numpy
from keras import layers

from chollet_viz import filters as F
from chollet_viz.filters.param import COLOUR_SQRT_COVARIANCE, colour_sqrt_covariance


@pytest.fixture(scope="module")
def small_vgg():
    """Two conv blocks of a VGG-like net on any image size, then a pooled 3-class head."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    x = layers.Conv2D(8, 3, activation="relu", padding="same", name="conv_a")(inputs)
    x = layers.MaxPooling2D(2, name="pool_a")(x)
    x = layers.Conv2D(16, 3, activation="relu", padding="same", name="conv_b")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(3, name="logits")(x)
    return keras.Model(inputs, outputs, name="small_vgg")


@pytest.fixture(scope="module")
def dead_model():
    """One conv layer: filter 0 sums the input (fires on the book's start), filter 1 has a
    zero kernel and bias -1 (ReLU(-1) = 0 for every input: it can never fire), filter 2 is
    the negated sum (never fires on positive images, but only because of the start)."""
    inputs = keras.Input((None, None, 3))
    conv = layers.Conv2D(3, 3, activation="relu", padding="same", name="conv")
    model = keras.Model(inputs, conv(inputs))
    kernel = np.zeros((3, 3, 3, 3), np.float32)
    kernel[..., 0] = 1 / 27
    kernel[..., 2] = -1 / 27
    conv.set_weights([kernel, np.array([0.0, -1.0, 0.0], np.float32)])
    return model


def live_filter(model, layer, start):
    """The filter with the largest mean activation on ``start`` (computed, not assumed)."""
    maps = numpy(F.cut_model(model, [layer])(start))
    return int(np.argmax(maps.mean(axis=(0, 1, 2))))


# --- the book's arithmetic ----------------------------------------------------------------


def test_normalize_gradient_matches_book_formula_per_image():
    g = np.array([[3.0, 4.0], [0.0, -1.0]], np.float32).reshape(1, 2, 2, 1)
    batch = np.concatenate([g, 10 * g + 1])  # a second image on another scale
    out = numpy(F.normalize_gradient(batch))
    for i in range(2):
        # The book: grads /= (K.sqrt(K.mean(K.square(grads))) + 1e-5), on one image.
        expected = batch[i] / (np.sqrt(np.mean(batch[i] ** 2)) + 1e-5)
        np.testing.assert_allclose(out[i], expected, rtol=1e-6)
    # 3, 4, 0, -1 have root mean square sqrt(26 / 4).
    np.testing.assert_allclose(out[0].ravel(), [3, 4, 0, -1] / (np.sqrt(6.5) + 1e-5), rtol=1e-6)
    np.testing.assert_allclose(np.sqrt(np.mean(out**2, axis=(1, 2, 3))), 1.0, rtol=1e-5)


def test_deprocess_returns_uint8_with_book_statistics():
    rng = np.random.default_rng(0)
    image = rng.normal(50.0, 7.0, (20, 24, 3))
    out = F.deprocess_image(image)
    assert out.dtype == np.uint8 and out.shape == (20, 24, 3)
    # Centred at 0.5 and scaled to std 0.1 before x 255 (clipping 5 std away is rare).
    assert abs(out.mean() - 127.5) < 1.0
    assert abs(out.std() - 25.5) < 1.0
    # A batch is deprocessed image by image.
    batch = np.stack([image, 3 * image - 40])
    out_batch = F.deprocess_image(batch)
    assert out_batch.shape == (2, 20, 24, 3) and out_batch.dtype == np.uint8
    np.testing.assert_array_equal(out_batch[0], out)
    assert np.abs(out_batch[1].astype(int) - out.astype(int)).max() <= 1
    # A constant image carries no pattern: mid-grey, not a division by zero.
    assert np.all(F.deprocess_image(np.full((4, 4, 3), 9.0)) == 127)
    with pytest.raises(ValueError, match="shape"):
        F.deprocess_image(np.zeros((4, 4)))


def test_book_start_is_the_books_noise():
    start = F.book_start(2, 16, seed=3)
    assert start.shape == (2, 16, 16, 3) and start.dtype == np.float32
    assert 128 <= start.min() and start.max() < 148
    np.testing.assert_array_equal(start, F.book_start(2, 16, seed=3))


def test_objective_rises_for_a_live_filter(small_vgg):
    start = F.book_start(1, 32, seed=0)
    f = live_filter(small_vgg, "conv_b", start)
    result = F.generate_pattern(small_vgg, "conv_b", f, start=start)
    history = result.history[:, 0]
    assert len(history) == F.BOOK_STEPS + 1
    assert history[0] > 0
    assert history[-1] > 1.5 * history[0], history[[0, -1]]
    assert np.mean(np.diff(history) > 0) > 0.9  # it climbs at (almost) every step
    assert result.dead == []
    assert result.to_uint8().shape == (1, 32, 32, 3)


def test_book_step_is_one_normalised_gradient_step(small_vgg):
    """One step of the package equals start + g / (rms(g) + 1e-5), written out by hand."""
    start = F.book_start(1, 16, seed=1)
    f = live_filter(small_vgg, "conv_a", start)
    cut = F.cut_model(small_vgg, ["conv_a"])
    # The backend's own autodiff; a batch of one, so the sum is the book's loss.
    g = gradient(lambda x: keras.ops.mean(cut(x)[..., f], axis=(1, 2)), start)
    loss = float(numpy(cut(start))[..., f].mean())
    expected = start + g / (np.sqrt(np.mean(g**2)) + 1e-5)
    result = F.generate_pattern(small_vgg, "conv_a", f, start=start, steps=1)
    np.testing.assert_allclose(result.images, expected, atol=1e-4)
    np.testing.assert_allclose(result.history[0, 0], loss, rtol=1e-5)


def test_batched_equals_one_at_a_time(small_vgg):
    chosen = [0, 3, 5, 9, 15]
    start = F.book_start(len(chosen), 24, seed=2)
    batched = F.generate_patterns(small_vgg, "conv_b", chosen, start=start, progress=False)
    assert batched.labels == chosen
    for i, f in enumerate(chosen):
        alone = F.generate_pattern(small_vgg, "conv_b", f, start=start[i])
        # Same arithmetic, different batch shapes: only float rounding may differ.
        np.testing.assert_allclose(batched.images[i], alone.images[0], atol=1e-3)
        np.testing.assert_allclose(batched.history[:, i], alone.history[:, 0], rtol=1e-4, atol=1e-4)


def test_chunked_batches_equal_one_batch(small_vgg):
    start = F.book_start(5, 16, seed=4)
    whole = F.generate_patterns(small_vgg, "conv_a", range(5), start=start, steps=5, progress=False)
    chunks = F.generate_patterns(small_vgg, "conv_a", range(5), start=start, steps=5, batch_size=2, progress=False)
    np.testing.assert_allclose(chunks.images, whole.images, atol=1e-4)
    assert chunks.history.shape == (6, 5) and chunks.labels == [0, 1, 2, 3, 4]


# --- errors -------------------------------------------------------------------------------


def test_unknown_layer_lists_the_conv_layers(small_vgg):
    with pytest.raises(ValueError, match="no layer named 'conv_c'.*conv_a, conv_b"):
        F.generate_patterns(small_vgg, "conv_c", [0])


def test_filter_out_of_range_gives_the_valid_range(small_vgg):
    with pytest.raises(IndexError, match="Filter index 16 .*16 filters: valid indices are 0 to 15"):
        F.generate_pattern(small_vgg, "conv_b", 16, size=8)
    with pytest.raises(IndexError, match="valid indices are 0 to 7"):
        F.generate_patterns(small_vgg, "conv_a", [2, -1], size=8)


@pytest.mark.parametrize("name", ["gap", "logits"])
def test_non_4d_layer_is_rejected(small_vgg, name):
    with pytest.raises(ValueError, match=rf"'{name}' outputs shape \(None, \d+\), not 4-D.*conv_a, conv_b"):
        F.generate_patterns(small_vgg, name, [0], size=8)


def test_start_of_the_wrong_shape_is_rejected(small_vgg):
    with pytest.raises(ValueError, match=r"one image per filter"):
        F.generate_patterns(small_vgg, "conv_a", [0, 1], start=np.zeros((3, 8, 8, 3)))


# --- dead filters -------------------------------------------------------------------------


def test_dead_filters_are_detected_and_reported(dead_model):
    start = F.book_start(3, 12, seed=0)
    result = F.generate_patterns(dead_model, "conv", start=start, steps=10, progress=False)
    # Filter 1 can never fire; filter 2 cannot fire on images with positive values.
    assert result.dead == [1, 2]
    assert np.all(result.history[:, 1:] == 0) and np.all(result.history[1:, 0] > result.history[0, 0])
    # A dead filter's image never moved from its start.
    np.testing.assert_array_equal(result.images[1], start[1])
    assert "2 dead" in result.summary()
    assert F.dead_at_start(dead_model, "conv", start[0]) == [1, 2]


def test_grid_marks_dead_filters(dead_model):
    import matplotlib

    matplotlib.use("Agg")
    result = F.generate_patterns(dead_model, "conv", size=10, steps=2, progress=False)
    grid = F.filter_grid(result.to_uint8(), ncols=2, margin=3)
    assert grid.shape == (10 + 3 + 10, 10 + 3 + 10, 3) and grid.dtype == np.uint8
    assert np.all(grid[10:13] == 0)  # black margins, as in the book
    fig = F.show_filter_grid(result, ncols=2, margin=3)
    assert "2 dead filters" in fig.axes[0].get_title()
    assert len(fig.axes[0].patches) == 2


# --- objectives ---------------------------------------------------------------------------


def test_objectives_compose_and_pick_their_own_filter(small_vgg):
    x = F.book_start(2, 16, seed=5)
    maps = F.cut_model(small_vgg, ["conv_b"])(x)
    outputs = {"conv_b": maps}
    means = numpy(maps).mean(axis=(1, 2))
    np.testing.assert_allclose(numpy(F.channel("conv_b", 4)(outputs)), means[:, 4], rtol=1e-6)
    np.testing.assert_allclose(numpy(F.channel("conv_b", [4, 7])(outputs)), [means[0, 4], means[1, 7]], rtol=1e-6)
    combined = F.channel("conv_b", 4) - 2 * F.channel("conv_b", 7) + sum([F.channel("conv_b", 1)])
    np.testing.assert_allclose(numpy(combined(outputs)), means[:, 4] - 2 * means[:, 7] + means[:, 1], rtol=1e-5)
    centre = numpy(maps)[:, 4, 4, 3]
    np.testing.assert_allclose(numpy(F.neuron("conv_b", 3)(outputs)), centre, rtol=1e-6)
    np.testing.assert_allclose(numpy(F.neuron("conv_b", [3, 5], x=1, y=2)(outputs)), numpy(maps)[[0, 1], 2, 1, [3, 5]], rtol=1e-6)
    with pytest.raises(ValueError, match="one per image, but the batch has 3"):
        F.channel("conv_b", [1, 2]).check(small_vgg, 3)


def test_class_logit_needs_logits(small_vgg):
    F.class_logit("logits", 2).check(small_vgg, 1)
    with pytest.raises(IndexError, match="valid indices are 0 to 2"):
        F.class_logit("logits", 3).check(small_vgg, 1)
    with pytest.raises(ValueError, match="2-D output"):
        F.class_logit("conv_b", 0).check(small_vgg, 1)
    inputs = keras.Input((4,))
    probs = keras.Model(inputs, layers.Dense(2, activation="softmax", name="probs")(inputs))
    with pytest.raises(ValueError, match="applies a softmax"):
        F.class_logit("probs", 0).check(probs, 1)


# --- the regularised renderer --------------------------------------------------------------


def test_colour_sqrt_covariance_is_a_square_root():
    rng = np.random.default_rng(0)
    mix = np.array([[1.0, 0.2, 0.0], [0.9, -0.1, 0.1], [0.8, -0.3, 0.05]])
    pixels = rng.normal(size=(20000, 3)) @ mix.T
    m = colour_sqrt_covariance(pixels)
    np.testing.assert_allclose(m @ m.T, np.cov(pixels, rowvar=False), atol=1e-10)
    assert np.all(m[:, 0] > 0)
    # The stored constant is a square root of a positive-definite covariance with brightness first.
    c = COLOUR_SQRT_COVARIANCE
    assert np.all(np.linalg.eigvalsh(c @ c.T) > 0) and np.all(c[:, 0] > 0)
    norms = np.linalg.norm(c, axis=0)
    assert norms[0] > norms[1] > norms[2]


def test_transforms_shapes_and_identity():
    rng = np.random.default_rng(0)
    images = np.random.default_rng(1).random((2, 20, 20, 3)).astype(np.float32)
    assert F.pad(3)(images).shape == (2, 26, 26, 3)
    assert F.jitter(4)(images, rng).shape == (2, 16, 16, 3)
    # A jitter is a crop at the drawn offset (dy, dx).
    np.testing.assert_array_equal(numpy(F.jitter(4)(images, np.array([1, 3]))), images[:, 1:17, 3:19])
    # Scaling and rotating keep the canvas, so a compiled step is traced once.
    assert tuple(F.random_scale([1.5])(images, rng).shape) == (2, 20, 20, 3)
    np.testing.assert_allclose(numpy(F.random_scale([1.0])(images, rng)), images, atol=1e-6)
    np.testing.assert_allclose(numpy(F.random_rotate([0])(images, rng)), images, atol=1e-6)
    rotated = numpy(F.random_rotate([90])(images, rng))
    np.testing.assert_allclose(rotated[0, :, :, 0], np.rot90(images[0, :, :, 0], k=1), atol=1e-4)
    # Zoom by 2 about the centre of an odd-sized image: output (x, y) reads input
    # (c + (x - c) / 2, c + (y - c) / 2); with x, y = c +- 2 that is a pixel exactly.
    odd = images[:, :19, :19]
    zoomed = numpy(F.random_scale([2.0])(odd, rng))
    np.testing.assert_allclose(zoomed[:, 7:12:2, 7:12:2], odd[:, 8:11, 8:11], atol=1e-5)
    with pytest.raises(TypeError, match="random"):
        F.jitter(2)(images)
    with pytest.raises(ValueError, match="positive factors"):
        F.random_scale([0.0, 1.0])
    with pytest.raises(TypeError, match="not a Transform"):
        F.transforms.compose(lambda x, rng: x)


def test_transforms_draw_with_numpy_the_same_on_every_backend():
    """The parameters come from NumPy's generator alone: a fixed seed fixes them, in order."""
    transform = F.transforms.compose(*F.standard_transforms())
    first = [transform.draw(np.random.default_rng(7)) for _ in range(2)]
    np.testing.assert_array_equal(first[0], first[1])
    rng = np.random.default_rng(7)
    dy, dx = rng.integers(0, 9, size=2)
    scale = [1 + i / 100 for i in range(-5, 6)][rng.integers(0, 11)]
    angle = list(range(-5, 6))[rng.integers(0, 11)]
    dy2, dx2 = rng.integers(0, 5, size=2)
    np.testing.assert_allclose(first[0], [dy, dx, scale, angle, dy2, dx2], rtol=1e-7)
    assert transform.size == 6 and first[0].dtype == np.float32


def test_standard_transforms_have_a_gradient():
    images = np.random.default_rng(1).random((2, 20, 20, 3)).astype(np.float32)
    transform = F.transforms.compose(*F.standard_transforms())
    params = transform.draw(np.random.default_rng(0))
    g = gradient(lambda x: keras.ops.sum(transform(x, params), axis=(1, 2, 3)), images)
    assert g.shape == images.shape and np.all(np.isfinite(g)) and np.abs(g).sum() > 0


@pytest.mark.parametrize("make", [F.fourier_image, F.pixel_image])
def test_regularised_render_raises_the_objective(small_vgg, make):
    param = make(2, 32, seed=0)
    before = numpy(param())
    assert before.shape == (2, 32, 32, 3) and np.all((before > 0) & (before < 1))
    result = F.render(
        small_vgg,
        F.channel("conv_b", [1, 2]),
        param,
        steps=30,
        transforms=F.standard_transforms(),
        preprocess=lambda rgb: rgb * 255.0,
        progress=False,
    )
    assert result.images.shape == (2, 32, 32, 3) and result.space == "rgb"
    assert np.all(result.final > result.history[0] + 1.0)
    assert result.to_uint8().dtype == np.uint8


def test_fourier_image_spectrum_is_scaled_towards_low_frequencies():
    param = F.fourier_image(1, 64, sd=1.0, seed=0)
    image = numpy(param.decode(param.variable))[0, :, :, 0]
    power = np.abs(np.fft.rfft2(image)) ** 2
    low, high = power[1:4, 1:4].mean(), power[28:32, 28:32].mean()
    assert low > 100 * high


def test_vgg16_preprocess_matches_keras():
    rgb = np.random.default_rng(0).random((2, 5, 5, 3)).astype(np.float32)
    expected = keras.applications.vgg16.preprocess_input(rgb * 255.0)
    np.testing.assert_allclose(numpy(F.vgg16_preprocess(rgb)), expected, atol=1e-4)


def test_render_rejects_what_it_cannot_use(small_vgg):
    with pytest.raises(TypeError, match="Objective"):
        F.render(small_vgg, "conv_a", F.pixel_image(1, 8), steps=1, progress=False)
    with pytest.raises(ValueError, match="precision"):
        F.render(small_vgg, F.channel("conv_a", 0), F.pixel_image(1, 8), steps=1, progress=False, precision="half")


# --- the explorer widget --------------------------------------------------------------------


def test_explorer_renders_on_demand_and_caches(small_vgg, dead_model):
    from chollet_viz.widgets.filters import FilterExplorer

    explorer = FilterExplorer(small_vgg, size=16, steps=3, preprocess=F.unit_range)
    assert list(explorer.layer_menu.options) == ["conv_a", "conv_b"]
    assert explorer.cache == {} and "not rendered yet" in explorer._title(explorer.key)
    image = explorer.render("conv_b", 3)
    assert image.shape == (16, 16, 3) and image.dtype == np.uint8
    assert explorer.render("conv_b", 3) is image  # served from the cache
    expected = F.generate_pattern(small_vgg, "conv_b", 3, size=16).to_uint8()[0]
    np.testing.assert_array_equal(image, expected)
    regularised = explorer.render("conv_a", 1, method="regularised")
    assert regularised.shape == (16, 16, 3) and len(explorer.cache) == 2
    with pytest.raises(IndexError, match="valid indices are 0 to 7"):
        explorer.render("conv_a", 8)
    with pytest.raises(ValueError, match="Unknown method"):
        explorer.render("conv_a", 0, method="deepdream")
    # Changing layer clamps the filter number to the new layer's range.
    explorer.filter_box.value = 15
    explorer.layer_menu.value = "conv_a"
    assert explorer.filter_box.max == 7 and explorer.filter_box.value == 7
    assert {"image/png", "image/jpeg"} & set(explorer._repr_mimebundle_())
    assert explorer.select("conv_a", 1, "regularised") is explorer
    assert explorer.key == ("conv_a", 1, "regularised", 16) and len(explorer.cache) == 2

    dead = FilterExplorer(dead_model, size=10)
    dead.add(F.generate_patterns(dead_model, "conv", size=10, steps=2, progress=False))
    assert len(dead.cache) == 3
    assert "dead" in dead._title(("conv", 1, "book", 10)) and "dead" not in dead._title(("conv", 0, "book", 10))
    assert len(dead.figure([("conv", 0, "book"), ("conv", 1, "book")]).axes) == 2


# --- the inverse real FFT and the backends ---------------------------------------------------


@pytest.mark.parametrize("height, width", [(8, 8), (7, 9), (6, 5), (5, 1)])
def test_irfft2_matches_numpy(height, width):
    """Reference: numpy.fft.irfft2 in float64, on random half spectra whose zero- and
    Nyquist-frequency columns are not Hermitian (irfft2 drops their imaginary parts)."""
    from chollet_viz.filters.param import irfft2

    rng = np.random.default_rng(height * 10 + width)
    shape = (2, 3, height, width // 2 + 1)
    real, imag = rng.normal(size=shape), rng.normal(size=shape)
    expected = np.fft.irfft2(real + 1j * imag, s=(height, width))
    # float32, as the Fourier parameterisation runs: a few float32 roundings of O(1) values.
    out32 = numpy(irfft2(keras.ops.convert_to_tensor(real.astype(np.float32)), keras.ops.convert_to_tensor(imag.astype(np.float32)), (height, width)))
    assert out32.shape == expected.shape
    np.testing.assert_allclose(out32, expected, atol=1e-5)
    # float64 where the backend keeps it (JAX without jax_enable_x64 computes in float32).
    out64 = irfft2(keras.ops.convert_to_tensor(real), keras.ops.convert_to_tensor(imag), (height, width))
    if keras.backend.standardize_dtype(out64.dtype) == "float64":
        np.testing.assert_allclose(numpy(out64), expected, atol=1e-12)
    with pytest.raises(ValueError, match=r"needs spectra of shape \(\.\.\., 4, 3\)"):
        irfft2(keras.ops.convert_to_tensor(real), keras.ops.convert_to_tensor(imag), (4, 4))
