"""Traces: each intent's path is one OpenTelemetry trace whose id is the intent's trace id.

Real home (``apx init``), real git and signing, real regopy, the real
OpenTelemetry SDK. Spans are caught with the SDK's ``InMemorySpanExporter``,
given to the App the way an operator's exporter would be configured; the OTLP
test sends to a real HTTP listener on 127.0.0.1 and decodes the protobuf.
"""

from __future__ import annotations

import gzip
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from test_pipeline import POOL, doc, intent

from orchestrator.bootstrap import App, build
from orchestrator.decision import Decision, Status
from orchestrator.errors import BadInput
from orchestrator.home import init_home
from orchestrator.notify.settings import NotificationSettings
from orchestrator.settings import Settings, TelemetrySettings, load_settings
from orchestrator.testing import FrozenClock

ROUTE = "Route/payments-healthz.yaml"
#: Written into the rationale and a resource's spec; must never reach a span.
RATIONALE_CANARY = "rationale-canary-7f3a"
SPEC_CANARY = "spec-canary-9b2e.example"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    init_home(path)
    return path


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def app(home: Path, clock: FrozenClock, exporter: InMemorySpanExporter) -> Iterator[App]:
    application = build(home, clock=clock, span_exporter=exporter)
    yield application
    application.close()


def submit_dev(app: App, agent: str = "optimizer") -> Decision:
    return app.orchestrator.submit(intent("dev", ("update", doc(POOL, replicas=5))), agent=agent)


def with_settings(home: Path, **sections: Any) -> Settings:
    return load_settings(home).model_copy(update=sections)


def spans(exporter: InMemorySpanExporter, trace_id: str | None = None) -> list[ReadableSpan]:
    """Finished spans in the order they started, of one trace if given."""
    found = [s for s in exporter.get_finished_spans() if s.context is not None]
    if trace_id is not None:
        found = [s for s in found if f"{s.context.trace_id:032x}" == trace_id]
    return sorted(found, key=lambda s: s.start_time or 0)


def named(found: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    matches = [s for s in found if s.name == name]
    assert len(matches) == 1, f"{name}: {[s.name for s in found]}"
    return matches[0]


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def in_order(names: Sequence[str], expected: Sequence[str]) -> bool:
    """``expected`` appears in ``names`` in this order (other spans may come between)."""
    rest = iter(names)
    return all(name in rest for name in expected)


def everything_said(found: Sequence[ReadableSpan]) -> str:
    """Every name, attribute, event and status text of the spans, as one string to search."""
    parts: list[str] = []
    for s in found:
        parts += [s.name, repr(dict(s.attributes or {})), repr(dict(s.resource.attributes))]
        parts += [f"{e.name} {dict(e.attributes or {})!r}" for e in s.events]
        parts.append(s.status.description or "")
    return "\n".join(parts)


def test_an_intent_is_one_trace_from_admission_through_validators_to_apply(
    app: App, exporter: InMemorySpanExporter
) -> None:
    decision = submit_dev(app)
    assert decision.status is Status.APPLIED, decision.reasons

    every = spans(exporter)
    assert every and {f"{s.context.trace_id:032x}" for s in every if s.context} == {decision.trace_id}
    names = [s.name for s in every]
    assert in_order(
        names,
        [
            "apx.secret_scan",
            "apx.admit",
            "apx.admission",
            "apx.record",
            "apx.decide",
            "apx.sequence",
            "apx.validate",
            "apx.validator.schema",
            "apx.validator.references",
            "apx.validator.secrets",
            "apx.policy",
            "apx.route",
            "apx.apply",
        ],
    ), names
    # The same id a platform engineer finds in the commit's trailer.
    message = subprocess.run(
        ["git", "-C", str(app.settings.repo_path), "log", "-1", "--format=%B", "dev"],
        capture_output=True,
        text=True,
    ).stdout
    assert f"Trace-Id: {decision.trace_id}" in message

    admit, decide, validate = (
        named(every, "apx.admit"),
        named(every, "apx.decide"),
        named(every, "apx.validate"),
    )
    # Both phases hang under the intent's remote parent, which no process exports.
    assert parent_id(admit) == parent_id(decide)
    assert parent_id(admit) not in {s.context.span_id for s in every if s.context}
    assert admit.parent is not None and admit.parent.is_remote
    for validator in ("schema", "references", "secrets"):
        assert parent_id(named(every, f"apx.validator.{validator}")) == validate.context.span_id
    assert parent_id(named(every, "apx.policy")) == validate.context.span_id
    assert dict(admit.attributes or {}) == {
        "apx.intent.id": decision.intent_id,
        "apx.agent": "optimizer",
        "apx.environment": "dev",
        "apx.status": "queued",
    }
    assert (decide.attributes or {})["apx.status"] == "applied"
    admission = named(every, "apx.admission")
    assert [(e.name, (e.attributes or {})["outcome"]) for e in admission.events] == [
        ("dedupe", "passed"),
        ("rate_limit", "passed"),
        ("breaker", "passed"),
    ]


def test_a_held_intent_shows_which_guard_held_it_and_is_never_decided(
    app: App, exporter: InMemorySpanExporter
) -> None:
    first = submit_dev(app)
    again = submit_dev(app, agent="builder")
    assert again.status is Status.DUPLICATE and again.trace_id != first.trace_id

    held = spans(exporter, again.trace_id)
    assert [s.name for s in held] == ["apx.secret_scan", "apx.admit", "apx.admission", "apx.record"]
    assert (named(held, "apx.admit").attributes or {})["apx.status"] == "duplicate"
    events = named(held, "apx.admission").events
    assert [(e.name, (e.attributes or {})["outcome"]) for e in events] == [("dedupe", "held")]


def webhook_to_nowhere() -> NotificationSettings:
    """A webhook on a local port nobody listens on: every post fails fast, and is retried."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return NotificationSettings.model_validate(
        {"webhooks": [{"name": "ops", "url": f"http://127.0.0.1:{port}/hook"}], "timeout": "2s"}
    )


def test_no_span_carries_the_rationale_or_a_resource_value(
    home: Path, clock: FrozenClock, exporter: InMemorySpanExporter
) -> None:
    settings = with_settings(home, notifications=webhook_to_nowhere())
    app = build(home, settings=settings, clock=clock, span_exporter=exporter)
    try:
        route = doc(ROUTE, host=SPEC_CANARY)
        applied = app.orchestrator.submit(
            intent("dev", ("update", route), rationale=f"because {RATIONALE_CANARY}"), agent="builder"
        )
        opened = app.orchestrator.submit(
            intent("prod", ("update", route), rationale=f"because {RATIONALE_CANARY}"), agent="builder"
        )
        assert applied.status is Status.APPLIED and opened.status is Status.PR_OPEN, opened.reasons
        assert opened.pr is not None
        assert app.reviews.approve(opened.pr.id, by="alice").result == "merged"
        app.deliver_notifications()
        # The canaries really went through apx: the log holds them, so the search below means something.
        view = app.store.get(opened.intent_id)
        assert view is not None and RATIONALE_CANARY in repr(view.record.document)
        assert SPEC_CANARY in repr(view.record.document)
    finally:
        app.close()

    found = spans(exporter)
    assert {"apx.apply", "apx.pr.open", "apx.pr.publish", "apx.merge", "apx.notify.enqueue"} <= {
        s.name for s in found
    }
    assert "apx.notify.deliver" in {s.name for s in found}
    said = everything_said(found)
    assert RATIONALE_CANARY not in said
    assert SPEC_CANARY not in said


def open_pr(app: App) -> Decision:
    decision = app.orchestrator.submit(intent("prod", ("update", doc(POOL, replicas=6))), agent="optimizer")
    assert decision.status is Status.PR_OPEN and decision.pr is not None, decision.reasons
    return decision


def test_a_review_in_another_process_continues_the_intents_trace(home: Path, clock: FrozenClock) -> None:
    settings = with_settings(home, notifications=webhook_to_nowhere())
    submitted, reviewed = InMemorySpanExporter(), InMemorySpanExporter()
    first = build(home, settings=settings, clock=clock, span_exporter=submitted)
    try:
        opened = open_pr(first)
    finally:
        first.close()
    # Another App on the same home: what `apx prs approve` in another process, or
    # `apx serve` days later, would be. Nothing is handed over but the intent log.
    second = build(home, settings=settings, clock=clock, span_exporter=reviewed)
    try:
        assert opened.pr is not None
        assert second.reviews.approve(opened.pr.id, by="alice").result == "merged"
        second.deliver_notifications()
    finally:
        second.close()

    before, after = spans(submitted, opened.trace_id), spans(reviewed, opened.trace_id)
    assert "apx.pr.open" in [s.name for s in before]
    assert in_order([s.name for s in after], ["apx.merge", "apx.validate", "apx.merge.commit"])
    merge = named(after, "apx.merge")
    assert dict(merge.attributes or {}) == {
        "apx.intent.id": opened.intent_id,
        "apx.agent": "optimizer",
        "apx.environment": "prod",
        "apx.status": "merged",
    }
    # Same trace, same (remote) parent as the admission in the first process.
    assert parent_id(merge) == parent_id(named(before, "apx.admit"))
    deliveries = [s for s in after if s.name == "apx.notify.deliver"]
    assert deliveries and all(parent_id(s) == parent_id(merge) for s in deliveries)
    assert {(s.attributes or {})["apx.notification.delivered"] for s in deliveries} == {False}


def test_tracing_is_off_by_default_and_nothing_global_is_set(home: Path, clock: FrozenClock) -> None:
    app = build(home, clock=clock)
    try:
        assert load_settings(home).telemetry.exporter == "none"
        assert not app.telemetry.enabled
        decision = submit_dev(app)
        assert decision.status is Status.APPLIED
    finally:
        app.close()
    # apx never installs a global provider: embedding code and other Apps keep theirs.
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def test_the_console_exporter_writes_spans_to_stderr_and_leaves_stdout_alone(
    home: Path, clock: FrozenClock, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = with_settings(home, telemetry=TelemetrySettings(exporter="console"))
    app = build(home, settings=settings, clock=clock)
    try:
        decision = submit_dev(app)
    finally:
        app.close()  # flushes the batch
    captured = capsys.readouterr()
    assert captured.out == ""  # `apx submit --json` prints exactly one object there
    assert f'"trace_id": "0x{decision.trace_id}"' in captured.err
    assert '"name": "apx.apply"' in captured.err


def test_a_sample_ratio_of_zero_records_nothing_and_decides_as_usual(
    home: Path, clock: FrozenClock, exporter: InMemorySpanExporter
) -> None:
    settings = with_settings(home, telemetry=TelemetrySettings(sample_ratio=0.0))
    app = build(home, settings=settings, clock=clock, span_exporter=exporter)
    try:
        decision = submit_dev(app)
    finally:
        app.close()
    assert decision.status is Status.APPLIED
    assert exporter.get_finished_spans() == ()


class _Collector(BaseHTTPRequestHandler):
    """Answers OTLP/HTTP export requests with 200 and keeps their bodies."""

    bodies: list[bytes] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        type(self).bodies.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass


def test_the_otlp_exporter_sends_the_intents_trace_to_a_collector(home: Path, clock: FrozenClock) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    _Collector.bodies = []
    server = HTTPServer(("127.0.0.1", 0), _Collector)
    server.timeout = 0.2
    endpoint = f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    settings = with_settings(
        home,
        telemetry=TelemetrySettings.model_validate(
            {"exporter": "otlp", "endpoint": endpoint, "timeout": "5s", "service_name": "apx-t"}
        ),
    )

    def serve() -> None:  # stops by itself: after the first export, or after 30 s
        deadline = time.monotonic() + 30
        while not _Collector.bodies and time.monotonic() < deadline:
            server.handle_request()

    listener = threading.Thread(target=serve, daemon=True)
    listener.start()
    try:
        app = build(home, settings=settings, clock=clock)
        try:
            decision = submit_dev(app)
        finally:
            app.close()  # the batch is exported on shutdown
        listener.join(timeout=35)
    finally:
        server.server_close()

    assert _Collector.bodies, "the collector received nothing"
    request = ExportTraceServiceRequest()
    request.ParseFromString(_Collector.bodies[0])
    sent = [
        (span.trace_id.hex(), span.name, resource.resource)
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    assert {trace_id for trace_id, _n, _r in sent} == {decision.trace_id}
    assert {"apx.admit", "apx.decide", "apx.apply"} <= {name for _t, name, _r in sent}
    service = {a.key: a.value.string_value for a in sent[0][2].attributes}["service.name"]
    assert service == "apx-t"


def test_a_bad_collector_endpoint_is_a_settings_error_naming_the_key(home: Path) -> None:
    (home / "apx.yaml").write_text("telemetry:\n  exporter: otlp\n  endpoint: collector:4318\n")
    with pytest.raises(BadInput, match=r"telemetry\.endpoint: .*http:// or https://"):
        load_settings(home)
