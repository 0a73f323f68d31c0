"""The install paths: Colab's cell pins a release, and the package never asks for a second TensorFlow.

Colab preinstalls the GPU build of TensorFlow (the distribution ``tensorflow``). If the
package required ``tensorflow-cpu`` there, pip would install it on top, two distributions
writing one ``tensorflow`` package; ``.ci/check_colab_install`` performs that install for
real (it downloads the full wheel, so it is not part of the test suite).
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

import chollet_viz

pytestmark = pytest.mark.backend_independent  # conftest.py: on the TensorFlow job only

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
INSTALL = re.compile(r"%pip install -q git\+https://github\.com/chollet-viz/chollet_viz@(\S+)")


def _install_cells():
    for notebook in sorted((ROOT / "book").rglob("*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        sources = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
        yield notebook, [s for s in sources if "google.colab" in s]


def _names(requirements):
    return [re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower() for r in requirements]


def test_every_chapter_installs_the_tagged_release_on_colab():
    tag = f"v{chollet_viz.__version__}"
    for notebook, cells in _install_cells():
        assert len(cells) == 1, f"{notebook.name}: {len(cells)} Colab install cells"
        refs = INSTALL.findall(cells[0])
        assert refs == [tag], f"{notebook.name} installs {refs or 'an unpinned URL'}, not the tag {tag}"


def test_the_install_cell_comes_after_the_title():
    for notebook in sorted((ROOT / "book").rglob("*.ipynb")):
        first = json.loads(notebook.read_text())["cells"][0]
        assert first["cell_type"] == "markdown" and first["source"][0].startswith("# "), notebook.name


def test_no_tensorflow_among_the_dependencies_and_the_cpu_build_as_an_extra():
    assert not [n for n in _names(PROJECT["dependencies"]) if n.startswith("tensorflow")]
    cpu = PROJECT["optional-dependencies"]["cpu"]
    assert sorted(_names(cpu)) == ["tensorflow", "tensorflow-cpu"]
    # one per platform, never both: macOS has no tensorflow-cpu wheels
    assert {r.split(";")[1].strip() for r in cpu} == {"sys_platform != 'darwin'", "sys_platform == 'darwin'"}


def test_keras_and_tensorflow_have_lower_bounds_only_below_the_next_major():
    # Narrow pins would downgrade Colab's own recent Keras and TensorFlow.
    requirements = PROJECT["dependencies"] + PROJECT["optional-dependencies"]["cpu"]
    for requirement in requirements:
        if _names([requirement])[0] in {"keras", "tensorflow", "tensorflow-cpu"}:
            spec = requirement.split(";")[0]
            assert re.fullmatch(r"[\w-]+>=[\d.]+,<\d+", spec), spec
