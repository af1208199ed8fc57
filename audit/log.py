"""The audit log as the rest of apx uses it: checkpoint, verify, prove, export.

Appending is not here: entries are appended by the intent log inside the
transactions that change state (see :func:`audit.sql.append_in`), plus
:meth:`AuditLog.record` for events that change nothing else (a failed login).

Checkpoints are made "every N entries or T seconds" lazily: whoever writes
calls :meth:`AuditLog.checkpoint` afterwards (the CLI after each command, the
scheduler on a timer in ``apx serve``), and it signs a new one only when N
entries have arrived or T has passed since the last one. Two processes racing
for the same size produce one checkpoint (the table's key decides).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from audit.checkpoint import (
    PRIVATE_KEY_NAME,
    PUBLIC_KEY_NAME,
    Checkpoint,
    CheckpointFile,
    PublicKey,
    SigningKey,
)
from audit.entry import AuditEvent, parse_body
from audit.hashing import Frontier, inclusion_path, leaf_hash
from audit.ports import AuditStore
from audit.proof import InclusionProof
from audit.verify import Report, SourcedCheckpoint, verify

EXPORT_FORMAT = "apx-audit-export/v1"


class AuditKeyMissing(LookupError):
    """The key that signs or checks checkpoints is not where it should be."""


class AuditLog:
    def __init__(
        self,
        store: AuditStore,
        *,
        keys: Path,
        checkpoint_file: Path,
        now: Callable[[], datetime],
        every: int = 1000,
        interval: timedelta = timedelta(minutes=5),
    ) -> None:
        self.store = store
        self._keys = keys
        self.file = CheckpointFile(checkpoint_file)
        self._now = now
        self._every = every
        self._interval = interval

    # -- keys ------------------------------------------------------------------

    def public_key(self) -> PublicKey:
        path = self._keys / PUBLIC_KEY_NAME
        if not path.exists():
            raise AuditKeyMissing(f"no audit public key at {path}")
        return PublicKey.from_pem(path.read_bytes())

    def _signing_key(self) -> SigningKey:
        if (self._keys / PRIVATE_KEY_NAME).exists():
            return SigningKey.load(self._keys)
        if self.store.latest() is not None or self.file.read()[0]:
            # A new key would sign checkpoints nothing earlier can be checked against.
            raise AuditKeyMissing(
                f"the audit signing key {self._keys / PRIVATE_KEY_NAME} is missing but checkpoints "
                "signed with it exist; restore the key rather than making a new one"
            )
        return SigningKey.create(self._keys)

    # -- writing ---------------------------------------------------------------

    def record(self, events: Sequence[AuditEvent]) -> list[int]:
        """Append events that go with no other state change (e.g. a refused login)."""
        return self.store.append(events)

    def checkpoint(self, *, force: bool = False) -> Checkpoint | None:
        """Sign a checkpoint if one is due (or ``force``): N new entries or T since the last.

        Returns the new checkpoint, or None when none was due or there is
        nothing new since the last one.
        """
        latest = self.store.latest()
        size = self.store.size()
        now = self._now()
        if latest is not None:
            last, frontier = latest
            if size <= last.size:
                return None
            due = size - last.size >= self._every or now - last.at >= self._interval
            if not (due or force):
                return None
            frontier = frontier.copy()
        elif size == 0:
            return None
        else:
            frontier = Frontier()
        for _seq, body, _link in self.store.rows(frontier.size + 1, size):
            frontier.append(leaf_hash(body))
        checkpoint = self._signing_key().sign(size=frontier.size, root=frontier.root(), at=now)
        if not self.store.add_checkpoint(checkpoint, frontier):
            return None  # another process signed this size first; its copy is the one on file
        self.file.append(checkpoint)
        return checkpoint

    # -- reading ---------------------------------------------------------------

    def verify(self, key: PublicKey | None = None) -> Report:
        """Check every entry and every checkpoint (database and file) against ``key``."""
        key = key or self.public_key()
        from_file, damaged = self.file.read()
        sourced = [SourcedCheckpoint(cp, ("the database",)) for cp in self.store.checkpoints()]
        sourced += [SourcedCheckpoint(cp, (str(self.file.path),)) for cp in from_file]
        return verify(self.store.rows(), sourced, key, damaged=damaged)

    def prove(self, seq: int) -> InclusionProof:
        """An inclusion proof of entry ``seq`` against the newest checkpoint (signed now if needed)."""
        size = self.store.size()
        if not 1 <= seq <= size:
            raise LookupError(
                f"there is no audit entry {seq}; the log has {size} entries (they count from 1)"
            )
        latest = self.store.latest()
        if latest is None or latest[0].size < seq:
            self.checkpoint(force=True)
            latest = self.store.latest()
        assert latest is not None
        checkpoint = latest[0]
        leaves: list[bytes] = []
        body = b""
        for number, entry, _link in self.store.rows(1, checkpoint.size):
            leaves.append(leaf_hash(entry))
            if number == seq:
                body = entry
        return InclusionProof(
            seq=seq, body=body, path=tuple(inclusion_path(leaves, seq - 1)), checkpoint=checkpoint
        )

    def export(self, out: IO[str], *, start: int = 1) -> int:
        """Write the log from ``start`` as JSON lines for a SIEM; the number of entries written.

        First a header with the public key (PEM) and the link before ``start``,
        then one line per entry (its fields, its link), then the checkpoint
        that covers them all (signed now if the newest does not).
        """
        self.checkpoint(force=True)
        latest = self.store.latest()
        key = self.public_key()
        previous = "00" * 32
        if start > 1:
            for _seq, _body, chain in self.store.rows(start - 1, start - 1):
                previous = chain.hex()
        _line(
            out,
            {
                "type": "header",
                "format": EXPORT_FORMAT,
                "public_key": key.pem(),
                "key_id": key.key_id,
                "from_seq": start,
                "previous_link": previous,
            },
        )
        written = 0
        for seq, body, chain in self.store.rows(start, None if latest is None else latest[0].size):
            _line(out, {"type": "entry", "seq": seq, "entry": parse_body(body), "link": chain.hex()})
            written += 1
        if latest is not None:
            _line(out, {"type": "checkpoint", **latest[0].as_json()})
        return written


def _line(out: IO[str], value: dict[str, Any]) -> None:
    out.write(json.dumps(value, sort_keys=True, ensure_ascii=False) + "\n")
