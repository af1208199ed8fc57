"""structlog, configured once: JSON lines with the trace id, secrets redacted.

The pipeline binds ``trace_id`` and ``intent_id`` with contextvars at the start
of each intent, so every line logged while deciding it carries both. The
canonical decision line is made from the same :class:`Decision` the log stores.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any, TextIO

import structlog

_SECRET_KEY = re.compile(r"(secret|token|password|passwd|api[_-]?key|private[_-]?key|authorization)", re.I)
REDACTED = "[redacted]"


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace the value of any key that names a secret, at any depth."""
    return {k: _redact_value(k, v) for k, v in event.items()}


def _redact_value(key: str, value: Any) -> Any:
    if _SECRET_KEY.search(key):
        return REDACTED
    if isinstance(value, dict):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    return value


def configure(*, level: str = "info", fmt: str = "auto", file: Path | None = None) -> None:
    """Configure structlog for this process. ``file``: append JSON lines there instead of stderr."""
    if file:
        file.parent.mkdir(parents=True, exist_ok=True)
    stream: TextIO = file.open("a", encoding="utf-8", buffering=1) if file else sys.stderr
    as_json = fmt == "json" or (fmt == "auto" and (file is not None or not stream.isatty()))
    renderer: Any = structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        # Not cached: configure() may be called again (tests, a second home) and
        # module-level loggers must follow it.
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
