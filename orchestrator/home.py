"""``apx init``: a working installation in one directory.

The home holds everything of one installation (``apx.yaml``, the SQLite
intent log, the config repo, the signing key and its allowed-signers file),
so removing the directory removes the installation and nothing else.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from audit.checkpoint import PUBLIC_KEY_NAME, SigningKey
from orchestrator.errors import HomeError
from orchestrator.git_repo import GitConfigRepo
from orchestrator.seed import seed_files
from orchestrator.settings import default_settings_document, load_settings
from orchestrator.signing import create_signing_key, write_allowed_signers
from orchestrator.sql_store import migrate

#: What ``--force`` removes: only what ``init`` creates, never the whole directory.
OWNED = (
    "apx.yaml",
    "apx.db",
    "apx.db-wal",
    "apx.db-shm",
    "config-repo",
    "keys",
    "allowed_signers",
    "locks",
    "logs",
    "audit",
)
SIGNER = "apx@localhost"


@dataclass(frozen=True)
class Made:
    what: str
    #: A file or directory, or (a database server) its URL without the password.
    path: Path | str


def init_home(home: Path, *, force: bool = False) -> list[Made]:
    """Create a home with a seeded config repo; refuse an existing one unless ``force``."""
    existing = [name for name in OWNED if (home / name).exists()]
    if existing and not force:
        raise HomeError(
            f"{home} already holds an APX installation ({', '.join(existing)}); "
            "use --force to replace it (this deletes its intent log and config repo)"
        )
    for name in existing:
        target = home / name
        shutil.rmtree(target) if target.is_dir() and not target.is_symlink() else target.unlink()

    home.mkdir(parents=True, exist_ok=True)
    (home / "apx.yaml").write_text(default_settings_document(home, database_url=_without_password()))
    settings = load_settings(home)

    key = create_signing_key(home / "keys")
    allowed = home / "allowed_signers"
    write_allowed_signers(allowed, principal=SIGNER, public_line=key.public_line)
    files = seed_files()
    GitConfigRepo.create(
        settings.repo_path,
        signing_key=key,
        allowed_signers=allowed,
        branches=[settings.branch_of(env) for env in settings.environments],
        files=files,
        committer_email=SIGNER,
    )
    SigningKey.create(settings.keys_dir)
    migrate(settings.database_url)
    branches = ", ".join(settings.branch_of(env) for env in settings.environments)
    return [
        Made("settings", home / "apx.yaml"),
        Made(f"intent log ({settings.database_url.split(':', 1)[0]})", _where(settings.database_url)),
        Made(f"config repo, branches {branches}, {len(files)} resources of tenant acme", settings.repo_path),
        Made("SSH signing key (Ed25519)", key.private_path),
        Made("allowed signers for `git verify-commit`", allowed),
        Made(
            "audit checkpoint key (Ed25519; share the .pub with auditors)",
            settings.keys_dir / PUBLIC_KEY_NAME,
        ),
    ]


def _without_password() -> str | None:
    """``APX_DATABASE_URL`` as ``apx.yaml`` keeps it: without its password, so later commands
    find the same database without the variable, and the password (from the variable,
    ``PGPASSWORD`` or ``~/.pgpass``) never lands in the home."""
    given = os.environ.get("APX_DATABASE_URL")
    if not given:
        return None
    from sqlalchemy.engine import make_url

    return make_url(given)._replace(password=None).render_as_string(hide_password=False)


def _where(database_url: str) -> Path | str:
    """The SQLite file, or the server's URL with the password hidden."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return Path(url.database or "")
    return url.render_as_string(hide_password=True)
