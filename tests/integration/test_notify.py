"""Notifications end to end: the outbox on every store, and delivery to a real HTTP receiver.

The receiver is a ``ThreadingHTTPServer`` on 127.0.0.1 (a free port) that
records each request and answers from a script (``fail(path, times=2)``).
Time for backoff moves with a ``FrozenClock``; nothing here sleeps to wait
for a retry. The outbox contract runs on the in-memory fake, SQLite and
PostgreSQL (``APX_TEST_DATABASE_URL``), as the intent store's does.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import structlog

from orchestrator.errors import NotFound
from orchestrator.notify.delivery import Deliverer, DeliveryWorker, http_client
from orchestrator.notify.events import Kind, Notification, as_json, as_slack
from orchestrator.notify.notifier import OutboxNotifier
from orchestrator.notify.outbox import DeliveryState, InMemoryOutbox, Outbox
from orchestrator.notify.settings import NotificationSettings, WebhookSettings
from orchestrator.notify.sql_outbox import SqlOutbox
from orchestrator.testing import FrozenClock

#: How long a test waits for something a thread does before failing (never reached when it works).
BOUND = 10.0
SLACK_PATH = "/services/T000/B000/XXXXSECRETXXXX"


# -- a real receiver on loopback ---------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Records what arrives; answers 200 unless :meth:`fail` scripted otherwise for that path."""

    base: str = ""
    requests: list[Received] = field(default_factory=list)
    _script: dict[str, list[tuple[int, dict[str, str], bytes]]] = field(default_factory=dict)
    _changed: threading.Condition = field(default_factory=threading.Condition)
    #: Set to let a request held by :meth:`hold` answer.
    release: threading.Event = field(default_factory=threading.Event)
    _held: set[str] = field(default_factory=set)

    def url(self, path: str) -> str:
        return self.base + path

    def fail(
        self,
        path: str,
        *,
        times: int = 1,
        status: int = 503,
        headers: dict[str, str] | None = None,
        body: str = "",
    ) -> None:
        self._script.setdefault(path, []).extend([(status, headers or {}, body.encode())] * times)

    def hold(self, path: str) -> None:
        """Requests to ``path`` get no answer until :attr:`release` is set (or :data:`BOUND` passes)."""
        self._held.add(path)

    def to(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    def wait_for(self, count: int) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self.requests) >= count, timeout=BOUND)

    def answer(self, request: Received) -> tuple[int, dict[str, str], bytes]:
        with self._changed:
            self.requests.append(request)
            self._changed.notify_all()
            script = self._script.get(request.path)
            return script.pop(0) if script else (200, {}, b"ok")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    recorder = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            request = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            status, headers, payload = recorder.answer(request)
            if self.path in recorder._held:
                recorder.release.wait(BOUND)
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:  # the client gave up waiting (the timeout test)
                pass

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    recorder.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        recorder.release.set()
        server.shutdown()
        server.server_close()
        thread.join(BOUND)


# -- stores -------------------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def outbox(request: pytest.FixtureRequest, clock: FrozenClock) -> Iterator[Outbox]:
    if request.param == "memory":
        yield InMemoryOutbox(clock=clock)
        return
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    with SqlOutbox.open(url, clock=clock) as sql:
        yield sql


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


# -- helpers --------------------------------------------------------------------------


def notification(clock: FrozenClock, kind: Kind = Kind.PR_OPENED, n: int = 1) -> Notification:
    return Notification(
        kind=kind,
        at=clock.now(),
        tenant="acme",
        environment="prod",
        intent_id=f"01JINTENT{n}",
        trace_id=f"trace-{n}",
        summary=f"security's intent 01JINTENT{n} opened a PR & waits for review",
        url=f"https://review.example/prs/{n}",
        details={"agent": "security"},
    )


def hook(receiver: Receiver, path: str = "/hook", **settings: Any) -> WebhookSettings:
    return WebhookSettings(
        name=settings.pop("name", path.strip("/").replace("/", "-")), url=receiver.url(path), **settings
    )


@pytest.fixture
def make_deliverer(clock: FrozenClock) -> Iterator[Callable[..., Deliverer]]:
    clients: list[httpx.Client] = []

    def make(outbox: Outbox, settings: NotificationSettings | None = None, **overrides: Any) -> Deliverer:
        settings = settings or NotificationSettings()
        client = http_client(settings)
        clients.append(client)
        if overrides:
            values = {
                "max_attempts": settings.max_attempts,
                "backoff_base": settings.backoff_base,
                "backoff_max": settings.backoff_max,
                "timeout": settings.timeout,
                "headers": settings.headers,
                "rng": random.Random(7),
            } | overrides
            return Deliverer(outbox, client, clock, **values)
        return Deliverer.from_settings(settings, outbox, client, clock, rng=random.Random(7))

    yield make
    for client in clients:
        client.close()


# -- the outbox contract (no HTTP) ------------------------------------------------------


def test_queued_notifications_are_due_at_once_one_row_per_webhook(outbox: Outbox, clock: FrozenClock) -> None:
    hooks = [
        WebhookSettings(name="ops", url="https://ops.example/hook"),
        WebhookSettings(name="chat", url="https://chat.example/hook", format="slack"),
    ]
    assert outbox.enqueue(notification(clock), hooks) == 2
    assert outbox.pending_count() == 2
    claimed = outbox.due(clock.now(), 10)
    assert [(d.webhook, d.format, d.attempts) for d in claimed] == [("ops", "json", 1), ("chat", "slack", 1)]
    assert claimed[0].payload == as_json(notification(clock))
    assert claimed[1].payload == as_slack(notification(clock))
    assert claimed[0].created_at == clock.now() and claimed[0].kind == "pr.opened"


def test_a_claimed_row_is_not_due_again_until_its_lease_ends(outbox: Outbox, clock: FrozenClock) -> None:
    outbox.enqueue(notification(clock), [WebhookSettings(name="ops", url="https://ops.example/hook")])
    (first,) = outbox.due(clock.now(), 10, lease=timedelta(minutes=1))
    assert outbox.due(clock.now(), 10) == []
    clock.advance(59)
    assert outbox.due(clock.now(), 10) == []
    clock.advance(1)
    (again,) = outbox.due(clock.now(), 10)  # the worker that claimed it died: it is sent again
    assert again.id == first.id and again.attempts == 2


def test_due_takes_the_oldest_first_and_at_most_limit(outbox: Outbox, clock: FrozenClock) -> None:
    ops = [WebhookSettings(name="ops", url="https://ops.example/hook")]
    for n in range(5):
        outbox.enqueue(notification(clock, n=n), ops)
        clock.advance(1)
    first = outbox.due(clock.now(), 2)
    second = outbox.due(clock.now(), 10)
    assert [d.payload["intent_id"] for d in first] == ["01JINTENT0", "01JINTENT1"]
    assert [d.payload["intent_id"] for d in second] == ["01JINTENT2", "01JINTENT3", "01JINTENT4"]
    with pytest.raises(ValueError, match="limit must be at least 1"):
        outbox.due(clock.now(), 0)


def test_a_delivered_row_is_done_and_listed_as_delivered(outbox: Outbox, clock: FrozenClock) -> None:
    outbox.enqueue(notification(clock), [WebhookSettings(name="ops", url="https://ops.example/hook")])
    (d,) = outbox.due(clock.now(), 10)
    outbox.mark_delivered(d.id, clock.now())
    clock.advance(3600)
    assert outbox.due(clock.now(), 10) == [] and outbox.pending_count() == 0
    (row,) = outbox.list(state=DeliveryState.DELIVERED)
    assert row.delivered_at == clock.now() - timedelta(hours=1) and row.state is DeliveryState.DELIVERED
    assert outbox.list(state=DeliveryState.PENDING) == []


def test_a_failed_row_waits_for_its_next_attempt_and_keeps_the_error(
    outbox: Outbox, clock: FrozenClock
) -> None:
    outbox.enqueue(notification(clock), [WebhookSettings(name="ops", url="https://ops.example/hook")])
    (d,) = outbox.due(clock.now(), 10)
    outbox.mark_failed(
        d.id,
        error="HTTP 503\nService Unavailable",
        at=clock.now(),
        next_attempt_at=clock.now() + timedelta(seconds=30),
        give_up=False,
    )
    clock.advance(29)
    assert outbox.due(clock.now(), 10) == []
    clock.advance(1)
    (retry,) = outbox.due(clock.now(), 10)
    assert retry.last_error == "HTTP 503 Service Unavailable" and retry.attempts == 2


def test_a_row_given_up_is_never_due_and_says_why(outbox: Outbox, clock: FrozenClock) -> None:
    outbox.enqueue(notification(clock), [WebhookSettings(name="ops", url="https://ops.example/hook")])
    (d,) = outbox.due(clock.now(), 10)
    outbox.mark_failed(
        d.id, error="HTTP 404 Not Found", at=clock.now(), next_attempt_at=clock.now(), give_up=True
    )
    outbox.mark_delivered(d.id, clock.now())  # a late success of a lost lease does not rewrite history
    clock.advance(86400)
    assert outbox.due(clock.now(), 10) == [] and outbox.pending_count() == 0
    (row,) = outbox.list(state=DeliveryState.GAVE_UP)
    assert row.last_error == "HTTP 404 Not Found" and row.delivered_at is None
    assert row.gave_up_at == clock.now() - timedelta(days=1)


def test_list_is_newest_first_and_an_unknown_row_is_not_found(outbox: Outbox, clock: FrozenClock) -> None:
    ops = [WebhookSettings(name="ops", url="https://ops.example/hook")]
    for n in range(3):
        outbox.enqueue(notification(clock, n=n), ops)
    assert [d.payload["intent_id"] for d in outbox.list(limit=2)] == ["01JINTENT2", "01JINTENT1"]
    with pytest.raises(NotFound, match="no notification delivery 999"):
        outbox.mark_delivered(999, clock.now())


def test_two_outboxes_on_one_database_never_claim_the_same_row(db_url: str, clock: FrozenClock) -> None:
    with SqlOutbox.open(db_url, clock=clock) as a, SqlOutbox.open(db_url, clock=clock) as b:
        ops = [WebhookSettings(name="ops", url="https://ops.example/hook")]
        for n in range(40):
            a.enqueue(notification(clock, n=n), ops)
        claims: dict[str, list[int]] = {"a": [], "b": []}

        def claim(name: str, box: SqlOutbox) -> None:
            while batch := box.due(clock.now(), 3):
                claims[name].extend(d.id for d in batch)

        threads = [threading.Thread(target=claim, args=item) for item in (("a", a), ("b", b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(BOUND)
        every = claims["a"] + claims["b"]
        assert sorted(every) == sorted(set(every)) and len(every) == 40


# -- delivery to a real receiver --------------------------------------------------------


def test_notify_makes_no_http_call_delivery_does(
    outbox: Outbox, clock: FrozenClock, receiver: Receiver, make_deliverer: Callable[..., Deliverer]
) -> None:
    OutboxNotifier(outbox, [hook(receiver)]).notify(notification(clock))
    assert receiver.requests == [] and outbox.pending_count() == 1
    assert make_deliverer(outbox).deliver_due() == 1
    assert len(receiver.requests) == 1 and outbox.pending_count() == 0


def test_the_json_payload_arrives_as_documented_with_the_configured_headers(
    outbox: Outbox, clock: FrozenClock, receiver: Receiver, make_deliverer: Callable[..., Deliverer]
) -> None:
    settings = NotificationSettings(webhooks=[hook(receiver, headers={"Authorization": "Bearer t0ken"})])
    OutboxNotifier.from_settings(settings, outbox).notify(notification(clock))
    make_deliverer(outbox, settings).deliver_due()
    (got,) = receiver.requests
    assert got.json() == as_json(notification(clock))
    assert got.json()["apx_event"] == "pr.opened" and got.json()["summary"].endswith("& waits for review")
    assert got.headers["content-type"] == "application/json"
    assert got.headers["authorization"] == "Bearer t0ken"
    assert got.headers["user-agent"].startswith("apx/")


def test_the_slack_payload_arrives_as_slack_expects_it(
    outbox: Outbox, clock: FrozenClock, receiver: Receiver, make_deliverer: Callable[..., Deliverer]
) -> None:
    OutboxNotifier(outbox, [hook(receiver, SLACK_PATH, format="slack")]).notify(notification(clock))
    make_deliverer(outbox).deliver_due()
    (got,) = receiver.to(SLACK_PATH)
    body = got.json()
    assert body == as_slack(notification(clock))
    assert set(body) == {"text", "blocks"} and [b["type"] for b in body["blocks"]] == ["section", "context"]
    assert "opened a PR &amp; waits" in body["blocks"][0]["text"]["text"]


def test_each_webhook_gets_only_the_events_it_asked_for(
    outbox: Outbox, clock: FrozenClock, receiver: Receiver, make_deliverer: Callable[..., Deliverer]
) -> None:
    notifier = OutboxNotifier(
        outbox, [hook(receiver, "/everything"), hook(receiver, "/breakers", events=["breaker.*"])]
    )
    notifier.notify(notification(clock, Kind.PR_MERGED))
    notifier.notify(notification(clock, Kind.BREAKER_TRIPPED))
    make_deliverer(outbox).deliver_due()
    assert [r.json()["apx_event"] for r in receiver.to("/everything")] == ["pr.merged", "breaker.tripped"]
    assert [r.json()["apx_event"] for r in receiver.to("/breakers")] == ["breaker.tripped"]


def test_a_503_is_retried_with_backoff_and_delivered_exactly_once(
    outbox: Outbox, clock: FrozenClock, receiver: Receiver, make_deliverer: Callable[..., Deliverer]
) -> None:
    receiver.fail("/hook", times=2, status=503, body="upstream down")
    OutboxNotifier(outbox, [hook(receiver)]).notify(notification(clock))
    deliverer = make_deliverer(outbox)

    assert deliverer.deliver_due() == 0
    (pending,) = outbox.list()
    assert pending.last_error == "HTTP 503 Service Unavailable: upstream down" and pending.attempts == 1
    assert (
        timedelta(0) <= pending.next_attempt_at - clock.now() <= timedelta(seconds=2)
    )  # full jitter, base 2s

    for _ in range(2):
        clock.advance(timedelta(minutes=10))  # past any backoff
        deliverer.deliver_due()
    clock.advance(timedelta(minutes=10))
    assert deliverer.deliver_due() == 0  # nothing left to send

    assert [r.json()["intent_id"] for r in receiver.requests] == ["01JINTENT1"] * 3
    (row,) = outbox.list()
    assert row.state is DeliveryState.DELIVERED and row.attempts == 3


def test_a_429_with_retry_after_waits_exactly_that_long(
    outbox: Outbox, clock: FrozenClock, receiver: Receiver, make_deliverer: Callable[..., Deliverer]
) -> None:
    receiver.fail("/hook", status=429, headers={"Retry-After": "120"}, body="slow down")
    OutboxNotifier(outbox, [hook(receiver)]).notify(notification(clock))
    deliverer = make_deliverer(outbox)
    deliverer.deliver_due()
    (row,) = outbox.list()
    assert row.next_attempt_at == clock.now() + timedelta(seconds=120)
    assert row.last_error == "HTTP 429 Too Many Requests: slow down"
    clock.advance(119)
    assert deliverer.deliver_due() == 0 and len(receiver.requests) == 1
    clock.advance(1)
    assert deliverer.deliver_due() == 1 and len(receiver.requests) == 2


def test_a_404_gives_up_after_one_attempt_with_the_receivers_reason(
    outbox: Outbox, clock: FrozenClock, receiver: Receiver, make_deliverer: Callable[..., Deliverer]
) -> None:
    receiver.fail(SLACK_PATH, status=404, body="no_service")
    OutboxNotifier(outbox, [hook(receiver, SLACK_PATH, name="slack", format="slack")]).notify(
        notification(clock)
    )
    deliverer = make_deliverer(outbox)
    with structlog.testing.capture_logs() as logs:
        assert deliverer.deliver_due() == 0
    clock.advance(timedelta(days=1))
    deliverer.deliver_due()
    assert len(receiver.requests) == 1
    (row,) = outbox.list(state=DeliveryState.GAVE_UP)
    assert row.attempts == 1 and row.last_error == "HTTP 404 Not Found: no_service"
    (line,) = [entry for entry in logs if entry["event"] == "notification delivery gave up"]
    assert line["webhook"] == "slack" and line["to"] == f"{receiver.base}/…"
    assert "SECRET" not in json.dumps(logs, default=str)  # the Slack URL's secret stays out of the logs


def test_a_receiver_that_keeps_failing_is_given_up_after_max_attempts(
    outbox: Outbox, clock: FrozenClock, receiver: Receiver, make_deliverer: Callable[..., Deliverer]
) -> None:
    receiver.fail("/hook", times=10, status=500)
    OutboxNotifier(outbox, [hook(receiver)]).notify(notification(clock))
    deliverer = make_deliverer(outbox, NotificationSettings(max_attempts=3))
    for _ in range(5):
        deliverer.deliver_due()
        clock.advance(timedelta(minutes=10))
    assert len(receiver.requests) == 3
    (row,) = outbox.list(state=DeliveryState.GAVE_UP)
    assert row.last_error == "HTTP 500 Internal Server Error (gave up after 3 attempts)"


def test_a_redirect_is_not_followed_and_is_reported(
    outbox: Outbox, clock: FrozenClock, receiver: Receiver, make_deliverer: Callable[..., Deliverer]
) -> None:
    receiver.fail("/hook", status=302, headers={"Location": receiver.url("/elsewhere")})
    OutboxNotifier(outbox, [hook(receiver)]).notify(notification(clock))
    make_deliverer(outbox).deliver_due()
    assert [r.path for r in receiver.requests] == ["/hook"]
    (row,) = outbox.list(state=DeliveryState.GAVE_UP)
    assert row.last_error == "HTTP 302 Found (redirects are not followed; configure the final URL)"


def test_a_refused_connection_is_retried(
    outbox: Outbox, clock: FrozenClock, make_deliverer: Callable[..., Deliverer]
) -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as closed:
        port = closed.server_address[1]  # bound, then closed: nothing listens there
    dead = WebhookSettings(name="dead", url=f"http://127.0.0.1:{port}/hook")
    OutboxNotifier(outbox, [dead]).notify(notification(clock))
    assert make_deliverer(outbox).deliver_due() == 0
    (row,) = outbox.list(state=DeliveryState.PENDING)
    assert row.last_error is not None and row.last_error.startswith("ConnectError")
    assert row.attempts == 1


def test_a_receiver_that_does_not_answer_in_time_is_retried(
    outbox: Outbox, clock: FrozenClock, receiver: Receiver, make_deliverer: Callable[..., Deliverer]
) -> None:
    receiver.hold("/slow")
    OutboxNotifier(outbox, [hook(receiver, "/slow")]).notify(notification(clock))
    deliverer = make_deliverer(outbox, timeout=timedelta(milliseconds=200))
    assert deliverer.deliver_due() == 0
    receiver.release.set()
    (row,) = outbox.list(state=DeliveryState.PENDING)
    assert row.last_error == "no answer within 0.2s (ReadTimeout)"


def test_notify_never_raises_even_when_the_outbox_cannot_be_written(
    db_url: str, clock: FrozenClock, receiver: Receiver
) -> None:
    unmigrated = SqlOutbox.open(db_url, migrate=False, clock=clock)  # no table: every insert fails
    with unmigrated, structlog.testing.capture_logs() as logs:
        OutboxNotifier(unmigrated, [hook(receiver)]).notify(notification(clock))
    (line,) = logs
    assert line["event"] == "notification could not be queued; it will not be sent"
    assert line["log_level"] == "error" and line["intent_id"] == "01JINTENT1" and line["webhooks"] == ["hook"]
    assert line["error"].startswith("StorageError: could not queue a pr.opened notification")
    assert receiver.requests == []


def test_a_worker_thread_delivers_in_the_background_and_stops(
    outbox: Outbox, clock: FrozenClock, receiver: Receiver, make_deliverer: Callable[..., Deliverer]
) -> None:
    worker = DeliveryWorker(make_deliverer(outbox), interval=0.02).start()
    try:
        OutboxNotifier(outbox, [hook(receiver)]).notify(notification(clock))
        assert receiver.wait_for(1)
    finally:
        assert worker.stop(timeout=BOUND)
    assert not worker.running
    assert len(receiver.requests) == 1


def test_what_one_process_left_another_delivers_after_a_restart(
    db_url: str, clock: FrozenClock, receiver: Receiver, make_deliverer: Callable[..., Deliverer]
) -> None:
    receiver.fail("/hook", times=1, status=503)
    with SqlOutbox.open(db_url, clock=clock) as before:
        notifier = OutboxNotifier(before, [hook(receiver)])
        notifier.notify(notification(clock, n=1))
        notifier.notify(notification(clock, n=2))
        make_deliverer(before).deliver_due()  # 1: 503, to be retried; 2: delivered
        notifier.notify(notification(clock, n=3))
        (claimed,) = before.due(clock.now(), 10)  # a worker claims 3 and dies before posting it
        assert claimed.payload["intent_id"] == "01JINTENT3"
    assert [r.json()["intent_id"] for r in receiver.requests] == ["01JINTENT1", "01JINTENT2"]

    clock.advance(timedelta(minutes=10))  # past 1's backoff and 3's claim
    with SqlOutbox.open(db_url, clock=clock) as after:
        assert after.pending_count() == 2
        assert make_deliverer(after).deliver_due() == 2
        assert after.pending_count() == 0
    assert sorted(r.json()["intent_id"] for r in receiver.requests[2:]) == ["01JINTENT1", "01JINTENT3"]
