"""Where the audit log keeps its entries and checkpoints.

The SQL implementation (:mod:`audit.sql`) appends inside the same database
transaction as the state change an entry records; an in-memory fake lives in
:mod:`orchestrator.testing`. Both pass ``tests/integration/test_audit_store.py``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from audit.checkpoint import Checkpoint
from audit.entry import AuditEvent
from audit.hashing import Frontier

#: (seq, canonical body, chain link)
Row = tuple[int, bytes, bytes]


class AuditStore(Protocol):
    def append(self, events: Sequence[AuditEvent]) -> list[int]:
        """Append ``events`` in one transaction of their own; their sequence numbers."""
        ...

    def size(self) -> int: ...

    def rows(self, start: int = 1, stop: int | None = None) -> Iterator[Row]:
        """Entries ``start`` ≤ seq ≤ ``stop`` in ascending order, streamed."""
        ...

    def checkpoints(self) -> list[Checkpoint]:
        """Oldest (smallest) first."""
        ...

    def latest(self) -> tuple[Checkpoint, Frontier] | None:
        """The largest checkpoint and the tree frontier at its size."""
        ...

    def add_checkpoint(self, checkpoint: Checkpoint, frontier: Frontier) -> bool:
        """Store ``checkpoint``; False if one of that size is already there."""
        ...
