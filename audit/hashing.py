"""The hashes of the log: the chain that links each entry to the one before,
and the RFC 6962 Merkle tree over all entries.

Why both. The chain makes every entry depend on all earlier ones, so a changed,
missing or reordered entry shows up *at that entry* when the chain is walked.
The tree gives a short proof that one entry is in the log a checkpoint signed
(log2(n) hashes instead of the whole log), and its root in a signed checkpoint
catches someone who rewrote an entry and then recomputed every later link.

Hashing follows RFC 6962 §2.1 exactly (domain-separated leaf and node hashes,
unbalanced trees split at the largest power of two), so the proofs can be
checked with any CT-style verifier and with the few lines in ``docs/how-to``.
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import sha256

#: The link before the first entry.
GENESIS = bytes(32)
#: The root of the empty tree (RFC 6962: the hash of the empty string).
EMPTY_ROOT = sha256(b"").digest()


def leaf_hash(body: bytes) -> bytes:
    """RFC 6962 leaf hash of one entry's canonical bytes."""
    return sha256(b"\x00" + body).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash."""
    return sha256(b"\x01" + left + right).digest()


def link(previous: bytes, leaf: bytes) -> bytes:
    """The chain hash of an entry: its leaf hash bound to the previous entry's link."""
    return sha256(previous + leaf).digest()


class Frontier:
    """The roots of the perfect subtrees that make up a tree of ``size`` leaves.

    Enough to compute the root and to keep appending without the earlier leaves
    (a "compact range"), so a checkpoint after N new entries costs N hashes, not
    the whole log. One node hash per leaf on average.
    """

    __slots__ = ("_stack", "size")

    def __init__(self, size: int = 0, stack: Sequence[bytes] = ()) -> None:
        if len(stack) != bin(size).count("1"):
            raise ValueError(
                f"a frontier of {size} leaves has {bin(size).count('1')} subtrees, not {len(stack)}"
            )
        self.size = size
        self._stack = list(stack)

    def append(self, leaf: bytes) -> None:
        stack = self._stack
        n = self.size
        while n & 1:
            leaf = sha256(b"\x01" + stack.pop() + leaf).digest()
            n >>= 1
        stack.append(leaf)
        self.size += 1

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        root = self._stack[-1]
        for left in reversed(self._stack[:-1]):
            root = node_hash(left, root)
        return root

    @property
    def stack(self) -> tuple[bytes, ...]:
        return tuple(self._stack)

    def copy(self) -> Frontier:
        return Frontier(self.size, self._stack)


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """The RFC 6962 root of ``leaves`` (leaf hashes)."""
    frontier = Frontier()
    for leaf in leaves:
        frontier.append(leaf)
    return frontier.root()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_path(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of ``leaves`` (RFC 6962 §2.1.1), leaf end first."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf {index} is not in a tree of {len(leaves)}")
    path: list[bytes] = []
    lo, hi = 0, len(leaves)
    # Walk down from the root, collecting the sibling subtree at each level.
    siblings: list[bytes] = []
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            siblings.append(merkle_root(leaves[lo + k : hi]))
            hi = lo + k
        else:
            siblings.append(merkle_root(leaves[lo : lo + k]))
            lo = lo + k
    path.extend(reversed(siblings))
    return path


def root_from_inclusion(leaf: bytes, index: int, size: int, path: Sequence[bytes]) -> bytes:
    """The root that ``path`` proves ``leaf`` at ``index`` is under (RFC 9162 §2.1.3.2).

    Raises ValueError when the path cannot belong to a tree of ``size`` leaves.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size}")
    fn, sn, root = index, size - 1, leaf
    for sibling in path:
        if sn == 0:
            raise ValueError("the proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            root = node_hash(sibling, root)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            root = node_hash(root, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ValueError("the proof is shorter than the tree is deep")
    return root
