"""Every chapter's online-only code runs here too, offline, with stand-in weights.

A chapter cell that needs the network (it catches ``AssetError``) is what Colab runs and
CI never would. Here the download is replaced by a model of the same architecture and
shapes with random weights (``weights=None``), and the chapter's code cells are executed
up to and including that cell, so a shape or API error in the online branch fails here.
The numbers the stand-in gives mean nothing; the shapes and the code path are the test.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import matplotlib.pyplot as plt
import pytest

from chollet_viz import models

BOOK = Path(__file__).resolve().parent.parent / "book"


def code_cells(notebook: Path) -> list[str]:
    cells = json.loads(notebook.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def online_notebooks() -> list[Path]:
    return sorted(p for p in BOOK.rglob("*.ipynb") if any("except AssetError" in s for s in code_cells(p)))


def runnable(source: str) -> str:
    """IPython magics and shell lines (the Colab install cell) become ``pass``; keep Python."""
    lines = source.splitlines()
    return "\n".join(
        line[: len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith(("%", "!")) else line
        for line in lines
    )


def stand_in_vgg16(include_top: bool = False, input_shape=None):
    """VGG16 with random weights and the ImageNet architecture: the shapes the download has."""
    keras.utils.set_random_seed(0)
    return keras.applications.VGG16(weights=None, include_top=include_top, input_shape=input_shape)


def test_the_book_has_online_branches():
    # If this fails, a chapter's online branch was renamed and the test below tests nothing.
    assert [p.name for p in online_notebooks()] == ["5-4-3-grad-cam.ipynb"]


@pytest.mark.slow
@pytest.mark.parametrize("notebook", online_notebooks(), ids=lambda p: p.stem)
def test_online_branch_runs_with_stand_in_weights(notebook, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(models, "vgg16", stand_in_vgg16)
    monkeypatch.chdir(tmp_path)  # the branch saves its overlay next to the notebook
    cells = code_cells(notebook)
    last = max(i for i, s in enumerate(cells) if "except AssetError" in s)
    namespace: dict = {}
    for source in cells[: last + 1]:
        exec(compile(runnable(source), f"{notebook.name}", "exec"), namespace)
    plt.close("all")
    printed = capsys.readouterr().out
    assert "could not be downloaded" not in printed  # the stand-in took the online path
    assert "Top class index:" in printed
    assert "Heatmap shape: (14, 14)" in printed  # what the offline text promises
    assert (tmp_path / "elephant_cam.jpg").stat().st_size > 0
