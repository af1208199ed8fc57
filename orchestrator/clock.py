"""Time as a port, so the admission windows are tested without sleeping.

The decision core never calls ``datetime.now``: it is handed a ``now`` that
came from a :class:`Clock`. :class:`SystemClock` is wired in production;
:class:`orchestrator.testing.FrozenClock` in tests.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)
