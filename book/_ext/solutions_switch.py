"""One build switch for the exercises' worked solutions: ``CHOLLET_VIZ_SOLUTIONS``.

- ``hidden`` (the default, the students' book): each solution is a closed dropdown under
  its exercise, opened with a click.
- ``shown`` (an instructor's copy): every solution is open on the page.
- ``removed``: no solutions at all.

The dropdowns are sphinx-togglebutton's, which closes every element its selector matches:
leaving solutions out of the selector leaves them open. sphinx-exercise's own
``hide_solutions`` cannot remove them: it drops a gated ``solution-start`` but leaves its
``solution-end`` behind (an unknown node, a build error), so the solutions are removed
here once sphinx-exercise has gathered each one, code cells included, into one node.
"""

import os

from sphinx.transforms import SphinxTransform

CHOICES = ("hidden", "shown", "removed")


def _choice() -> str:
    choice = os.environ.get("CHOLLET_VIZ_SOLUTIONS", "hidden").strip().lower()
    if choice not in CHOICES:
        raise ValueError(f"CHOLLET_VIZ_SOLUTIONS must be one of {', '.join(CHOICES)}; got {choice!r}.")
    return choice


def _apply(app, config):
    # Kept as a config value that re-reads every page when it changes: a build in another
    # mode must not reuse pages read (and solutions removed or kept) by the last one.
    config.chollet_viz_solutions = _choice()
    if config.chollet_viz_solutions == "shown":
        config.togglebutton_selector = ".toggle, .admonition.dropdown:not(.solution)"


class RemoveSolutions(SphinxTransform):
    default_priority = 11  # after sphinx-exercise's MergeGatedSolutions (10)

    def apply(self, **kwargs):
        if self.config.chollet_viz_solutions != "removed":
            return
        from sphinx_exercise.nodes import solution_node

        for node in list(self.document.findall(solution_node)):
            node.parent.remove(node)


def setup(app):
    app.add_config_value("chollet_viz_solutions", "hidden", "env")
    app.connect("config-inited", _apply, priority=900)  # after the extensions set their defaults
    app.add_transform(RemoveSolutions)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
