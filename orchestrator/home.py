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
from orchestrator.git_repo import GitConfigRepo, remote_heads
from orchestrator.pr_settings import mask_url
from orchestrator.seed import seed_files
from orchestrator.settings import Settings, default_settings_document, load_settings
from orchestrator.signing import SigningKey as CommitKey
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
    """Create a home with a seeded config repo; refuse an existing one unless ``force``.

    With ``APX_CONFIG_REPO__REMOTE`` set, it is written to ``apx.yaml`` as
    ``config_repo.remote`` and the config repo comes from (or is pushed to) that
    remote: see :func:`_config_repo`.
    """
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
    (home / "apx.yaml").write_text(
        default_settings_document(
            home,
            database_url=_without_password(),
            config_remote=os.environ.get("APX_CONFIG_REPO__REMOTE") or None,
        )
    )
    settings = load_settings(home)

    key = create_signing_key(home / "keys")
    allowed = home / "allowed_signers"
    write_allowed_signers(allowed, principal=SIGNER, public_line=key.public_line)
    repo_made = _config_repo(settings, key, allowed)
    SigningKey.create(settings.keys_dir)
    migrate(settings.database_url)
    made = [
        Made("settings", home / "apx.yaml"),
        Made(f"intent log ({settings.database_url.split(':', 1)[0]})", _where(settings.database_url)),
        repo_made,
        Made("SSH signing key (Ed25519)", key.private_path),
        Made("allowed signers for `git verify-commit`", allowed),
        Made(
            "audit checkpoint key (Ed25519; share the .pub with auditors)",
            settings.keys_dir / PUBLIC_KEY_NAME,
        ),
    ]
    if settings.config_repo.remote is not None:
        made.append(
            Made(
                "this host's commit key: add it to every host's allowed_signers",
                key.public_path,
            )
        )
    return made


def _config_repo(settings: Settings, key: CommitKey, allowed: Path) -> Made:
    """The home's config repo: seeded here, or with ``config_repo.remote`` set, cloned from it.

    The first home against an empty remote seeds the environments and pushes them
    (only if the remote still has none of them); every later home clones them. A
    remote holding some environment branches but not others is refused rather than
    guessed at.
    """
    branches = [settings.branch_of(env) for env in settings.environments]
    names = ", ".join(branches)
    remote = settings.config_repo.remote
    if remote is None:
        files = seed_files()
        GitConfigRepo.create(
            settings.repo_path,
            signing_key=key,
            allowed_signers=allowed,
            branches=branches,
            files=files,
            committer_email=SIGNER,
        )
        return Made(
            f"config repo, branches {names}, {len(files)} resources of tenant acme", settings.repo_path
        )
    timeout = settings.config_repo.timeout.total_seconds()
    shown = mask_url(remote)
    present = [branch for branch in branches if branch in remote_heads(remote, timeout=timeout)]
    if present and len(present) < len(branches):
        missing = [branch for branch in branches if branch not in present]
        raise HomeError(
            f"the config remote {shown} has branch(es) {', '.join(present)} but not "
            f"{', '.join(missing)}; push the missing one(s) there first (or point "
            "config_repo.remote at an empty repository to seed a new installation)"
        )
    if present:
        GitConfigRepo.clone(
            settings.repo_path,
            url=remote,
            signing_key=key,
            allowed_signers=allowed,
            branches=branches,
            timeout=timeout,
            committer_email=SIGNER,
        )
        return Made(f"config repo, branches {names} cloned from {shown}", settings.repo_path)
    files = seed_files()
    with GitConfigRepo.create(
        settings.repo_path,
        signing_key=key,
        allowed_signers=allowed,
        branches=branches,
        files=files,
        committer_email=SIGNER,
    ) as repo:
        seeded = {branch: (repo.head(branch) or "", None) for branch in branches}
        if not repo.push(remote, seeded, timeout=timeout):
            raise HomeError(
                f"another home seeded the config remote {shown} at the same time; "
                "run `apx init --force` again to clone what it pushed"
            )
    return Made(
        f"config repo, branches {names}, {len(files)} resources of tenant acme, pushed to {shown}",
        settings.repo_path,
    )


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
