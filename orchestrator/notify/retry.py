"""When to try a webhook again, and when to stop: pure arithmetic, no HTTP.

:class:`~orchestrator.notify.delivery.Deliverer` turns each attempt into an
HTTP status (or a transport failure) and asks :meth:`RetryPolicy.after` what
to do next. The rules, as ``docs/how-to/notifications.md`` documents them:

* 2xx: delivered.
* 408, 429, 5xx, timeouts, connection errors: retry after a "full jitter"
  backoff (a random wait up to ``base * 2**(attempt-1)``, capped), or after the
  receiver's ``Retry-After`` when it sent one, up to :data:`RETRY_AFTER_MAX`.
* Any other 4xx (and 3xx: redirects are not followed, a webhook URL should be
  final): the receiver refused this request and would refuse it again, so give
  up at once with its reason.
* Out of attempts: give up.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum

__all__ = ["RETRY_AFTER_MAX", "RetryPolicy", "Verdict", "classify", "parse_retry_after"]

#: The longest ``Retry-After`` we wait for. A receiver asking for longer (or a
#: broken header) should not park a notification for days; it is retried then.
RETRY_AFTER_MAX = timedelta(hours=1)


class Verdict(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    GIVE_UP = "give_up"


def classify(status: int) -> Verdict:
    """What an HTTP status means for this delivery."""
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status in (408, 429) or status >= 500:
        return Verdict.RETRY
    return Verdict.GIVE_UP


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    """``Retry-After`` as a wait from ``now``: delay-seconds or an HTTP date; None if absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return timedelta(seconds=int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT; a zone-less one is read as such
        return None
    return max(when - now, timedelta(0))


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    max_attempts: int = 8
    base: timedelta = timedelta(seconds=2)
    cap: timedelta = timedelta(minutes=10)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base <= timedelta(0) or self.cap < self.base:
            raise ValueError("backoff base must be positive and no larger than its cap")

    def backoff(self, attempt: int, rng: random.Random) -> timedelta:
        """A random wait in ``[0, min(cap, base * 2**(attempt-1))]`` after failed attempt ``attempt``."""
        exponent = min(max(attempt - 1, 0), 62)  # 2**62 s already dwarfs any cap; avoids overflow
        ceiling = min(self.cap.total_seconds(), self.base.total_seconds() * 2**exponent)
        return timedelta(seconds=rng.uniform(0, ceiling))

    def after(
        self, *, attempt: int, retryable: bool, retry_after: timedelta | None, rng: random.Random
    ) -> timedelta | None:
        """The wait before the next attempt after failed attempt ``attempt``; None to give up."""
        if not retryable or attempt >= self.max_attempts:
            return None
        if retry_after is not None:
            return min(retry_after, RETRY_AFTER_MAX)
        return self.backoff(attempt, rng)
