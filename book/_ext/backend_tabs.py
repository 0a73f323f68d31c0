"""Show each chapter's per-backend "key lines" as tabs: TensorFlow | JAX | PyTorch.

A chapter writes its few backend-specific cells once per backend, consecutively, each
tagged ``backend-tensorflow``, ``backend-jax`` or ``backend-torch`` in its cell metadata and
starting with the cell magic ``%%backend <name>`` (``chollet_viz.notebook``), which runs
the cell only on that backend. In the book, each such group of consecutive cells becomes
one sphinx-design tab set:

- the tabs come in the order TensorFlow, JAX, PyTorch, TensorFlow selected (the chapters'
  stored outputs come from TensorFlow, so its tab is the one with outputs);
- every group is in the sync group ``backend``: choosing JAX in one group switches every
  group of the page (and sphinx-design's script remembers the choice for the next page);
- the ``%%backend <name>`` line is left out of the displayed code: the tab already says
  which backend it is, and the reader sees the lines as they would type them.

A cell whose ``%%backend`` line names another backend than its tag, a tagged cell without
the line, a ``%%backend`` cell without the tag, and a group that repeats or lacks a backend
are reported as warnings (errors in the book's ``-W`` build): each is a chapter that would
show or run something else than it says.
"""

from __future__ import annotations

from docutils import nodes
from sphinx.transforms import SphinxTransform
from sphinx.util import logging

LOGGER = logging.getLogger(__name__)

#: tag suffix / %%backend name -> tab label, in the order the tabs appear.
LABELS = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}
TAG = "backend-"
SELECTED = "tensorflow"
SYNC_GROUP = "backend"
MAGIC = "%%backend"


def _is_code_cell(node) -> bool:
    return isinstance(node, nodes.container) and node.get("nb_element") == "cell_code"


def _backend_of(cell) -> str | None:
    tags = [t for t in cell.get("cell_metadata", {}).get("tags", []) if t.startswith(TAG)]
    if not tags:
        return None
    if len(tags) > 1 or tags[0][len(TAG):] not in LABELS:
        valid = ", ".join(TAG + name for name in LABELS)
        LOGGER.warning(f"A code cell is tagged {tags}; a backend cell has one of the tags {valid}.",
                       location=cell, type="backend_tabs")
        return None
    return tags[0][len(TAG):]


def _source_block(cell):
    for child in cell.children:
        if child.get("nb_element") == "cell_code_source":
            return next(iter(child.findall(nodes.literal_block)), None)
    return None


def _strip_magic(cell, backend: str | None) -> None:
    """Drop the ``%%backend`` line from the displayed source, checking it against the tag."""
    block = _source_block(cell)
    if block is None:  # input removed (remove-input): nothing shown, nothing to check
        return
    text = block.astext()
    first, _, rest = text.partition("\n")
    words = first.split()
    named = words[1] if len(words) == 2 and words[0] == MAGIC else None
    if backend is None:
        if words[:1] == [MAGIC]:
            LOGGER.warning(f"A cell starting with {first!r} has no {TAG}<name> tag: it will not be shown "
                           "in the backend tabs.", location=cell, type="backend_tabs")
        return
    if named != backend:
        LOGGER.warning(f"A cell tagged {TAG}{backend} starts with {first!r}, not '{MAGIC} {backend}': "
                       "it would not run on the backend its tab names.", location=cell, type="backend_tabs")
        return
    block.children = [nodes.Text(rest)]
    block.rawsource = rest


def _tab_set(group):
    tab_set = nodes.container("", is_div=True, design_component="tab-set", classes=["sd-tab-set", "backend-tabs"])
    tab_set.source, tab_set.line = group[0][1].source, group[0][1].line
    for backend, cell in sorted(group, key=lambda pair: list(LABELS).index(pair[0])):
        label = nodes.rubric(LABELS[backend], LABELS[backend], classes=["sd-tab-label"],
                             sync_id=backend, sync_group=SYNC_GROUP)
        content = nodes.container("", cell, is_div=True, design_component="tab-content", classes=["sd-tab-content"])
        item = nodes.container("", label, content, is_div=True, design_component="tab-item",
                               classes=["sd-tab-item"], selected=backend == SELECTED)
        item.source, item.line = cell.source, cell.line
        tab_set += item
    return tab_set


def _check(group) -> None:
    backends = [backend for backend, _ in group]
    if sorted(backends, key=list(LABELS).index) != list(LABELS):
        LOGGER.warning(f"A group of backend cells has the tabs {backends}; it needs one cell per backend, "
                       f"consecutive: {', '.join(TAG + name for name in LABELS)}.",
                       location=group[0][1], type="backend_tabs")


class BackendTabs(SphinxTransform):
    # After MyST-NB has built the cells and sphinx-exercise has gathered its solutions
    # (priority 10): a group may sit inside a solution. sphinx-design turns the tab sets
    # into HTML later, in a post-transform.
    default_priority = 500

    def apply(self, **kwargs):
        parents = {id(cell.parent): cell.parent for cell in self.document.findall(_is_code_cell)}
        for parent in parents.values():
            runs, run = [], []
            for child in parent.children:
                backend = _backend_of(child) if _is_code_cell(child) else None
                if _is_code_cell(child):
                    _strip_magic(child, backend)
                if backend is None:
                    if run:
                        runs.append(run)
                    run = []
                else:
                    run.append((backend, child))
            if run:
                runs.append(run)
            for group in runs:
                _check(group)
                index = parent.index(group[0][1])
                for _, cell in group:
                    parent.remove(cell)
                parent.insert(index, _tab_set(group))


def setup(app):
    app.setup_extension("sphinx_design")
    app.add_transform(BackendTabs)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
