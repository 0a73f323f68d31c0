"""The same seeded small convnet gives the same key numbers on every installed backend.

One process per backend (a process has one Keras backend), each running
``tests/_backend_cases.py`` on weights written once here with NumPy. Compared against
TensorFlow, the package's reference backend: logits, input gradients under each ReLU
rule (backprop, guided, deconvnet; guided also compiled), the feature gradient at a
nested layer, and the heatmaps (and channel weights) of Grad-CAM, Grad-CAM++, LayerCAM
and Score-CAM (``chollet_viz.cam``, compiled: ``tf.function``, ``jax.jit``, eager PyTorch)
at a nested layer, for a GAP head and a Flatten + Dense head, with a different class per
image and an all-zero image. Tolerance: float32 across different kernels, so
|a - b| <= 1e-5 * max(1, max |TensorFlow's|) + 1e-4 |TensorFlow's|; heatmaps are in
[0, 1], so 1e-5 absolute there (measured: at most 2e-7 on JAX and PyTorch).
At the end of the file, the same for filter patterns (``chollet_viz.filters``).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# It starts one process per backend itself, whatever this one runs on: once is enough.
pytestmark = pytest.mark.backend_independent  # conftest.py: on the TensorFlow job only

HERE = Path(__file__).resolve().parent
REFERENCE = "tensorflow"
OTHERS = ("jax", "torch")


def _missing(name: str) -> str | None:
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[name]
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed (pip install -e '.[{'cpu' if name == 'tensorflow' else name}]')"
    return None


def _run(name: str, weights: Path, out_dir: Path) -> dict:
    out = out_dir / f"{name}.npz"
    env = dict(os.environ, KERAS_BACKEND=name, TF_CPP_MIN_LOG_LEVEL="3")
    root = str(HERE.parent)  # the checkout's chollet_viz, whatever is installed
    env["PYTHONPATH"] = os.pathsep.join([root, str(HERE), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, str(HERE / "_backend_cases.py"), str(weights), str(out)],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, f"{name} run failed:\n{done.stderr[-3000:]}"
    with np.load(out) as data:
        numbers = {k: data[k] for k in data.files}
    assert str(numbers.pop("backend")) == name
    return numbers


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    why = _missing(REFERENCE)
    if why:
        pytest.skip(f"the reference backend is missing: {why}")
    # Weights drawn with NumPy in this process, so every backend loads the same arrays;
    # the model is built here only for its weight shapes (any backend gives the same).
    from _backend_cases import seeded_weights, small_convnet

    folder = tmp_path_factory.mktemp("backends")
    arrays = {}
    for seed, head in enumerate(("gap", "flatten")):
        weights = seeded_weights(small_convnet(head), seed)
        arrays[f"{head}/n"] = np.array(len(weights))
        arrays.update({f"{head}/{i}": w for i, w in enumerate(weights)})
    np.savez(folder / "weights.npz", **arrays)
    return folder, _run(REFERENCE, folder / "weights.npz", folder)


@pytest.mark.slow
@pytest.mark.parametrize("name", OTHERS)
def test_backend_agrees_with_tensorflow(name, reference):
    why = _missing(name)
    if why:
        pytest.skip(why)
    folder, expected = reference
    got = _run(name, folder / "weights.npz", folder)
    assert sorted(got) == sorted(expected)
    for key, ref in expected.items():
        scale = max(1.0, float(np.abs(ref).max()))
        np.testing.assert_allclose(got[key], ref, rtol=1e-4, atol=1e-5 * scale, err_msg=f"{name}: {key}")
        assert np.isfinite(got[key]).all(), f"{name}: {key} has NaN or inf"
    # The numbers are not trivially equal: the rules give different gradients here.
    for head in ("gap", "flatten"):
        assert not np.allclose(expected[f"{head}/guided/input_grad"], expected[f"{head}/backprop/input_grad"])
        assert not np.allclose(expected[f"{head}/deconvnet/input_grad"], expected[f"{head}/backprop/input_grad"])
        # Each CAM method gives its own maps, not all zero (the first two images have
        # positive evidence; the third is the all-zero image).
        maps = {m: expected[f"cam/{head}/{m}/heatmaps"] for m in ("GradCAM", "GradCAMPlusPlus", "LayerCAM", "ScoreCAM")}
        for m, heat in maps.items():
            assert heat[:2].max(axis=(1, 2)).min() == 1.0, f"{head}/{m}: a map without positive evidence"
        assert not np.allclose(maps["GradCAM"], maps["LayerCAM"])
        assert not np.allclose(maps["GradCAM"], maps["ScoreCAM"])


# --- filter patterns (chollet_viz.filters) ------------------------------------------------

_FILTER_CASES = r'''
import sys
import keras, numpy as np
from keras import layers
from chollet_viz import filters as F

keras.utils.set_random_seed(0)
inputs = keras.Input((None, None, 3))
x = layers.Conv2D(8, 3, activation="relu", padding="same", name="conv_a")(inputs)
x = layers.MaxPooling2D(2, name="pool_a")(x)
x = layers.Conv2D(16, 3, activation="relu", padding="same", name="conv_b")(x)
model = keras.Model(inputs, x)
rng = np.random.default_rng(123)  # the same weights on every backend
model.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32) for w in model.get_weights()])
out = {"backend": keras.backend.backend()}
book = F.generate_patterns(model, "conv_b", [0, 3, 5, 9], size=24, seed=2, progress=False)
out["book"], out["book_history"] = book.images, book.history
fourier = F.render(model, F.channel("conv_b", [1, 2]), F.fourier_image(2, 32, seed=0), steps=20,
                   preprocess=lambda rgb: rgb * 255.0, progress=False)
out["fourier"] = fourier.images
moved = F.render(model, F.channel("conv_b", [1, 2]), F.fourier_image(2, 32, seed=1), steps=20,
                 transforms=F.standard_transforms(), preprocess=lambda rgb: rgb * 255.0, seed=3, progress=False)
out["transformed"] = moved.images
np.savez(sys.argv[1], **out)
'''


def _filters_run(name, tmp_path):
    import importlib.util

    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[name]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")
    script, out = tmp_path / "cases.py", tmp_path / f"{name}.npz"
    script.write_text(_FILTER_CASES)
    env = dict(os.environ, KERAS_BACKEND=name, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, str(script), str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{name} run failed:\n{done.stderr[-3000:]}"
    with np.load(out) as data:
        assert str(data["backend"]) == name
        return {k: data[k] for k in data.files if k != "backend"}


def test_filter_patterns_agree_across_backends(tmp_path):
    """One process per backend, the same NumPy weights and seeds. Reference: TensorFlow's
    numbers. The book's patterns (40 normalised steps, values up to ~350): within
    2e-5 x max |TF| (measured 1.8e-7 x on JAX, 0.9e-7 x on PyTorch); the Fourier render
    (RGB in [0, 1], Adam): 1e-5 (measured 2.4e-7). With random transforms the parameters
    are the same NumPy draws, but TensorFlow's gradient of its projective transform
    (``ImageProjectiveTransformV3``) is not the exact adjoint of the bilinear warp (JAX's and
    PyTorch's autodiff are), so only JAX and PyTorch are compared there: 1e-4."""
    reference = _filters_run("tensorflow", tmp_path)
    others = {}
    for name in ("jax", "torch"):
        try:
            others[name] = _filters_run(name, tmp_path)
        except pytest.skip.Exception:
            continue
    if not others:
        pytest.skip("neither JAX nor PyTorch is installed")
    for name, numbers in others.items():
        for key in ("book", "book_history"):
            scale = np.abs(reference[key]).max()
            np.testing.assert_allclose(numbers[key], reference[key], rtol=0, atol=2e-5 * scale, err_msg=f"{name} {key}")
        np.testing.assert_allclose(numbers["fourier"], reference["fourier"], rtol=0, atol=1e-5, err_msg=f"{name} fourier")
    if len(others) == 2:
        np.testing.assert_allclose(others["torch"]["transformed"], others["jax"]["transformed"], rtol=0, atol=1e-4)
