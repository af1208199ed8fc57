"""Change windows: when an environment may auto-apply, and what the user is told."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from orchestrator.windows import ChangeWindow, window_state

BUSINESS_HOURS = ChangeWindow(kind="allow", schedule="0 9 * * 1-5", duration="8h")
WEEKEND_FREEZE = ChangeWindow(
    kind="deny",
    schedule="0 16 * * 5",
    duration="64h",
    timezone="Europe/Berlin",
    reason="freeze: weekend",
)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# -- examples a user would configure ------------------------------------------------


def test_an_environment_without_windows_may_always_auto_apply() -> None:
    state = window_state([], at("2026-11-21T03:00"))
    assert state.open
    assert state.until is None


def test_inside_business_hours_auto_apply_proceeds_until_the_window_closes() -> None:
    state = window_state([BUSINESS_HOURS], at("2026-11-24T12:00"))  # a Tuesday
    assert state.open
    assert state.until == at("2026-11-24T17:00")
    assert state.reason == "inside allow window '0 9 * * 1-5' +8h UTC until 2026-11-24 17:00 UTC"


def test_on_saturday_an_auto_apply_waits_for_monday_morning() -> None:
    state = window_state([BUSINESS_HOURS], at("2026-11-21T12:00"))
    assert not state.open
    assert state.until == at("2026-11-23T09:00")
    assert state.reason == "outside every allow window; the next opens 2026-11-23 09:00 UTC"


def test_day_of_week_counts_from_sunday_as_in_crontab() -> None:
    sunday, monday = at("2026-11-22T10:00"), at("2026-11-23T10:00")
    assert not window_state([BUSINESS_HOURS], sunday).open
    assert window_state([BUSINESS_HOURS], monday).open
    for spelling in ("0", "7", "sun", "SUN", "sat-sun", "6,7"):
        window = ChangeWindow(kind="allow", schedule=f"0 9 * * {spelling}", duration="8h")
        assert window_state([window], sunday).open, spelling
        assert not window_state([window], monday).open, spelling


def test_a_weekend_freeze_holds_auto_apply_from_friday_afternoon_to_monday_morning() -> None:
    # 16:00 in Berlin in November is 15:00 UTC; 64 hours later is Monday 07:00 UTC.
    assert window_state([WEEKEND_FREEZE], at("2026-11-20T14:59")).open
    state = window_state([WEEKEND_FREEZE], at("2026-11-21T12:00"))
    assert not state.open
    assert state.until == at("2026-11-23T07:00")
    assert state.reason == (
        "inside deny window '0 16 * * 5' +64h Europe/Berlin (freeze: weekend) until 2026-11-23 07:00 UTC"
    )
    assert window_state([WEEKEND_FREEZE], at("2026-11-23T07:00")).open


def test_outside_every_deny_window_the_reason_names_when_the_next_starts() -> None:
    state = window_state([WEEKEND_FREEZE], at("2026-11-19T10:00"))
    assert state.open
    assert state.reason == "outside every deny window; the next starts 2026-11-20 15:00 UTC"


def test_a_deny_window_wins_over_an_allow_window_it_overlaps() -> None:
    friday_afternoon = at("2026-11-20T15:30")  # inside both
    state = window_state([BUSINESS_HOURS, WEEKEND_FREEZE], friday_afternoon)
    assert not state.open
    assert "inside deny window" in state.reason
    # The freeze ends Monday 07:00 UTC, but no allow window is open until 09:00.
    assert state.until == at("2026-11-23T09:00")


def test_allow_windows_that_touch_stay_open_across_the_seam() -> None:
    morning = ChangeWindow(kind="allow", schedule="0 9 * * *", duration="3h")
    afternoon = ChangeWindow(kind="allow", schedule="0 12 * * *", duration="5h")
    state = window_state([morning, afternoon], at("2026-11-24T10:00"))
    assert state.open
    assert state.until == at("2026-11-24T17:00")


def test_a_window_that_always_reopens_reports_no_end() -> None:
    every_minute = ChangeWindow(kind="allow", schedule="* * * * *", duration="1m")
    state = window_state([every_minute], at("2026-11-24T10:00:30"))
    assert state.open
    assert state.until is None
    assert state.reason.startswith("inside allow window '* * * * *' +1m UTC with no end")


# -- boundaries ------------------------------------------------------------------------

HOURLY_AT_NINE = ChangeWindow(kind="allow", schedule="0 9 * * *", duration="1h")


def test_a_window_is_open_from_the_instant_it_starts() -> None:
    state = window_state([HOURLY_AT_NINE], at("2026-11-24T09:00"))
    assert state.open
    assert state.until == at("2026-11-24T10:00")


def test_a_window_is_closed_at_the_instant_it_ends() -> None:
    state = window_state([HOURLY_AT_NINE], at("2026-11-24T10:00"))
    assert not state.open
    assert state.until == at("2026-11-25T09:00")


def test_just_before_a_window_starts_it_is_closed_until_the_start() -> None:
    state = window_state([HOURLY_AT_NINE], at("2026-11-24T09:00") - timedelta(microseconds=1))
    assert not state.open
    assert state.until == at("2026-11-24T09:00")


def test_durations_in_seconds_end_on_the_second() -> None:
    window = ChangeWindow(kind="deny", schedule="30 9 * * *", duration=90)
    state = window_state([window], at("2026-11-24T09:30:45"))
    assert not state.open
    assert state.until == at("2026-11-24T09:31:30")
    assert state.reason.endswith("until 2026-11-24 09:31:30 UTC")


# -- time zones and daylight saving -----------------------------------------------------

BERLIN_MORNINGS = ChangeWindow(kind="allow", schedule="0 9 * * *", duration="8h", timezone="Europe/Berlin")


def test_a_window_opens_at_local_time_on_both_sides_of_a_dst_change() -> None:
    # Berlin moves to summer time on 2026-03-29: 09:00 local is 08:00 UTC before, 07:00 after.
    assert window_state([BERLIN_MORNINGS], at("2026-03-28T08:00")).open
    state = window_state([BERLIN_MORNINGS], at("2026-03-28T17:00"))
    assert not state.open
    assert state.until == at("2026-03-29T07:00")
    assert window_state([BERLIN_MORNINGS], at("2026-03-29T07:00")).open
    # And back to winter time on 2026-10-25.
    assert window_state([BERLIN_MORNINGS], at("2026-10-24T07:00")).open
    assert not window_state([BERLIN_MORNINGS], at("2026-10-25T07:00")).open
    assert window_state([BERLIN_MORNINGS], at("2026-10-25T08:00")).open


def test_a_duration_is_elapsed_time_even_across_a_dst_change() -> None:
    # Midnight Sunday 2026-03-29 in Berlin is 23:00 UTC Saturday; six hours later is
    # 05:00 UTC, which is 07:00 on Berlin's clocks after they sprang forward.
    night = ChangeWindow(kind="deny", schedule="0 0 * * sun", duration="6h", timezone="Europe/Berlin")
    state = window_state([night], at("2026-03-29T01:00"))
    assert not state.open
    assert state.until == at("2026-03-29T05:00")
    assert state.until.astimezone(ZoneInfo("Europe/Berlin")).hour == 7


def test_now_must_say_its_time_zone() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        window_state([BUSINESS_HOURS], datetime(2026, 11, 24, 12))


# -- bad configuration: one clear line naming what is wrong -------------------------------


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"schedule": "61 * * * *"}, "schedule", "minute field '61' of '61 * * * *'"),
        ({"schedule": "0 25 * * *"}, "schedule", "hour field '25'"),
        ({"schedule": "0 9 * * 1-8"}, "schedule", "day-of-week field '1-8'"),
        ({"schedule": "0 9 * * fri-mon"}, "schedule", "range 'fri-mon' runs backwards"),
        ({"schedule": "0 9 * *"}, "schedule", "has 4 fields; a crontab has 5"),
        ({"schedule": "0 9 1 * 1"}, "schedule", "restricts both day-of-month and day-of-week"),
        ({"schedule": "0 9 30 2 *"}, "schedule", "'0 9 30 2 *' never fires"),
        ({"timezone": "Europe/Atlantis"}, "timezone", "'Europe/Atlantis' is not a known time zone"),
        ({"duration": 0}, "duration", "a window must last longer than 0s"),
        ({"duration": "-5m"}, "duration", "'-5m' is not a duration"),
        ({"kind": "maybe"}, "kind", "'allow' or 'deny'"),
    ],
)
def test_a_bad_window_is_one_error_naming_the_field(
    fields: dict[str, object], field: str, message: str
) -> None:
    values = {"kind": "allow", "schedule": "0 9 * * 1-5", "duration": "8h", **fields}
    with pytest.raises(ValidationError) as raised:
        ChangeWindow.model_validate(values)
    (error,) = raised.value.errors()
    assert error["loc"] == (field,)
    assert message in error["msg"]
    assert "\n" not in error["msg"]


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(ValidationError, match="manual"):
        ChangeWindow.model_validate(
            {"kind": "allow", "schedule": "0 9 * * *", "duration": "1h", "manual": True}
        )


def test_a_window_round_trips_through_its_yaml_form() -> None:
    dumped = WEEKEND_FREEZE.model_dump()
    assert dumped["duration"] == "64h"
    assert ChangeWindow.model_validate(dumped) == WEEKEND_FREEZE


# -- property: agrees with a minute-by-minute reading of the crontab ------------------------

_ZONES = ("UTC", "Asia/Kolkata", "America/Sao_Paulo")  # offsets of whole and half hours, no DST
_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _render(values: frozenset[int], low: int, high: int) -> str:
    if values == frozenset(range(low, high + 1)):
        return "*"
    ordered = sorted(values)
    if len(ordered) > 1 and ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{ordered[0]}-{ordered[-1]}"
    return ",".join(map(str, ordered))


@st.composite
def _windows(draw: st.DrawFn) -> tuple[ChangeWindow, frozenset[int], frozenset[int], frozenset[int]]:
    minutes = draw(st.frozensets(st.integers(0, 59), min_size=1, max_size=4))
    hours = draw(st.frozensets(st.integers(0, 23), min_size=1, max_size=6) | st.just(frozenset(range(24))))
    days = draw(st.frozensets(st.integers(0, 6), min_size=1, max_size=7))
    style = draw(st.sampled_from(["numbers", "names", "sunday-is-7"]))
    if style == "names" and days != frozenset(range(7)):
        weekday_field = ",".join(_DAY_NAMES[day] for day in sorted(days))
    elif style == "sunday-is-7" and 0 in days and days != frozenset(range(7)):
        weekday_field = ",".join(str(day or 7) for day in sorted(days))
    else:
        weekday_field = _render(days, 0, 6)
    window = ChangeWindow(
        kind=draw(st.sampled_from(["allow", "deny"])),
        schedule=f"{_render(minutes, 0, 59)} {_render(hours, 0, 23)} * * {weekday_field}",
        duration=timedelta(minutes=draw(st.integers(0, 90)), seconds=draw(st.integers(1, 59))),
        timezone=draw(st.sampled_from(_ZONES)),
    )
    return window, minutes, hours, days


def _brute_force_active(
    spec: tuple[ChangeWindow, frozenset[int], frozenset[int], frozenset[int]], now: datetime
) -> bool:
    """Is some minute t with now - duration < t <= now a time the crontab fires?"""
    window, minutes, hours, days = spec
    zone = ZoneInfo(window.timezone)
    t = (now - window.duration).replace(second=0, microsecond=0)
    while t <= now:
        local = t.astimezone(zone)
        weekday = (local.weekday() + 1) % 7  # crontab: Sunday is 0
        if t > now - window.duration and local.minute in minutes and local.hour in hours and weekday in days:
            return True
        t += timedelta(minutes=1)
    return False


_NOW = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC))


@settings(deadline=None, max_examples=100)
@given(specs=st.lists(_windows(), min_size=1, max_size=3), now=_NOW)
def test_open_agrees_with_a_minute_by_minute_reading(
    specs: list[tuple[ChangeWindow, frozenset[int], frozenset[int], frozenset[int]]], now: datetime
) -> None:
    active = [(spec[0].kind, _brute_force_active(spec, now)) for spec in specs]
    allows = [on for kind, on in active if kind == "allow"]
    expected = not any(on for kind, on in active if kind == "deny") and (not allows or any(allows))
    # `open` never depends on how far ahead `until` is searched; a short horizon keeps this cheap.
    assert window_state([spec[0] for spec in specs], now, horizon=timedelta(hours=1)).open == expected


@settings(deadline=None, max_examples=40)
@given(specs=st.lists(_windows(), min_size=1, max_size=3), now=_NOW)
def test_the_state_holds_until_it_says_and_flips_there(
    specs: list[tuple[ChangeWindow, frozenset[int], frozenset[int], frozenset[int]]], now: datetime
) -> None:
    windows = [spec[0] for spec in specs]
    state = window_state(windows, now, horizon=timedelta(days=2))
    if state.until is not None:
        assert state.until > now
        just_before = state.until - timedelta(microseconds=1)
        assert window_state(windows, just_before, horizon=timedelta(0)).open == state.open
        assert window_state(windows, state.until, horizon=timedelta(0)).open != state.open
