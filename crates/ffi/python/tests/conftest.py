"""Fixtures for the `testpilot` package's tests: a signed index in a file, made with the
product's own command line (`testpilot tower ...`, docs/cli.md), and pilots on fresh profiles.

The `testpilot` binary is `$TESTPILOT_BIN`, or the workspace's `target/debug/testpilot`
(`cargo build -p testpilot-cli`, which `scripts/test` has done by the time it runs pytest).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import threading
from typing import Callable, Iterator, List, Optional, Tuple

import pytest

import testpilot

REPO = pathlib.Path(__file__).resolve().parents[4]
COMMAND_TIMEOUT = 60

# What the tests' flights do; each runs only for the person whose `scenario` names it.
FLIGHTS = [
    {
        "studyname": "py-feature",
        "author": "tests@example.com",
        "description": "Turns the search bar on until the person has used it once.",
        "filter": {"expression": 'person.scenario == "feature"'},
        "flightplan": [
            {"action": "feature", "id": "py.search-bar", "value": {"enabled": True}},
            {"action": "observe", "topic": "search-used", "subject": "toolbar"},
        ],
    },
    {
        "studyname": "py-prompt",
        "author": "tests@example.com",
        "description": "Asks the person first, then turns the new tab page on until it is seen.",
        "filter": {"expression": 'person.scenario == "prompt"'},
        "flightplan": [
            {"action": "external", "type": "survey", "title": "Try the new tab page?",
             "url": "https://survey.example.org/{{studyname}}", "waitFor": "ok"},
            {"action": "feature", "id": "py.newtab", "value": {"layout": "grid"}},
            {"action": "observe", "topic": "newtab-seen"},
        ],
    },
]


def testpilot_bin() -> pathlib.Path:
    path = pathlib.Path(os.environ.get("TESTPILOT_BIN", REPO / "target" / "debug" / "testpilot"))
    if not path.is_file():
        pytest.fail(
            f"the testpilot command is not at {path}: build it with `cargo build -p testpilot-cli` "
            "or set TESTPILOT_BIN",
            pytrace=False,
        )
    return path


def run(*args: str) -> str:
    """Runs `testpilot ARGS...` and returns its standard output; fails the test on an error."""
    done = subprocess.run(
        [str(testpilot_bin()), *args],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        env={**os.environ, "RUST_LOG": "warn"},
    )
    if done.returncode != 0:
        pytest.fail(f"testpilot {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done.stdout


class Tower:
    """`testpilot tower serve` on a free port of 127.0.0.1, its address read from stderr."""

    def __init__(self, data: pathlib.Path) -> None:
        self.proc = subprocess.Popen(
            [str(testpilot_bin()), "tower", "serve", "--data", str(data),
             "--listen", "127.0.0.1:0", "--single-user"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "RUST_LOG": "warn"},
        )
        found: List[str] = []
        said: List[str] = []
        ready = threading.Event()

        def read() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:  # drained to the end, so the tower never blocks
                if line.startswith("tower listening on ") and not found:
                    found.append(line.split()[3])
                    ready.set()
                else:
                    said.append(line)
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        ready.wait(COMMAND_TIMEOUT)
        if not found:
            self.close()
            pytest.fail("the tower did not start listening:\n" + "".join(said))
        self.url = found[0]

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="session")
def signed_index(tmp_path_factory: pytest.TempPathFactory) -> Tuple[str, str]:
    """(`file://` URL of a signed index holding FLIGHTS, the tower's public key): the flights
    are pushed, reviewed and approved on a real tower, then exported as a static file."""
    work = tmp_path_factory.mktemp("tower")
    data = work / "data"
    token = run("tower", "token", "create", "--role", "admin", "--name", "pytest", "--data", str(data)).strip()
    public_key = run("tower", "pubkey", "--data", str(data)).strip()
    tower = Tower(data)
    try:
        auth = ("--tower", tower.url, "--token", token)
        for flight in FLIGHTS:
            name = str(flight["studyname"])
            path = work / f"{name}.json"
            path.write_text(json.dumps(flight))
            run("flight", "push", str(path), *auth)
            run("flight", "review", name, *auth)
            run("flight", "approve", name, *auth)
    finally:
        tower.close()
    out = work / "static"
    run("tower", "export", "--out", str(out), "--data", str(data))
    index = out / "control" / "index.json"
    assert index.is_file(), f"tower export wrote no {index}"
    return index.as_uri(), public_key


@pytest.fixture
def open_pilot(
    signed_index: Tuple[str, str], tmp_path: pathlib.Path
) -> Iterator[Callable[..., testpilot.Pilot]]:
    """open_pilot(scenario, name="profile") -> a Pilot on a fresh profile for a person in that
    scenario, against the signed index; closed after the test."""
    tower, key = signed_index
    opened: List[testpilot.Pilot] = []

    def open_(scenario: str, name: str = "profile", profile: Optional[pathlib.Path] = None) -> testpilot.Pilot:
        pilot = testpilot.Pilot(
            profile or tmp_path / name, tower, key, {"scenario": scenario, "channel": "beta"}, poll="1h"
        )
        opened.append(pilot)
        return pilot

    yield open_
    for pilot in opened:
        pilot.close()
