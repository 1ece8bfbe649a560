"""Type information for the extension module behind :mod:`testpilot` (docs/embedding.md)."""

import datetime
import os
from types import TracebackType
from typing import Any, Dict, List, Literal, Optional, Type, TypedDict, Union, final

DEFAULT_POLL: str
"""How often a pilot fetches the index unless told otherwise: ``"60s"``."""

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

_JSON = Any
"""A value as JSON holds it: dict, list, str, int, float, bool or None."""

class _FeatureInfo(TypedDict):
    value: _JSON
    studyname: str
    version: int
    arm: Optional[str]

class Error(Exception):
    """Every error the pilot raises; the message says what went wrong and where."""

class ConfigError(Error):
    """A bad argument to ``Pilot(...)``: the message names the argument."""

class LockedError(Error):
    """The profile is in use by another pilot (this process or another)."""

class UsageError(Error):
    """A request the pilot cannot carry out (a bad answer, an unknown prompt or flight, ...)."""

class ClosedError(UsageError):
    """The pilot was closed: open the profile again with a new ``Pilot``."""

class HostError(Error):
    """The agent stopped abnormally or did not stop in time."""

class JournalError(Error):
    """The profile's journal or files could not be read or written."""

@final
class Pilot:
    """The pilot for one profile, embedded in this application.

    ``profile``: the profile folder (created private to this user). ``tower``: a tower's
    ``http(s)://`` URL, or ``file://PATH`` of a signed index file. ``public_key``: the tower's
    public key (``testpilot tower pubkey``); None only with ``insecure_unsigned=True``
    (development). ``person``: the person context for targeting, e.g.
    ``{"channel": "beta", "locale": "en-US"}`` (``personid`` is made and kept when absent).
    ``poll``: how often to fetch the index: ``"60s"``, ``"15m"``, milliseconds or a
    ``timedelta``.

    The profile is locked until :meth:`close` (or the end of a ``with`` block): a second
    ``Pilot`` on it raises :class:`LockedError`. Every method may be called from any thread;
    the GIL is released while the pilot works.
    """

    def __new__(
        cls,
        profile: Union[str, "os.PathLike[str]"],
        tower: str,
        public_key: Optional[str],
        person: Optional[Dict[str, _JSON]] = None,
        poll: Union[str, int, datetime.timedelta, None] = "60s",
        *,
        insecure_unsigned: bool = False,
    ) -> "Pilot": ...
    @property
    def running(self) -> bool:
        """Whether the agent runs (started, not stopped, not failed)."""
    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
    @property
    def profile(self) -> str:
        """The profile folder."""
    def start(self) -> None:
        """Starts the agent on a thread of its own: it fetches the index at once, then every
        ``poll``, and runs the flights this person takes part in."""
    def feature(self, id: str) -> Optional[_JSON]:
        """The value a flight set for feature ``id``, or None when no live flight sets it.
        Read from memory: no I/O."""
    def feature_info(self, id: str) -> Optional[_FeatureInfo]:
        """Feature ``id``'s value and the flight (and arm) that set it, or None."""
    def features(self) -> Dict[str, _JSON]:
        """Every feature flights have set: ``{id: value}``."""
    def flights(self) -> List[Dict[str, _JSON]]:
        """The flights running on this machine: ``[{"studyname", "version", "arm", "step",
        "statusLine", "startedAt"}]``."""
    def observe(
        self, topic: str, subject: Optional[str] = None, value: Optional[float] = None
    ) -> int:
        """Feeds an event: ``observe`` steps waiting for it go on, recordings record it.
        Returns the event's id."""
    def prompts(self) -> List[Dict[str, _JSON]]:
        """The prompts waiting for the person (as ``testpilot later list --json``)."""
    def answer(self, id: int, answer: Literal["ok", "no", "later"]) -> None:
        """Answers prompt ``id``; anything but "ok", "no" or "later" raises :class:`UsageError`."""
    def log(self) -> List[Dict[str, _JSON]]:
        """The flight log: the list ``testpilot log --json`` prints."""
    def optout(self, flight: Optional[str] = None) -> List[str]:
        """Leaves ``flight`` (None: every flight, and no new ones), undoing what it did.
        Returns the flights ended."""
    def sync_now(self) -> None:
        """Asks the agent to fetch the index now."""
    def stop(self) -> None:
        """Stops the agent (waiting up to 10 s); flights go on at the next start."""
    def close(self) -> None:
        """Stops the agent and lets go of the profile; later calls raise :class:`ClosedError`."""
    def __enter__(self) -> "Pilot": ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...
