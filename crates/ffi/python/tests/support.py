"""Helpers the tests share (fixtures are in conftest.py)."""

from __future__ import annotations

import time
from typing import Callable, Optional

import pytest

import testpilot


def wait_for(what: str, check: Callable[[], object], timeout: float = 30.0) -> object:
    """Polls `check` until it returns something true and returns that; fails naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.05)


def flight_entry(pilot: testpilot.Pilot, name: str) -> Optional[dict]:
    return next((f for f in pilot.log() if f["studyname"] == name), None)
