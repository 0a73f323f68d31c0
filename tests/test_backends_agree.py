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
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

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
