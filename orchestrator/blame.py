"""Blame: which intents changed a resource, or one field of it, and where agents fought over it.

``apx intents blame KIND/NAME [--field PATH]`` answers the question asked when
two agents keep undoing each other: who set ``spec.replicas`` to what, when,
and which change put back a value another agent had just changed away from
(the A→B→A loop the circuit breaker exists to stop). The CLI gathers, for every
intent that landed on the resource, the resource's text at the intent's commit
and at that commit's parent; everything after that is here, pure: field paths,
value extraction, before/after, and fight detection. No I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import yaml

from orchestrator.decision import Status

__all__ = [
    "ABSENT",
    "LANDED",
    "BlameLine",
    "FieldChange",
    "Fight",
    "Landed",
    "blame",
    "format_path",
    "parse_field_path",
    "value_at",
]

#: Statuses whose commit is on an environment branch. A ``pr_open`` decision
#: has a commit too, but on its PR branch: it has not changed the environment.
LANDED: Final = frozenset({Status.APPLIED, Status.MERGED, Status.ROLLED_BACK})

#: A path into a document: mapping keys and list indices.
FieldPath = tuple[str | int, ...]


class _Absent:
    """The value of a field a document does not have (the resource or the key did not exist)."""

    _instance: _Absent | None = None

    def __new__(cls) -> _Absent:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ABSENT"

    def __bool__(self) -> bool:
        return False


ABSENT: Final = _Absent()

_KEY = re.compile(r"""[^.\[\]"'\s]+""")
# [N] for a list item, or ["key"] for a key with dots (a label such as app.kubernetes.io/name).
_BRACKET = re.compile(r"""\[(?:(\d+)|"([^"\]]+)"|'([^'\]]+)')\]""")
_PATH_HELP = "use keys joined by '.' and [N] for a list item, e.g. spec.plans[0].rateLimit.rps"


def parse_field_path(text: str) -> FieldPath:
    """``spec.plans[0].rateLimit.rps`` → ``("spec", "plans", 0, "rateLimit", "rps")``.

    Raises ``ValueError`` saying what is wrong and where, for the CLI to report.
    """
    if not text:
        raise ValueError(f"an empty field path; {_PATH_HELP}")
    steps: list[str | int] = []
    position = 0
    while position < len(text):
        if text[position] == "[":
            match = _BRACKET.match(text, position)
            if match is None:
                raise ValueError(_bad_path(text, position, 'a bracket that is not [N] or ["key"]'))
            index, double, single = match.groups()
            steps.append(int(index) if index is not None else (double or single))
        else:
            if steps:
                if text[position] != ".":
                    raise ValueError(_bad_path(text, position, "'.' or '[' expected"))
                position += 1
            match = _KEY.match(text, position)
            if match is None:
                raise ValueError(_bad_path(text, position, "a key expected"))
            steps.append(match.group())
        position = match.end()
    return tuple(steps)


def _bad_path(text: str, position: int, what: str) -> str:
    return f"{text!r} is not a field path: {what} at character {position + 1}; {_PATH_HELP}"


def format_path(path: FieldPath) -> str:
    """The inverse of :func:`parse_field_path`, in the form a user types.

    (A key holding ``]`` or both quote marks has no typed form; it is shown bracketed anyway.)
    """
    out = ""
    for step in path:
        if isinstance(step, int):
            out += f"[{step}]"
        elif _KEY.fullmatch(step):
            out += f".{step}" if out else step
        elif '"' in step:
            out += f"['{step}']"
        else:
            out += f'["{step}"]'
    return out


def value_at(document: Any, path: FieldPath) -> Any:
    """The value at ``path`` in ``document``, or :data:`ABSENT` if any step is missing."""
    value = document
    for step in path:
        if isinstance(step, int):
            if not isinstance(value, list) or step >= len(value):
                return ABSENT
            value = value[step]
        else:
            if not isinstance(value, Mapping) or step not in value:
                return ABSENT
            value = value[step]
    return value


@dataclass(frozen=True, kw_only=True)
class Landed:
    """An intent whose commit changed the resource, with the resource's text around that commit.

    ``before``/``after`` are the file's text at the commit's parent and at the
    commit (None where the file did not exist); ``missing`` when the commit
    could not be read from the config repo at all.
    """

    intent_id: str
    agent: str
    status: Status
    environment: str
    at: datetime
    commit: str
    before: str | None
    after: str | None
    missing: bool = False


@dataclass(frozen=True, kw_only=True)
class FieldChange:
    field: str
    before: Any
    after: Any


@dataclass(frozen=True, kw_only=True)
class Fight:
    """This change set ``field`` back to ``value``, the value it had before ``agent``'s change ``undoes``."""

    field: str
    value: Any
    undoes: str
    agent: str


@dataclass(frozen=True, kw_only=True)
class BlameLine:
    landed: Landed
    #: Fields this intent changed on the resource (with ``field``: that one only).
    changes: tuple[FieldChange, ...] = ()
    fights: tuple[Fight, ...] = field(default=())


def blame(landed: Sequence[Landed], *, path: FieldPath | None = None) -> list[BlameLine]:
    """One line per intent that changed the resource (or, with ``path``, that field), oldest first.

    ``landed`` may come in any order; it is sorted by time, keeping the given
    order (arrival) for equal times. A change that sets a field back to the
    value it had before another agent's earlier change to it, in the same
    environment, is a :class:`Fight` with that change (the most recent one):
    A sets 4→6, B sets 6→4. Intents whose commit could not be read are kept,
    with no changes, so the history shows there is a gap.
    """
    lines: list[BlameLine] = []
    for item in sorted(landed, key=lambda x: x.at):
        if item.missing:
            lines.append(BlameLine(landed=item))
            continue
        changes = _changes(_load(item.before), _load(item.after), path)
        if not changes:
            continue
        fights = tuple(fight for change in changes if (fight := _fight(item, change, lines)) is not None)
        lines.append(BlameLine(landed=item, changes=changes, fights=fights))
    return lines


def _changes(before: Any, after: Any, path: FieldPath | None) -> tuple[FieldChange, ...]:
    if path is not None:
        old, new = value_at(before, path), value_at(after, path)
        return () if _same(old, new) else (FieldChange(field=format_path(path), before=old, after=new),)
    old_leaves, new_leaves = dict(_leaves(before)), dict(_leaves(after))
    return tuple(
        FieldChange(field=format_path(key), before=old, after=new)
        for key in _union(old_leaves, new_leaves)
        if not _same(old := old_leaves.get(key, ABSENT), new := new_leaves.get(key, ABSENT))
    )


def _fight(item: Landed, change: FieldChange, earlier: Sequence[BlameLine]) -> Fight | None:
    if change.after is ABSENT:
        return None  # a deletion undoes nothing in particular
    for line in reversed(earlier):
        other = line.landed
        if other.environment != item.environment or other.agent == item.agent:
            continue
        for past in line.changes:
            if past.field == change.field and _same(past.before, change.after):
                return Fight(
                    field=change.field, value=change.after, undoes=other.intent_id, agent=other.agent
                )
    return None


def _same(a: Any, b: Any) -> bool:
    """Equal as YAML values: ``4`` and ``4.0`` differ (a type change is a change); absent equals absent."""
    if a is ABSENT or b is ABSENT:
        return a is b
    return type(a) is type(b) and bool(a == b)


def _load(text: str | None) -> Any:
    if text is None:
        return ABSENT
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(text, Loader=loader)


def _leaves(value: Any, prefix: FieldPath = ()) -> Iterator[tuple[FieldPath, Any]]:
    """Every scalar (and every empty mapping or list) with its path; ``metadata`` and ``spec`` alike."""
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            yield from _leaves(item, (*prefix, str(key)))
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            yield from _leaves(item, (*prefix, index))
    elif prefix:
        yield prefix, value


def _union(first: Mapping[FieldPath, Any], second: Mapping[FieldPath, Any]) -> list[FieldPath]:
    """Keys of both, in the order the documents list them (``first``'s, then new ones)."""
    return [*first, *(key for key in second if key not in first)]
