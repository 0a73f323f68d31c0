"""How figures are stored: PNG or JPEG, whichever keeps a chapter light without blurring it."""

from __future__ import annotations

import io
import subprocess

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from chollet_viz import datasets, plotting


def _outputs_in_a_kernel(cell: str) -> list:
    """The outputs of one code cell executed in a fresh IPython kernel, as a notebook stores them."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)])
    nbclient.NotebookClient(nb, kernel_name="python3", timeout=120).execute(stderr=subprocess.DEVNULL)
    return nb.cells[0].outputs


def _encoded(fig):
    png, jpeg = io.BytesIO(), io.BytesIO()
    fig.savefig(png, format="png")
    fig.savefig(jpeg, format="jpg", pil_kwargs={"quality": plotting.JPEG_QUALITY})
    plt.close(fig)
    return png.getvalue(), jpeg.getvalue()


def test_a_photograph_is_stored_as_jpeg_and_a_line_plot_as_png():
    fig = plt.figure()
    plt.imshow(datasets.load_image("cat.1700.jpg", target_size=(150, 150)).astype("uint8"))
    assert plotting.smaller_image(*_encoded(fig)) == "image/jpeg"
    fig = plt.figure()
    plt.plot([0, 1, 4, 9])
    assert plotting.smaller_image(*_encoded(fig)) == "image/png"


def test_the_rule_is_a_third_of_the_bytes():
    assert plotting.smaller_image(b"p" * 300, b"j" * 199) == "image/jpeg"
    assert plotting.smaller_image(b"p" * 300, b"j" * 200) == "image/png"


def test_png_to_jpeg_puts_transparency_on_white():
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[:4, :, :] = (255, 0, 0, 255)  # opaque red above, transparent below
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, "PNG")
    decoded = np.asarray(Image.open(io.BytesIO(plotting.png_to_jpeg(buffer.getvalue()))), dtype=int)
    assert decoded.shape == (8, 8, 3)
    assert np.abs(decoded[6, 4] - (255, 255, 255)).max() <= 8
    assert decoded[1, 4, 0] > 200 and decoded[1, 4, 1] < 60


def test_use_compact_figures_checks_quality_and_does_nothing_outside_a_kernel():
    with pytest.raises(ValueError, match="quality must be an integer from 1 to 100"):
        plotting.use_compact_figures(0)
    plotting.use_compact_figures()  # plain Python: no shell, nothing happens


@pytest.mark.slow
def test_in_a_kernel_each_figure_is_stored_once_in_the_chosen_format():
    cell = (
        "from chollet_viz import datasets, plotting\n"
        "plotting.use_compact_figures()\n"
        "import matplotlib.pyplot as plt\n"
        "plt.imshow(datasets.load_image('cat.1700.jpg', target_size=(150, 150)).astype('uint8')); plt.show()\n"
        "plt.plot([0, 1, 4, 9]); plt.show()\n"
    )
    images = [sorted(k for k in o["data"] if k.startswith("image/")) for o in _outputs_in_a_kernel(cell) if "data" in o]
    assert images == [["image/jpeg"], ["image/png"]]


def test_glue_figure_checks_the_name():
    with pytest.raises(ValueError, match="name must be a figure label"):
        plotting.glue_figure("Fig A")
    plt.close("all")


@pytest.mark.slow
def test_glue_figure_writes_what_myst_nb_glue_writes():
    """Reference: MyST-NB's own ``glue`` (the book's renderer reads exactly its output)."""
    pytest.importorskip("myst_nb")
    cell = (
        "from chollet_viz import plotting\n"
        "from myst_nb import glue\n"
        "import matplotlib.pyplot as plt\n"
        "fig, ax = plt.subplots(figsize=(2, 2)); ax.plot([0, 1, 4])\n"
        "glue('fig-reference', fig, display=True); plt.close(fig)\n"
        "fig, ax = plt.subplots(figsize=(2, 2)); ax.plot([0, 1, 4])\n"
        "plotting.glue_figure('fig-package', fig)\n"
    )
    reference, package = _outputs_in_a_kernel(cell)  # one display each: the closed figures are not shown again
    assert reference["metadata"]["scrapbook"] == {"name": "fig-reference", "mime_prefix": ""}
    assert package["metadata"]["scrapbook"] == {"name": "fig-package", "mime_prefix": ""}
    assert sorted(package["data"]) == sorted(reference["data"])
    assert package["data"]["image/png"] == reference["data"]["image/png"]


# --- resize: bilinear, half-pixel centres, no antialiasing, on every backend -----------------


def numpy_bilinear_resize(array, size):
    """Bilinear interpolation with half-pixel centres, float64, by hand: output pixel i samples
    the input at (i + 0.5) * n_in / n_out - 0.5, clamped to the first and last pixels, and
    mixes the two neighbours linearly (no antialiasing filter when shrinking)."""
    def axis(n_in, n_out):
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(src).astype(int)
        return lo, np.minimum(lo + 1, n_in - 1), src - lo

    a = np.asarray(array, np.float64)
    squeeze = a.ndim == 2
    a = a[..., None] if squeeze else a
    (r0, r1, fr), (c0, c1, fc) = axis(a.shape[0], size[0]), axis(a.shape[1], size[1])
    rows = a[r0] * (1 - fr)[:, None, None] + a[r1] * fr[:, None, None]
    out = rows[:, c0] * (1 - fc)[None, :, None] + rows[:, c1] * fc[None, :, None]
    return out[..., 0] if squeeze else out


@pytest.mark.parametrize(
    ("shape", "size"),
    [((7, 7), (224, 224)), ((14, 14, 3), (224, 224)), ((224, 224, 3), (56, 40)), ((5, 9), (12, 7)), ((3, 4, 2), (3, 4))],
)
def test_resize_is_bilinear_with_half_pixel_centres(shape, size):
    # Reference: numpy_bilinear_resize (float64); upsampling, shrinking (no antialiasing),
    # different factors per axis, 2-D and 3-D, and the identity. Tolerance 1e-5 (float32).
    array = np.random.default_rng(0).uniform(size=shape).astype(np.float32)
    got = plotting.resize(array, size)
    assert got.shape == tuple(size) + shape[2:] and got.dtype == np.float32
    np.testing.assert_allclose(got, numpy_bilinear_resize(array, size), rtol=0, atol=1e-5)
    import keras

    if keras.backend.backend() == "tensorflow":  # peer: what the package called before Keras 3 ports
        import tensorflow as tf

        expected = tf.image.resize(array if len(shape) == 3 else array[..., None], size, method="bilinear").numpy()
        np.testing.assert_array_equal(got, expected if len(shape) == 3 else expected[..., 0])


def test_overlay_heatmap_resizes_the_heatmap_to_the_image():
    rng = np.random.default_rng(1)
    image, heatmap = rng.uniform(0, 255, (32, 24, 3)), rng.uniform(size=(7, 5))
    out = plotting.overlay_heatmap(image, heatmap, alpha=0.4)
    assert out.shape == (32, 24, 3) and out.dtype == np.uint8
    colours = plt.get_cmap("jet")(np.clip(numpy_bilinear_resize(heatmap, (32, 24)), 0, 1))[..., :3] * 255  # reference
    expected = np.clip(colours * 0.4 + image * 0.6, 0, 255)
    # uint8 truncation (1) and at most one step of the 256-colour table (jet: 4/256 of 255, times alpha)
    assert np.abs(out.astype(np.float64) - expected).max() <= 2.0
