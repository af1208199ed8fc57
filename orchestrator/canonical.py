"""Canonical form of an intent's changes, the key that dedupe compares.

Two intents are the same proposal when they ask for the same changes to the
same tenant and environment, however the agent formatted them: key order,
whitespace, YAML or JSON, ``1`` or ``1.0``. RFC 8785 (JSON Canonicalization
Scheme) fixes all of that for JSON values; we hash its bytes. The rationale
and the submitting agent are deliberately not part of the key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import rfc8785

from orchestrator.errors import BadInput


def canonical_json(value: Any) -> bytes:
    """RFC 8785 bytes of a JSON-compatible value; :class:`BadInput` for one JSON cannot carry
    (a lone surrogate in a string, NaN or infinity), which no intent is meant to hold."""
    try:
        return rfc8785.dumps(_normalise(value))
    except rfc8785.CanonicalizationError as exc:
        raise BadInput(f"the intent's changes hold a value JSON cannot carry: {exc}") from exc


def dedupe_key(*, tenant: str, environment: str, changes: Sequence[Mapping[str, Any]]) -> str:
    """sha256 over the canonical (tenant, environment, changes) triple."""
    payload = {"tenant": tenant, "environment": environment, "changes": list(changes)}
    return hashlib.sha256(canonical_json(payload)).hexdigest()


_SAFE_INT = 2**53


def _normalise(value: Any) -> Any:
    # RFC 8785 serialises 1.0 as "1" already; integral floats beyond 2**53 and
    # YAML's tuples/dates need help to become plain JSON values first.
    if isinstance(value, Mapping):
        return {str(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalise(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return repr(value)  # JSON has no NaN/inf; YAML does (.nan, .inf)
        if value.is_integer() and abs(value) < _SAFE_INT:
            return int(value)
        return value
    if isinstance(value, int):
        # JSON numbers are IEEE doubles: beyond 2**53 a value cannot round-trip,
        # so RFC 8785 refuses it. Keep such integers exact, as decimal text.
        return value if abs(value) < _SAFE_INT else f"{value}"
    return str(value)
