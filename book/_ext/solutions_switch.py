"""One build switch for the exercises' worked solutions: ``CHOLLET_VIZ_SOLUTIONS``.

- ``hidden`` (the default, the students' book): each solution is a closed dropdown under
  its exercise, opened with a click.
- ``shown`` (an instructor's copy): every solution is open on the page.
- ``removed``: no solutions at all (sphinx-exercise's ``hide_solutions``).

The dropdowns are sphinx-togglebutton's, which closes every element its selector matches:
leaving solutions out of the selector leaves them open.
"""

import os

CHOICES = ("hidden", "shown", "removed")


def _apply(app, config):
    choice = os.environ.get("CHOLLET_VIZ_SOLUTIONS", "hidden").strip().lower()
    if choice not in CHOICES:
        raise ValueError(f"CHOLLET_VIZ_SOLUTIONS must be one of {', '.join(CHOICES)}; got {choice!r}.")
    if choice == "shown":
        config.togglebutton_selector = ".toggle, .admonition.dropdown:not(.solution)"
    elif choice == "removed":
        config.hide_solutions = True


def setup(app):
    app.connect("config-inited", _apply, priority=900)  # after the extensions set their defaults
    return {"parallel_read_safe": True, "parallel_write_safe": True}
