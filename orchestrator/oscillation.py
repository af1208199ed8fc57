"""Oscillation: two agents fighting over one field.

When agent P changes a field from ``x`` to ``y`` and, soon after, agent Q sets
it back to ``x``, the two are not converging: this is the agent loop the
platform design warns about (Builder → Optimizer → Builder …). The step that
sets the value back is the one flagged — dedupe would hold an exact repeat of
P's change anyway. Pure: the pipeline hands in the field changes of recent
intents on the same resources.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_MISSING = object()


@dataclass(frozen=True, kw_only=True)
class PastChange:
    """What an earlier admitted intent did to one resource."""

    intent_id: str
    agent: str
    target: str
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None


@dataclass(frozen=True, kw_only=True)
class Oscillation:
    target: str
    field: str
    agents: tuple[str, str]  # (who changed it, who sets it back)
    earlier_intent: str
    values: tuple[Any, Any]  # (the value before, the value it was changed to)

    def describe(self) -> str:
        first, second = self.agents
        old, new = self.values
        return (
            f"oscillation: {second} sets {self.target} {self.field} back to {old!r}, undoing {first}'s "
            f"change to {new!r} ({self.earlier_intent}); {first} and {second} are fighting over this field"
        )


def detect(
    *,
    agent: str,
    target: str,
    current: Mapping[str, Any] | None,
    proposed: Mapping[str, Any] | None,
    history: Sequence[PastChange],
) -> list[Oscillation]:
    """Fields that ``proposed`` sets back to their value before another agent's change in ``history``."""
    now, mine = dict(_leaves(current)), dict(_leaves(proposed))
    found: dict[str, Oscillation] = {}
    for past in reversed(history):  # newest first: name the most recent fight
        if past.agent == agent or past.target != target:
            continue
        before, after = dict(_leaves(past.before)), dict(_leaves(past.after))
        for field, new in after.items():
            old = before.get(field, _MISSING)
            if old is _MISSING or old == new or field in found:
                continue
            if now.get(field, _MISSING) == new and mine.get(field, _MISSING) == old:
                found[field] = Oscillation(
                    target=target,
                    field=field,
                    agents=(past.agent, agent),
                    earlier_intent=past.intent_id,
                    values=(old, new),
                )
    return list(found.values())


def _leaves(document: Mapping[str, Any] | None, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if not isinstance(document, Mapping):
        return
    for key, value in document.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            yield from _leaves(value, path)
        else:
            yield path, value
