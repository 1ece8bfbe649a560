"""A flight from the signed index, run by the pilot inside this Python process: the feature
turns on, an event ends the flight and the feature is undone; a prompt answered from Python."""

from __future__ import annotations

import threading

import testpilot
from support import flight_entry, wait_for


def test_feature_turns_on_then_is_undone_when_the_flight_completes(open_pilot):
    pilot = open_pilot("feature")
    assert pilot.feature("py.search-bar") is None
    pilot.start()
    assert pilot.running

    value = wait_for("the feature to turn on", lambda: pilot.feature("py.search-bar"))
    assert value == {"enabled": True}
    info = pilot.feature_info("py.search-bar")
    assert info is not None
    assert info["studyname"] == "py-feature"
    assert info["value"] == {"enabled": True}
    assert info["version"] == 1
    assert info["arm"] is None
    assert pilot.features() == {"py.search-bar": {"enabled": True}}
    assert [f["studyname"] for f in pilot.flights()] == ["py-feature"]

    # Another subject does not satisfy the step; the right one does.
    pilot.observe("search-used", "menu")
    event = pilot.observe("search-used", subject="toolbar", value=1.0)
    assert isinstance(event, int)

    entry = wait_for(
        "the flight to complete and clean up",
        lambda: (f := flight_entry(pilot, "py-feature")) and f["status"] == "completed" and f["cleanedUp"] and f,
    )
    # The features in memory follow at the end of the agent's round.
    wait_for("the feature to be undone", lambda: pilot.feature("py.search-bar") is None)
    assert pilot.flights() == []
    assert any(c["kind"] == "feature" and c["undone"] for c in entry["changes"]), entry["changes"]
    pilot.stop()
    assert not pilot.running


def test_a_prompt_answered_from_python_lets_the_flight_go_on(open_pilot):
    pilot = open_pilot("prompt")
    pilot.start()
    prompts = wait_for("the survey prompt", pilot.prompts)
    assert len(prompts) == 1
    prompt = prompts[0]
    assert prompt["studyname"] == "py-prompt"
    assert prompt["title"] == "Try the new tab page?"
    assert prompt["url"] == "https://survey.example.org/py-prompt"
    assert prompt["waitsForAnswer"] is True
    assert pilot.feature("py.newtab") is None  # the flight waits for the answer

    pilot.answer(prompt["id"], "ok")
    assert wait_for("the feature after the answer", lambda: pilot.feature("py.newtab")) == {"layout": "grid"}
    assert pilot.prompts() == []
    pilot.observe("newtab-seen")
    wait_for("the flight to complete", lambda: (flight_entry(pilot, "py-prompt") or {}).get("status") == "completed")
    wait_for("the feature to be undone", lambda: pilot.feature("py.newtab") is None)


def test_no_to_the_prompt_declines_the_flight(open_pilot):
    pilot = open_pilot("prompt")
    pilot.start()
    prompt = wait_for("the survey prompt", pilot.prompts)[0]
    pilot.answer(prompt["id"], "no")
    entry = wait_for("the flight to end", lambda: (f := flight_entry(pilot, "py-prompt")) and f["status"] != "running" and f)
    assert entry["status"] == "declined"
    assert pilot.feature("py.newtab") is None  # never set


def test_optout_ends_the_flight_and_undoes_its_feature(open_pilot):
    pilot = open_pilot("feature")
    pilot.start()
    wait_for("the feature to turn on", lambda: pilot.feature("py.search-bar"))
    assert pilot.optout("py-feature") == ["py-feature"]
    wait_for("the feature to be undone", lambda: pilot.feature("py.search-bar") is None)
    assert flight_entry(pilot, "py-feature")["status"] != "running"
    # Opting out of every flight afterwards ends nothing more.
    assert pilot.optout() == []


def test_the_features_outlive_a_restart_and_the_flight_goes_on(open_pilot, tmp_path):
    profile = tmp_path / "kept"
    first = open_pilot("feature", profile=profile)
    first.start()
    wait_for("the feature to turn on", lambda: first.feature("py.search-bar"))
    first.close()

    second = open_pilot("feature", profile=profile)
    # Read from the journal at open, before the agent runs again.
    assert second.feature("py.search-bar") == {"enabled": True}
    second.start()
    second.observe("search-used", "toolbar")
    wait_for("the flight to complete", lambda: (flight_entry(second, "py-feature") or {}).get("status") == "completed")
    wait_for("the feature to be undone", lambda: second.feature("py.search-bar") is None)


def test_two_profiles_side_by_side_and_calls_from_many_threads(open_pilot):
    a = open_pilot("feature", name="a")
    b = open_pilot("prompt", name="b")
    a.start()
    b.start()
    wait_for("a's feature", lambda: a.feature("py.search-bar"))
    wait_for("b's prompt", b.prompts)
    assert b.feature("py.search-bar") is None

    errors = []

    def reader() -> None:
        try:
            for _ in range(200):
                a.feature("py.search-bar")
                a.observe("unrelated-topic")
                b.prompts()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert a.feature("py.search-bar") == {"enabled": True}
    assert isinstance(a, testpilot.Pilot)
