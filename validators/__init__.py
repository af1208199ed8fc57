"""Validators: the checks an admitted intent must pass before it is applied.

Each validator is a pure function of a :class:`ValidationContext` (the intent,
the environment before and after the change) that returns one
:class:`orchestrator.decision.Check`. The chain is a list, built in
:mod:`orchestrator.bootstrap`, so adding a validator is adding an entry.
"""

from validators.base import ValidationContext, Validator, run_chain

__all__ = ["ValidationContext", "Validator", "run_chain"]
