"""The ``notifications:`` section of ``apx.yaml``: where notifications go and how hard we try.

:class:`orchestrator.settings.Settings` nests :class:`NotificationSettings` as
``notifications``; the composition root hands it to
:meth:`orchestrator.notify.notifier.OutboxNotifier.from_settings` and
:meth:`orchestrator.notify.delivery.Deliverer.from_settings`.
Durations use the shared syntax of :mod:`orchestrator.durations`.
"""

from __future__ import annotations

import re
from datetime import timedelta

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from orchestrator.durations import Duration
from orchestrator.notify.events import Format, Kind
from orchestrator.notify.urls import check_http_url, redact_url

__all__ = ["NotificationSettings", "WebhookSettings"]

#: RFC 9110 token characters: what a header name may consist of.
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_WEBHOOK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_KINDS = tuple(k.value for k in Kind)


class WebhookSettings(BaseModel):
    """One receiver. ``url`` and ``headers`` often hold credentials, so they are left out of ``repr``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Names the webhook in logs and in the outbox (``apx`` never logs the URL itself).
    name: str
    #: ``http://`` or ``https://``. A Slack incoming-webhook URL is a secret: keep
    #: apx.yaml private, or set it from the environment (``APX_NOTIFICATIONS__…``).
    url: str = Field(repr=False, max_length=2000)
    #: ``json``: apx's documented schema. ``slack``: a Slack incoming-webhook message.
    format: Format = "json"
    #: Kinds to send (``pr.opened``), or every kind of a family (``breaker.*``);
    #: ``null`` (the default) sends every kind.
    events: list[str] | None = None
    #: Sent with every request, e.g. ``{Authorization: "Bearer …"}``. Read from the
    #: settings at send time, never stored in the outbox, so rotating a token
    #: also fixes deliveries already queued.
    headers: dict[str, str] = Field(default_factory=dict, repr=False)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _WEBHOOK_NAME.match(value):
            raise ValueError(
                f"{value[:70]!r} is not a webhook name: use letters, digits, '.', '_' or '-' (at most 64)"
            )
        return value

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        return check_http_url(value)

    @field_validator("events")
    @classmethod
    def _known(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        for pattern in value:
            family = pattern[:-2] if pattern.endswith(".*") else None
            known = (
                pattern == "*"
                or pattern in _KINDS
                or (family is not None and any(k.startswith(f"{family}.") for k in _KINDS))
            )
            if not known:
                raise ValueError(f"unknown event {pattern!r}; known: {', '.join(_KINDS)} (or e.g. 'pr.*')")
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid HTTP header name")
            if "\r" in text or "\n" in text:
                raise ValueError(f"header {name!r} must be one line")
        return value

    def wants(self, kind: Kind) -> bool:
        """Whether this webhook's ``events`` filter lets ``kind`` through."""
        if self.events is None:
            return True
        return any(
            p == "*" or p == kind.value or (p.endswith(".*") and kind.value.startswith(p[:-1]))
            for p in self.events
        )

    @property
    def safe_url(self) -> str:
        """The URL as logs may show it (see :func:`orchestrator.notify.urls.redact_url`)."""
        return redact_url(self.url)


class NotificationSettings(BaseModel):
    """Webhooks and the delivery policy. With no webhooks, notifying costs nothing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    webhooks: list[WebhookSettings] = Field(default_factory=list)
    #: Sends per notification per webhook before it is given up. With the
    #: backoff below, eight attempts wait at most 2+4+…+128 s ≈ 4 minutes in all
    #: (half that on average): a receiver restart is ridden out, a dead one is
    #: not retried for days. Twelve attempts stretch that to about 37 minutes.
    max_attempts: int = Field(default=8, ge=1, le=100)
    #: Attempt n waits a random time up to ``backoff_base * 2**(n-1)``, at most
    #: ``backoff_max`` ("full jitter": retries of many rows do not arrive in waves).
    backoff_base: Duration = timedelta(seconds=2)
    backoff_max: Duration = timedelta(minutes=10)
    #: One request may take this long (connect, send and read together) before it
    #: counts as failed and is retried.
    timeout: Duration = timedelta(seconds=5)
    #: How often the delivery worker looks for due notifications.
    interval: Duration = timedelta(seconds=2)

    @model_validator(mode="after")
    def _consistent(self) -> NotificationSettings:
        names = [w.name for w in self.webhooks]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"webhook names must be unique; {', '.join(twice)} appears more than once")
        if self.backoff_base <= timedelta(0) or self.backoff_max < self.backoff_base:
            raise ValueError("backoff_base must be positive and no larger than backoff_max")
        if self.timeout <= timedelta(0) or self.interval <= timedelta(0):
            raise ValueError("timeout and interval must be positive")
        return self

    @property
    def headers(self) -> dict[str, dict[str, str]]:
        """Each webhook's extra headers, by name (what the deliverer sends with)."""
        return {w.name: dict(w.headers) for w in self.webhooks if w.headers}
