"""Every chapter is a complete lesson: goals, a summary, exercises with worked solutions, captioned figures.

These read the stored notebooks as the book's renderer does (MyST-NB cell metadata, glue
outputs, sphinx-exercise directives); the rendering itself is checked by the book build
(``-W -n``: a reference to a missing figure is an error) and the browser check.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from chollet_viz.reexecute import chapters

pytestmark = pytest.mark.backend_independent  # conftest.py: on the TensorFlow job only

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = chapters(ROOT)
IDS = [nb.stem for nb in NOTEBOOKS]

EXERCISE = re.compile(r"^(`{3,}|:{3,})\{exercise\}[^\n]*\n:label: (\S+)", re.M)
SOLUTION_START = re.compile(r"^(`{3,}|:{3,})\{solution-start\} (\S+)\n((?::[^\n]*\n)*)", re.M)
SOLUTION_END = re.compile(r"^(`{3,}|:{3,})\{solution-end\}", re.M)
GLUE_FIGURE = re.compile(r"^(`{3,}|:{3,})\{glue:figure\} (\S+)\n((?::[^\n]*\n)*)", re.M)
FIGURE_REF = re.compile(r"\{(?:numref|ref)\}`(?:[^`<]*<)?([a-z0-9-]+)>?`")


def _cells(notebook: Path):
    return json.loads(notebook.read_text())["cells"]


def _markdown(cells) -> str:
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


def _has_image(output) -> bool:
    return any(k.startswith("image/") for k in output.get("data", {}))


def test_every_chapter_is_in_the_table_of_contents():
    stored = sorted(p.relative_to(ROOT) for p in (ROOT / "book").rglob("*.ipynb") if "_build" not in p.parts)
    assert sorted(p.relative_to(ROOT) for p in NOTEBOOKS) == stored


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_the_chapter_opens_with_its_goals_and_ends_with_a_summary(notebook):
    text = _markdown(_cells(notebook))
    assert "What you will learn" in text, f"{notebook.name}: no 'What you will learn'"
    assert re.search(r"^## Summary", text, re.M), f"{notebook.name}: no '## Summary' section"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_three_to_five_exercises_each_with_a_hidden_solution_whose_code_runs(notebook):
    cells = _cells(notebook)
    labels = [m.group(2) for m in EXERCISE.finditer(_markdown(cells))]
    assert 3 <= len(labels) <= 5, f"{notebook.name}: {len(labels)} exercises, the course asks for 3 to 5"
    assert len(set(labels)) == len(labels), f"{notebook.name}: repeated exercise labels {labels}"

    solved, open_solution, code_cells = [], None, 0
    for cell in cells:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code":
            code_cells += open_solution is not None
            continue
        start = SOLUTION_START.search(source)
        if start:
            assert open_solution is None, f"{notebook.name}: solution to {start.group(2)} starts inside another"
            assert "dropdown" in start.group(3), f"{notebook.name}: solution to {start.group(2)} is not hidden (:class: dropdown)"
            open_solution, code_cells = start.group(2), 0
        if SOLUTION_END.search(source):
            assert open_solution is not None, f"{notebook.name}: solution-end without a start"
            assert code_cells >= 1, f"{notebook.name}: the solution to {open_solution} has no code cell"
            solved.append(open_solution)
            open_solution = None
    assert open_solution is None, f"{notebook.name}: the solution to {open_solution} never ends"
    assert solved == labels, f"{notebook.name}: exercises {labels}, solutions {solved}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_every_figure_has_a_caption_and_the_text_refers_to_it(notebook):
    cells = _cells(notebook)
    text = _markdown(cells)
    glued = {m.group(2): m.group(3) for m in GLUE_FIGURE.finditer(text)}
    names = []
    for index, cell in enumerate(cells):
        if cell["cell_type"] != "code" or not any(_has_image(o) for o in cell.get("outputs", [])):
            continue
        where = f"{notebook.name}, cell {index}"
        figure = cell["metadata"].get("mystnb", {}).get("figure")
        if figure:
            assert figure.get("caption", "").strip(), f"{where}: empty caption"
            assert figure.get("name"), f"{where}: a caption without a name cannot be referred to"
            images = sum(_has_image(o) for o in cell["outputs"])
            assert images == 1, f"{where}: {images} images share one caption; glue them (plotting.glue_figure)"
            names.append(figure["name"])
            continue
        assert "remove-output" in cell["metadata"].get("tags", []), f"{where}: a figure without a caption"
        for output in filter(_has_image, cell["outputs"]):
            key = output.get("metadata", {}).get("scrapbook", {}).get("name")
            assert key in glued, f"{where}: an image that no {{glue:figure}} shows (glued as {key!r})"
            name = re.search(r"^:name: (\S+)", glued[key], re.M)
            assert name, f"{notebook.name}: the glue:figure {key} has no :name:"
            names.append(name.group(1))
    assert len(set(names)) == len(names), f"{notebook.name}: repeated figure names {names}"
    referred = set(FIGURE_REF.findall(text))
    missing = [n for n in names if n not in referred]
    assert not missing, f"{notebook.name}: figures the text never refers to: {missing}"
    # Figures are numbered from 1 in each chapter (book/_ext/chapter_numbering.py): "Fig. 2"
    # of another chapter would read as this chapter's; link to the other chapter instead.
    exercises = {m.group(2) for m in EXERCISE.finditer(text)}
    foreign = sorted(r for r in referred if r.startswith("fig-") and r not in names and r not in exercises)
    assert not foreign, f"{notebook.name}: refers by number to figures of other pages: {foreign}"
