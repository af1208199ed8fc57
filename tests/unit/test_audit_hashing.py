"""The audit log's hashes against RFC 6962's own definitions, written out plainly here."""

from __future__ import annotations

from hashlib import sha256

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit.hashing import (
    EMPTY_ROOT,
    Frontier,
    inclusion_path,
    leaf_hash,
    merkle_root,
    node_hash,
    root_from_inclusion,
)


def rfc6962_mth(data: list[bytes]) -> bytes:
    """MTH(D[n]) exactly as RFC 6962 §2.1 defines it, recursively, from the entries."""
    n = len(data)
    if n == 0:
        return sha256(b"").digest()
    if n == 1:
        return sha256(b"\x00" + data[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return sha256(b"\x01" + rfc6962_mth(data[:k]) + rfc6962_mth(data[k:])).digest()


def entries(n: int) -> list[bytes]:
    return [f'{{"seq":{i}}}'.encode() for i in range(1, n + 1)]


@pytest.mark.parametrize("n", [*range(0, 34), 63, 64, 65, 100, 127, 128, 129])
def test_the_root_is_rfc6962s_tree_hash(n: int) -> None:
    data = entries(n)
    assert merkle_root([leaf_hash(d) for d in data]) == rfc6962_mth(data)


def test_the_empty_tree_hashes_the_empty_string() -> None:
    assert EMPTY_ROOT == sha256(b"").digest() == Frontier().root()


def test_a_frontier_resumed_from_its_stack_reaches_the_same_root() -> None:
    leaves = [leaf_hash(d) for d in entries(77)]
    first = Frontier()
    for leaf in leaves[:45]:
        first.append(leaf)
    resumed = Frontier(first.size, first.stack)
    for leaf in leaves[45:]:
        resumed.append(leaf)
    assert resumed.root() == merkle_root(leaves)


def test_a_frontier_with_the_wrong_number_of_subtrees_is_refused() -> None:
    with pytest.raises(ValueError, match="subtrees"):
        Frontier(5, [bytes(32)])


@pytest.mark.parametrize("n", range(1, 40))
def test_every_leaf_has_a_proof_that_leads_to_the_root(n: int) -> None:
    leaves = [leaf_hash(d) for d in entries(n)]
    root = merkle_root(leaves)
    for index in range(n):
        path = inclusion_path(leaves, index)
        assert len(path) <= max(1, (n - 1).bit_length())
        assert root_from_inclusion(leaves[index], index, n, path) == root


@given(st.integers(min_value=2, max_value=300), st.data())
def test_a_proof_for_another_leaf_index_or_size_does_not_lead_to_the_root(
    n: int, data: st.DataObject
) -> None:
    leaves = [leaf_hash(d) for d in entries(n)]
    root = merkle_root(leaves)
    index = data.draw(st.integers(min_value=0, max_value=n - 1))
    path = inclusion_path(leaves, index)
    other = data.draw(st.integers(min_value=0, max_value=n - 1).filter(lambda i: i != index))
    assert _root_or_none(leaves[other], index, n, path) != root
    assert _root_or_none(leaves[index], other, n, path) != root
    forged = leaf_hash(b'{"seq":0,"forged":true}')
    assert _root_or_none(forged, index, n, path) != root


def test_a_path_of_the_wrong_length_is_refused() -> None:
    leaves = [leaf_hash(d) for d in entries(8)]
    path = inclusion_path(leaves, 3)
    with pytest.raises(ValueError, match="longer"):
        root_from_inclusion(leaves[3], 3, 8, [*path, bytes(32)])
    with pytest.raises(ValueError, match="shorter"):
        root_from_inclusion(leaves[3], 3, 8, path[:-1])
    with pytest.raises(ValueError, match="not in a tree"):
        root_from_inclusion(leaves[3], 8, 8, path)


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    # A node's two children, presented as one leaf, must not hash to the node (RFC 6962 §2.1).
    left, right = leaf_hash(b"a"), leaf_hash(b"b")
    assert leaf_hash(left + right) != node_hash(left, right)


def _root_or_none(leaf: bytes, index: int, size: int, path: list[bytes]) -> bytes | None:
    try:
        return root_from_inclusion(leaf, index, size, path)
    except ValueError:
        return None
