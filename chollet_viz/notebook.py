"""The chapters' ``%%backend`` cell magic: a cell that runs only on one Keras backend.

A chapter loads it once, ``%load_ext chollet_viz.notebook``, and writes its few backend
specific cells ("key lines": a gradient step with ``tf.GradientTape``, ``jax.grad`` or
``torch.autograd``) once per backend, each starting with its backend's name::

    %%backend jax
    loss, grads = jax.value_and_grad(...)

The cell runs in the notebook's namespace when Keras runs on that backend and prints
nothing otherwise, so a chapter runs top to bottom on any of the three. The book shows
such a group of cells as tabs (``book/_ext/backend_tabs.py``, which keys on the cells'
``backend-<name>`` tags).

The backend is read when a cell runs, not when the extension is loaded (this module
imports Keras only then).
"""

from __future__ import annotations

import ast

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, magics_class

__all__ = ["BackendMagics", "load_ipython_extension"]

# The same names as chollet_viz.backend.BACKENDS, which is not imported here because it
# imports Keras (and with it the backend) as soon as the extension loads.
BACKENDS = ("tensorflow", "jax", "torch")


@magics_class
class BackendMagics(Magics):
    @cell_magic
    def backend(self, line: str, cell: str):
        """``%%backend NAME``: run this cell only when Keras runs on NAME (tensorflow, jax or torch)."""
        wanted = line.strip()
        if wanted not in BACKENDS:
            given = repr(wanted) if wanted else "no backend name"
            raise UsageError(
                f"%%backend needs one backend name, one of {', '.join(BACKENDS)}; got {given}."
            )
        import keras

        if keras.backend.backend() != wanted:
            return None  # another backend's version of these lines: nothing runs, nothing prints
        return self._run(cell)

    def _run(self, cell: str):
        # As IPython's %%time runs its cell: the cell's own magics and `!` lines are
        # transformed, the code runs in the notebook's namespace, an error fails the cell
        # with its traceback (the source is cached for it), and a last expression is the
        # cell's displayed result.
        shell = self.shell
        code = shell.transform_cell(cell)
        tree = shell.transform_ast(shell.compile.ast_parse(code))
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        filename = shell.compile.cache(code, shell.execution_count, raw_code=cell)
        exec(shell.compile(tree, filename, "exec"), shell.user_ns)
        if last is not None:
            return eval(shell.compile(last, filename, "eval"), shell.user_ns)
        return None


def load_ipython_extension(ipython) -> None:
    """``%load_ext chollet_viz.notebook`` registers the ``%%backend`` cell magic."""
    ipython.register_magics(BackendMagics)
