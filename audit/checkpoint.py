"""Signed checkpoints of the log, the key that signs them, and their file.

A checkpoint says "the log had ``size`` entries and this tree ``root`` at
``at``", signed with Ed25519 as a Certificate Transparency signed tree head or
a Rekor checkpoint is. What is signed is a short text (:meth:`Checkpoint.message`),
so a checkpoint can be checked with nothing but ``cryptography`` and the public
key; ``docs/how-to/verify-the-audit-log.md`` shows the lines.

Checkpoints are stored twice: in the database beside the entries, and appended
to a file in the home (:class:`CheckpointFile`). Someone who rewrites or empties
the whole audit table, triggers and all, cannot rewrite the file's signed roots
without the private key, so verification still catches it. Keep a copy of the
file and the public key somewhere else (``apx audit export`` carries both) for
the strongest guarantee.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

#: First line of every signed checkpoint text; changing the format means a new one.
HEADER = "apx-audit-checkpoint/v1"
PRIVATE_KEY_NAME = "audit_ed25519"
PUBLIC_KEY_NAME = "audit_ed25519.pub"


@dataclass(frozen=True, kw_only=True)
class Checkpoint:
    size: int
    root: bytes
    at: datetime
    #: Which key signed it: the first 8 bytes of the public key's SHA-256, hex.
    key_id: str
    signature: bytes

    @staticmethod
    def text(size: int, root: bytes, at: datetime) -> bytes:
        """The signed text: header, size, base64 root, time (UTC), one per line."""
        stamp = at.astimezone(UTC).isoformat(timespec="microseconds")
        return f"{HEADER}\n{size}\n{base64.b64encode(root).decode()}\n{stamp}\n".encode()

    def message(self) -> bytes:
        return self.text(self.size, self.root, self.at)

    def as_json(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "root": self.root.hex(),
            "at": self.at.astimezone(UTC).isoformat(timespec="microseconds"),
            "key_id": self.key_id,
            "signature": base64.b64encode(self.signature).decode(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Checkpoint:
        """Parse a checkpoint; ValueError naming what is wrong with it."""
        try:
            at = datetime.fromisoformat(str(data["at"]))
            if at.tzinfo is None:
                raise ValueError("time has no zone")
            return cls(
                size=int(data["size"]),
                root=bytes.fromhex(str(data["root"])),
                at=at,
                key_id=str(data["key_id"]),
                signature=base64.b64decode(str(data["signature"]), validate=True),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a checkpoint ({type(exc).__name__}: {exc})") from exc

    def describe(self) -> str:
        return f"checkpoint at size {self.size} (signed {self.at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC)"


class PublicKey:
    """The key that checks checkpoints: all a third party needs."""

    def __init__(self, key: Ed25519PublicKey) -> None:
        self._key = key
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.key_id = sha256(raw).digest()[:8].hex()

    @classmethod
    def from_pem(cls, pem: bytes) -> PublicKey:
        try:
            key = serialization.load_pem_public_key(pem)
        except ValueError as exc:
            raise ValueError(f"not a PEM public key ({exc})") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("the audit key must be an Ed25519 public key")
        return cls(key)

    def pem(self) -> str:
        return self._key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    def problem_with(self, checkpoint: Checkpoint) -> str | None:
        """Why ``checkpoint`` was not signed by this key, or None if it was."""
        if checkpoint.key_id != self.key_id:
            return f"is signed by another key (key id {checkpoint.key_id}; this log's key is {self.key_id})"
        try:
            self._key.verify(checkpoint.signature, checkpoint.message())
        except InvalidSignature:
            return "has a signature that does not match its size, root and time (it was edited)"
        return None


class SigningKey:
    """The private half: only the orchestrator that appends holds it."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public = PublicKey(key.public_key())

    def sign(self, *, size: int, root: bytes, at: datetime) -> Checkpoint:
        return Checkpoint(
            size=size,
            root=root,
            at=at,
            key_id=self.public.key_id,
            signature=self._key.sign(Checkpoint.text(size, root, at)),
        )

    @classmethod
    def create(cls, directory: Path) -> SigningKey:
        """Generate a key pair into ``directory`` (private 0600); existing files are never overwritten."""
        directory.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd = os.open(directory / PRIVATE_KEY_NAME, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        signing = cls(key)
        (directory / PUBLIC_KEY_NAME).write_text(signing.public.pem())
        return signing

    @classmethod
    def load(cls, directory: Path) -> SigningKey:
        key = serialization.load_pem_private_key((directory / PRIVATE_KEY_NAME).read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{directory / PRIVATE_KEY_NAME} is not an Ed25519 private key")
        return cls(key)


class CheckpointFile:
    """Checkpoints appended as JSON lines to a file outside the database.

    Append-only by convention (and fsynced), one line per checkpoint. A line
    that does not parse is reported by :meth:`read` rather than skipped, since
    a damaged file is itself a finding.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, checkpoint: Checkpoint) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(checkpoint.as_json(), sort_keys=True) + "\n"
        with self.path.open("a", encoding="utf-8") as out:
            out.write(line)
            out.flush()
            os.fsync(out.fileno())

    def read(self) -> tuple[list[Checkpoint], list[str]]:
        """(checkpoints, problems): each problem names the line that could not be read."""
        if not self.path.exists():
            return [], []
        found: list[Checkpoint] = []
        problems: list[str] = []
        for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                found.append(Checkpoint.from_json(json.loads(line)))
            except ValueError as exc:
                problems.append(f"{self.path}:{number}: {exc}")
        return found, problems
