"""Notifications without I/O: the payloads receivers get, the settings users write, the retry rules.

The HTTP side (a real receiver on loopback) and the outbox on SQL are in
``tests/integration/test_notify.py``.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from orchestrator.notify.events import Kind, Notification, as_json, as_slack, render
from orchestrator.notify.notifier import OutboxNotifier
from orchestrator.notify.outbox import DeliveryState, InMemoryOutbox
from orchestrator.notify.retry import RETRY_AFTER_MAX, RetryPolicy, Verdict, classify, parse_retry_after
from orchestrator.notify.settings import NotificationSettings, WebhookSettings
from orchestrator.notify.urls import redact_url, scrub
from orchestrator.testing import FrozenClock

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
SLACK_URL = "https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX"


def pr_opened(**changes: object) -> Notification:
    values: dict[str, object] = {
        "kind": Kind.PR_OPENED,
        "at": T0,
        "tenant": "acme",
        "environment": "prod",
        "intent_id": "01JINTENT",
        "trace_id": "trace-1",
        "summary": "security's intent 01JINTENT opened PR apx/01JINTENT: tighten ingress on edge",
        "url": "https://review.example/prs/apx-01JINTENT",
        "details": {"agent": "security", "approvals_needed": "1"},
    }
    values.update(changes)
    return Notification.model_validate(values)


# -- the generic JSON payload ----------------------------------------------------


def test_the_json_payload_has_the_documented_keys_and_values() -> None:
    assert as_json(pr_opened()) == {
        "apx_event": "pr.opened",
        "schema_version": 1,
        "at": "2025-06-01T12:00:00Z",
        "tenant": "acme",
        "environment": "prod",
        "intent_id": "01JINTENT",
        "trace_id": "trace-1",
        "summary": "security's intent 01JINTENT opened PR apx/01JINTENT: tighten ingress on edge",
        "url": "https://review.example/prs/apx-01JINTENT",
        "details": {"agent": "security", "approvals_needed": "1"},
    }


def test_the_json_payload_keeps_every_key_when_a_value_is_unknown() -> None:
    reset = Notification(
        kind=Kind.BREAKER_RESET, at=T0, tenant="acme", environment="dev", summary="alice reset the breaker"
    )
    payload = as_json(reset)
    assert payload["intent_id"] is None and payload["trace_id"] is None and payload["url"] is None
    assert payload["details"] == {}
    json.dumps(payload)  # plain JSON, nothing a receiver cannot parse


def test_times_from_any_zone_are_sent_in_utc() -> None:
    paris = timezone(timedelta(hours=2))
    assert as_json(pr_opened(at=datetime(2025, 6, 1, 14, 0, tzinfo=paris)))["at"] == "2025-06-01T12:00:00Z"


def test_render_picks_the_shape_the_webhook_asked_for() -> None:
    n = pr_opened()
    assert render(n, "json") == as_json(n)
    assert render(n, "slack") == as_slack(n)


# -- the Slack payload -----------------------------------------------------------


def test_the_slack_message_has_a_fallback_text_a_section_and_a_context() -> None:
    message = as_slack(pr_opened())
    assert message["text"].startswith("[acme/prod] PR opened for review: security's intent 01JINTENT")
    section, context = message["blocks"]
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    assert "*PR opened for review*" in section["text"]["text"]
    assert "<https://review.example/prs/apx-01JINTENT|Review the PR>" in section["text"]["text"]
    assert {"type": "mrkdwn", "text": "*agent*\nsecurity"} in section["fields"]
    assert context["type"] == "context"
    assert "intent `01JINTENT`" in context["elements"][0]["text"]
    assert "trace `trace-1`" in context["elements"][0]["text"]


def test_slack_control_characters_in_our_text_are_escaped() -> None:
    message = as_slack(
        pr_opened(
            summary="raise <!channel> & ping everyone > now",
            details={"rationale": "p95 > SLO & <http://evil|click>"},
        )
    )
    section = message["blocks"][0]
    assert "raise &lt;!channel&gt; &amp; ping everyone &gt; now" in section["text"]["text"]
    assert "<!channel>" not in json.dumps(message)
    assert section["fields"][0]["text"] == "*rationale*\np95 &gt; SLO &amp; &lt;http://evil|click&gt;"
    assert "&lt;!channel&gt; &amp; ping" in message["text"]


def test_a_link_cannot_break_out_of_its_slack_link_syntax() -> None:
    text = as_slack(pr_opened(url="https://review.example/p?a=1&b=x|y"))["blocks"][0]["text"]["text"]
    assert "<https://review.example/p?a=1&amp;b=x%7Cy|Review the PR>" in text


def test_slack_gets_at_most_ten_fields_and_is_told_how_many_more_there_are() -> None:
    details = {f"k{i:02}": "v" for i in range(14)}
    fields = as_slack(pr_opened(details=details))["blocks"][0]["fields"]
    assert len(fields) == 10
    assert fields[-1]["text"] == "*more*\n5 more in the JSON payload"


def test_every_kind_renders_in_both_shapes() -> None:
    for kind in Kind:
        n = pr_opened(kind=kind)
        assert as_json(n)["apx_event"] == kind.value
        assert as_slack(n)["blocks"][1]["elements"][0]["text"].startswith(f"apx · {kind.value}")


# -- what a Notification accepts ---------------------------------------------------


def test_a_summary_is_kept_to_one_line() -> None:
    assert pr_opened(summary="two\nlines   here").summary == "two lines here"


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"at": datetime(2025, 6, 1, 12, 0)}, "timezone"),
        ({"url": "javascript:alert(1)"}, "http:// or https://"),
        ({"kind": "pr.exploded"}, "kind"),
        ({"details": {"rationale": "x" * 501}}, "at most 500"),
        ({"summary": ""}, "summary"),
    ],
)
def test_a_malformed_notification_is_refused_naming_the_field(
    change: dict[str, object], complaint: str
) -> None:
    with pytest.raises(ValidationError, match=complaint):
        pr_opened(**change)


# -- settings ------------------------------------------------------------------------


def test_webhook_settings_read_from_yaml_shaped_values() -> None:
    settings = NotificationSettings.model_validate(
        {
            "webhooks": [
                {"name": "ops", "url": "https://hooks.example/apx", "headers": {"Authorization": "Bearer t"}},
                {"name": "slack", "url": SLACK_URL, "format": "slack", "events": ["breaker.*", "pr.merged"]},
            ],
            "max_attempts": 5,
            "backoff_base": "1s",
            "backoff_max": "5m",
            "timeout": "3s",
        }
    )
    ops, slack = settings.webhooks
    assert ops.format == "json" and ops.events is None
    assert settings.backoff_base == timedelta(seconds=1) and settings.backoff_max == timedelta(minutes=5)
    assert settings.headers == {"ops": {"Authorization": "Bearer t"}}
    assert settings.model_dump(mode="json")["backoff_max"] == "5m"
    assert [k for k in Kind if slack.wants(k)] == [Kind.BREAKER_TRIPPED, Kind.BREAKER_RESET, Kind.PR_MERGED]
    assert all(ops.wants(k) for k in Kind)


def test_the_defaults_are_no_webhooks_eight_attempts_2s_to_10m() -> None:
    settings = NotificationSettings()
    assert settings.webhooks == []
    assert (settings.max_attempts, settings.backoff_base, settings.backoff_max) == (
        8,
        timedelta(seconds=2),
        timedelta(minutes=10),
    )


def test_a_webhooks_url_and_headers_stay_out_of_its_repr() -> None:
    hook = WebhookSettings(name="slack", url=SLACK_URL, format="slack", headers={"X-Token": "s3cret"})
    assert "SECRET" not in repr(hook) and "s3cret" not in repr(hook)
    assert hook.safe_url == "https://hooks.slack.com/…"


@pytest.mark.parametrize(
    ("webhook", "complaint"),
    [
        ({"name": "a", "url": "ftp://files.example/x"}, "must be http:// or https://, not ftp:"),
        ({"name": "a", "url": "hooks.example/x"}, "must be http:// or https://, not no scheme"),
        ({"name": "a", "url": "https:///path-only"}, "has no host"),
        ({"name": "a", "url": "https://h.example:99999/x"}, "not a valid URL"),
        ({"name": "a", "url": "https://h.example", "events": ["pr.opend"]}, "unknown event 'pr.opend'"),
        ({"name": "a", "url": "https://h.example", "events": ["deploy.*"]}, "unknown event 'deploy.*'"),
        ({"name": "a", "url": "https://h.example", "format": "teams"}, "'json' or 'slack'"),
        ({"name": "a b", "url": "https://h.example"}, "'a b' is not a webhook name"),
        ({"name": "a", "url": "https://h.example", "headers": {"X-A": "1\r\nX-B: 2"}}, "one line"),
    ],
)
def test_a_bad_webhook_is_refused_with_one_clear_reason(webhook: dict[str, object], complaint: str) -> None:
    with pytest.raises(ValidationError) as caught:
        WebhookSettings.model_validate(webhook)
    errors = caught.value.errors()
    assert len(errors) == 1 and complaint in errors[0]["msg"]
    assert "/x" not in errors[0]["msg"]  # a URL's path (a Slack hook's secret) is never echoed


def test_two_webhooks_may_not_share_a_name() -> None:
    hook = {"name": "ops", "url": "https://h.example/a"}
    with pytest.raises(ValidationError, match="ops appears more than once"):
        NotificationSettings.model_validate({"webhooks": [hook, hook]})


def test_a_backoff_cap_below_its_base_is_refused() -> None:
    with pytest.raises(ValidationError, match="no larger than backoff_max"):
        NotificationSettings.model_validate({"backoff_base": "1m", "backoff_max": "10s"})


# -- URLs in logs ----------------------------------------------------------------------


def test_a_redacted_url_says_where_without_saying_how_to_post_there() -> None:
    assert redact_url(SLACK_URL) == "https://hooks.slack.com/…"
    assert redact_url("http://user:pw@127.0.0.1:8080/hook?token=t") == "http://127.0.0.1:8080/…"
    assert redact_url("https://h.example") == "https://h.example"
    assert redact_url("http://[::1]:9/x") == "http://[::1]:9/…"
    assert "SECRET" not in scrub(
        f"POST {SLACK_URL} failed; path /services/T000/B000/XXXXSECRETXXXX", SLACK_URL
    )


# -- the retry rules ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.DELIVERED),
        (204, Verdict.DELIVERED),
        (301, Verdict.GIVE_UP),
        (400, Verdict.GIVE_UP),
        (403, Verdict.GIVE_UP),
        (404, Verdict.GIVE_UP),
        (408, Verdict.RETRY),
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (503, Verdict.RETRY),
    ],
)
def test_which_answers_are_retried(status: int, verdict: Verdict) -> None:
    assert classify(status) is verdict


@given(attempt=st.integers(min_value=1, max_value=200), seed=st.integers(min_value=0, max_value=2**32))
def test_backoff_is_full_jitter_below_an_exponential_ceiling_and_the_cap(attempt: int, seed: int) -> None:
    policy = RetryPolicy(max_attempts=300, base=timedelta(seconds=2), cap=timedelta(minutes=10))
    wait = policy.backoff(attempt, random.Random(seed))
    ceiling = min(600.0, 2.0 * 2 ** (attempt - 1))
    assert timedelta(0) <= wait <= timedelta(seconds=ceiling)


def test_backoff_spreads_retries_over_the_whole_window() -> None:
    policy = RetryPolicy()
    rng = random.Random(1)
    waits = [policy.backoff(6, rng).total_seconds() for _ in range(500)]  # ceiling 64 s
    assert min(waits) < 8 and max(waits) > 56


def test_the_last_attempt_gives_up_and_a_refusal_gives_up_at_once() -> None:
    policy = RetryPolicy(max_attempts=3)
    rng = random.Random(0)
    assert policy.after(attempt=2, retryable=True, retry_after=None, rng=rng) is not None
    assert policy.after(attempt=3, retryable=True, retry_after=None, rng=rng) is None
    assert policy.after(attempt=1, retryable=False, retry_after=None, rng=rng) is None


def test_retry_after_is_honoured_instead_of_the_backoff_up_to_an_hour() -> None:
    policy = RetryPolicy()
    rng = random.Random(0)
    assert policy.after(attempt=1, retryable=True, retry_after=timedelta(seconds=120), rng=rng) == timedelta(
        seconds=120
    )
    assert policy.after(attempt=1, retryable=True, retry_after=timedelta(days=2), rng=rng) == RETRY_AFTER_MAX


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert parse_retry_after("120", T0) == timedelta(seconds=120)
    assert parse_retry_after("Sun, 01 Jun 2025 12:00:30 GMT", T0) == timedelta(seconds=30)
    assert parse_retry_after("Sun, 01 Jun 2025 11:00:00 GMT", T0) == timedelta(0)
    assert parse_retry_after("soon", T0) is None
    assert parse_retry_after(None, T0) is None


# -- the notifier, on the in-memory outbox -----------------------------------------------


def test_the_notifier_queues_for_each_webhook_whose_filter_matches() -> None:
    outbox = InMemoryOutbox(clock=FrozenClock(T0))
    notifier = OutboxNotifier(
        outbox,
        [
            WebhookSettings(name="all", url="https://a.example/hook"),
            WebhookSettings(name="prs", url="https://b.example/hook", format="slack", events=["pr.*"]),
            WebhookSettings(name="breakers", url="https://c.example/hook", events=["breaker.tripped"]),
        ],
    )
    notifier.notify(pr_opened())
    queued = outbox.list()
    assert sorted((d.webhook, d.format) for d in queued) == [("all", "json"), ("prs", "slack")]
    assert all(d.state is DeliveryState.PENDING and d.attempts == 0 for d in queued)
    assert next(d for d in queued if d.webhook == "prs").payload == as_slack(pr_opened())


def test_with_no_webhooks_notifying_queues_nothing() -> None:
    outbox = InMemoryOutbox(clock=FrozenClock(T0))
    OutboxNotifier.from_settings(NotificationSettings(), outbox).notify(pr_opened())
    assert outbox.pending_count() == 0
