"""The SSH signing key that makes every apx commit verifiable.

"Config as artifacts" means every change apx applies is a *signed* commit, so
that ``git verify-commit`` (and ``apx audit``) can tell apx's commits from a
human's or an attacker's. Git signs with SSH keys natively (``gpg.format=ssh``),
which avoids a GnuPG keyring and agent. ``apx init`` calls this module to mint
the home's key and its ``allowed_signers`` file; :mod:`orchestrator.git_repo`
points the config repo's git config at both.

The key is generated in-process with ``cryptography`` rather than by shelling
out to ``ssh-keygen``: generation then needs no external binary, no prompt, and
behaves the same on every platform. (Git still runs ``ssh-keygen -Y sign`` to
*sign*, because that is how git's SSH signing works.)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

PRIVATE_KEY_NAME = "apx_signing"
PUBLIC_KEY_NAME = "apx_signing.pub"


@dataclass(frozen=True)
class SigningKey:
    """Where a signing key lives, and its public half as one ``authorized_keys``-style line."""

    private_path: Path
    public_path: Path
    #: ``ssh-ed25519 AAAA… <comment>``: what goes into ``allowed_signers``.
    public_line: str


def create_signing_key(directory: Path, *, comment: str = "apx") -> SigningKey:
    """Generate an Ed25519 key pair in ``directory`` and return where it is.

    Ed25519 because it is small, fast, deterministic and accepted by every
    OpenSSH that can sign git commits. The private key is written unencrypted
    (apx signs unattended, there is nobody to type a passphrase) with mode 0600
    from the moment the file exists: ``ssh-keygen`` refuses to use a key that
    others can read, and it must never be readable by them anyway. Existing
    files are refused rather than overwritten, so an old key cannot be lost by
    accident (``apx init --force`` removes the home first).
    """
    if any(ch in comment for ch in "\r\n"):
        raise ValueError("the key comment must be one line")
    directory.mkdir(parents=True, exist_ok=True)
    private_path = directory / PRIVATE_KEY_NAME
    public_path = directory / PUBLIC_KEY_NAME

    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.OpenSSH,
        encryption_algorithm=serialization.NoEncryption(),
    )
    public_openssh = (
        key.public_key()
        .public_bytes(
            encoding=serialization.Encoding.OpenSSH,
            format=serialization.PublicFormat.OpenSSH,
        )
        .decode("ascii")
    )
    public_line = f"{public_openssh} {comment}".strip()

    # O_EXCL: fail instead of clobbering an existing key; the mode applies at creation.
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private_pem)
    os.chmod(private_path, 0o600)  # the umask may have narrowed it; make it exact
    with public_path.open("x", encoding="ascii") as out:
        out.write(public_line + "\n")
    return SigningKey(private_path=private_path, public_path=public_path, public_line=public_line)


def write_allowed_signers(path: Path, *, principal: str, public_line: str) -> None:
    """Write git's ``allowed_signers`` file trusting ``public_line`` as ``principal``.

    ``git verify-commit`` with ``gpg.format=ssh`` accepts a signature only if
    its key is listed here. ``namespaces="git"`` restricts the key to git
    signatures, so a signature it made for another purpose (``ssh-keygen -Y
    sign -n file``) cannot be passed off as a commit signature. The principal
    is what ``git log --show-signature`` prints as the signer.
    """
    if not principal or any(ch.isspace() for ch in principal):
        raise ValueError(f"principal {principal!r} must be one word with no spaces")
    fields = public_line.split()
    if len(fields) < 2:
        raise ValueError("public_line must be '<key type> <base64 key> [comment]'")
    key_type, key_data = fields[0], fields[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'{principal} namespaces="git" {key_type} {key_data}\n', encoding="ascii")
