"""The instructors' command: which chapters, in which order, and what it stores."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat
import pytest

from chollet_viz import reexecute

pytestmark = pytest.mark.backend_independent  # conftest.py: on the TensorFlow job only

ROOT = Path(__file__).resolve().parent.parent


def test_chapters_follow_the_table_of_contents():
    toc_files = re.findall(r"file:\s*(\S+)", (ROOT / "_toc.yml").read_text())
    notebooks = [f for f in toc_files if (ROOT / f"{f}.ipynb").is_file()]
    found = [p.relative_to(ROOT).with_suffix("").as_posix() for p in reexecute.chapters(ROOT)]
    assert found == notebooks and len(found) == len(list((ROOT / "book").rglob("*.ipynb")))


def test_a_folder_without_a_table_of_contents_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="root of a chollet_viz checkout"):
        reexecute.chapters(tmp_path)


def test_only_names_the_chapters_when_nothing_matches(capsys):
    with pytest.raises(SystemExit):
        reexecute.main(["--root", str(ROOT), "--only", "no-such-chapter", "--no-nbval"])
    assert "book/5-4-1-intermediate-activations.ipynb" in capsys.readouterr().err


@pytest.mark.slow
def test_execute_stores_outputs_without_widget_state_timestamps_or_bars(tmp_path, monkeypatch):
    notebook = tmp_path / "tiny.ipynb"
    cells = [
        "import os, ipywidgets\nprint(os.environ.get('CHOLLET_VIZ_PROGRESS'))",
        "ipywidgets.IntSlider(3)",
        "print('a'); print('b')",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["widgets"] = {"stale": True}
    nbformat.write(nb, notebook)
    monkeypatch.setenv("CHOLLET_VIZ_PROGRESS", "0")  # as main() sets it
    seconds, peak = reexecute.execute(notebook, timeout=120)
    stored = nbformat.read(notebook, as_version=4)
    assert stored.cells[0].outputs[0].text == "0\n"
    assert "widgets" not in stored.metadata
    assert all("execution" not in cell.metadata for cell in stored.cells)
    assert [o.text for o in stored.cells[2].outputs] == ["a\nb\n"]  # one stream, not two
    assert seconds > 0
    if sys.platform.startswith("linux"):
        assert 10 < peak < 4096  # MiB: a Python kernel with ipywidgets loaded


def test_the_times_table_links_each_chapter():
    rows = [(ROOT / "book/5-4-1-intermediate-activations.ipynb", 90.0, 700.0),
            (ROOT / "book/companions/deconvnet.ipynb", 30.0, None)]
    table = reexecute._times_table(rows, ROOT)
    assert "| {doc}`/book/5-4-1-intermediate-activations` | 90 s | 0.7 GiB |" in table
    assert "| {doc}`/book/companions/deconvnet` | 30 s | n/a |" in table
    assert "| all chapters | 120 s (2 min) | |" in table


# --- --compare: a chapter on another backend against its stored outputs ----------------
# Expected values below are written by hand from the stated rule: a line passes when
# identical, or when only its numbers differ and each float is within
# rtol * |stored| + atol (defaults 1e-3, 1e-6) or one unit of its last printed digit,
# each integer equal.


@pytest.mark.parametrize(
    "new, stored, status",
    [
        ("loss 0.25\n", "loss 0.25\n", "equal"),
        ("loss 0.2500002\n", "loss 0.25\n", "within tolerance"),  # 2e-7 <= 1e-3 * 0.25 + 1e-6
        ("loss 0.2504\n", "loss 0.25\n", "within tolerance"),  # 4e-4 <= one unit of "0.25" (0.01)
        ("loss 0.2504\n", "loss 0.2500\n", "differing"),  # 4e-4 > 2.5e-4 + 1e-6 and > one unit (1e-4)
        ("loss 0.2501\n", "loss 0.2500\n", "within tolerance"),  # 1e-4 <= 2.5e-4 + 1e-6
        ("max difference 3.1e-07\n", "max difference 2.9e-07\n", "within tolerance"),  # 2e-8 <= atol 1e-6
        ("max difference 3.1e-03\n", "max difference 2.9e-03\n", "differing"),  # 2e-4 > 2.9e-6 + 1e-6 and > one unit (1e-4)
        ("top class 385\n", "top class 386\n", "differing"),  # integers exactly
        ("-0.000\n", "0.000\n", "within tolerance"),
        ("top class: cat\n", "top class: dog\n", "differing"),
        ("a\nb\n", "a\n", "differing"),  # a line only in the new output
    ],
)
def test_compare_text_classifies_lines(new, stored, status):
    assert reexecute.compare_text(new, stored)[0] == status


def test_compare_text_reports_each_differing_line_with_both_values():
    stored = "epoch 1\nloss 0.5000\naccuracy 0.81\n"
    new = "epoch 1\nloss 0.5001\naccuracy 0.79\n"
    status, details = reexecute.compare_text(new, stored)
    assert status == "differing"
    assert details == [
        # 1e-4 <= 1e-3 * 0.5 + 1e-6: within; the line is still listed, with its numbers
        {"stored": "loss 0.5000", "new": "loss 0.5001", "status": "within tolerance", "numbers": [("0.5000", "0.5001")]},
        # 0.02 > 8.1e-4 + 1e-6 and > one unit (0.01)
        {"stored": "accuracy 0.81", "new": "accuracy 0.79", "status": "differing", "numbers": [("0.81", "0.79")]},
    ]


def test_compare_text_tolerances_are_the_callers():
    assert reexecute.compare_text("x 1.10\n", "x 1.00\n", rtol=0.2)[0] == "within tolerance"
    assert reexecute.compare_text("x 1.10\n", "x 1.00\n", rtol=0.05)[0] == "differing"


def _cell(source, outputs=(), tags=()):
    cell = nbformat.v4.new_code_cell(source)
    cell.outputs = [nbformat.from_dict(o) for o in outputs]
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def _stream(text):
    return {"output_type": "stream", "name": "stdout", "text": text}


def _error(ename, evalue):
    return {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": []}


def _figure(png):
    return {"output_type": "display_data", "metadata": {}, "data": {"image/png": png, "text/plain": "<Figure size 640x480 with 1 Axes>"}}


def test_compare_notebooks_counts_each_kind_of_cell():
    pairs = [  # (source, stored outputs, new outputs, tags)
        ("print('same')", [_stream("same\n")], [_stream("same\n")], ()),  # equal
        ("print(x)", [_stream("0.25\n")], [_stream("0.2500001\n")], ()),  # within tolerance
        ("print(n)", [_stream("386\n")], [_stream("385\n")], ()),  # differing
        ("%%backend jax\n...", [], [_stream("jax only\n")], ("backend-jax",)),  # skipped
        ("%%backend tensorflow\n...", [_stream("tf only\n")], [], ("backend-tensorflow",)),  # skipped
        ("print(t)", [_stream("3 s\n")], [_stream("9 s\n")], ("nbval-ignore-output",)),  # skipped
        ("plt.show()", [_figure("AAAA")], [_figure("BBBB")], ()),  # equal: images not compared
        ("model.fit()", [_stream("done\n")], [_stream("partial\n"), _error("NameError", "name 'tf' is not defined")], ()),  # error
        ("raise ValueError('bad')", [_error("ValueError", "bad")], [_error("ValueError", "bad")], ("raises-exception",)),  # equal
        ("x = 1", [], [], ()),  # prints nothing: not compared
    ]
    stored = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# title")] + [_cell(s, o, t) for s, o, _, t in pairs])
    new = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# title")] + [_cell(s, n, t) for s, _, n, t in pairs])
    result = reexecute.compare_notebooks(stored, new)
    assert result["summary"] == {"compared": 6, "equal": 3, "within tolerance": 1, "differing": 1, "errors": 1, "skipped": 3}
    by_cell = {c["cell"]: c for c in result["cells"]}
    assert by_cell[2]["details"][0]["numbers"] == [("386", "385")]
    assert by_cell[7]["errors"] == ["NameError: name 'tf' is not defined"]


def test_compare_notebooks_applies_the_nbval_sanitizers():
    sanitizers = reexecute._sanitizers(ROOT)
    stored = nbformat.v4.new_notebook(cells=[_cell("f()", [_stream("wall time: 1.23 s at 0x7f00aa\n")])])
    new = nbformat.v4.new_notebook(cells=[_cell("f()", [_stream("wall time: 9.9 ms at 0x7f11bb\n")])])
    assert reexecute.compare_notebooks(stored, new, sanitizers=sanitizers)["summary"]["equal"] == 1
    assert reexecute.compare_notebooks(stored, new)["summary"]["differing"] == 1


def test_compare_notebooks_refuses_notebooks_with_other_code():
    stored = nbformat.v4.new_notebook(cells=[_cell("a = 1")])
    new = nbformat.v4.new_notebook(cells=[_cell("a = 2")])
    with pytest.raises(ValueError, match="code cells"):
        reexecute.compare_notebooks(stored, new)


def test_switch_backend_rewrites_the_first_code_cells_switch_line():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# title"),
        _cell('import os\n\nos.environ["KERAS_BACKEND"] = "tensorflow"'),
        _cell("print(1)"),
    ])
    reexecute.switch_backend(nb, "torch")
    assert nb.cells[1].source == 'import os\n\nos.environ["KERAS_BACKEND"] = "torch"'
    assert nb.cells[2].source == "print(1)"


def test_switch_backend_names_a_chapter_without_the_switch():
    nb = nbformat.v4.new_notebook(cells=[_cell("import keras")])
    with pytest.raises(ValueError, match=r"first code cell has no backend switch line.*import keras"):
        reexecute.switch_backend(nb, "jax")


def test_every_chapter_opens_with_the_backend_switch():
    for notebook in reexecute.chapters(ROOT):
        nb = nbformat.read(notebook, as_version=4)
        first = next(c for c in nb.cells if c.cell_type == "code")
        assert reexecute.SWITCH_LINE in first.source, notebook
        assert first.outputs == [], f"{notebook}: the switch cell stores an output"


def test_another_backend_runs_only_as_a_comparison(capsys):
    with pytest.raises(SystemExit):
        reexecute.main(["--root", str(ROOT), "--backend", "jax", "--only", "mnist"])
    assert "--compare" in capsys.readouterr().err


@pytest.mark.slow
def test_compare_runs_a_copy_with_the_backend_in_the_kernel_environment(tmp_path, capsys):
    root = tmp_path / "checkout"
    (root / "book").mkdir(parents=True)
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/tiny\n")
    # The kernel imports no Keras: the cell reads the variable the command sets.
    stored = nbformat.v4.new_notebook(cells=[
        # The switch line is rewritten in the copy: a chapter run on JAX prints "jax".
        _cell(f"import os\n{reexecute.SWITCH_LINE}\nprint(os.environ['KERAS_BACKEND'])", [_stream("jax\n")]),
        _cell("print(0.1 + 0.2)", [_stream("0.3\n")]),  # 0.30000000000000004: within tolerance
        _cell("print(1 / 0)", [_stream("inf\n")]),  # ZeroDivisionError: an error
        _cell("print('after the error')", [_stream("after the error\n")]),  # still runs
    ])
    notebook = root / "book" / "tiny.ipynb"
    nbformat.write(stored, notebook)
    before = notebook.read_bytes()
    out, report = tmp_path / "out", tmp_path / "report.json"
    code = reexecute.main(["--root", str(root), "--backend", "jax", "--compare", "--out", str(out), "--json", str(report)])
    assert code == 1  # the error fails the command
    assert notebook.read_bytes() == before  # the stored notebook is not written
    assert nbformat.read(out / "book" / "tiny.ipynb", as_version=4).cells[0].outputs[0].text == "jax\n"
    summary = json.loads(report.read_text())["chapters"]["book/tiny"]["summary"]
    assert {k: summary[k] for k in ("compared", "equal", "within tolerance", "differing", "errors")} == {
        "compared": 4, "equal": 2, "within tolerance": 1, "differing": 0, "errors": 1}
    printed = capsys.readouterr().out
    assert "| book/tiny | 4 | 2 | 1 | 0 | 1 | 0 |" in printed
    assert "ZeroDivisionError" in printed
