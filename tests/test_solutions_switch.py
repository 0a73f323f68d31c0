"""The one build switch for the exercises' solutions (book/_ext/solutions_switch.py)."""

from __future__ import annotations

import importlib.util
import re
import types
from pathlib import Path

import pytest

pytestmark = pytest.mark.backend_independent  # conftest.py: on the TensorFlow job only

ROOT = Path(__file__).resolve().parent.parent
pytest.importorskip("sphinx", reason="the book extra (pip install -e '.[book]') builds the book")
_spec = importlib.util.spec_from_file_location("solutions_switch", ROOT / "book" / "_ext" / "solutions_switch.py")
switch = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(switch)


def _config():
    togglebutton = pytest.importorskip("sphinx_togglebutton")  # the library whose selector closes dropdowns
    pytest.importorskip("sphinx_exercise")
    registered = {}

    class App:
        def add_config_value(self, name, default, *args, **kwargs):
            registered[name] = default

        def __getattr__(self, name):  # the extension's other set-up calls do not matter here
            return lambda *args, **kwargs: None

    togglebutton.setup(App())
    return types.SimpleNamespace(togglebutton_selector=registered["togglebutton_selector"])


def test_hidden_is_the_default_and_leaves_the_libraries_defaults(monkeypatch):
    monkeypatch.delenv("CHOLLET_VIZ_SOLUTIONS", raising=False)
    config = _config()
    default = config.togglebutton_selector
    assert ".admonition.dropdown" in default  # sphinx-togglebutton closes the solutions' dropdowns
    switch._apply(None, config)
    assert (config.togglebutton_selector, config.chollet_viz_solutions) == (default, "hidden")


def test_shown_leaves_only_the_solutions_open(monkeypatch):
    monkeypatch.setenv("CHOLLET_VIZ_SOLUTIONS", "shown")
    config = _config()
    switch._apply(None, config)
    assert config.togglebutton_selector == ".toggle, .admonition.dropdown:not(.solution)"
    assert config.chollet_viz_solutions == "shown"


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["hidden", "shown", " Removed"])
def test_a_book_built_in_each_mode(mode, tmp_path, monkeypatch):
    """Built by Sphinx with MyST-NB and sphinx-exercise, the libraries the book uses."""
    pytest.importorskip("myst_nb")
    nbformat = pytest.importorskip("nbformat")
    from sphinx.cmd.build import build_main

    source = tmp_path / "source"
    (source / "_ext").mkdir(parents=True)
    (source / "_ext" / "solutions_switch.py").write_text((ROOT / "book" / "_ext" / "solutions_switch.py").read_text())
    (source / "conf.py").write_text(
        "import sys, os\nsys.path.insert(0, os.path.abspath('_ext'))\n"
        "extensions = ['myst_nb', 'sphinx_exercise', 'sphinx_togglebutton', 'solutions_switch']\n"
        "nb_execution_mode = 'off'\n"
    )
    code = nbformat.v4.new_code_cell("print(6 * 7)")
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="42\n")]
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Chapter\n\n```{exercise}\n:label: ex-product\n\nMultiply 6 by 7.\n```"),
        nbformat.v4.new_markdown_cell("```{solution-start} ex-product\n:class: dropdown\n```\nWorked solution."),
        code,
        nbformat.v4.new_markdown_cell("So the product is 42.\n\n```{solution-end}\n```"),
        nbformat.v4.new_markdown_cell("Text after the exercises."),
    ])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, source / "index.ipynb")
    monkeypatch.setenv("CHOLLET_VIZ_SOLUTIONS", mode)
    out = tmp_path / "html"
    assert build_main(["-q", "-W", "-b", "html", str(source), str(out)]) == 0
    html = (out / "index.html").read_text()
    assert "Multiply 6 by 7." in html and "Text after the exercises." in html
    kept = mode.strip().lower() != "removed"
    assert ("Worked solution." in html, "So the product is 42." in html, "6</span>" in html) == (kept,) * 3
    if kept:  # the dropdown is closed in the browser by sphinx-togglebutton's script, given this selector
        assert 'class="solution dropdown admonition"' in html
        selector = re.search(r"var togglebuttonSelector = '([^']*)';", html).group(1)
        closes_solutions = selector in (".toggle, .admonition.dropdown",)
        assert closes_solutions == (mode == "hidden"), selector


def test_a_misspelt_choice_says_what_is_valid(monkeypatch):
    monkeypatch.setenv("CHOLLET_VIZ_SOLUTIONS", "show")
    with pytest.raises(ValueError, match="must be one of hidden, shown, removed; got 'show'"):
        switch._apply(None, _config())
