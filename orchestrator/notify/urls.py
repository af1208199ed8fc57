"""Webhook URLs: which ones we accept, and how they may appear in logs and errors.

A Slack incoming-webhook URL *is* its credential (the path holds the secret),
and generic receivers often put a token in the path or the query. So a URL is
written only to the outbox row it is sent from; everywhere else (log lines,
recorded errors, ``repr``) it appears as :func:`redact_url` leaves it: scheme,
host and port, which say where it went without saying how to post there.
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["check_http_url", "redact_url", "scrub"]


def check_http_url(value: str) -> str:
    """``value`` if it is an absolute ``http``/``https`` URL with a host; else ValueError naming why."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError on a port that is not a number)
    except ValueError as exc:
        raise ValueError(f"{redact_url(value)!r} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        shown = f"{parts.scheme}:" if parts.scheme else "no scheme"
        raise ValueError(f"webhook URLs must be http:// or https://, not {shown}")
    if not parts.hostname:
        raise ValueError(f"{redact_url(value)!r} has no host")
    if any(c.isspace() for c in value):
        raise ValueError(f"{redact_url(value)!r} contains whitespace")
    return value


def redact_url(url: str) -> str:
    """``scheme://host[:port]/…``: where a webhook points, without its path, query or user info."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "[unparseable URL]"
    if not parts.scheme or not host:
        return "[redacted URL]"
    if ":" in host:  # an IPv6 literal goes back in its brackets
        host = f"[{host}]"
    tail = "/…" if (parts.path not in ("", "/") or parts.query or parts.fragment) else ""
    return f"{parts.scheme}://{host}{port}{tail}"


def scrub(text: str, url: str) -> str:
    """``text`` (e.g. an exception message) with ``url`` and its path replaced by the redacted form."""
    if not url:
        return text
    text = text.replace(url, redact_url(url))
    path = urlsplit(url).path
    if len(path) > 1:  # some errors quote only the path
        text = text.replace(path, "/…")
    return text
