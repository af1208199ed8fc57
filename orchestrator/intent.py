"""The intent: what an agent proposes, in the ``apx/v1`` ``Intent`` format.

This module holds the *envelope*: the parts that must be right before an intent
can even be recorded (format, kinds, names, tenant). A resource's ``spec`` stays
a plain mapping here; checking it against its kind's schema is the job of the
schema validator, whose failure is a recorded ``rejected`` decision rather than
bad input. Parsing text into an :class:`Intent` lives in :mod:`orchestrator.parsing`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

API_VERSION = "apx/v1"
#: Versions we still read, current first; older ones are upgraded on read (schema
#: evolution, :mod:`orchestrator.versions`, which holds their deprecation dates).
READABLE_API_VERSIONS = ("apx/v1", "apx/v1alpha1")
KINDS = ("Product", "Route", "WorkerPool", "NetworkPolicy", "PolicyBundle")
Kind = Literal["Product", "Route", "WorkerPool", "NetworkPolicy", "PolicyBundle"]
Action = Literal["create", "update", "delete"]

#: DNS-1123 label: what Kubernetes accepts as a name, and nothing that could
#: walk out of ``<Kind>/<name>.yaml`` (no ``/``, no ``..``, no leading dot).
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
NAME_MAX = 63
MAX_RATIONALE = 2000


#: What ``causedBy`` may hold: an id (apx's ``in-…``, or another system's), one token. It
#: becomes the ``Caused-By:`` trailer of a signed commit, so a line break in it could forge
#: more trailers (``Approved-By:``) into a commit apx signs.
CAUSED_BY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")


def check_text(value: str, what: str) -> str:
    """``value`` if it holds no control character but tab and line breaks and no lone
    surrogate: such text cannot be written to a commit message, and is never meant."""
    for at, ch in enumerate(value):
        code = ord(ch)
        if (code < 32 and ch not in "\t\n\r") or code == 127 or 0xD800 <= code <= 0xDFFF:
            raise ValueError(
                f"{what} holds the character U+{code:04X} at position {at}; "
                "only printable text, tabs and line breaks are allowed"
            )
    return value


def check_name(value: str, what: str) -> str:
    if len(value) > NAME_MAX or not NAME_RE.match(value):
        raise ValueError(
            f"{what} {value!r} is not a valid name: use at most {NAME_MAX} lowercase letters, "
            "digits and '-', starting and ending with a letter or digit"
        )
    return value


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ResourceMeta(_Frozen):
    name: str
    tenant: str
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v, "name")

    @field_validator("tenant")
    @classmethod
    def _tenant(cls, v: str) -> str:
        return check_name(v, "tenant")


class ResourceKey(_Frozen):
    """Where a resource lives in an environment: ``<Kind>/<name>.yaml``."""

    kind: Kind
    name: str

    @property
    def path(self) -> str:
        return f"{self.kind}/{self.name}.yaml"

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"

    @classmethod
    def parse(cls, text: str) -> ResourceKey:
        """Read ``KIND/NAME`` (as users type it) or ``KIND/NAME.yaml`` (a repo path)."""
        kind, sep, name = text.removesuffix(".yaml").partition("/")
        if not sep or kind not in KINDS:
            raise ValueError(f"{text!r} is not KIND/NAME with KIND one of {', '.join(KINDS)}")
        return cls(kind=kind, name=check_name(name, "name"))


class Resource(_Frozen):
    """A configuration resource as it appears in an intent or the config repo.

    A resource written at an older ``apiVersion`` (``apx/v1alpha1``) is upgraded
    as it is read: ``spec`` holds the ``apx/v1`` form, so the schema validator,
    the secret scan, the changeset planner and dedupe all see one version, while
    ``apiVersion`` stays as submitted so the decision can carry a deprecation
    warning (:meth:`deprecations`). :meth:`document` is what apx writes: always
    ``apx/v1``.

    Dumping the model (what the intent log stores) gives that same pair: the
    submitted ``apiVersion`` with the upgraded ``spec``. Storing the exact
    submitted spec instead was tried and dropped: the secret scan's redaction
    finds fields by their ``apx/v1`` path, so a secret in a renamed field would
    have been stored unredacted, and keeping both forms cost 5-10 µs per resource
    on every parse and dump. Reading the stored form back upgrades it again, which changes
    nothing (the upgrade is idempotent on its own output), and it still warns.
    """

    apiVersion: str
    kind: Kind
    metadata: ResourceMeta
    spec: dict[str, Any] | None = None

    @field_validator("apiVersion")
    @classmethod
    def _api_version(cls, v: str) -> str:
        if v not in READABLE_API_VERSIONS:
            raise ValueError(f"unknown apiVersion {v!r}; expected one of {', '.join(READABLE_API_VERSIONS)}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, data: Any) -> Any:
        """An older version's resource, with its spec upgraded to ``apx/v1``.

        Anything that is not plainly an old resource (unknown version or kind, a
        spec that is not a mapping) goes through unchanged, so the envelope
        errors (with their field paths) stay exactly what they were.
        """
        if not (
            isinstance(data, dict)
            and data.get("apiVersion") != API_VERSION
            and data.get("apiVersion") in READABLE_API_VERSIONS
            and data.get("kind") in KINDS
            and isinstance(data.get("spec"), dict)
        ):
            return data
        # Imported here: versions needs resources, which needs this module's name rules.
        from orchestrator.versions import upgrade_spec

        return {**data, "spec": upgrade_spec(data["apiVersion"], data["kind"], data["spec"])}

    @property
    def key(self) -> ResourceKey:
        return ResourceKey(kind=self.kind, name=self.metadata.name)

    @property
    def upgraded(self) -> bool:
        """Read at an older apiVersion and upgraded to the current one."""
        return self.apiVersion != API_VERSION

    def document(self) -> dict[str, Any]:
        """The plain mapping written to ``<Kind>/<name>.yaml``: always the current ``apx/v1``."""
        document = self.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
        document["apiVersion"] = API_VERSION
        return document

    def deprecations(self) -> list[str]:
        """The deprecation warning for this resource's apiVersion, if it is an older one."""
        if not self.upgraded:
            return []
        from orchestrator.versions import deprecation  # lazily: see _upgrade

        warning = deprecation(self.apiVersion, self.kind)
        return [warning] if warning else []


class Change(_Frozen):
    action: Action
    resource: Resource

    @model_validator(mode="after")
    def _spec_needed(self) -> Change:
        if self.action != "delete" and self.resource.spec is None:
            raise ValueError(f"action {self.action!r} of {self.resource.key} needs a spec")
        return self


class IntentMeta(_Frozen):
    tenant: str
    causedBy: str | None = None
    #: The commit of the environment branch the agent read before proposing.
    #: Optional: without it, the branch head at arrival is taken as what it saw.
    baseRevision: str | None = None

    @field_validator("tenant")
    @classmethod
    def _tenant(cls, v: str) -> str:
        return check_name(v, "tenant")

    @field_validator("causedBy")
    @classmethod
    def _caused_by(cls, v: str | None) -> str | None:
        if v is not None and not CAUSED_BY_RE.match(v):
            raise ValueError(
                f"causedBy {v[:80]!r} is not an intent id: one token of at most 128 letters, "
                "digits and . _ : / -"
            )
        return v


class IntentSpec(_Frozen):
    environment: str
    rationale: str = Field(default="", max_length=MAX_RATIONALE)
    changes: list[Change] = Field(min_length=1)

    @field_validator("environment")
    @classmethod
    def _environment(cls, v: str) -> str:
        return check_name(v, "environment")

    @field_validator("rationale")
    @classmethod
    def _rationale(cls, v: str) -> str:
        return check_text(v, "the rationale")


class Intent(_Frozen):
    apiVersion: Literal["apx/v1"]
    kind: Literal["Intent"]
    metadata: IntentMeta
    spec: IntentSpec

    @model_validator(mode="after")
    def _envelope(self) -> Intent:
        seen: set[ResourceKey] = set()
        for i, change in enumerate(self.spec.changes):
            key = change.resource.key
            if change.resource.metadata.tenant != self.metadata.tenant:
                raise ValueError(
                    f"spec.changes[{i}] ({key}) is for tenant {change.resource.metadata.tenant!r} "
                    f"but the intent is for tenant {self.metadata.tenant!r}"
                )
            if key in seen:
                raise ValueError(f"spec.changes[{i}] changes {key} a second time; one change per resource")
            seen.add(key)
        return self

    @property
    def tenant(self) -> str:
        return self.metadata.tenant

    @property
    def environment(self) -> str:
        return self.spec.environment

    @property
    def targets(self) -> list[ResourceKey]:
        return [c.resource.key for c in self.spec.changes]

    def changes_document(self) -> list[dict[str, Any]]:
        """The changes as plain data, every resource as ``apx/v1``: what dedupe canonicalises.

        Upgraded, so an ``apx/v1alpha1`` intent and an ``apx/v1`` intent that ask
        for the same change are duplicates of each other.
        """
        return [{"action": c.action, "resource": c.resource.document()} for c in self.spec.changes]

    @classmethod
    def of(
        cls,
        *changes: tuple[str, Mapping[str, Any]],
        tenant: str,
        environment: str,
        rationale: str = "",
        caused_by: str | None = None,
    ) -> Intent:
        """An intent from ``(action, resource document)`` pairs: how Python callers
        (agents, the demo, tests) propose changes without writing the envelope."""
        metadata: dict[str, Any] = {"tenant": tenant}
        if caused_by:
            metadata["causedBy"] = caused_by
        return cls.model_validate(
            {
                "apiVersion": API_VERSION,
                "kind": "Intent",
                "metadata": metadata,
                "spec": {
                    "environment": environment,
                    "rationale": rationale,
                    "changes": [{"action": a, "resource": dict(r)} for a, r in changes],
                },
            }
        )

    def deprecations(self) -> list[str]:
        """Deprecation warnings for resources submitted at an older apiVersion, once per kind."""
        return list(dict.fromkeys(w for c in self.spec.changes for w in c.resource.deprecations()))
