"""Change windows: when an environment may auto-apply, as cron plus a duration.

Argo CD calls these sync windows. Each environment in ``apx.yaml`` may list
``allow`` and ``deny`` windows; each opens at every fire time of its crontab
and stays open for its duration. The pipeline asks :func:`window_state` before
an auto-apply: when the state is closed the intent stays ``queued`` with the
state's reason, and the drain (``apx drain``, or the server's scheduler)
decides it once the window opens. The rules are Argo CD's:

- no windows at all: always open;
- any active ``deny`` window: closed (deny wins over allow);
- at least one ``allow`` window, and none of them active: closed;
- otherwise open.

A window is active at ``now`` when some fire time ``t`` of its crontab has
``t <= now < t + duration``: the start is inside, the end is not. Durations
are elapsed time, so a ``+64h`` freeze lasts 64 hours across a DST change;
fire times follow the window's own time zone (``0 9 * * 1-5`` in
``Europe/Berlin`` is 09:00 Berlin time, summer and winter).

The cron arithmetic is APScheduler's :class:`CronTrigger`, with one fix: its
3.x series counts weekdays from Monday=0, while crontab (and Argo CD) count
from Sunday=0. Schedules here are plain crontab — ``1-5`` is Monday to
Friday — and the day-of-week field is translated to weekday names before
APScheduler sees it. No I/O beyond reading the time zone database; time
comes in as ``now``. APScheduler is imported on first use because
:mod:`orchestrator.settings` imports this module and ``apx --help`` must
stay fast.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from itertools import groupby
from typing import TYPE_CHECKING, Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, field_validator
from pydantic_core import PydanticCustomError

from orchestrator.durations import format_duration, parse_duration

if TYPE_CHECKING:
    from apscheduler.triggers.cron import CronTrigger

#: How far ahead :func:`window_state` looks for the next change of state. Two
#: weeks covers every weekly schedule twice; a change further out is reported
#: as "not within 14 days" rather than searched for.
HORIZON = timedelta(days=14)

#: Fire times one :func:`window_state` call may step through (about 40 µs each).
#: Only ``until`` needs them; a schedule firing every minute for days would
#: otherwise cost seconds, so beyond this ``until`` is reported as unknown.
_STEP_BUDGET = 4000


def _parse_duration(value: Any) -> timedelta:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise PydanticCustomError("duration", "{problem}", {"problem": str(exc)}) from exc


_WindowDuration = Annotated[
    timedelta,
    BeforeValidator(_parse_duration),
    PlainSerializer(format_duration, return_type=str),
]

_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_TRIGGER_ARGS = ("minute", "hour", "day", "month", "day_of_week")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab numbering: sun=0
_APSCHEDULER_PREFIX = re.compile(r"^Error validating expression '.*?': ")
_WEEKDAY_ITEM = re.compile(r"(?P<first>\*|\w+)(?:-(?P<last>\w+))?(?:/(?P<step>\d+))?")


class ChangeWindow(BaseModel):
    """One allow or deny window of an environment, as written in ``apx.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: ``allow``: auto-apply only inside (some) allow window. ``deny``: never inside.
    kind: Literal["allow", "deny"]
    #: A 5-field crontab (minute hour day-of-month month day-of-week) of the opening times.
    schedule: str
    #: How long the window stays open after each opening (``8h``, ``64h``, seconds).
    duration: _WindowDuration
    #: IANA time zone the schedule is read in; UTC unless said otherwise.
    timezone: str = "UTC"
    #: Why the window exists, shown to users whose intent waits (e.g. "freeze: weekend").
    reason: str = ""

    @field_validator("schedule")
    @classmethod
    def _crontab(cls, value: str) -> str:
        try:
            _apscheduler_crontab(value)
        except ValueError as exc:
            raise PydanticCustomError("crontab", "{problem}", {"problem": str(exc)}) from exc
        return " ".join(value.split())

    @field_validator("duration")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise PydanticCustomError("duration", "a window must last longer than 0s")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise PydanticCustomError(
                "timezone",
                "{zone} is not a known time zone; use an IANA name such as UTC or Europe/Berlin",
                {"zone": repr(value)},
            ) from exc
        return value

    @property
    def label(self) -> str:
        """How reasons name the window: ``'0 16 * * 5' +64h Europe/Berlin``."""
        return f"'{self.schedule}' +{format_duration(self.duration)} {self.timezone}"


@dataclass(frozen=True, kw_only=True)
class WindowState:
    """Whether an environment may auto-apply at one instant, and for how long that holds."""

    #: True: an auto-apply may proceed now.
    open: bool
    #: One sentence for the user, naming the window that decided and when that ends.
    reason: str
    #: When ``open`` next flips; None when that is not within :data:`HORIZON`
    #: (or when the schedules fire too often to search that far).
    until: datetime | None


def window_state(
    windows: Sequence[ChangeWindow], now: datetime, *, horizon: timedelta = HORIZON
) -> WindowState:
    """Decide whether auto-apply is allowed at ``now`` (timezone-aware) under ``windows``."""
    if now.tzinfo is None:
        raise ValueError("window_state needs a timezone-aware now")
    now = now.astimezone(UTC)
    if not windows:
        return WindowState(open=True, reason="no change windows: auto-apply at any time", until=None)
    active = [_active(window, now) for window in windows]
    is_open = _allows(windows, active)
    searched = f"within {format_duration(horizon)}"
    try:
        until = _next_change(windows, active, now=now, end=now + horizon)
    except _OutOfSteps:
        until, searched = None, f"in the next {_STEP_BUDGET} openings"
    return WindowState(
        open=is_open,
        reason=_reason(windows, active, is_open=is_open, until=until, searched=searched),
        until=until,
    )


def _allows(windows: Sequence[ChangeWindow], active: Sequence[bool]) -> bool:
    """Argo CD's rule: deny wins; with any allow window, one must be active."""
    if any(on and w.kind == "deny" for w, on in zip(windows, active, strict=True)):
        return False
    allows = [on for w, on in zip(windows, active, strict=True) if w.kind == "allow"]
    return not allows or any(allows)


def _active(window: ChangeWindow, now: datetime) -> bool:
    # Every opening lasts the same time, so the first opening after now - duration
    # is inside the window iff any is: one step decides, however often it fires.
    first = _next_fire(_trigger(window.schedule, window.timezone), after=now - window.duration)
    return first is not None and first <= now


class _OutOfSteps(Exception):
    """The schedules fire too often to find the next change within the step budget."""


class _Steps:
    def __init__(self, budget: int) -> None:
        self.left = budget

    def next_fire(self, trigger: CronTrigger, *, after: datetime) -> datetime | None:
        self.left -= 1
        if self.left < 0:
            raise _OutOfSteps
        return _next_fire(trigger, after=after)


def _next_fire(trigger: CronTrigger, *, after: datetime) -> datetime | None:
    """The first fire time strictly after ``after``, in UTC."""
    # Fire times fall on whole seconds and the trigger rounds up to one, so asking
    # from a microsecond later excludes ``after`` itself.
    fire: datetime | None = trigger.get_next_fire_time(None, after + timedelta(microseconds=1))
    return fire.astimezone(UTC) if fire is not None else None


def _spans(
    window: ChangeWindow, *, now: datetime, end: datetime, steps: _Steps
) -> Iterator[tuple[datetime, datetime]]:
    """The window's open periods ``[start, stop)`` that end after ``now``, overlaps merged.

    Openings that overlap or touch are one period: a window firing every minute
    for a minute is open all the time, not closed for an instant each minute.
    """
    trigger = _trigger(window.schedule, window.timezone)
    fire = steps.next_fire(trigger, after=now - window.duration)
    while fire is not None and fire <= end:
        start, stop = fire, fire + window.duration
        fire = steps.next_fire(trigger, after=fire)
        while fire is not None and fire <= stop and fire <= end:
            stop = fire + window.duration
            fire = steps.next_fire(trigger, after=fire)
        yield start, stop


def _flips(
    window: ChangeWindow, *, now: datetime, end: datetime, steps: _Steps
) -> Iterator[tuple[datetime, bool]]:
    """When, after ``now``, the window opens (True) or closes (False), in order."""
    for start, stop in _spans(window, now=now, end=end, steps=steps):
        if start > now:
            yield start, True
        yield stop, False


def _next_change(
    windows: Sequence[ChangeWindow], active: Sequence[bool], *, now: datetime, end: datetime
) -> datetime | None:
    """The first instant in ``(now, end]`` where the environment's state differs from now's."""
    steps = _Steps(_STEP_BUDGET)
    is_open = _allows(windows, active)
    state = list(active)
    flips = heapq.merge(
        *(
            _numbered(index, _flips(window, now=now, end=end, steps=steps))
            for index, window in enumerate(windows)
        )
    )
    # Flips at one instant apply together: an allow window closing as another
    # opens leaves the environment open.
    for at, together in groupby(flips, key=_instant):
        if at > end:
            return None
        for _, index, on in together:
            state[index] = on
        if _allows(windows, state) != is_open:
            return at
    return None


def _numbered(index: int, flips: Iterator[tuple[datetime, bool]]) -> Iterator[tuple[datetime, int, bool]]:
    for at, on in flips:
        yield at, index, on


def _instant(flip: tuple[datetime, int, bool]) -> datetime:
    return flip[0]


def _reason(
    windows: Sequence[ChangeWindow],
    active: Sequence[bool],
    *,
    is_open: bool,
    until: datetime | None,
    searched: str,
) -> str:
    deny = next((w for w, on in zip(windows, active, strict=True) if on and w.kind == "deny"), None)
    if deny is not None:
        end = f"until {_when(until)}" if until else f"with no end {searched}"
        return f"inside deny window {deny.label}{_why(deny)} {end}"
    allow = next((w for w, on in zip(windows, active, strict=True) if on and w.kind == "allow"), None)
    if allow is not None:
        end = f"until {_when(until)}" if until else f"with no end {searched}"
        return f"inside allow window {allow.label}{_why(allow)} {end}"
    if not is_open:
        nxt = f"the next opens {_when(until)}" if until else f"none opens {searched}"
        return f"outside every allow window; {nxt}"
    nxt = f"the next starts {_when(until)}" if until else f"none starts {searched}"
    return f"outside every deny window; {nxt}"


def _why(window: ChangeWindow) -> str:
    return f" ({window.reason})" if window.reason else ""


def _when(at: datetime) -> str:
    at = at.astimezone(UTC)
    return at.strftime("%Y-%m-%d %H:%M:%S UTC" if at.second else "%Y-%m-%d %H:%M UTC")


@lru_cache(maxsize=256)
def _trigger(schedule: str, timezone: str) -> CronTrigger:
    """The (validated) schedule as an APScheduler trigger; parsed once per schedule."""
    from apscheduler.triggers.cron import CronTrigger

    return CronTrigger.from_crontab(_apscheduler_crontab(schedule), timezone=ZoneInfo(timezone))


def _apscheduler_crontab(schedule: str) -> str:
    """Check a crontab field by field and return it in APScheduler 3's dialect.

    Raises ValueError naming the field at fault. The one difference is the
    day-of-week field (see the module docstring). Cron matches a day when
    *either* the day of month or the day of week matches, APScheduler only when
    both do; rather than silently differ, a schedule may restrict only one.
    """
    from apscheduler.triggers.cron import CronTrigger

    fields = schedule.split()
    if len(fields) != len(_FIELDS):
        raise ValueError(f"{schedule!r} has {len(fields)} fields; a crontab has 5: {' '.join(_FIELDS)}")
    for position, (name, argument, value) in enumerate(zip(_FIELDS, _TRIGGER_ARGS, fields, strict=True)):
        try:
            if argument == "day_of_week":
                fields[position] = _weekdays(value)
            CronTrigger(**{argument: fields[position]}, timezone=UTC)
        except ValueError as exc:
            problem = _APSCHEDULER_PREFIX.sub("", str(exc))
            raise ValueError(f"{name} field {value!r} of {schedule!r}: {problem}") from exc
    if fields[2] != "*" and fields[4] != "*":
        raise ValueError(
            f"{schedule!r} restricts both day-of-month and day-of-week; "
            "cron would match either, so use one window for each"
        )
    # A day no named month has (30 2) would send APScheduler searching to year 9999
    # on every call; eight years from 2000 include a leap day (29 2) whatever the century.
    since = datetime(2000, 1, 1, tzinfo=UTC)
    probe = CronTrigger(
        **dict(zip(_TRIGGER_ARGS, fields, strict=True)), timezone=UTC, end_date=since.replace(year=2008)
    )
    if probe.get_next_fire_time(None, since) is None:
        raise ValueError(f"{schedule!r} never fires: none of its months has day {fields[2]}")
    return " ".join(fields)


def _weekdays(field: str) -> str:
    """A crontab day-of-week field (``1-5``, ``0,6``, ``sat-sun``, ``*/2``) as weekday names."""
    if field == "*":
        return field
    days: set[int] = set()
    for item in field.lower().split(","):
        match = _WEEKDAY_ITEM.fullmatch(item)
        if not match:
            raise ValueError(f"{item!r} is not a weekday, range or step")
        first, last, step = match.group("first", "last", "step")
        if first == "*":
            if last:
                raise ValueError(f"{item!r}: '*' cannot start a range")
            low, high = 0, 6
        else:
            low = _weekday(first, last_of_range=False)
            # "a/2" is cron for "a-6/2"; "fri-sun" ends on Sunday the 7th day.
            high = _weekday(last, last_of_range=True) if last else (6 if step else low)
        if low > high:
            raise ValueError(f"range {item!r} runs backwards")
        if step is not None and int(step) < 1:
            raise ValueError(f"step in {item!r} must be at least 1")
        days.update(day % 7 for day in range(low, high + 1, int(step or 1)))
    # Monday first, as APScheduler lists them; names, because its numbers differ from cron's.
    return ",".join(_WEEKDAYS[day] for day in sorted(days, key=lambda day: (day + 6) % 7))


def _weekday(token: str, *, last_of_range: bool) -> int:
    """Crontab's number of a weekday token: 0-7 (0 and 7 are Sunday) or a name."""
    if token.isdigit():
        day = int(token)
        if not 0 <= day <= 7:
            raise ValueError(f"{token} is not a weekday; use 0-7 (Sunday is 0 or 7) or sun-sat")
        return day
    if token in _WEEKDAYS:
        day = _WEEKDAYS.index(token)
        return 7 if day == 0 and last_of_range else day
    raise ValueError(f"{token!r} is not a weekday; use 0-7 (Sunday is 0 or 7) or sun-sat")
