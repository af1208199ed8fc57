"""The tamper-evident audit log: append, checkpoints, verify, proofs, export.

Every entry is hash-chained to the one before it and is a leaf of an
RFC 6962 Merkle tree (the tree Certificate Transparency and Sigstore's Rekor
use). Signed checkpoints of the tree (size, root, time) are kept in the
database and in a file outside it, so editing, removing, reordering or
truncating entries is caught by :func:`audit.verify.verify`, and anyone with
the public key can check an inclusion proof (:mod:`audit.proof`).

The modules here other than :mod:`audit.sql` do no database I/O; storage sits
behind :class:`audit.ports.AuditStore`.
"""
