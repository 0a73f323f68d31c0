"""The instructors' command: which chapters, in which order, and what it stores."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import pytest

from chollet_viz import reexecute

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
