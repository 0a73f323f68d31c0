"""Test-session set-up shared by the unit tests and the nbval notebook runs.

Notebook kernels inherit this process's environment, so setting variables here
applies to them too.
"""

import os
from pathlib import Path

import matplotlib
import pytest

_MIRROR = Path(__file__).resolve().parent.parent / "shared" / "data"
if "CHOLLET_VIZ_MIRROR" not in os.environ and _MIRROR.is_dir():
    os.environ["CHOLLET_VIZ_MIRROR"] = str(_MIRROR)
if os.environ.get("CHOLLET_VIZ_MIRROR"):
    # Kernels run in the notebook's folder: a relative mirror path must become absolute.
    os.environ["CHOLLET_VIZ_MIRROR"] = str(Path(os.environ["CHOLLET_VIZ_MIRROR"]).resolve())
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# No progress bars in executed notebooks: they would differ from the stored outputs,
# which carry none (see chollet_viz.progress).
os.environ["CHOLLET_VIZ_PROGRESS"] = "0"

# Unit tests draw off-screen. (Not via MPLBACKEND: kernels would inherit it and stop
# producing the inline figures that nbval compares.)
matplotlib.use("Agg")

collect_ignore_glob = ["book/_build/*", "_build/*"]


# Test files that do not depend on Keras' backend (the asset registry, the course's text,
# the book's extensions, the instructors' command, the cross-backend comparison, which
# starts one process per backend itself) say so with a module-level
# `pytestmark = pytest.mark.backend_independent`; they run in the TensorFlow process, and
# the JAX and PyTorch runs of the unit suite skip them instead of repeating them.
BACKEND_INDEPENDENT = "backend-independent: runs on the TensorFlow job"


def pytest_collection_modifyitems(config, items):
    marked = [item for item in items if item.get_closest_marker("backend_independent")]
    if not marked:
        return
    from chollet_viz import _keras_backend  # read as Keras reads it, without importing Keras

    if _keras_backend() != "tensorflow":
        for item in marked:
            item.add_marker(pytest.mark.skip(reason=BACKEND_INDEPENDENT))
