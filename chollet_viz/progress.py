"""Progress bars for the long loops, shown only where someone watches them.

A student running a chapter on Colab or in Jupyter sees a tqdm bar. A chapter executed
unattended (nbval, the instructor's re-execution, the stored notebooks the HTML book
renders) must not store one: a bar is saved as a widget view whose text fallback reads
``0%| | 0/40`` for ever. ``CHOLLET_VIZ_PROGRESS=0`` turns every bar of the package off;
the project's ``conftest.py`` and ``python -m chollet_viz.reexecute`` set it.
"""

from __future__ import annotations

import os

from tqdm.auto import tqdm

__all__ = ["progress", "progress_enabled"]

_OFF = {"0", "false", "no", "off"}


def progress_enabled() -> bool:
    """False when the environment variable ``CHOLLET_VIZ_PROGRESS`` is 0, false, no or off."""
    return os.environ.get("CHOLLET_VIZ_PROGRESS", "1").strip().lower() not in _OFF


def progress(iterable, description: str | None = None, *, enabled: bool = True, **tqdm_arguments):
    """``iterable`` wrapped in a tqdm bar that disappears when done, unless bars are off."""
    return tqdm(iterable, desc=description, disable=not (enabled and progress_enabled()), leave=False, **tqdm_arguments)
