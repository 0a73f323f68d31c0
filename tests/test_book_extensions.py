"""The book's small Sphinx extensions under book/_ext (the solutions switch has its own file)."""

from __future__ import annotations

import importlib.util
import re
import types
from pathlib import Path

import pytest

pytestmark = pytest.mark.backend_independent  # conftest.py: on the TensorFlow job only

ROOT = Path(__file__).resolve().parent.parent


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "book" / "_ext" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_source_maps_and_the_comments_naming_them_are_removed(tmp_path):
    no_source_maps = _load("no_source_maps")
    static = tmp_path / "_static"
    (static / "scripts").mkdir(parents=True)
    (static / "styles").mkdir()
    js = b'(()=>{"use strict";s(654)})();\n//# sourceMappingURL=theme.js.map'
    css = b'a{color:red}\n/*# sourceMappingURL=theme.css.map*/\n'
    other = b"// a script that names no map\nlet x = 1;\n"
    (static / "scripts" / "theme.js").write_bytes(js)
    (static / "scripts" / "theme.js.map").write_bytes(b"{}")
    (static / "styles" / "theme.css").write_bytes(css)
    (static / "styles" / "theme.css.map").write_bytes(b"{}")
    (static / "scripts" / "other.js").write_bytes(other)
    app = types.SimpleNamespace(outdir=str(tmp_path), builder=types.SimpleNamespace(format="html"))

    no_source_maps._remove_source_maps(app, None)

    assert sorted(p.name for p in static.rglob("*")) == ["other.js", "scripts", "styles", "theme.css", "theme.js"]
    assert (static / "scripts" / "theme.js").read_bytes() == b'(()=>{"use strict";s(654)})();'
    assert (static / "styles" / "theme.css").read_bytes() == b"a{color:red}\n"
    assert (static / "scripts" / "other.js").read_bytes() == other


def test_nothing_is_removed_after_a_failed_build_or_for_another_builder(tmp_path):
    no_source_maps = _load("no_source_maps")
    (tmp_path / "_static").mkdir()
    kept = tmp_path / "_static" / "a.js.map"
    kept.write_bytes(b"{}")
    no_source_maps._remove_source_maps(types.SimpleNamespace(outdir=str(tmp_path), builder=types.SimpleNamespace(format="html")), RuntimeError())
    no_source_maps._remove_source_maps(types.SimpleNamespace(outdir=str(tmp_path), builder=types.SimpleNamespace(format="latex")), None)
    assert kept.exists()


def test_figures_and_exercises_are_numbered_from_one_on_each_page():
    chapter_numbering = _load("chapter_numbering")
    env = types.SimpleNamespace(toc_fignumbers={  # as Sphinx numbers them through the book
        "book/a": {"figure": {"fig-a-2": (2,), "fig-a-1": (1,)}, "exercise": {"ex-a": (1,)}},
        "book/b": {"figure": {"fig-b-1": (3,), "fig-b-3": (10,), "fig-b-2": (4,)}, "exercise": {"ex-b-2": (3,), "ex-b-1": (2,)}},
    })
    assert chapter_numbering._renumber(None, env) == ["book/b"]  # the pages to write again
    assert env.toc_fignumbers == {
        "book/a": {"figure": {"fig-a-2": (2,), "fig-a-1": (1,)}, "exercise": {"ex-a": (1,)}},
        "book/b": {"figure": {"fig-b-1": (1,), "fig-b-2": (2,), "fig-b-3": (3,)}, "exercise": {"ex-b-1": (1,), "ex-b-2": (2,)}},
    }


# --- backend_tabs: each group of per-backend cells as TensorFlow | JAX | PyTorch tabs --------------


def _build_book_with_backend_cells(tmp_path, cells):
    """A one-page book built by Sphinx with MyST-NB, sphinx-design and backend_tabs; returns
    (sphinx's exit status, the page's HTML, the warnings)."""
    pytest.importorskip("myst_nb")
    pytest.importorskip("sphinx_design")
    nbformat = pytest.importorskip("nbformat")
    from sphinx.cmd.build import build_main

    source = tmp_path / "source"
    (source / "_ext").mkdir(parents=True)
    (source / "_ext" / "backend_tabs.py").write_text((ROOT / "book" / "_ext" / "backend_tabs.py").read_text())
    (source / "conf.py").write_text(
        "import sys, os\nsys.path.insert(0, os.path.abspath('_ext'))\n"
        "extensions = ['myst_nb', 'backend_tabs']\n"  # backend_tabs loads sphinx_design itself
        "nb_execution_mode = 'off'\n"
    )
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Chapter\n\nText before.")] + cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["language_info"] = {"name": "python", "pygments_lexer": "ipython3"}
    nbformat.write(notebook, source / "index.ipynb")
    out, warnings = tmp_path / "html", tmp_path / "warnings.txt"
    status = build_main(["-q", "-W", "--keep-going", "-w", str(warnings), "-b", "html", str(source), str(out)])
    html = (out / "index.html").read_text() if (out / "index.html").exists() else ""
    return status, html, warnings.read_text() if warnings.exists() else ""


def _backend_cell(backend, body, output=None):
    import nbformat

    cell = nbformat.v4.new_code_cell(f"%%backend {backend}\n{body}", metadata={"tags": [f"backend-{backend}"]})
    if output is not None:
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=output)]
    return cell


def _tab_sets(html):
    """Per tab set: its labels' (text, sync group, sync id), the ids of its checked inputs, and the
    inputs its labels are for, in order."""
    sets = []
    for block in re.split(r'<div class="sd-tab-set', html)[1:]:
        labels, inputs = [], []
        for attributes, text in re.findall(r'<label ([^>]*class="sd-tab-label"[^>]*)>\s*(.*?)</label>', block, re.S):
            attributes = dict(re.findall(r'([\w-]+)="([^"]*)"', attributes))
            labels.append((text.strip(), attributes.get("data-sync-group"), attributes.get("data-sync-id")))
            inputs.append(attributes["for"])
        checked = re.findall(r'<input checked="checked" id="([^"]*)"', block)
        sets.append((labels, checked, inputs))
    return sets


@pytest.mark.slow
def test_each_group_of_backend_cells_is_one_synced_tab_set_with_the_tensorflow_tab_selected(tmp_path):
    import nbformat

    between = nbformat.v4.new_code_cell("print('shared')")
    between.outputs = [nbformat.v4.new_output("stream", name="stdout", text="shared\n")]
    cells = [
        # the first group written out of order: the tabs still come TensorFlow, JAX, PyTorch
        _backend_cell("jax", "step = 'jax.value_and_grad'"),
        _backend_cell("tensorflow", "step = 'tf.GradientTape'\nprint('equal within 1e-5')", output="equal within 1e-5\n"),
        _backend_cell("torch", "step = 'torch.autograd.grad'"),
        between,
        _backend_cell("tensorflow", "second = 'tensorflow lines'"),
        _backend_cell("jax", "second = 'jax lines'"),
        _backend_cell("torch", "second = 'torch lines'"),
    ]
    status, html, warnings = _build_book_with_backend_cells(tmp_path, cells)
    assert status == 0, warnings
    sets = _tab_sets(html)
    assert len(sets) == 2
    for labels, checked, inputs in sets:
        assert labels == [("TensorFlow", "backend", "tensorflow"), ("JAX", "backend", "jax"), ("PyTorch", "backend", "torch")]
        assert checked == inputs[:1]  # the TensorFlow tab is the one open on loading
    assert "%%backend" not in html  # the magic line is not shown ...
    for text in ["jax.value_and_grad", "tf.GradientTape", "torch.autograd.grad", "jax lines", "torch lines"]:
        assert text in html  # ... the lines are
    first = html[html.index("sd-tab-set"):html.index("shared")]
    assert first.index("tf.GradientTape") < first.index("equal within 1e-5") < first.index("jax.value_and_grad")  # output in its tab
    assert html.count("shared") == 2 and html.index("shared") < html.rindex("sd-tab-set")  # the cell between: outside both


@pytest.mark.slow
@pytest.mark.parametrize("case, message", [
    ("wrong magic", "tagged backend-jax starts with '%%backend torch'"),
    ("no magic", "tagged backend-torch starts with 'step = 1'"),
    ("no tag", "has no backend-<name> tag"),
    ("missing backend", "has the tabs ['tensorflow', 'jax']; it needs one cell per backend"),
    ("repeated backend", "has the tabs ['tensorflow', 'tensorflow', 'jax', 'torch']"),
    ("unknown tag", "tagged ['backend-numpy']; a backend cell has one of the tags backend-tensorflow, backend-jax, backend-torch"),
])
def test_a_cell_that_would_show_or_run_something_else_fails_the_build(tmp_path, case, message):
    import nbformat

    tf, jax, torch = (_backend_cell(b, "step = 1") for b in ("tensorflow", "jax", "torch"))
    if case == "wrong magic":
        jax.source = "%%backend torch\nstep = 1"
    elif case == "no magic":
        torch.source = "step = 1"
    elif case == "no tag":
        torch.metadata = {}
    elif case == "missing backend":
        torch = nbformat.v4.new_markdown_cell("Text.")
    elif case == "repeated backend":
        jax = [_backend_cell("tensorflow", "step = 2"), jax]
    elif case == "unknown tag":
        torch.metadata = {"tags": ["backend-numpy"]}
    cells = [c for cell in (tf, jax, torch) for c in (cell if isinstance(cell, list) else [cell])]
    status, _, warnings = _build_book_with_backend_cells(tmp_path, cells)
    assert status != 0
    assert message in warnings, warnings
