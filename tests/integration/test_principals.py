"""API principals on disk: tokens shown once and stored hashed, roles and tenants checked."""

from __future__ import annotations

import hashlib
import re
import stat
from pathlib import Path

import pytest

from orchestrator.errors import BadInput, NotFound
from orchestrator.principals import Principals, Role


def test_a_token_is_shown_once_and_only_its_sha256_is_stored_in_a_private_file(tmp_path: Path) -> None:
    principals = Principals.load(tmp_path)
    token = principals.add("optimizer", "agent:optimizer", ["acme"])

    assert token.startswith("apx_") and len(token) > 40
    text = (tmp_path / "principals.yaml").read_text()
    assert token not in text
    assert hashlib.sha256(token.encode()).hexdigest() in text
    assert stat.S_IMODE((tmp_path / "principals.yaml").stat().st_mode) == 0o600
    principal = principals.authenticate(token)
    assert principal is not None
    assert (principal.name, principal.role, principal.agent) == ("optimizer", Role.AGENT, "optimizer")
    assert principal.tenants == frozenset({"acme"})
    assert principals.authenticate(token + "x") is None
    assert principals.authenticate("not-a-token") is None


def test_two_tokens_of_the_same_role_are_different(tmp_path: Path) -> None:
    principals = Principals.load(tmp_path)
    assert principals.add("alice", "reviewer", ["acme"]) != principals.add("bob", "reviewer", ["acme"])


def test_revoking_stops_the_token_for_a_server_that_loaded_the_file_earlier(tmp_path: Path) -> None:
    cli = Principals.load(tmp_path)
    token = cli.add("alice", "reviewer", ["acme"])
    server = Principals.load(tmp_path)
    assert server.authenticate(token) is not None

    cli.revoke("alice")

    assert server.authenticate(token) is None
    assert [p.name for p in server.list()] == []
    added_later = cli.add("bob", "engineer", ["acme", "globex"])
    bob = server.authenticate(added_later)
    assert bob is not None and bob.may_see("globex") and not bob.may_see("initech")


def test_every_role_and_the_all_tenants_mark_round_trip(tmp_path: Path) -> None:
    principals = Principals.load(tmp_path)
    principals.add("root", "admin", ["*"])
    principals.add("erin", "engineer", ["acme"])
    principals.add("alice", "reviewer", ["acme"])
    principals.add("builder", "agent:builder", ["acme"])
    listed = {p.name: p for p in Principals.load(tmp_path).list()}
    assert {n: p.role_text for n, p in listed.items()} == {
        "root": "admin",
        "erin": "engineer",
        "alice": "reviewer",
        "builder": "agent:builder",
    }
    assert listed["root"].may_see("any-tenant-at-all") and not listed["erin"].may_see("globex")


@pytest.mark.parametrize(
    ("name", "role", "tenants", "message"),
    [
        ("x", "root", ["acme"], "unknown role 'root'"),
        ("x", "agent", ["acme"], "agent:<name>"),
        ("x", "agent:", ["acme"], "agent:<name>"),
        ("x", "agent:Bad_Name", ["acme"], "not a valid name"),
        ("x", "reviewer:extra", ["acme"], "unknown role"),
        ("x", "reviewer", [], "at least one tenant"),
        ("x", "reviewer", ["ACME"], "tenant 'ACME' is not a valid name"),
        ("bad name", "reviewer", ["acme"], "principal name 'bad name'"),
        ("", "reviewer", ["acme"], "principal name ''"),
    ],
)
def test_bad_roles_tenants_and_names_are_refused_with_the_reason(
    tmp_path: Path, name: str, role: str, tenants: list[str], message: str
) -> None:
    principals = Principals.load(tmp_path)
    with pytest.raises(BadInput, match=re.escape(message)):
        principals.add(name, role, tenants)
    assert not (tmp_path / "principals.yaml").exists()


def test_a_duplicate_name_is_refused_and_the_first_token_keeps_working(tmp_path: Path) -> None:
    principals = Principals.load(tmp_path)
    first = principals.add("alice", "reviewer", ["acme"])
    with pytest.raises(BadInput, match="already exists"):
        principals.add("alice", "admin", ["*"])
    alice = principals.authenticate(first)
    assert alice is not None and alice.role is Role.REVIEWER


def test_revoking_an_unknown_name_says_so(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no principal named 'ghost'"):
        Principals.load(tmp_path).revoke("ghost")


def test_a_hand_edited_file_with_a_bad_entry_is_refused_naming_the_entry(tmp_path: Path) -> None:
    (tmp_path / "principals.yaml").write_text(
        "principals:\n  - {name: alice, role: superuser, tenants: [acme], token_sha256: '" + "0" * 64 + "'}\n"
    )
    with pytest.raises(BadInput, match=r"principals\[0\].*unknown role 'superuser'"):
        Principals.load(tmp_path)
