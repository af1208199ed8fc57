"""Identifiers: intent ids sort by arrival time and are safe in git ref names.

An intent id is ``in-`` followed by a 26-character lowercase ULID (48 bits of
milliseconds, 80 random bits, Crockford base32), so ``apx/<intent-id>`` is a
valid branch and ids sort in the order they were minted. A trace id is the W3C
trace-context form (32 hex digits), so an OpenTelemetry exporter can reuse it.
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from typing import NewType

IntentId = NewType("IntentId", str)
TraceId = NewType("TraceId", str)
CommitId = NewType("CommitId", str)

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
INTENT_ID_RE = re.compile(r"^in-[0-9a-hjkmnp-tv-z]{26}$")
TRACE_ID_RE = re.compile(r"^[0-9a-f]{32}$")


def new_intent_id(now: datetime) -> IntentId:
    millis = int(now.timestamp() * 1000) & ((1 << 48) - 1)
    value = (millis << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return IntentId("in-" + "".join(reversed(chars)))


def new_trace_id() -> TraceId:
    return TraceId(os.urandom(16).hex())


def is_intent_id(text: str) -> bool:
    return bool(INTENT_ID_RE.match(text))
