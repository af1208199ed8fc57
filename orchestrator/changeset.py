"""Turning an intent into file changes, against the state it really applies to.

An intent was proposed against one revision of the environment (its *base*:
what the agent read, or the branch head when it arrived). By the time its turn
comes, other intents may have landed. :func:`plan` does what ``git merge``
does for text, per field: changes to fields the intent did not touch are kept;
a field that both the intent and a later change set to different values is a
**conflict**, and the intent is rejected rather than silently overwriting a
change its author never saw.

Lists are compared as whole values (a route's ingress list is one decision).
Pure functions: the pipeline hands in parsed environments and writes the result.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from orchestrator.intent import KINDS, Change, Intent
from orchestrator.versions import DEPRECATIONS, deprecation, is_deprecated, upgrade

Document = Mapping[str, Any]
Environment = Mapping[str, Document]


@dataclass(frozen=True)
class Plan:
    """What applying an intent does to the environment."""

    after: dict[str, Document]
    #: path → new text, or None for a deletion; only paths whose content changes.
    files: dict[str, str | None]
    #: path → unified diff, for humans.
    diff: dict[str, str]
    #: The changes that undo this plan (the rollback recipe's inverse intent).
    inverse: list[dict[str, Any]]
    #: Later changes this intent was merged on top of, for the decision's reasons.
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> frozenset[str]:
        return frozenset(self.files)


@dataclass(frozen=True)
class Refusal:
    """Why the intent cannot apply; ``conflict`` when a later change is the cause."""

    reasons: list[str]
    conflict: bool


_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_environment(files: Mapping[str, str]) -> dict[str, Document]:
    """path → parsed document, for every ``<Kind>/<name>.yaml`` of a snapshot, as ``apx/v1``.

    A file still at an older apiVersion is upgraded as it is read, so planning,
    the dry-run and the validators see one version and a change is written back
    as ``apx/v1``; :func:`environment_deprecations` names such files for the
    decision. Anything else (unknown versions, broken documents) is kept as
    written, for the validators to report.
    """
    out: dict[str, Document] = {}
    for path, text in files.items():
        if path.endswith(".yaml"):
            document = yaml.load(text, Loader=_LOADER)
            out[path] = upgrade(document) if _old_version(document) else document
    return out


def old_version_documents(files: Mapping[str, str]) -> dict[str, Document]:
    """path → document as written, for every file of a snapshot still at a deprecated apiVersion."""
    out: dict[str, Document] = {}
    for path in sorted(files):
        text = files[path]
        # Only files that name an old version can be one; parsing just those keeps this
        # cheap enough to run beside parse_environment on every snapshot.
        if path.endswith(".yaml") and any(version in text for version in DEPRECATIONS):
            document = yaml.load(text, Loader=_LOADER)
            if _old_version(document):
                out[path] = document
    return out


def environment_deprecations(files: Mapping[str, str], *, environment: str) -> list[str]:
    """One deprecation warning per kind and old apiVersion found in a snapshot, naming its files.

    ``environment`` is the snapshot's environment, for the ``apx migrate --env``
    the warning recommends. Empty when every file is current.
    """
    found: dict[tuple[str, str], list[str]] = {}
    for path, document in old_version_documents(files).items():
        found.setdefault((document["apiVersion"], document["kind"]), []).append(path)
    warnings = []
    for (version, kind), paths in found.items():
        shown = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
        count = f"{len(paths)} file{'s' if len(paths) > 1 else ''}"
        warnings.append(f"{deprecation(version, kind, environment=environment)} ({count}: {shown})")
    return warnings


def _old_version(document: object) -> bool:
    return (
        isinstance(document, Mapping)
        and is_deprecated(document.get("apiVersion"))
        and document.get("kind") in KINDS
    )


_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml: ~20x faster, same bytes


def render(document: Document) -> str:
    return yaml.dump(dict(document), Dumper=_DUMPER, sort_keys=False, default_flow_style=False)


def plan(
    intent: Intent, *, base: Environment, current: Environment, current_files: Mapping[str, str]
) -> Plan | Refusal:
    """Apply ``intent`` (proposed against ``base``) to ``current``."""
    after: dict[str, Document] = dict(current)
    reasons: list[str] = []
    conflict = False
    notes: list[str] = []
    inverse: list[dict[str, Any]] = []

    for change in intent.spec.changes:
        key = change.resource.key
        path = key.path
        seen, now = base.get(path), current.get(path)
        desired = change.resource.document()
        owner = (now or {}).get("metadata", {}).get("tenant")
        if now is not None and owner != intent.tenant:
            reasons.append(f"{key} belongs to tenant {owner!r}, not {intent.tenant!r}")
            continue

        if change.action == "create":
            if now is not None:
                conflict |= seen is None
                reasons.append(
                    f"{key} was created by a later change after this intent was proposed"
                    if seen is None
                    else f"{key} already exists; use action: update"
                )
                continue
            after[path] = desired
            inverse.append(_inverse("delete", desired))
            continue

        if now is None:
            conflict |= seen is not None
            reasons.append(
                f"{key} was deleted by a later change after this intent was proposed"
                if seen is not None
                else f"{key} does not exist; use action: create"
            )
            continue
        if seen is None:
            conflict = True
            reasons.append(f"{key} was created by a later change after this intent was proposed")
            continue

        if change.action == "delete":
            if seen != now:
                conflict = True
                fields = ", ".join(".".join(p) for p, _ in _differences(seen, now)) or "its content"
                reasons.append(f"{key} was changed by a later change ({fields}) that this delete did not see")
                continue
            del after[path]
            inverse.append(_inverse("create", now))
            continue

        if seen == now:  # nothing landed on this resource since the intent's base
            after[path] = desired
            inverse.append(_inverse("update", now))
            continue
        merged, clashes, kept = _merge(seen, desired, now)
        if clashes:
            conflict = True
            reasons.extend(f"{key}: {clash}" for clash in clashes)
            continue
        if kept:
            notes.append(f"{key}: kept later change(s) to {', '.join(kept)} that this intent did not touch")
        after[path] = merged
        inverse.append(_inverse("update", now))

    if reasons:
        return Refusal(reasons=reasons, conflict=conflict)

    files: dict[str, str | None] = {}
    diff: dict[str, str] = {}
    for change in intent.spec.changes:
        path = change.resource.key.path
        old_text = current_files.get(path, "")
        if path not in after:
            files[path] = None
            new_text = ""
        elif after[path] == current.get(path):
            continue
        else:
            files[path] = new_text = render(after[path])
        diff[path] = "".join(
            difflib.unified_diff(
                old_text.splitlines(keepends=True),
                new_text.splitlines(keepends=True),
                fromfile=f"a/{path}" if path in current else "/dev/null",
                tofile=f"b/{path}" if path in after else "/dev/null",
            )
        )
    return Plan(after=after, files=files, diff=diff, inverse=inverse, notes=notes)


def _inverse(action: str, document: Document) -> dict[str, Any]:
    if action == "delete":
        resource = {k: document[k] for k in ("apiVersion", "kind", "metadata")}
        return {"action": "delete", "resource": resource}
    return {"action": action, "resource": dict(document)}


Path = tuple[str, ...]


def _leaves(document: Any, prefix: Path = ()) -> Iterator[tuple[Path, Any]]:
    # Tuple paths, because label keys may themselves contain dots.
    if isinstance(document, Mapping) and document:
        for key, value in document.items():
            yield from _leaves(value, (*prefix, str(key)))
    else:
        yield prefix, document


_MISSING = object()


def _differences(old: Document, new: Document) -> list[tuple[Path, Any]]:
    """(field path, new value) for every leaf that differs; a removed leaf maps to _MISSING."""
    before, after = dict(_leaves(old)), dict(_leaves(new))
    out = [(p, v) for p, v in after.items() if before.get(p, _MISSING) != v]
    out += [(p, _MISSING) for p in before if p not in after]
    return out


def _merge(base: Document, ours: Document, theirs: Document) -> tuple[dict[str, Any], list[str], list[str]]:
    """Three-way merge by field: (merged document, clashes, fields kept from theirs)."""
    mine = dict(_differences(base, ours))
    later = dict(_differences(base, theirs))
    clashes = [
        f"{'.'.join(path)} was set to {_show(later[path])} by a change that landed after this "
        f"intent was proposed; this intent sets it to {_show(value)}"
        for path, value in mine.items()
        if path in later and later[path] != value
    ]
    if clashes or not later:
        return dict(ours), clashes, []
    merged = dict(_leaves(theirs))
    for path, value in mine.items():
        if value is _MISSING:
            merged.pop(path, None)
        else:
            merged[path] = value
    kept = sorted(".".join(p) for p in later if p not in mine)
    return _unflatten(merged, order=ours), [], kept


def _unflatten(leaves: Mapping[Path, Any], *, order: Document) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for parts, value in leaves.items():
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    ordered: dict[str, Any] = _reorder(out, order)
    return ordered


def _reorder(value: Any, order: Any) -> Any:
    """Keep the key order of the intent's document, so diffs stay small."""
    if not isinstance(value, dict) or not isinstance(order, Mapping):
        return value
    keys = [k for k in order if k in value] + [k for k in value if k not in order]
    return {k: _reorder(value[k], order.get(k)) for k in keys}


def _show(value: Any) -> str:
    return "(removed)" if value is _MISSING else repr(value)


def change_summary(changes: list[Change]) -> str:
    first = changes[0]
    more = f" (+{len(changes) - 1} more)" if len(changes) > 1 else ""
    return f"{first.action} {first.resource.key}{more}"
