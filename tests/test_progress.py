"""Progress bars: on for a person at a notebook, off for unattended runs."""

import pytest

from chollet_viz.progress import progress, progress_enabled

pytestmark = pytest.mark.backend_independent  # conftest.py: on the TensorFlow job only


@pytest.mark.parametrize("value, enabled", [("0", False), ("off", False), ("False", False), ("1", True), ("", True)])
def test_the_environment_variable_switches_bars(monkeypatch, value, enabled):
    monkeypatch.setenv("CHOLLET_VIZ_PROGRESS", value)
    assert progress_enabled() is enabled
    assert progress(range(3)).disable is not enabled


def test_bars_are_on_by_default_and_can_be_refused(monkeypatch):
    monkeypatch.delenv("CHOLLET_VIZ_PROGRESS", raising=False)
    assert progress_enabled()
    assert progress(range(3), enabled=False).disable
    assert list(progress(range(3), "steps")) == [0, 1, 2]


def test_the_test_session_runs_without_bars():
    # conftest.py turns them off for the notebooks' kernels, which inherit the variable.
    assert not progress_enabled()
