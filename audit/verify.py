"""Walk the whole log once and say whether it is what was written.

:func:`verify` recomputes every chain link and the Merkle tree, and at each
signed checkpoint compares the tree's root and checks the signature. It stops
at the first problem, named for a human: which entry, and whether it was
changed, is missing, is out of order, or whether a checkpoint was signed by
another key or no longer matches (an entry rewritten and the chain recomputed
to hide it), or the log is shorter than a checkpoint says (truncated).

The loop does nothing but hashing (no JSON parsing: that happens only to
explain a problem once one is found), because it must get through a million
entries in seconds; ``bench/audit_log.py`` measures it against hashlib's own rate.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from hashlib import sha256

from audit.checkpoint import Checkpoint, PublicKey
from audit.entry import parse_body
from audit.hashing import EMPTY_ROOT, GENESIS, node_hash

#: One entry as stored: its sequence number, canonical body and chain link.
Row = tuple[int, bytes, bytes]


@dataclass(frozen=True)
class Finding:
    """The first thing wrong with the log."""

    #: ``changed``, ``missing``, ``reordered``, ``truncated``, ``rewritten``,
    #: ``other-key``, ``bad-signature`` or ``damaged-file``.
    kind: str
    message: str
    seq: int | None = None


@dataclass(frozen=True)
class Report:
    #: Entries read (up to the first problem).
    size: int
    root: bytes
    #: Distinct checkpoints whose signature and root were checked.
    checkpoints: int
    finding: Finding | None = None
    #: Facts worth knowing that are not tampering (e.g. a checkpoint only one copy has).
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.finding is None


@dataclass(frozen=True)
class SourcedCheckpoint:
    checkpoint: Checkpoint
    #: Where each copy came from, for messages: ``database`` or the file's path.
    sources: tuple[str, ...]

    @property
    def source(self) -> str:
        return " and ".join(self.sources)


def verify(
    rows: Iterable[Row],
    checkpoints: Sequence[SourcedCheckpoint],
    key: PublicKey,
    *,
    damaged: Sequence[str] = (),
) -> Report:
    """Verify ``rows`` (ascending ``seq`` from 1) against ``checkpoints`` signed by ``key``."""
    by_size = _group(checkpoints)
    sizes = sorted(by_size)
    next_cp = iter(sizes)
    due = next(next_cp, None)
    checked = 0
    last_matched = 0

    it = iter(rows)
    expected = 1
    previous = GENESIS
    stack: list[bytes] = []
    count = 0
    for seq, body, stored in it:
        if seq != expected:
            first, last = expected, seq - 1
            span = f"entry {first} is" if first == last else f"entries {first}-{last} are"
            return _report(count, stack, checked, Finding("missing", f"{span} missing from the log", first))
        leaf = sha256(b"\x00" + body).digest()
        linked = sha256(previous + leaf).digest()
        if linked != stored:
            return _report(count, stack, checked, _explain_broken_link(seq, body, it))
        # Frontier append, inlined: this loop is the verification rate.
        n = count
        while n & 1:
            leaf = sha256(b"\x01" + stack.pop() + leaf).digest()
            n >>= 1
        stack.append(leaf)
        count += 1
        previous = linked
        expected += 1
        while due is not None and due == count:
            root = _root(stack)
            for sourced in by_size[due]:
                mismatch = _check(sourced, root, key, last_matched)
                if mismatch is not None:
                    return _report(count, stack, checked, mismatch)
            checked += 1
            last_matched = due
            due = next(next_cp, None)

    if due is not None:
        beyond = by_size[due][0]
        problem = key.problem_with(beyond.checkpoint)
        if problem is not None:
            return _report(
                count, stack, checked, Finding(_kind(problem), f"{beyond.checkpoint.describe()} {problem}")
            )
        first = count + 1
        return _report(
            count,
            stack,
            checked,
            Finding(
                "truncated",
                f"the log ends at entry {count}, but {beyond.checkpoint.describe()} in {beyond.source} "
                f"covered {due}: entries {first}-{due} are missing (the log was truncated)",
                first,
            ),
        )
    if damaged:
        return _report(count, stack, checked, Finding("damaged-file", f"unreadable checkpoint: {damaged[0]}"))
    return _report(count, stack, checked, None, notes=_one_copy_notes(by_size))


def _group(checkpoints: Sequence[SourcedCheckpoint]) -> dict[int, list[SourcedCheckpoint]]:
    """Checkpoints by size; identical copies (database and file) collapse into one."""
    grouped: dict[int, list[SourcedCheckpoint]] = {}
    for sourced in checkpoints:
        same = grouped.setdefault(sourced.checkpoint.size, [])
        for i, seen in enumerate(same):
            if seen.checkpoint == sourced.checkpoint:
                same[i] = SourcedCheckpoint(seen.checkpoint, (*seen.sources, *sourced.sources))
                break
        else:
            same.append(sourced)
    return grouped


def _check(sourced: SourcedCheckpoint, root: bytes, key: PublicKey, last_matched: int) -> Finding | None:
    cp = sourced.checkpoint
    problem = key.problem_with(cp)
    if problem is not None:
        return Finding(_kind(problem), f"{cp.describe()} in {sourced.source} {problem}")
    if cp.root != root:
        return Finding(
            "rewritten",
            f"{cp.describe()} in {sourced.source} does not match the log: one of entries "
            f"{last_matched + 1}-{cp.size} was changed and every later link recomputed to hide it",
            last_matched + 1,
        )
    return None


def _kind(problem: str) -> str:
    return "other-key" if "another key" in problem else "bad-signature"


def _explain_broken_link(position: int, body: bytes, rest: Iterator[Row]) -> Finding:
    """Why entry ``position`` does not link to the one before (only called once, on failure)."""
    try:
        claimed = int(parse_body(body)["seq"])
    except (ValueError, KeyError, TypeError):
        return Finding("changed", f"entry {position} was changed: it is no longer a readable entry", position)
    if claimed == position:
        return Finding(
            "changed",
            f"entry {position} was changed: its content no longer matches the hash recorded for it",
            position,
        )
    # The row holds another entry: moved here (reordered) or renumbered over a gap (missing).
    ahead = [claimed]
    for _, later, _ in itertools.islice(rest, 8):
        try:
            ahead.append(int(parse_body(later)["seq"]))
        except (ValueError, KeyError, TypeError):
            break
    if claimed < position or position in ahead:
        return Finding(
            "reordered", f"entries are out of order: position {position} holds entry {claimed}", position
        )
    return Finding(
        "missing",
        f"entry {position} is missing: the entry stored after entry {position - 1} is entry {claimed}",
        position,
    )


def _root(stack: list[bytes]) -> bytes:
    if not stack:
        return EMPTY_ROOT
    root = stack[-1]
    for left in reversed(stack[:-1]):
        root = node_hash(left, root)
    return root


def _one_copy_notes(by_size: dict[int, list[SourcedCheckpoint]]) -> list[str]:
    return [
        f"{s.checkpoint.describe()} is only in {s.source}"
        for group in by_size.values()
        for s in group
        if len(s.sources) == 1
    ]


def _report(
    count: int, stack: list[bytes], checked: int, finding: Finding | None, *, notes: list[str] | None = None
) -> Report:
    return Report(size=count, root=_root(stack), checkpoints=checked, finding=finding, notes=notes or [])
