"""Guards for the whole run: a process that does not exit after its tests are done says where
it is stuck and goes, so a hang shows up in the log as stacks, never as a silent CI timeout."""

from __future__ import annotations

import faulthandler
import sys

import pytest

# Seconds a pytest process (the controller or an xdist worker) may take to exit once its session
# is over: closing loops, joining threads, stopping servers. Normally well under one.
EXIT_GRACE = 120


def pytest_unconfigure(config: pytest.Config) -> None:
    # pytest-timeout covers each test and its fixtures; this covers what runs after the last
    # teardown (atexit handlers, thread joins), which nothing else would bound. Not in an xdist
    # worker: it idles after its session until the controller is done with every other worker
    # (which can be minutes), and the controller kills workers that do not exit within 10 s.
    if hasattr(config, "workerinput"):
        return
    faulthandler.dump_traceback_later(EXIT_GRACE, exit=True, file=sys.__stderr__)
