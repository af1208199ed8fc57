"""What one audit entry says, and the exact bytes that are hashed.

An entry records a fact, never the payload: who (``actor``), did what
(``action``), to which intent (``intent_id``, ``trace_id``), under which policy,
when, and the ``digest`` of the payload (``sha256:…`` of the intent or decision
in canonical JSON). The payload itself stays in the intent log, where retention
may prune it; the digest in the audit entry still proves what it was. So an
entry can hold neither a secret nor model reasoning, only their hash.

The body is canonical JSON (sorted keys, no spaces, UTF-8), which is what the
hashes are computed over and what ``apx audit export`` writes, so anyone can
recompute a leaf hash from an exported line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

#: Actions are dotted lowercase words: ``intent.applied``, ``breaker.reset``.
ACTION_RE = re.compile(r"^[a-z][a-z_]*(\.[a-z][a-z_]*)+$")
#: ``sha256:`` and 64 hex digits.
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
#: Longest value any field may hold: entries are facts, not documents.
MAX_FIELD = 512
FORMAT_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class AuditEvent:
    """Something that happened, as a caller reports it (the log assigns ``seq``)."""

    action: str
    #: ``agent:<name>``, a human principal, or ``apx`` for the orchestrator itself.
    actor: str
    at: datetime
    intent_id: str | None = None
    trace_id: str | None = None
    tenant: str | None = None
    environment: str | None = None
    policy_version: str | None = None
    #: What the action was about when it is not an intent: ``breaker:acme/dev``, ``policy:default``.
    subject: str | None = None
    #: The payload's digest, ``sha256:<hex>``.
    digest: str | None = None

    def __post_init__(self) -> None:
        if not ACTION_RE.match(self.action):
            raise ValueError(f"audit action {self.action!r} is not dotted lowercase words")
        if self.at.tzinfo is None or self.at.utcoffset() is None:
            raise ValueError("audit times must be timezone-aware")
        if self.digest is not None and not DIGEST_RE.match(self.digest):
            raise ValueError(f"audit digest {self.digest!r} is not sha256:<64 hex>")
        for name in ("actor", "intent_id", "trace_id", "tenant", "environment", "policy_version", "subject"):
            value = getattr(self, name)
            if value is not None and (len(value) > MAX_FIELD or "\n" in value):
                raise ValueError(f"audit field {name} must be one line of at most {MAX_FIELD} characters")

    def body(self, seq: int) -> bytes:
        """The canonical bytes of this event as entry ``seq``: what is hashed and exported."""
        fields: dict[str, Any] = {
            "v": FORMAT_VERSION,
            "seq": seq,
            "at": self.at.astimezone(UTC).isoformat(timespec="microseconds"),
            "action": self.action,
            "actor": self.actor,
        }
        for name in ("intent_id", "trace_id", "tenant", "environment", "policy_version", "subject", "digest"):
            value = getattr(self, name)
            if value is not None:
                fields[name] = value
        return canonical(fields)


def canonical(value: Any) -> bytes:
    """Canonical JSON of strings, integers and null: sorted keys, no whitespace, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def parse_body(body: bytes) -> dict[str, Any]:
    """An entry's fields from its bytes (ValueError if they are not a JSON object)."""
    value = json.loads(body)
    if not isinstance(value, dict):
        raise ValueError("an audit entry is a JSON object")
    return value
