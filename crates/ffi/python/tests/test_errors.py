"""What the package refuses, each with a `testpilot.Error` subclass naming what was wrong,
and nothing left half done."""

from __future__ import annotations

import datetime

import pytest

import testpilot
from support import wait_for

KEY = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="


@pytest.mark.parametrize(
    "kwargs, names",
    [
        ({"poll": "soon"}, "poll"),
        ({"poll": True}, "poll"),
        ({"poll": [1]}, "poll"),
        ({"poll": 0}, "poll"),
        ({"poll": datetime.timedelta(seconds=-5)}, "poll"),
        ({"public_key": "nope"}, "public_key"),
        ({"public_key": None}, "public_key"),
        ({"tower": "ftp://tower.example.org"}, "tower"),
        ({"tower": ""}, "tower"),
        ({"person": {"tags": {1, 2}}}, "person"),
        ({"person": {"score": float("nan")}}, "person"),
        ({"person": ["not", "an", "object"]}, "person"),
        ({"person": {"bio": "x" * (2 << 20)}}, "person"),
    ],
)
def test_a_bad_argument_is_a_config_error_naming_it(tmp_path, kwargs, names):
    args = {"profile": tmp_path / "profile", "tower": "file:///nowhere/index.json", "public_key": KEY, **kwargs}
    with pytest.raises(testpilot.ConfigError) as raised:
        testpilot.Pilot(**args)
    assert str(raised.value).startswith(names), str(raised.value)
    assert isinstance(raised.value, testpilot.Error)
    assert not (tmp_path / "profile").exists(), "a refused configuration must create nothing"


def test_a_person_nested_beyond_any_reason_is_refused_not_a_crash(tmp_path):
    person: dict = {}
    inner = person
    for _ in range(200_000):
        inner["x"] = {}
        inner = inner["x"]
    with pytest.raises(testpilot.ConfigError, match=r"^person: "):
        testpilot.Pilot(tmp_path / "p", "file:///nowhere/index.json", KEY, person)
    # 130 levels: JSON Python writes, but deeper than the reader takes (128).
    shallow: dict = {}
    inner = shallow
    for _ in range(130):
        inner["x"] = {}
        inner = inner["x"]
    with pytest.raises(testpilot.ConfigError, match=r"^person: cannot be read as JSON: recursion limit"):
        testpilot.Pilot(tmp_path / "q", "file:///nowhere/index.json", KEY, shallow)
    assert not (tmp_path / "p").exists() and not (tmp_path / "q").exists()


def test_a_person_whose_keys_collide_as_json_is_refused(tmp_path):
    # Python writes both keys as "1"; the person must not silently lose one of them.
    with pytest.raises(testpilot.ConfigError, match=r"^person: cannot be read as JSON: the key `1` appears twice"):
        testpilot.Pilot(tmp_path / "p", "file:///nowhere/index.json", KEY, {1: "a", "1": "b"})
    assert not (tmp_path / "p").exists()


def test_a_missing_key_says_how_to_go_without_one(tmp_path):
    with pytest.raises(testpilot.ConfigError, match=r"insecure_unsigned=True"):
        testpilot.Pilot(tmp_path / "p", "file:///nowhere/index.json", None)
    # Development only, but allowed when asked for.
    testpilot.Pilot(tmp_path / "p", "file:///nowhere/index.json", None, insecure_unsigned=True).close()


def test_poll_takes_text_milliseconds_or_a_timedelta(tmp_path):
    for i, poll in enumerate(["90s", 60_000, datetime.timedelta(minutes=5)]):
        testpilot.Pilot(tmp_path / str(i), "file:///nowhere/index.json", KEY, poll=poll).close()


def test_a_second_pilot_on_the_same_profile_is_locked_out_until_the_first_closes(tmp_path):
    profile = tmp_path / "profile"
    first = testpilot.Pilot(profile, "file:///nowhere/index.json", KEY)
    with pytest.raises(testpilot.LockedError, match=r"another pilot agent is already running") as raised:
        testpilot.Pilot(profile, "file:///nowhere/index.json", KEY)
    assert str(profile) in str(raised.value)
    first.close()
    with testpilot.Pilot(profile, "file:///nowhere/index.json", KEY) as again:
        assert not again.closed
    assert again.closed


def test_answers_other_than_ok_no_later_are_refused_and_the_prompt_stays(open_pilot):
    pilot = open_pilot("prompt")
    pilot.start()
    prompt = wait_for("the survey prompt", pilot.prompts)[0]
    with pytest.raises(testpilot.UsageError, match=r'"maybe" is not an answer'):
        pilot.answer(prompt["id"], "maybe")
    with pytest.raises(testpilot.UsageError):
        pilot.answer(prompt["id"] + 1000, "ok")
    with pytest.raises(TypeError):
        pilot.answer(prompt["id"], None)  # type: ignore[arg-type]
    assert [p["id"] for p in pilot.prompts()] == [prompt["id"]]


def test_bad_calls_are_usage_errors(open_pilot):
    pilot = open_pilot("feature")
    with pytest.raises(testpilot.UsageError, match=r"knows no flight named `nope`"):
        pilot.optout("nope")
    with pytest.raises(testpilot.UsageError, match=r"finite"):
        pilot.observe("search-used", value=float("inf"))
    pilot.start()
    with pytest.raises(testpilot.UsageError, match=r"already started"):
        pilot.start()
    pilot.stop()
    with pytest.raises(testpilot.UsageError, match=r"stopped"):
        pilot.start()


def test_a_closed_pilot_says_so_on_every_call(open_pilot):
    pilot = open_pilot("feature")
    pilot.start()
    pilot.close()
    pilot.close()  # closing again does nothing
    assert pilot.closed and not pilot.running
    for call in (pilot.start, pilot.prompts, pilot.log, pilot.stop, lambda: pilot.feature("x"),
                 lambda: pilot.observe("t"), lambda: pilot.answer(1, "ok"), pilot.optout):
        with pytest.raises(testpilot.ClosedError, match=r"is closed"):
            call()
    assert "closed" in repr(pilot)


def test_the_error_hierarchy():
    for cls in (testpilot.ConfigError, testpilot.LockedError, testpilot.UsageError,
                testpilot.HostError, testpilot.JournalError):
        assert issubclass(cls, testpilot.Error)
    assert issubclass(testpilot.ClosedError, testpilot.UsageError)
    assert testpilot.Error.__module__ == "testpilot"
