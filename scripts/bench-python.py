"""How long the Python package's calls take, beside the plain Python they are meant to be as
cheap as (docs/embedding.md, "Python"; figures in BENCHMARKS.md).

    python scripts/bench-python.py        # with `testpilot` installed (pip install ./crates/ffi)

A feature read takes a read-lock on the pilot's in-memory snapshot, releases and retakes the
GIL, and converts the value to Python objects: it is timed beside a `dict.get` of the same
value and a `json.loads` of its text (what a JSON-text boundary would cost). The pilot is not
started, so nothing else runs; the features come from a journal an earlier run left, made here
with an unsigned index file and one flight that sets them.
"""

from __future__ import annotations

import json
import pathlib
import tempfile
import time
import timeit

import testpilot

FEATURE = {"enabled": True, "layout": "grid", "limit": 25, "label": "Search the web"}


def per_call_ns(stmt, number: int = 200_000, repeat: int = 5) -> float:
    return min(timeit.repeat(stmt, number=number, repeat=repeat)) / number * 1e9


def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        root = pathlib.Path(work)
        index = root / "index.json"
        now = int(time.time() * 1000)
        index.write_text(json.dumps({
            "serial": 1, "generatedAt": now, "expiresAt": now + 86_400_000,
            "flights": [{
                "studyname": "bench", "version": 1, "author": "bench@example.com",
                "description": "sets a feature and waits",
                "flightplan": [{"action": "feature", "id": "bench.f", "value": FEATURE},
                               {"action": "observe", "topic": "never"}],
            }],
        }))
        profile = root / "profile"
        with testpilot.Pilot(profile, index.as_uri(), None, insecure_unsigned=True) as pilot:
            pilot.start()
            deadline = time.monotonic() + 60
            while pilot.feature("bench.f") is None:
                if time.monotonic() > deadline:
                    raise SystemExit("the feature did not turn on within 60 s")
                time.sleep(0.05)
        pilot = testpilot.Pilot(profile, index.as_uri(), None, insecure_unsigned=True)
        plain = {"bench.f": FEATURE}
        text = json.dumps(FEATURE)
        rows = [
            ("pilot.feature(id), set", per_call_ns(lambda: pilot.feature("bench.f"))),
            ("pilot.feature(id), unset", per_call_ns(lambda: pilot.feature("nope"))),
            ("pilot.feature_info(id)", per_call_ns(lambda: pilot.feature_info("bench.f"))),
            ("dict.get(id)", per_call_ns(lambda: plain.get("bench.f"))),
            ("json.loads(value's text)", per_call_ns(lambda: json.loads(text))),
            ("pilot.observe(topic) (a journal write)", per_call_ns(lambda: pilot.observe("bench-topic"), number=2_000)),
            ("pilot.log()", per_call_ns(pilot.log, number=2_000)),
        ]
        pilot.close()
    base = dict(rows)["dict.get(id)"]
    loads = dict(rows)["json.loads(value's text)"]
    for name, ns in rows:
        print(f"{name:42} {ns:12,.0f} ns/call")
    feature = dict(rows)["pilot.feature(id), set"]
    print(f"feature(id) / dict.get: {feature / base:.1f}x; feature(id) / json.loads: {feature / loads:.2f}x")


if __name__ == "__main__":
    main()
