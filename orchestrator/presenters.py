"""The JSON shapes of intents and PRs, shared by ``apx … --json`` and the HTTP API.

One module builds them so a script that reads ``apx intents show --json`` can
read ``GET /v1/intents/{id}`` unchanged, and the two cannot drift apart.
Pure functions of the records plus a store to follow ``causedBy`` links.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any

from orchestrator.approvals import approvals_at
from orchestrator.durations import parse_duration
from orchestrator.errors import BadInput
from orchestrator.ports import IntentStore
from orchestrator.records import IntentQuery, IntentView, PullRequestView

#: Columns of ``apx intents list`` (table, CSV) and keys of each JSON row.
ROW_FIELDS = ("id", "received_at", "status", "agent", "tenant", "environment", "targets", "reason", "ref")

#: How far a view follows ``caused_by`` upward, and how many children it lists:
#: a loop of agents can make long chains, and the rest is one ``--caused-by`` away.
MAX_PARENTS = 50
MAX_CHILDREN = 50
#: How far a PR's causal chain is followed.
MAX_CHAIN = 20


def intent_row(view: IntentView) -> dict[str, Any]:
    """One line of ``apx intents list``: flat strings, what a table or CSV shows."""
    d = view.decision
    ref = (d.commit or "")[:12] if d and d.commit and not d.pr else (d.pr.id if d and d.pr else "")
    return {
        "id": view.record.id,
        "received_at": view.record.received_at.isoformat(timespec="seconds"),
        "status": view.status.value,
        "agent": view.record.agent,
        "tenant": view.record.tenant,
        "environment": view.record.environment,
        "targets": " ".join(view.record.targets),
        "reason": (d.reasons[0] if d and d.reasons else ""),
        "ref": ref,
    }


def view_json(store: IntentStore, view: IntentView) -> dict[str, Any]:
    """``apx intents show --json``: the intent, its timeline, decision, causes and effects."""
    record = view.record
    parents, children, _more = lineage(store, view)
    return {
        "intent": record.document,
        "id": record.id,
        "agent": record.agent,
        "tenant": record.tenant,
        "environment": record.environment,
        "trace_id": record.trace_id,
        "status": view.status.value,
        "base_revision": record.base_revision,
        "timeline": [
            {"status": e.status.value, "at": e.at.isoformat(), "reasons": list(e.reasons)}
            for e in view.events
        ],
        "decision": view.decision.model_dump(mode="json") if view.decision else None,
        "blast_radius": view.decision.blast_radius if view.decision else None,
        "parents": parents,
        "children": children,
        "payload_digest": view.payload_digest,
        "pruned_at": view.pruned_at.isoformat() if view.pruned_at else None,
        "claimed_by": view.claimed_by,
    }


def lineage(store: IntentStore, view: IntentView) -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool]:
    """(parents nearest first, children oldest first, whether there are more children).

    A parent that is not in the log (another installation's id, a typo in
    ``causedBy``) is listed with no agent or status, and ends the chain; a
    chain that loops back on itself ends where it would repeat.
    """
    parents: list[dict[str, Any]] = []
    seen = {view.record.id}
    parent_id = view.record.caused_by
    while parent_id and parent_id not in seen and len(parents) < MAX_PARENTS:
        seen.add(parent_id)
        parent = store.get(parent_id)
        parents.append(brief(parent_id, parent))
        parent_id = parent.record.caused_by if parent else None
    found = store.query(IntentQuery(caused_by=view.record.id, limit=MAX_CHILDREN + 1))
    children = [brief(v.record.id, v) for v in reversed(found[:MAX_CHILDREN])]
    return parents, children, len(found) > MAX_CHILDREN


def brief(intent_id: str, view: IntentView | None) -> dict[str, Any]:
    if view is None:
        return {"id": intent_id, "agent": None, "status": None, "received_at": None}
    return {
        "id": intent_id,
        "agent": view.record.agent,
        "status": view.status.value,
        "received_at": view.record.received_at.isoformat(timespec="seconds"),
    }


def approvals_of(pr: PullRequestView) -> list[str]:
    """Who approved the PR's current head (approvals of an older head no longer count)."""
    return approvals_at(pr.reviews, pr.head)


def causal_chain(store: IntentStore, caused_by: str | None) -> list[str]:
    """``id (agent, status)`` for each intent up the ``causedBy`` chain, nearest first."""
    chain: list[str] = []
    seen: set[str] = set()
    while caused_by and caused_by not in seen and len(chain) < MAX_CHAIN:
        seen.add(caused_by)
        parent = store.get(caused_by)
        if parent is None:
            chain.append(f"{caused_by} (not in the log)")
            break
        chain.append(f"{parent.record.id} ({parent.record.agent}, {parent.status.value})")
        caused_by = parent.record.caused_by
    return chain


def pr_json(store: IntentStore, pr: PullRequestView, *, required: int) -> dict[str, Any]:
    """``apx prs show --json``; ``required`` is the approvals its environment needs."""
    record, decision = pr.intent.record, pr.intent.decision
    return {
        "id": pr.id,
        "status": pr.status,
        "intent_id": record.id,
        "agent": record.agent,
        "tenant": record.tenant,
        "environment": record.environment,
        "targets": list(record.targets),
        "branch": pr.branch,
        "base": pr.base,
        "head": pr.head,
        "created_at": pr.created_at.isoformat(),
        "expires_at": pr.expires_at.isoformat() if pr.expires_at else None,
        "approvals": approvals_of(pr),
        "required": required,
        "reviews": [
            {
                "reviewer": r.reviewer,
                "verdict": r.verdict,
                "head": r.head,
                "at": r.at.isoformat(),
                "comment": r.comment,
            }
            for r in pr.reviews
        ],
        "merge_commit": pr.merge_commit,
        "closed_reason": pr.closed_reason,
        "publication": pr.publication,
        "rationale": (record.document.get("spec") or {}).get("rationale"),
        "caused_by": causal_chain(store, record.caused_by),
        "decision": decision.model_dump(mode="json") if decision else None,
    }


# -- what query strings and options say -------------------------------------------------


def parse_since(text: str, *, now: datetime, option: str = "--since") -> datetime:
    """A duration ago (``10m``) or an ISO timestamp (naive means UTC); errors name ``option``."""
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        at = datetime.fromisoformat(text)
    except ValueError as exc:
        raise BadInput(
            f"{option} {text!r}: use a duration such as 10m or a timestamp such as 2026-01-31T12:00"
        ) from exc
    return at if at.tzinfo else at.replace(tzinfo=UTC)


#: What a cursor says inside its base64: the sequence number of the last intent shown.
#: Opaque to users, so the encoding may change (a new prefix) without breaking scripts
#: that only pass back what they were given.
_CURSOR_PREFIX = "apx-seq:"


def encode_cursor(seq: int) -> str:
    """The cursor for the page after the one whose last (oldest) intent has ``seq``."""
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{seq}".encode()).decode().rstrip("=")


def decode_cursor(text: str, *, option: str = "cursor") -> int:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    digits = raw.removeprefix(_CURSOR_PREFIX)
    # A sequence number is a positive BIGINT; anything else was not printed by apx.
    if not raw.startswith(_CURSOR_PREFIX) or not digits.isdigit() or not 1 <= int(digits) < 2**63:
        raise BadInput(f"{option} {text!r}: not a cursor printed by `apx intents list` or the API")
    return int(digits)
