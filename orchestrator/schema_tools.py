"""Schema tooling around the resource versions: ``apx schema export`` and ``apx migrate``.

* :func:`export_json_schemas` publishes the JSON Schema of every kind at every
  version apx reads, generated from the same pydantic models apx validates with,
  so editors and other teams' CI can check a ``<Kind>/<name>.yaml`` before it
  ever reaches apx, and the published schema cannot drift from the real one.
* :func:`migrate_environment` rewrites every file of an environment branch that
  is still at a deprecated apiVersion to ``apx/v1``, as one signed commit. Old
  files are already *read* as ``apx/v1`` (:mod:`orchestrator.versions`); this
  makes the branch itself current before support for the old version ends,
  without waiting for an intent to touch each file.

The CLI (``orchestrator.cli``) calls both; neither knows about settings or the
home directory. The upgrade itself is :func:`orchestrator.versions.upgrade`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic.json_schema import models_json_schema

from orchestrator.changeset import old_version_documents, render
from orchestrator.errors import UnknownEnvironment
from orchestrator.intent import API_VERSION, KINDS, NAME_MAX, NAME_RE, ResourceMeta
from orchestrator.ports import ConfigRepo
from orchestrator.versions import SPEC_MODELS, VERSIONS, deprecation, upgrade

__all__ = ["export_json_schemas", "json_schema", "migrate_environment", "schema_file_name"]

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
#: Git trailer keys: a token of letters, digits and '-' (``Intent-Id``, ``Trace-Id``).
_TRAILER_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")


# --- apx schema export --------------------------------------------------------------------------


def schema_file_name(kind: str, api_version: str) -> str:
    """``WorkerPool``, ``apx/v1`` → ``WorkerPool.apx-v1.schema.json`` (no '/' in a file name)."""
    return f"{kind}.{api_version.replace('/', '-')}.schema.json"


def json_schema(kind: str, api_version: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a whole ``kind`` document at ``api_version``.

    Structure, types, enums and ranges come from the pydantic models. apx's own
    validation is stricter than any JSON Schema can say: formats (hostnames,
    CIDRs, semver, durations) and cross-field rules (min ≤ replicas ≤ max) are
    checked by apx only. Names get their pattern here because they are also paths.
    """
    spec_model = SPEC_MODELS[api_version][kind]
    refs, definitions = models_json_schema(
        [(ResourceMeta, "validation"), (spec_model, "validation")], ref_template="#/$defs/{model}"
    )
    defs: dict[str, Any] = definitions["$defs"]
    for field in ("name", "tenant"):
        defs["ResourceMeta"]["properties"][field].update(pattern=NAME_RE.pattern, maxLength=NAME_MAX)
    current = api_version == API_VERSION
    description = (
        f"A {kind} resource at {api_version}: a `{kind}/<name>.yaml` file on an environment branch of "
        "the apx config repo. Generated from apx's models by `apx schema export`; apx itself also "
        "checks formats and cross-field rules."
    )
    if not current:
        description += f" Deprecated: {deprecation(api_version, kind, environment='ENV')}."
    schema: dict[str, Any] = {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": f"urn:apx:schema:{schema_file_name(kind, api_version).removesuffix('.schema.json')}",
        "title": f"{kind} ({api_version})",
        "description": description,
        "type": "object",
        "properties": {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": refs[(ResourceMeta, "validation")],
            "spec": refs[(spec_model, "validation")],
        },
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "$defs": defs,
    }
    if not current:
        schema["deprecated"] = True
    return schema


def export_json_schemas(directory: Path) -> list[Path]:
    """Write ``<Kind>.<version>.schema.json`` for every kind and readable version; return the paths.

    Creates ``directory`` if needed and overwrites earlier exports. The bytes
    depend only on the models, so a re-export is a no-op in version control.
    """
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for api_version in VERSIONS:
        for kind in KINDS:
            path = directory / schema_file_name(kind, api_version)
            text = json.dumps(json_schema(kind, api_version), indent=2, ensure_ascii=False) + "\n"
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


# --- apx migrate --------------------------------------------------------------------------------


def migrate_environment(repo: ConfigRepo, *, branch: str, message_trailers: Mapping[str, str]) -> str | None:
    """Rewrite every file of ``branch`` still at a deprecated apiVersion as ``apx/v1``, in one commit.

    Returns the new commit, or None when every file is already current (nothing
    is written). The commit is signed by the repo (:meth:`ConfigRepo.commit`)
    and made on top of the head that was read, so a change landing meanwhile
    makes it raise :class:`~orchestrator.errors.BranchMoved` (retryable) with
    the branch untouched; callers hold the environment's lock to avoid that.
    ``message_trailers`` end the message as git trailers: the contract wants
    ``Intent-Id`` and ``Trace-Id`` on every commit apx makes.

    Files are upgraded by :func:`orchestrator.versions.upgrade`, which keeps
    any value it cannot translate, so a migration never loses data.
    """
    trailers = _trailers(message_trailers)
    head = repo.head(branch)
    if head is None:
        raise UnknownEnvironment(f"the config repo has no branch {branch!r}")
    old = old_version_documents(repo.read(head).files)
    if not old:
        return None
    files: dict[str, str | None] = {path: render(upgrade(document)) for path, document in old.items()}
    count = f"{len(old)} resource{'s' if len(old) > 1 else ''}"
    versions = sorted({str(document["apiVersion"]) for document in old.values()})
    listing = "".join(f"- {path}: {document['apiVersion']}\n" for path, document in old.items())
    message = (
        f"Migrate {branch} to {API_VERSION}\n\n"
        f"Rewrote {count} from the deprecated {', '.join(versions)} to {API_VERSION}, field by field\n"
        "(field mapping: docs/reference/api-versions.md).\n\n"
        f"{listing}"
        f"{trailers}"
    )
    return repo.commit(branch=branch, parent=head, files=files, message=message)


def _trailers(trailers: Mapping[str, str]) -> str:
    """``\\nKey: value`` lines; refuses what would break git's trailer parsing or inject headers."""
    lines = []
    for key, value in trailers.items():
        if not _TRAILER_KEY.fullmatch(key):
            raise ValueError(f"trailer key {key!r} must be letters, digits and '-', like 'Trace-Id'")
        if not value or value != value.strip() or any(c in value for c in "\r\n"):
            raise ValueError(f"trailer {key} must be one line of text without surrounding spaces")
        lines.append(f"{key}: {value}\n")
    return "\n" + "".join(lines) if lines else ""
