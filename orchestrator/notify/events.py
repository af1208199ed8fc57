"""What the pipeline tells people about, as a value, and the two shapes it is posted in.

The pipeline builds a :class:`Notification` when a breaker trips or resets, a
PR is opened, approved, rejected or merged, or a change is rolled back (by a
human or by the canary), and hands it to a :class:`Notifier`. Nothing here does
I/O: the renderers turn a notification into the JSON body a webhook receives,
either our own documented schema (:func:`as_json`) or a Slack incoming-webhook
message (:func:`as_slack`). ``docs/how-to/notifications.md`` shows both.

The payload is rendered when the notification is queued, not when it is sent,
so what a receiver gets does not depend on which version of apx retried it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal, Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from orchestrator.notify.urls import check_http_url

__all__ = [
    "JSON_SCHEMA_VERSION",
    "Format",
    "Kind",
    "Notification",
    "Notifier",
    "as_json",
    "as_slack",
    "render",
]

#: Bumped only for a change a receiver could trip over (a key removed or retyped);
#: new keys may appear without a bump.
JSON_SCHEMA_VERSION = 1

#: How a webhook wants its body: our JSON schema, or a Slack incoming-webhook message.
Format = Literal["json", "slack"]

#: Slack's limits on a section's ``fields`` (count) and on one context element.
_SLACK_MAX_FIELDS = 10


class Kind(StrEnum):
    """What happened. The values are the ``apx_event`` of the JSON payload and the names
    webhooks filter on (``events: [pr.opened, "breaker.*"]``)."""

    BREAKER_TRIPPED = "breaker.tripped"
    BREAKER_RESET = "breaker.reset"
    PR_OPENED = "pr.opened"
    PR_APPROVED = "pr.approved"
    PR_REJECTED = "pr.rejected"
    PR_MERGED = "pr.merged"
    INTENT_ROLLED_BACK = "intent.rolled_back"
    CANARY_ROLLED_BACK = "canary.rolled_back"


#: Title and Slack emoji per kind: a reader of a channel sees at a glance what needs them.
_TITLES: dict[Kind, tuple[str, str]] = {
    Kind.BREAKER_TRIPPED: ("Circuit breaker tripped", ":rotating_light:"),
    Kind.BREAKER_RESET: ("Circuit breaker reset", ":white_check_mark:"),
    Kind.PR_OPENED: ("PR opened for review", ":eyes:"),
    Kind.PR_APPROVED: ("PR approved", ":thumbsup:"),
    Kind.PR_REJECTED: ("PR rejected", ":no_entry:"),
    Kind.PR_MERGED: ("PR merged", ":twisted_rightwards_arrows:"),
    Kind.INTENT_ROLLED_BACK: ("Change rolled back", ":rewind:"),
    Kind.CANARY_ROLLED_BACK: ("Canary failed: change rolled back automatically", ":warning:"),
}


class Notification(BaseModel):
    """One thing that happened, told once to every webhook that wants it.

    Sizes are bounded so a payload always fits Slack's block limits and a
    receiver's body limit: ``summary`` is one sentence, ``details`` a handful of
    short facts (``{"approved_by": "alice"}``), never a diff or an intent document.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Kind
    #: When it happened (timezone-aware; stored and sent in UTC).
    at: AwareDatetime
    tenant: str = Field(min_length=1, max_length=128)
    environment: str = Field(min_length=1, max_length=128)
    #: The intent it is about; none for a breaker reset by a human.
    intent_id: str | None = Field(default=None, max_length=64)
    trace_id: str | None = Field(default=None, max_length=64)
    #: One human sentence: "optimizer's intent 01J… was held: 4 deploys in 15m on acme/prod".
    summary: str = Field(min_length=1, max_length=1000)
    #: Where to look (the PR, the review page); http(s) only.
    url: str | None = Field(default=None, max_length=2000)
    details: dict[str, str] = Field(default_factory=dict, max_length=20)

    @field_validator("at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @field_validator("summary")
    @classmethod
    def _one_line(cls, value: str) -> str:
        return " ".join(value.split())

    @field_validator("url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value)

    @field_validator("details")
    @classmethod
    def _small(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            if not 0 < len(key) <= 64:
                raise ValueError(f"detail name {key[:70]!r} must have 1 to 64 characters")
            if len(text) > 500:
                raise ValueError(f"detail {key!r} is {len(text)} characters long; at most 500 fit")
        return value


class Notifier(Protocol):
    """What the pipeline calls. It must return quickly and must never raise: a
    notification problem is logged, it never fails or delays a decision."""

    def notify(self, notification: Notification) -> None: ...


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def as_json(n: Notification) -> dict[str, Any]:
    """The generic webhook body. Every key is always present (``null`` when unknown)."""
    return {
        "apx_event": n.kind.value,
        "schema_version": JSON_SCHEMA_VERSION,
        "at": _iso(n.at),
        "tenant": n.tenant,
        "environment": n.environment,
        "intent_id": n.intent_id,
        "trace_id": n.trace_id,
        "summary": n.summary,
        "url": n.url,
        "details": dict(n.details),
    }


def slack_escape(text: str) -> str:
    """Slack's rule for text: ``&``, ``<`` and ``>`` are control characters and go as entities.

    Without it a summary that quotes ``<!channel>`` would ping a whole channel,
    and ``<http://evil|PR>`` would pass for our link.
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_link(url: str, label: str) -> str:
    # Inside <url|label>, "|" and ">" would end the URL early; a valid URL has
    # neither raw, so percent-encoding them changes no destination.
    target = slack_escape(url.replace("|", "%7C").replace(">", "%3E").replace("<", "%3C"))
    return f"<{target}|{slack_escape(label)}>"


def as_slack(n: Notification) -> dict[str, Any]:
    """A Slack incoming-webhook message: ``text`` (the fallback shown in alerts) and ``blocks``."""
    title, emoji = _TITLES[n.kind]
    where = slack_escape(f"{n.tenant}/{n.environment}")
    summary = slack_escape(n.summary)
    lines = [f"{emoji} *{slack_escape(title)}* · `{where}`", summary]
    if n.url:
        lines.append(_slack_link(n.url, "Open" if n.kind is not Kind.PR_OPENED else "Review the PR"))
    section: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}}
    items = list(n.details.items())
    if items:
        shown = items[:_SLACK_MAX_FIELDS]
        if len(items) > _SLACK_MAX_FIELDS:
            shown[-1] = ("more", f"{len(items) - _SLACK_MAX_FIELDS + 1} more in the JSON payload")
        section["fields"] = [
            {"type": "mrkdwn", "text": f"*{slack_escape(key)}*\n{slack_escape(value)}"}
            for key, value in shown
        ]
    context = [f"apx · {n.kind.value}", _iso(n.at)]
    if n.intent_id:
        context.append(f"intent `{slack_escape(n.intent_id)}`")
    if n.trace_id:
        context.append(f"trace `{slack_escape(n.trace_id)}`")
    return {
        "text": slack_escape(f"[{n.tenant}/{n.environment}] {title}: {n.summary}"),
        "blocks": [
            section,
            {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(context)}]},
        ],
    }


def render(n: Notification, fmt: Format) -> dict[str, Any]:
    """The body for a webhook of format ``fmt``."""
    return as_slack(n) if fmt == "slack" else as_json(n)
