"""Inclusion proofs: show one entry is in the log a signed checkpoint covers.

A proof carries the entry's canonical bytes, its index, the checkpoint and the
audit path (log2 of the size, in hashes). :func:`check` needs nothing from the
installation but the public key: it checks the checkpoint's signature, hashes
the entry as a leaf and climbs the path to the signed root (RFC 9162 §2.1.3.2).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from audit.checkpoint import Checkpoint, PublicKey
from audit.entry import parse_body
from audit.hashing import leaf_hash, root_from_inclusion

FORMAT = "apx-audit-proof/v1"


class ProofError(ValueError):
    """The proof does not show what it claims; the message says why."""


@dataclass(frozen=True, kw_only=True)
class InclusionProof:
    seq: int
    body: bytes
    path: tuple[bytes, ...]
    checkpoint: Checkpoint

    def as_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "seq": self.seq,
            "entry": parse_body(self.body),
            "body": base64.b64encode(self.body).decode(),
            "leaf_index": self.seq - 1,
            "tree_size": self.checkpoint.size,
            "path": [h.hex() for h in self.path],
            "checkpoint": self.checkpoint.as_json(),
        }

    @classmethod
    def from_json(cls, data: Any) -> InclusionProof:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ProofError(f"not an {FORMAT} proof")
        try:
            return cls(
                seq=int(data["seq"]),
                body=base64.b64decode(str(data["body"]), validate=True),
                path=tuple(bytes.fromhex(str(h)) for h in data["path"]),
                checkpoint=Checkpoint.from_json(data["checkpoint"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProofError(f"the proof is malformed ({type(exc).__name__}: {exc})") from exc


def check(proof: InclusionProof, key: PublicKey) -> dict[str, Any]:
    """The proven entry's fields, or :class:`ProofError` saying why the proof fails."""
    problem = key.problem_with(proof.checkpoint)
    if problem is not None:
        raise ProofError(f"the {proof.checkpoint.describe()} {problem}")
    try:
        entry = parse_body(proof.body)
    except ValueError as exc:
        raise ProofError(f"the entry is not readable ({exc})") from exc
    if entry.get("seq") != proof.seq:
        raise ProofError(f"the entry says it is entry {entry.get('seq')}, the proof says {proof.seq}")
    try:
        root = root_from_inclusion(leaf_hash(proof.body), proof.seq - 1, proof.checkpoint.size, proof.path)
    except ValueError as exc:
        raise ProofError(f"the path does not fit a log of {proof.checkpoint.size} entries: {exc}") from exc
    if root != proof.checkpoint.root:
        raise ProofError(
            f"entry {proof.seq} is not in the log the {proof.checkpoint.describe()} covers "
            "(the path leads to another root)"
        )
    return entry


def dumps(proof: InclusionProof) -> str:
    return json.dumps(proof.as_json(), indent=2, sort_keys=True)
