"""The chapters' ``%%backend`` cell magic (chollet_viz/notebook.py), run in a real IPython shell.

Runs on every backend: the backend in use is the one whose cell must run, the two others
the ones that must be skipped. The expected behaviour is written out here (what the cell
sets, prints and displays), not computed with the magic.
"""

from __future__ import annotations

import re
import subprocess

import keras
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

CURRENT = keras.backend.backend()
OTHERS = [b for b in ("tensorflow", "jax", "torch") if b != CURRENT]


@pytest.fixture(scope="module")
def shell():
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "chollet_viz.notebook")
    return ip


@pytest.fixture
def ns(shell):
    for name in ("ran", "square", "double"):
        shell.user_ns.pop(name, None)
    return shell.user_ns


def test_the_cell_of_the_backend_in_use_runs_in_the_notebooks_namespace(shell, ns, capsys):
    ns["double"] = lambda v: 2 * v  # defined by an earlier cell
    result = shell.run_cell(f"%%backend {CURRENT}\nran = '{CURRENT}'\ndef square(v):\n    return v * v\nprint('ran', double(3))")
    assert result.success, result.error_in_exec
    assert ns["ran"] == CURRENT and ns["square"](4) == 16
    assert capsys.readouterr().out == "ran 6\n"


@pytest.mark.parametrize("other", OTHERS)
def test_another_backends_cell_runs_nothing_and_prints_nothing(shell, ns, capsys, other):
    result = shell.run_cell(f"%%backend {other}\nran = '{other}'\nprint('ran')\n1 + 1")
    assert result.success and result.result is None  # no displayed value either
    assert "ran" not in ns
    assert capsys.readouterr().out == ""


def test_a_last_expression_is_the_cells_result_and_magics_inside_work(shell, ns):
    result = shell.run_cell(f"%%backend {CURRENT}\n%load_ext chollet_viz.notebook\nran = 20\nran + 22")
    assert result.success and result.result == 42 and ns["ran"] == 20


def test_an_error_in_the_cell_fails_the_cell_and_names_the_line(shell, ns, capsys):
    result = shell.run_cell(f"%%backend {CURRENT}\nran = 1\nraise ValueError('the check failed')")
    assert isinstance(result.error_in_exec, ValueError) and ns["ran"] == 1
    traceback = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out)  # without the colours
    assert "raise ValueError('the check failed')" in traceback  # the source line, cached for the traceback


@pytest.mark.parametrize("line", ["", "numpy", "TensorFlow", "jax torch", "pytorch"])
def test_a_wrong_name_says_which_are_valid(shell, ns, line):
    with pytest.raises(UsageError, match=r"one of tensorflow, jax, torch; got") as info:
        shell.run_cell_magic("backend", line, "ran = 1")
    assert (repr(line.strip()) if line else "no backend name") in str(info.value)
    assert "ran" not in ns
    # in a cell too: the cell fails, nothing runs
    result = shell.run_cell(f"%%backend {line}\nran = 1")
    assert isinstance(result.error_in_exec, UsageError) and "ran" not in ns


def test_in_a_kernel_only_the_backends_own_cell_leaves_an_output():
    """As a chapter stores it: three tagged cells, one output; a failing check fails the run."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    cells = [nbformat.v4.new_code_cell("%load_ext chollet_viz.notebook")]
    cells += [nbformat.v4.new_code_cell(f"%%backend {b}\nprint('gradient step on {b}')") for b in ("tensorflow", "jax", "torch")]
    nb = nbformat.v4.new_notebook(cells=cells)
    nbclient.NotebookClient(nb, kernel_name="python3", timeout=120).execute(stderr=subprocess.DEVNULL)
    texts = {cell.source.split()[1]: "".join(o.get("text", "") for o in cell.outputs) for cell in nb.cells[1:]}
    assert texts == {b: (f"gradient step on {b}\n" if b == CURRENT else "") for b in ("tensorflow", "jax", "torch")}

    failing = nbformat.v4.new_notebook(cells=[cells[0], nbformat.v4.new_code_cell(f"%%backend {CURRENT}\nassert 1 == 2, 'differs'")])
    with pytest.raises(nbclient.exceptions.CellExecutionError, match="differs"):
        nbclient.NotebookClient(failing, kernel_name="python3", timeout=120).execute(stderr=subprocess.DEVNULL)


def test_the_magic_knows_the_backends_the_package_supports():
    from chollet_viz import backend, notebook

    assert notebook.BACKENDS == backend.BACKENDS  # kept apart only so that loading imports no Keras
