"""Who may call the HTTP API: bearer tokens, each with a role and a set of tenants.

``<home>/principals.yaml`` (mode 0600) lists the principals. A token is shown
once, when ``apx principals add`` makes it; the file keeps only its sha256, so
a copy of the file (a backup, a support bundle) lets nobody in. The API server
re-reads the file when it changes, so ``apx principals revoke`` takes effect
without a restart.

The file looks like this::

    principals:
      - name: builder
        role: agent:builder       # agent:<name> | reviewer | engineer | admin
        tenants: [acme]           # "*" means every tenant
        token_sha256: 9f86d08…

Called by :mod:`orchestrator.api.deps` (authenticate every request) and the
``apx principals`` commands (add, list, revoke).
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import os
import re
import secrets
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from orchestrator.errors import BadInput, NotFound
from orchestrator.intent import check_name

FILE_NAME = "principals.yaml"
TOKEN_PREFIX = "apx_"
#: Every tenant. Only a principal made with ``--tenant '*'`` has it.
ALL_TENANTS = "*"
#: Human names may be e-mail addresses or user names; nothing that breaks an audit field.
PRINCIPAL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")
_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")


class Role(StrEnum):
    AGENT = "agent"
    REVIEWER = "reviewer"
    ENGINEER = "engineer"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. ``agent`` is set for agent tokens: it is who they submit as."""

    name: str
    role: Role
    tenants: frozenset[str]
    agent: str | None = None

    def may_see(self, tenant: str) -> bool:
        return ALL_TENANTS in self.tenants or tenant in self.tenants

    @property
    def all_tenants(self) -> bool:
        return ALL_TENANTS in self.tenants

    @property
    def role_text(self) -> str:
        """The role as the file spells it: ``agent:<name>`` for agents."""
        return f"agent:{self.agent}" if self.role is Role.AGENT else self.role.value


def parse_role(text: str) -> tuple[Role, str | None]:
    """``agent:<name>``, ``reviewer``, ``engineer`` or ``admin`` → (role, agent name)."""
    kind, sep, agent = text.partition(":")
    if kind == Role.AGENT.value:
        if not sep or not agent:
            raise BadInput("role agent needs the agent's name: agent:<name>, e.g. agent:builder")
        try:
            check_name(agent, "agent")
        except ValueError as exc:
            raise BadInput(str(exc)) from exc
        return Role.AGENT, agent
    if sep or kind not in {r.value for r in Role}:
        raise BadInput(f"unknown role {text!r}; use one of agent:<name>, reviewer, engineer, admin")
    return Role(kind), None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class _Entry:
    principal: Principal
    token_sha256: str


class Principals:
    """The principals of one home. Safe to share between the server's threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._entries: builtins.list[_Entry] = []
        self._stamp: tuple[int, int] | None = None
        self._refresh()

    @classmethod
    def load(cls, home: Path) -> Principals:
        """The principals of ``home``; none yet if the file does not exist (every request gets 401)."""
        return cls(home / FILE_NAME)

    def authenticate(self, token: str) -> Principal | None:
        """The principal whose token this is, or None. Compares digests in constant time."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        digest = hash_token(token)
        found = None
        for entry in self._current():
            # Every entry is compared, so timing does not tell which one matched.
            if hmac.compare_digest(entry.token_sha256, digest):
                found = entry.principal
        return found

    def add(self, name: str, role: str, tenants: Iterable[str]) -> str:
        """Add a principal and return its token (the only time it is ever shown)."""
        if not PRINCIPAL_NAME_RE.match(name):
            raise BadInput(
                f"principal name {name!r} is not valid: use letters, digits and . _ @ + - "
                "(at most 128, starting with a letter or digit)"
            )
        parsed_role, agent = parse_role(role)
        wanted = _tenants(tenants)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._lock:
            entries = self._read()
            if any(e.principal.name == name for e in entries):
                raise BadInput(f"a principal named {name!r} already exists; revoke it first to replace it")
            principal = Principal(name=name, role=parsed_role, tenants=wanted, agent=agent)
            entries.append(_Entry(principal, hash_token(token)))
            self._write(entries)
        return token

    def revoke(self, name: str) -> None:
        """Remove a principal: its token stops working at the server's next request."""
        with self._lock:
            entries = self._read()
            kept = [e for e in entries if e.principal.name != name]
            if len(kept) == len(entries):
                raise NotFound(f"no principal named {name!r} in {self.path}")
            self._write(kept)

    def list(self) -> builtins.list[Principal]:
        return [e.principal for e in self._current()]

    # -- the file -----------------------------------------------------------------------

    def _current(self) -> builtins.list[_Entry]:
        with self._lock:
            self._refresh()
            return self._entries

    def _refresh(self) -> None:
        """Re-read the file if it changed (mtime and size), e.g. after ``apx principals revoke``."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._entries, self._stamp = [], None
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._entries = self._read()
            self._stamp = stamp

    def _read(self) -> builtins.list[_Entry]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        try:
            document = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise BadInput(f"{self.path} is not valid YAML: {exc}") from exc
        items = document.get("principals") if isinstance(document, dict) else None
        if not isinstance(items, list):
            raise BadInput(f"{self.path} must be a mapping with a 'principals' list")
        return [_entry(item, self.path, i) for i, item in enumerate(items)]

    def _write(self, entries: builtins.list[_Entry]) -> None:
        """Write atomically (a temporary file renamed over the old one), mode 0600 from the start."""
        document = {
            "principals": [
                {
                    "name": e.principal.name,
                    "role": e.principal.role_text,
                    "tenants": sorted(e.principal.tenants),
                    "token_sha256": e.token_sha256,
                }
                for e in entries
            ]
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".principals-", suffix=".yaml")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(
                    "# API principals of this APX home. Tokens are stored as sha256 only.\n"
                    "# Manage with: apx principals add|list|revoke\n"
                )
                yaml.safe_dump(document, out, sort_keys=False)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._entries = entries
        st = self.path.stat()
        self._stamp = (st.st_mtime_ns, st.st_size)


def _tenants(values: Iterable[str]) -> frozenset[str]:
    tenants = frozenset(values)
    if not tenants:
        raise BadInput("a principal needs at least one tenant (or '*' for every tenant)")
    for tenant in tenants:
        if tenant == ALL_TENANTS:
            continue
        try:
            check_name(tenant, "tenant")
        except ValueError as exc:
            raise BadInput(str(exc)) from exc
    return tenants


def _entry(item: Any, path: Path, index: int) -> _Entry:
    where = f"{path}: principals[{index}]"
    if not isinstance(item, dict):
        raise BadInput(f"{where} must be a mapping with name, role, tenants, token_sha256")
    name, role, tenants, digest = (item.get(k) for k in ("name", "role", "tenants", "token_sha256"))
    if not isinstance(name, str) or not PRINCIPAL_NAME_RE.match(name):
        raise BadInput(f"{where}.name is missing or not a valid name")
    if not isinstance(role, str):
        raise BadInput(f"{where}.role is missing")
    if not isinstance(tenants, list) or not all(isinstance(t, str) for t in tenants):
        raise BadInput(f"{where}.tenants must be a list of tenant names")
    if not isinstance(digest, str) or not _DIGEST_RE.match(digest):
        raise BadInput(f"{where}.token_sha256 must be 64 lowercase hex digits")
    try:
        parsed_role, agent = parse_role(role)
        wanted = _tenants(tenants)
    except BadInput as exc:
        raise BadInput(f"{where}: {exc.message}") from exc
    return _Entry(Principal(name=name, role=parsed_role, tenants=wanted, agent=agent), digest)
