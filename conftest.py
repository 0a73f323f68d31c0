"""Test-session set-up shared by the unit tests and the nbval notebook runs.

Notebook kernels inherit this process's environment, so setting variables here
applies to them too.
"""

import os
from pathlib import Path

import matplotlib

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
