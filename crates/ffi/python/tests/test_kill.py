"""A kill on a live tower reaches applications that embed the pilot within seconds, although
they poll the tower only hourly: the tower's push stream (`GET /control/stream`, docs/api.md)
wakes the pilot, which fetches the signed index and undoes the flight.

Both bindings, against the same real tower: the Python package, and the C example program
(`examples/c/feature.c`, compiled here against the `libtestpilot` that `cargo test` built).
The bound is generous (a test, not a benchmark: BENCHMARKS.md has the measured figures); it
only catches a pilot that waited for its hourly poll.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import threading
import time
from typing import Iterator, List, Tuple

import pytest

import testpilot

from conftest import REPO, COMMAND_TIMEOUT, Tower, run
from support import wait_for

UNDO_BOUND = 10.0

FLIGHT = {
    "studyname": "kill-me",
    "author": "tests@example.com",
    "description": "Turns the search bar on, waits for it to be used, then for a day.",
    "flightplan": [
        {"action": "feature", "id": "search.bar", "value": {"on": True}},
        {"action": "observe", "topic": "search.used"},
        {"action": "wait", "for": "1d"},
    ],
}


class LiveTower:
    """A tower with FLIGHT live, and the command-line arguments to act on it as its admin."""

    def __init__(self, work: pathlib.Path) -> None:
        data = work / "data"
        token = run("tower", "token", "create", "--role", "admin", "--name", "pytest", "--data", str(data)).strip()
        self.public_key = run("tower", "pubkey", "--data", str(data)).strip()
        self.tower = Tower(data)
        self.url = self.tower.url
        self.auth = ("--tower", self.url, "--token", token)
        path = work / "kill-me.json"
        path.write_text(json.dumps(FLIGHT))
        run("flight", "push", str(path), *self.auth)
        run("flight", "review", "kill-me", *self.auth)
        run("flight", "approve", "kill-me", *self.auth)

    def kill(self) -> float:
        """Kills the flight; returns the moment the tower answered."""
        run("flight", "kill", "kill-me", "--reason", "misbehaves", *self.auth)
        return time.monotonic()

    def close(self) -> None:
        self.tower.close()


@pytest.fixture
def live_tower(tmp_path: pathlib.Path) -> Iterator[LiveTower]:
    t = LiveTower(tmp_path)
    yield t
    t.close()


def test_a_kill_undoes_the_flight_in_a_python_application_within_seconds(live_tower, tmp_path):
    with testpilot.Pilot(tmp_path / "profile", live_tower.url, live_tower.public_key, {"channel": "beta"}, poll="1h") as pilot:
        pilot.start()
        assert wait_for("the feature to turn on", lambda: pilot.feature("search.bar")) == {"on": True}
        pilot.observe("search.used")
        killed = live_tower.kill()
        wait_for("the feature to be undone", lambda: pilot.feature("search.bar") is None, timeout=UNDO_BOUND)
        took = time.monotonic() - killed
        entry = wait_for(
            "the flight log to say killed",
            lambda: next((f for f in pilot.log() if f["studyname"] == "kill-me" and f["status"] == "killed"), None),
        )
        assert entry["cleanedUp"], entry
        print(f"python: kill to undo {took * 1000:.0f} ms")
        pilot.stop()


def compile_c_example(out: pathlib.Path) -> pathlib.Path:
    # What `cargo test` built is in target/debug/deps; target/debug has one after `cargo build`.
    debug = REPO / "target" / "debug"
    lib = next((d for d in (debug / "deps", debug) if (d / "libtestpilot.so").is_file()), None)
    if lib is None:
        pytest.fail(f"no libtestpilot.so in {debug}: build it with `cargo build -p testpilot-ffi`", pytrace=False)
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.fail("no C compiler (cc): scripts/test installs Debian's gcc", pytrace=False)
    exe = out / "feature"
    subprocess.run(
        [cc, str(REPO / "examples" / "c" / "feature.c"), "-std=c99", "-Wall", "-Wextra", "-Werror",
         "-D_POSIX_C_SOURCE=200809L", "-I", str(REPO / "crates" / "ffi" / "include"), "-L", str(lib),
         f"-Wl,-rpath,{lib}", "-ltestpilot", "-o", str(exe)],
        check=True,
        timeout=COMMAND_TIMEOUT,
    )
    return exe


def test_a_kill_undoes_the_flight_in_a_c_application_within_seconds(live_tower, tmp_path):
    exe = compile_c_example(tmp_path)
    proc = subprocess.Popen(
        [str(exe), str(tmp_path / "profile"), live_tower.url, live_tower.public_key],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: List[Tuple[float, str]] = []
    observed = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.monotonic(), line.rstrip("\n")))
            if line.startswith("observed "):
                observed.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert observed.wait(COMMAND_TIMEOUT), f"the C program never observed its event: {lines}"
        killed = live_tower.kill()
        status = proc.wait(timeout=COMMAND_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(5)
    err = proc.stderr.read() if proc.stderr else ""
    said = [text for _, text in lines]
    assert status == 0, f"the C program failed ({status}):\n" + "\n".join(said) + "\n" + err
    assert "feature search.bar is null" in said, said
    assert "flight ended: killed" in said, said
    undone_at = next(at for at, text in lines if text == "feature search.bar is null")
    took = undone_at - killed
    assert took < UNDO_BOUND, f"the kill took {took:.1f} s to reach the C program (its poll is an hour)"
    print(f"C: kill to undo {took * 1000:.0f} ms")
