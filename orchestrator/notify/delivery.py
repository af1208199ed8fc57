"""Posting queued notifications to their webhooks, with retries, off the pipeline's path.

The composition root builds one :class:`Deliverer` (an outbox, an
``httpx.Client`` from :func:`http_client`, the clock) and runs it in a
:class:`DeliveryWorker` thread, or calls :meth:`Deliverer.deliver_due` from
the scheduler. The pipeline never calls anything here: it only queues
(:mod:`orchestrator.notify.notifier`), so a slow or dead receiver can delay a
notification but never a decision.

Which answers are retried, and for how long, is :mod:`orchestrator.notify.retry`.
Every attempt is recorded on the outbox row (``attempts``, ``last_error``),
so ``last_error`` of a row that gave up says what the receiver answered.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import httpx

from orchestrator import __version__
from orchestrator.clock import Clock
from orchestrator.logs import get_logger
from orchestrator.notify.outbox import Delivery, Outbox
from orchestrator.notify.retry import RetryPolicy, Verdict, classify, parse_retry_after
from orchestrator.notify.urls import scrub
from orchestrator.telemetry import INTENT_ID, Telemetry

if TYPE_CHECKING:
    from orchestrator.notify.settings import NotificationSettings

__all__ = ["Deliverer", "DeliveryWorker", "http_client"]

log = get_logger("apx.notify")

#: Rows claimed per round. Small, so a worker asked to stop has little in hand
#: (claimed rows it did not send wait for their lease to run out).
DEFAULT_BATCH = 5
#: Rounds per :meth:`Deliverer.deliver_due` call when every round was full:
#: a backlog is worked through without one call running unbounded.
MAX_ROUNDS = 20
#: Receivers' answers are quoted in ``last_error`` up to this many characters.
_BODY_CHARS = 200


def http_client(settings: NotificationSettings) -> httpx.Client:
    """The client a deliverer should get: the settings' timeout, no redirects followed.

    A webhook that redirects is misconfigured (and following would re-post the
    payload somewhere the settings never named), so a 3xx is a failure to fix.
    """
    return httpx.Client(
        timeout=settings.timeout.total_seconds(),
        follow_redirects=False,
        headers={"User-Agent": f"apx/{__version__}"},
    )


@dataclass(frozen=True, kw_only=True)
class _Attempt:
    """How one post went."""

    verdict: Verdict
    error: str | None = None
    retry_after: timedelta | None = None


class Deliverer:
    """Sends what the outbox says is due and records each outcome on its row."""

    def __init__(
        self,
        outbox: Outbox,
        client: httpx.Client,
        clock: Clock,
        *,
        max_attempts: int = 8,
        backoff_base: timedelta = timedelta(seconds=2),
        backoff_max: timedelta = timedelta(minutes=10),
        timeout: timedelta = timedelta(seconds=5),
        headers: Mapping[str, Mapping[str, str]] | None = None,
        batch: int = DEFAULT_BATCH,
        rng: random.Random | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        """``headers``: extra request headers by webhook name; ``rng``: the jitter (tests seed it);
        ``telemetry``: each post becomes a span of its intent's trace."""
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self._outbox = outbox
        self._client = client
        self._clock = clock
        self._policy = RetryPolicy(max_attempts=max_attempts, base=backoff_base, cap=backoff_max)
        self._timeout = timeout.total_seconds()
        self._headers = {name: dict(h) for name, h in (headers or {}).items()}
        self._batch = batch
        # A claim must outlast sending the whole batch, or another worker would
        # see the rows as due while this one is still posting them.
        self._lease = timeout * batch + timedelta(seconds=30)
        self._rng = rng or random.Random()
        self._telemetry = telemetry or Telemetry.disabled()

    @classmethod
    def from_settings(
        cls,
        settings: NotificationSettings,
        outbox: Outbox,
        client: httpx.Client,
        clock: Clock,
        *,
        rng: random.Random | None = None,
        telemetry: Telemetry | None = None,
    ) -> Deliverer:
        return cls(
            outbox,
            client,
            clock,
            max_attempts=settings.max_attempts,
            backoff_base=settings.backoff_base,
            backoff_max=settings.backoff_max,
            timeout=settings.timeout,
            headers=settings.headers,
            rng=rng,
            telemetry=telemetry,
        )

    def deliver_due(self, *, stop: threading.Event | None = None) -> int:
        """Post every notification due now; how many were delivered.

        Stops between posts once ``stop`` is set. Outbox (database) errors
        propagate: the rows stay claimed until their lease ends, then are due again.
        """
        delivered = 0
        for _ in range(MAX_ROUNDS):
            claimed = self._outbox.due(self._clock.now(), self._batch, lease=self._lease)
            for delivery in claimed:
                if stop is not None and stop.is_set():
                    return delivered
                delivered += self._deliver(delivery)
            if len(claimed) < self._batch:
                break
        return delivered

    def _deliver(self, d: Delivery) -> bool:
        # Our JSON payload names the intent's trace, so the post joins it (a Slack body does not).
        trace_id, intent_id = d.payload.get("trace_id"), d.payload.get("intent_id")
        with self._telemetry.span(
            "apx.notify.deliver",
            trace_id=trace_id if isinstance(trace_id, str) else None,
            **{
                INTENT_ID: intent_id if isinstance(intent_id, str) else None,
                "apx.notification.kind": d.kind,
                "apx.notification.webhook": d.webhook,
                "apx.notification.attempt": d.attempts,
            },
        ) as span:
            delivered = self._send(d)
            span.set_attribute("apx.notification.delivered", delivered)
        return delivered

    def _send(self, d: Delivery) -> bool:
        attempt = self._post(d)
        now = self._clock.now()
        fields = {
            "delivery_id": d.id,
            "kind": d.kind,
            "webhook": d.webhook,
            "to": d.safe_url,
            "attempt": d.attempts,
        }
        if attempt.verdict is Verdict.DELIVERED:
            self._outbox.mark_delivered(d.id, now)
            log.info("notification delivered", **fields)
            return True
        error = attempt.error or "failed"
        wait = self._policy.after(
            attempt=d.attempts,
            retryable=attempt.verdict is Verdict.RETRY,
            retry_after=attempt.retry_after,
            rng=self._rng,
        )
        if wait is None:
            if attempt.verdict is Verdict.RETRY:
                error = f"{error} (gave up after {d.attempts} attempts)"
            self._outbox.mark_failed(d.id, error=error, at=now, next_attempt_at=now, give_up=True)
            log.error("notification delivery gave up", error=error, **fields)
        else:
            self._outbox.mark_failed(d.id, error=error, at=now, next_attempt_at=now + wait, give_up=False)
            log.warning(
                "notification delivery failed; will retry",
                error=error,
                retry_in_s=round(wait.total_seconds(), 1),
                **fields,
            )
        return False

    def _post(self, d: Delivery) -> _Attempt:
        headers = {"Content-Type": "application/json", **self._headers.get(d.webhook, {})}
        body = json.dumps(d.payload, ensure_ascii=False, separators=(",", ":")).encode()
        try:
            response = self._client.post(d.url, content=body, headers=headers, timeout=self._timeout)
        except httpx.TimeoutException as exc:
            return _Attempt(
                verdict=Verdict.RETRY, error=f"no answer within {self._timeout:g}s ({type(exc).__name__})"
            )
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            return _Attempt(verdict=Verdict.GIVE_UP, error=scrub(f"bad webhook URL: {exc}", d.url))
        except httpx.HTTPError as exc:  # connection refused or reset, protocol errors
            return _Attempt(verdict=Verdict.RETRY, error=scrub(f"{type(exc).__name__}: {exc}", d.url))
        except Exception as exc:  # a failure of ours must not take the worker down with it
            error = scrub(f"{type(exc).__name__}: {exc}", d.url)
            # No traceback: its frames would print the URL this module keeps out of logs.
            log.error(
                "notification post failed unexpectedly", delivery_id=d.id, webhook=d.webhook, error=error
            )
            return _Attempt(verdict=Verdict.RETRY, error=error)
        verdict = classify(response.status_code)
        if verdict is Verdict.DELIVERED:
            return _Attempt(verdict=verdict)
        reason = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
        if 300 <= response.status_code < 400:
            reason += " (redirects are not followed; configure the final URL)"
        text = " ".join(response.text[: _BODY_CHARS * 2].split())[:_BODY_CHARS]
        if text:
            reason = f"{reason}: {text}"
        retry_after = None
        if verdict is Verdict.RETRY:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), self._clock.now())
        return _Attempt(verdict=verdict, error=scrub(reason, d.url), retry_after=retry_after)


class DeliveryWorker:
    """A daemon thread that calls :meth:`Deliverer.deliver_due` every ``interval`` until stopped.

    :meth:`stop` returns once the thread has finished the post in flight (one
    request timeout at most); it never sends a half-claimed batch after that.
    Errors of a round (e.g. the database is down) are logged and the next
    round tries again.
    """

    def __init__(
        self, deliverer: Deliverer, *, interval: timedelta | float = 2.0, name: str = "apx-notify"
    ) -> None:
        seconds = interval.total_seconds() if isinstance(interval, timedelta) else float(interval)
        if seconds <= 0:
            raise ValueError("interval must be positive")
        self._deliverer = deliverer
        self._interval = seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> DeliveryWorker:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> bool:
        """Ask the thread to stop and wait up to ``timeout`` seconds; whether it has stopped."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> DeliveryWorker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._deliverer.deliver_due(stop=self._stop)
            except Exception as exc:
                # The message only: a rendered traceback (with locals, on a console) could show a URL.
                log.error(
                    "notification delivery round failed; retrying next round",
                    error=f"{type(exc).__name__}: {exc}",
                )
            self._stop.wait(self._interval)
