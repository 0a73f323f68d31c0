"""The book's augmentation: one affine resample per image, as Keras 2.0's ImageDataGenerator."""

import numpy as np
import pytest
from scipy import ndimage

from chollet_viz import augmentation as aug

H, W = 150, 150
NO_CHANGE = dict(rotation=0.0, width_shift=0.0, height_shift=0.0, shear=0.0, zoom=0.0)


def _params(**kw):
    p = dict(theta=0.0, tx=0.0, ty=0.0, shear=0.0, zx=1.0, zy=1.0) | kw
    return {k: np.array([v], dtype=np.float32) for k, v in p.items()}


def _images(n=2, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, H, W, 3)).astype("float32")


def test_identity_parameters_give_the_identity_matrix():
    np.testing.assert_allclose(aug.affine_matrix(**_params(), height=H, width=W)[0], np.eye(3), atol=1e-6)


def test_integer_shift_moves_pixels_and_repeats_the_edge():
    images = _images()
    # ty is the column shift: output column c reads input column c + 10.
    out = np.asarray(aug.apply_affine(images, aug.affine_matrix(**_params(ty=10.0), height=H, width=W)))
    np.testing.assert_array_equal(out[:, :, : W - 10], images[:, :, 10:])
    # fill_mode="nearest": columns past the edge repeat the last input column.
    np.testing.assert_array_equal(out[:, :, W - 10 :], np.repeat(images[:, :, -1:], 10, axis=2))


@pytest.mark.parametrize("seed", range(4))
def test_resampling_matches_keras_2_scipy_implementation(seed):
    """Keras 2.0 applied the matrix with scipy.ndimage.affine_transform(order=0, mode="nearest")."""
    rng = np.random.default_rng(seed)
    p = _params(
        theta=np.radians(rng.uniform(-40, 40)),
        tx=rng.uniform(-0.2, 0.2) * H,
        ty=rng.uniform(-0.2, 0.2) * W,
        shear=rng.uniform(-0.2, 0.2),
        zx=rng.uniform(0.8, 1.2),
        zy=rng.uniform(0.8, 1.2),
    )
    matrix = aug.affine_matrix(**p, height=H, width=W)
    image = _images(1, seed)[0]
    expected = np.stack(
        [ndimage.affine_transform(image[..., c], matrix[0, :2, :2], matrix[0, :2, 2], order=0, mode="nearest") for c in range(3)],
        axis=-1,
    )
    out = np.asarray(aug.apply_affine(image[None], matrix))[0]
    # Nearest-neighbour rounding of coordinates that fall exactly between two pixels
    # may differ between the libraries; everything else must agree exactly.
    assert np.mean(np.all(out == expected, axis=-1)) > 0.995


def test_output_only_reuses_input_values():
    images = _images(4)
    out = np.asarray(aug.random_book_transform(images, seed=(0, 0)))
    assert out.shape == images.shape
    assert np.isin(out, images).all()  # nearest-neighbour never blends pixels
    assert not np.allclose(out, images)


def test_same_seed_same_batch_new_seed_new_batch():
    images = _images(4)
    first = np.asarray(aug.random_book_transform(images, seed=(1, 7)))
    np.testing.assert_array_equal(first, np.asarray(aug.random_book_transform(images, seed=(1, 7))))
    assert not np.allclose(first, np.asarray(aug.random_book_transform(images, seed=(1, 8))))


def test_with_no_geometric_change_about_half_the_images_are_mirrored():
    images = _images(200)
    out = np.asarray(aug.random_book_transform(images, seed=(3, 0), **NO_CHANGE))
    unchanged = np.all(out == images, axis=(1, 2, 3))
    mirrored = np.all(out == images[:, :, ::-1], axis=(1, 2, 3))
    assert np.all(unchanged ^ mirrored)
    assert 70 <= mirrored.sum() <= 130  # Binomial(200, 1/2) lies here with probability > 0.999


def test_parameters_cover_the_book_ranges_and_no_more():
    p = {k: np.asarray(v) for k, v in aug.sample_parameters(5000, H, W, seed=(9, 0)).items()}
    for name, low, high in [
        ("theta", -np.radians(40), np.radians(40)),
        ("tx", -0.2 * H, 0.2 * H),
        ("ty", -0.2 * W, 0.2 * W),
        ("shear", -0.2, 0.2),  # radians, as in Keras 2.0
        ("zx", 0.8, 1.2),
        ("zy", 0.8, 1.2),
    ]:
        values = p[name]
        assert low <= values.min() and values.max() <= high, name
        # Uniform draws: 5,000 of them reach within 1 % of both ends of the range.
        span = high - low
        assert values.min() < low + 0.01 * span and values.max() > high - 0.01 * span, name
    assert 0.45 < p["flip"].mean() < 0.55
    assert not aug.sample_parameters(100, H, W, seed=(9, 0), horizontal_flip=False)["flip"].numpy().any()
