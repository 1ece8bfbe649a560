"""The type stubs shipped with the package (`_native.pyi`, `py.typed`) say what the module
really has: mypy's stubtest compares them with the installed extension."""

from __future__ import annotations

import subprocess
import sys


def test_the_stubs_match_the_extension_module(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "testpilot._native"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,  # mypy writes its cache in the working folder
    )
    assert done.returncode == 0, done.stdout + done.stderr
