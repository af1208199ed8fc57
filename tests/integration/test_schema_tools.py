"""Schema export and ``apx migrate`` against a real, signed git config repo in ``tmp_path``.

Like ``test_git_repo.py``, assertions about the repository go through the real
``git`` CLI, as a human or the data plane would look at it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.changeset import environment_deprecations, old_version_documents, parse_environment, render
from orchestrator.errors import BranchMoved, UnknownEnvironment
from orchestrator.git_repo import GitConfigRepo
from orchestrator.intent import API_VERSION, KINDS
from orchestrator.ports import Snapshot
from orchestrator.schema_tools import export_json_schemas, migrate_environment, schema_file_name
from orchestrator.seed import seed_files
from orchestrator.signing import SigningKey, create_signing_key, write_allowed_signers
from orchestrator.versions import SPEC_MODELS, V1ALPHA1, VERSIONS

TRAILERS = {"Intent-Id": "in-01j9zqv8t3k4m5n6p7q8r9s0tv", "Trace-Id": "4bf92f3577b34da6a3ce929d0e0e4736"}
POOL = "WorkerPool/checkout.yaml"
HEALTHZ = "Route/payments-healthz.yaml"
OLD_POOL = {
    "apiVersion": V1ALPHA1,
    "kind": "WorkerPool",
    "metadata": {"name": "checkout", "tenant": "acme"},
    "spec": {"instances": 4, "autoscale": {"min": 2, "max": 20}, "gpu": False, "spot": False},
}
OLD_HEALTHZ = {
    "apiVersion": V1ALPHA1,
    "kind": "Route",
    "metadata": {"name": "payments-healthz", "tenant": "acme"},
    "spec": {
        "host": "api.acme.example",
        "path": "/healthz",
        "product": "payments-api",
        "auth": False,
        "canaryPercent": 0,
    },
}


@pytest.fixture(autouse=True)
def _no_user_git_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """The repository's own config must be enough: ignore whatever this machine has."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=repo, check=check, capture_output=True, text=True)


def git_out(repo: Path, *args: str) -> str:
    return git(repo, *args).stdout.strip()


@pytest.fixture
def key(tmp_path: Path) -> SigningKey:
    return create_signing_key(tmp_path / "home")


@pytest.fixture
def repo_path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "config-repo"


@pytest.fixture
def repo(repo_path: Path, key: SigningKey, tmp_path: Path) -> GitConfigRepo:
    """The seeded environments, then dev's checkout pool and healthz route committed at v1alpha1."""
    allowed_signers = tmp_path / "home" / "allowed_signers"
    write_allowed_signers(allowed_signers, principal="apx@localhost", public_line=key.public_line)
    config_repo = GitConfigRepo.create(
        repo_path,
        signing_key=key,
        allowed_signers=allowed_signers,
        branches=["dev", "prod"],
        files=seed_files(),
    )
    head = config_repo.head("dev")
    assert head is not None
    config_repo.commit(
        branch="dev",
        parent=head,
        files={POOL: render(OLD_POOL), HEALTHZ: render(OLD_HEALTHZ)},
        message="Hand-written v1alpha1 files\n\nTrace-Id: 0af7651916cd43dd8448eb211c80319c\n",
    )
    return config_repo


def dev_files(repo: GitConfigRepo) -> Mapping[str, str]:
    head = repo.head("dev")
    assert head is not None
    return repo.read(head).files


# --- reading -------------------------------------------------------------------------------------


def test_an_old_file_on_dev_is_read_as_v1_with_a_deprecation(repo: GitConfigRepo) -> None:
    files = dev_files(repo)
    assert yaml.safe_load(files[POOL])["apiVersion"] == V1ALPHA1
    environment = parse_environment(files)
    assert environment[POOL]["apiVersion"] == API_VERSION
    assert environment[POOL]["spec"] == {
        "replicas": 4,
        "minReplicas": 2,
        "maxReplicas": 20,
        "accelerator": "none",
        "spot": False,
    }
    # Read as v1, the hand-written files mean exactly what the seed says.
    assert environment == parse_environment(seed_files())
    assert environment_deprecations(files, environment="dev") == [
        "Route apx/v1alpha1 is deprecated since apx 0.1: read as apx/v1; rewrite with "
        f"`apx migrate --env dev`; support ends in apx 1.0 (1 file: {HEALTHZ})",
        "WorkerPool apx/v1alpha1 is deprecated since apx 0.1: read as apx/v1; rewrite with "
        f"`apx migrate --env dev`; support ends in apx 1.0 (1 file: {POOL})",
    ]


# --- migrate -------------------------------------------------------------------------------------


def test_migrate_rewrites_the_old_files_as_one_signed_commit(repo: GitConfigRepo, repo_path: Path) -> None:
    before, prod = repo.head("dev"), repo.head("prod")
    meaning = parse_environment(dev_files(repo))

    commit = migrate_environment(repo, branch="dev", message_trailers=TRAILERS)

    assert commit is not None and repo.head("dev") == commit
    assert git_out(repo_path, "rev-list", "--count", f"{before}..dev") == "1"
    verified = git(repo_path, "verify-commit", commit, check=False)
    assert verified.returncode == 0, verified.stderr
    assert git_out(repo_path, "diff", "--name-only", f"{before}", commit).splitlines() == [HEALTHZ, POOL]
    trailers = git_out(repo_path, "log", "-1", "--format=%(trailers:only,unfold)", commit)
    assert trailers.splitlines() == [f"{k}: {v}" for k, v in TRAILERS.items()]
    assert git_out(repo_path, "log", "-1", "--format=%s", commit) == "Migrate dev to apx/v1"

    files = dev_files(repo)
    assert old_version_documents(files) == {}
    assert environment_deprecations(files, environment="dev") == []
    assert all(yaml.safe_load(text)["apiVersion"] == API_VERSION for text in files.values())
    assert parse_environment(files) == meaning  # nothing changed meaning
    assert repo.head("prod") == prod


def test_migrating_a_current_branch_again_makes_no_commit(repo: GitConfigRepo) -> None:
    first = migrate_environment(repo, branch="dev", message_trailers=TRAILERS)
    assert migrate_environment(repo, branch="dev", message_trailers=TRAILERS) is None
    assert repo.head("dev") == first
    prod = repo.head("prod")
    assert migrate_environment(repo, branch="prod", message_trailers=TRAILERS) is None
    assert repo.head("prod") == prod


def test_migrating_a_missing_branch_is_an_unknown_environment(repo: GitConfigRepo) -> None:
    with pytest.raises(UnknownEnvironment, match="no branch 'staging'"):
        migrate_environment(repo, branch="staging", message_trailers=TRAILERS)


def test_a_trailer_that_could_inject_lines_is_refused_before_anything_is_written(repo: GitConfigRepo) -> None:
    head = repo.head("dev")
    with pytest.raises(ValueError, match="one line"):
        migrate_environment(repo, branch="dev", message_trailers={"Trace-Id": "x\nSigned-off-by: mallory"})
    assert repo.head("dev") == head


class _RacingRepo:
    """The real repo, with another writer landing a commit on the branch right after each read."""

    def __init__(self, repo: GitConfigRepo) -> None:
        self._repo = repo

    def head(self, branch: str) -> str | None:
        return self._repo.head(branch)

    def read(self, revision: str) -> Snapshot:
        snapshot = self._repo.read(revision)
        head = self._repo.head("dev")
        assert head is not None
        self._repo.commit(branch="dev", parent=head, files={"NOTES.yaml": "x: 1\n"}, message="meanwhile\n")
        return snapshot

    def commit(self, *, branch: str, parent: str, files: Mapping[str, str | None], message: str) -> str:
        return self._repo.commit(branch=branch, parent=parent, files=files, message=message)

    def branches(self, prefix: str = "") -> Sequence[str]:
        return self._repo.branches(prefix)


def test_migrate_loses_a_race_without_touching_the_branch(repo: GitConfigRepo) -> None:
    with pytest.raises(BranchMoved):
        migrate_environment(_RacingRepo(repo), branch="dev", message_trailers=TRAILERS)
    files = dev_files(repo)
    assert "NOTES.yaml" in files  # the other writer's commit is the head
    assert set(old_version_documents(files)) == {HEALTHZ, POOL}


# --- schema export -------------------------------------------------------------------------------


def test_export_writes_one_schema_per_kind_and_version_deterministically(tmp_path: Path) -> None:
    paths = export_json_schemas(tmp_path / "schemas")
    assert sorted(p.name for p in paths) == sorted(schema_file_name(k, v) for k in KINDS for v in VERSIONS)
    assert "WorkerPool.apx-v1.schema.json" in {p.name for p in paths}
    first = {p.name: p.read_bytes() for p in paths}
    export_json_schemas(tmp_path / "schemas")
    assert {p.name: p.read_bytes() for p in paths} == first
    for path in paths:
        schema = json.loads(path.read_text(encoding="utf-8"))
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"].startswith("urn:apx:schema:") and schema["title"] and schema["description"]
        deprecated = schema["properties"]["apiVersion"]["const"] != API_VERSION
        assert schema.get("deprecated", False) is deprecated
        assert ("apx migrate --env" in schema["description"]) is deprecated


def _check_against_schema(schema: dict[str, Any], document: dict[str, Any]) -> None:
    """With jsonschema installed, validate for real; otherwise, check what pydantic alone can.

    The fallback: the schema's constants name the document's version and kind, its
    spec definition is exactly the pydantic model's own JSON Schema, and that model
    accepts the document's spec and dumps it back unchanged.
    """
    if importlib.util.find_spec("jsonschema") is not None:
        import jsonschema  # type: ignore[import-untyped,unused-ignore]

        jsonschema.Draft202012Validator.check_schema(schema)
        jsonschema.Draft202012Validator(schema).validate(document)
        return
    version, kind = document["apiVersion"], document["kind"]
    assert schema["properties"]["apiVersion"] == {"const": version}
    assert schema["properties"]["kind"] == {"const": kind}
    model = SPEC_MODELS[version][kind]
    own = model.model_json_schema(ref_template="#/$defs/{model}")
    nested = own.pop("$defs", {})
    assert schema["properties"]["spec"] == {"$ref": f"#/$defs/{model.__name__}"}
    assert schema["$defs"][model.__name__] == own
    assert all(schema["$defs"][name] == definition for name, definition in nested.items())
    assert set(document) == set(schema["required"])
    assert (
        model.model_validate(document["spec"]).model_dump(mode="json", exclude_unset=True) == document["spec"]
    )


def test_seed_documents_conform_to_the_exported_schemas(tmp_path: Path) -> None:
    directory = tmp_path / "schemas"
    export_json_schemas(directory)
    seeded = [yaml.safe_load(text) for text in seed_files().values()]
    for document in [
        *(next(d for d in seeded if d["kind"] == kind) for kind in KINDS),
        OLD_POOL,
        OLD_HEALTHZ,
    ]:
        path = directory / schema_file_name(document["kind"], document["apiVersion"])
        _check_against_schema(json.loads(path.read_text(encoding="utf-8")), document)
