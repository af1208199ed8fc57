"""The validator port and the chain runner."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from orchestrator.decision import Check
from orchestrator.intent import Intent


@dataclass(frozen=True, kw_only=True)
class ValidationContext:
    """Everything a validator may look at; nothing it may write to.

    ``before`` and ``after`` are the whole environment (path → parsed
    document) before and after the intent's changes, so a validator can check
    references across resources and not only the changed ones.
    """

    intent: Intent
    agent: str
    before: Mapping[str, Mapping[str, Any]]
    after: Mapping[str, Mapping[str, Any]]
    #: Paths whose document differs between ``before`` and ``after``.
    changed: frozenset[str]


class Validator(Protocol):
    @property
    def name(self) -> str:
        """The check's name on the decision."""
        ...

    def check(self, ctx: ValidationContext) -> Check: ...


def run_chain(validators: Sequence[Validator], ctx: ValidationContext) -> list[Check]:
    """Run every validator (not only up to the first failure), so one decision names every problem."""
    return [v.check(ctx) for v in validators]
