"""Test Pilot's pilot inside a Python application.

The pilot runs flights — feature deploys and studies a tower sends to some of an application's
people — on this machine, with guaranteed undo. Open a profile, start the agent, read the
features flights set, feed events, show prompts and the flight log, let the person opt out::

    import testpilot

    with testpilot.Pilot("/home/ana/.app/testpilot", "https://tower.example.org",
                         "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
                         {"channel": "beta", "locale": "en-US"}) as pilot:
        pilot.start()
        if pilot.feature("search-bar") is not None:
            ...
        pilot.observe("search-used", "toolbar")

Every error is a :class:`Error`; its subclasses say which kind. The full guide is
docs/embedding.md ("Python") in the Test Pilot repository.
"""

from ._native import (
    DEFAULT_POLL,
    ClosedError,
    ConfigError,
    Error,
    HostError,
    JournalError,
    LockedError,
    Pilot,
    UsageError,
)

__all__ = [
    "DEFAULT_POLL",
    "ClosedError",
    "ConfigError",
    "Error",
    "HostError",
    "JournalError",
    "LockedError",
    "Pilot",
    "UsageError",
]
