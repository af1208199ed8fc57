"""OpenTelemetry traces: one trace per intent, whose id is the intent's trace id.

A platform engineer reading a log line (``trace_id=…``), a commit trailer
(``Trace-Id:``) or a decision copies that id into the tracing UI and gets the
intent's span waterfall: admission, sequencing, each validator, the Rego
policy, the commit or PR, the merge, the notifications. The phases of one
intent run at different times, often in different processes (``apx submit``
admits, ``apx serve`` decides, a reviewer's approval merges days later), so
no span is handed from one to the next. Instead every phase starts its spans
under the same *remote parent* rebuilt from the trace id
(:func:`parent_context`): a span id derived from the trace id, marked remote
and sampled. Every process therefore joins the same trace without talking to
the others, and the phases show up as siblings under that one (virtual) root.

The composition root builds one :class:`Telemetry` per
:class:`~orchestrator.bootstrap.App` from ``telemetry:`` in ``apx.yaml``,
with its own ``TracerProvider`` (never the global one, so tests and several
Apps in one process do not share exporters). With ``exporter: none``, the
default, nothing of the SDK is set up and :meth:`Telemetry.span` returns a
shared do-nothing context manager: tracing off costs a method call.

Spans carry ids, names and outcomes (intent id, agent, environment, status,
check results), never the intent's payload: no rationale, no resource spec.
An exception inside a span marks it failed with the exception's *type* only,
because exception messages can quote input.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    INVALID_SPAN,
    NonRecordingSpan,
    Span,
    SpanContext,
    Status,
    StatusCode,
    TraceFlags,
)

from orchestrator import __version__
from orchestrator.ids import TRACE_ID_RE

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

    from orchestrator.settings import TelemetrySettings

__all__ = [
    "AGENT",
    "ENVIRONMENT",
    "INTENT_ID",
    "STATUS",
    "Telemetry",
    "parent_context",
]

#: Span attribute keys. Low-cardinality facts and ids only (see the module docstring).
INTENT_ID = "apx.intent.id"
AGENT = "apx.agent"
ENVIRONMENT = "apx.environment"
STATUS = "apx.status"

AttributeValue = str | bool | int | float
_OFF: AbstractContextManager[Span] = nullcontext(INVALID_SPAN)
_SAMPLE_SPACE = 1 << 64


class Telemetry:
    """Where the pipeline opens spans. Build with :meth:`from_settings` (or :meth:`disabled`)."""

    def __init__(self, provider: TracerProvider | None, *, sample_ratio: float = 1.0) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer("apx", __version__) if provider is not None else None
        self._sample_ratio = sample_ratio

    @classmethod
    def disabled(cls) -> Telemetry:
        return cls(None)

    @classmethod
    def from_settings(cls, settings: TelemetrySettings, *, exporter: SpanExporter | None = None) -> Telemetry:
        """The configured exporter; ``exporter`` (tests: an ``InMemorySpanExporter``) wins over it.

        A configured exporter sends in batches from a background thread, so a slow
        collector never holds a decision; an explicit one gets every span at once.
        """
        if exporter is None and settings.exporter == "none":
            return cls.disabled()
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

        resource = Resource.create({"service.name": settings.service_name, "service.version": __version__})
        # An explicit exporter belongs to its caller, who shuts it down (App.close);
        # a configured one is flushed at exit too, since short CLI commands never call close.
        # Sampling is decided once per intent, on its remote parent (see _sampled):
        # the parent's flag rules, whatever OTEL_TRACES_SAMPLER says.
        provider = TracerProvider(
            resource=resource, sampler=ParentBased(ALWAYS_ON), shutdown_on_exit=exporter is None
        )
        if exporter is not None:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        else:
            provider.add_span_processor(BatchSpanProcessor(_configured_exporter(settings)))
        return cls(provider, sample_ratio=settings.sample_ratio)

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    def span(
        self, name: str, *, trace_id: str | None = None, **attributes: AttributeValue | None
    ) -> AbstractContextManager[Span]:
        """A span named ``name``, current inside the ``with`` block.

        With ``trace_id``: a span of that intent's trace, under the span already
        current if it belongs to the same trace, else under the intent's remote
        parent. Without: a child of the current span, and nothing at all when no
        span is current (so code shared with ``apx intents replay`` does not start
        stray traces). ``None`` attribute values are left out.
        """
        if self._tracer is None:
            return _OFF
        current = trace.get_current_span().get_span_context()
        if trace_id is None:
            if not current.is_valid:
                return _OFF
            context = None
        elif current.is_valid and f"{current.trace_id:032x}" == trace_id:
            context = None
        elif TRACE_ID_RE.match(trace_id):
            context = parent_context(trace_id, sampled=self._sampled(trace_id))
        else:
            return _OFF
        return self._start(name, context, {k: v for k, v in attributes.items() if v is not None})

    @contextmanager
    def _start(
        self, name: str, context: Context | None, attributes: Mapping[str, AttributeValue]
    ) -> Iterator[Span]:
        assert self._tracer is not None
        with self._tracer.start_as_current_span(
            name,
            context=context,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                yield span
            except BaseException as exc:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise

    def _sampled(self, trace_id: str) -> bool:
        """Keep the whole trace or none of it, decided from the trace id alone.

        Every process makes the same choice for the same intent (the SDK's
        ``TraceIdRatioBased`` rule: the low 64 bits below ratio * 2**64).
        """
        if self._sample_ratio >= 1.0:
            return True
        return int(trace_id[16:], 16) < self._sample_ratio * _SAMPLE_SPACE

    def force_flush(self) -> None:
        if self._provider is not None:
            self._provider.force_flush()

    def shutdown(self) -> None:
        """Send what is buffered and stop the exporter (the App does this on close)."""
        if self._provider is not None:
            self._provider.shutdown()
            self._provider = None
            self._tracer = None


def parent_context(trace_id: str, *, sampled: bool = True) -> Context:
    """The remote parent every span of the intent ``trace_id`` hangs under.

    Its span id is derived from the trace id (the first 16 hex digits, which are
    random), so every process rebuilds the same parent without coordination.
    """
    span_id = int(trace_id[:16], 16) or 1
    parent = SpanContext(
        trace_id=int(trace_id, 16),
        span_id=span_id,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT),
    )
    return trace.set_span_in_context(NonRecordingSpan(parent))


def _configured_exporter(settings: TelemetrySettings) -> SpanExporter:
    if settings.exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        # stderr: stdout carries `apx submit --json`'s one JSON object.
        return ConsoleSpanExporter(out=sys.stderr)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # No endpoint: the SDK's default, which honours OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT.
    return OTLPSpanExporter(
        endpoint=settings.endpoint,
        headers=dict(settings.headers) or None,
        timeout=settings.timeout.total_seconds(),
    )
