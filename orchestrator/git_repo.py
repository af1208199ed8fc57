"""The config repository on disk: :class:`GitConfigRepo`, the git implementation of ``ConfigRepo``.

The data plane executes whatever the environment branches (``dev``, ``prod``,
…) of this repository say, so this module is where "config as artifacts" is
made true: every write is one SSH-signed commit, and a branch only moves by a
compare-and-swap so two writers can never silently overwrite each other.
The pipeline's appliers call :meth:`GitConfigRepo.commit`; validators and
dry-runs call :meth:`GitConfigRepo.read`; ``apx init`` calls
:meth:`GitConfigRepo.create`; ``apx audit`` calls :meth:`GitConfigRepo.verify`.
It is the only module that imports ``git`` (gitpython).

How a commit is made, and why:

* **No checkout, no index.** Several processes write different branches of
  the same repository at once, so nothing may depend on the shared worktree
  or ``.git/index``. Blobs and trees are written straight into the object
  database in-process (gitdb's loose-object writer and gitpython's
  ``tree_to_stream``); only the directories on the changed paths are
  rewritten, the rest of the tree is reused by id. That takes ~1.5 ms for a
  one-file change here, against ~10 ms for a throwaway ``GIT_INDEX_FILE``
  with ``read-tree``/``hash-object``/``update-index``/``write-tree`` (four
  git processes), and it does not grow with a process per changed file.
* **Signing by git itself.** gitpython cannot sign, so the commit object is
  made by ``git commit-tree -S``, which uses ``gpg.format=ssh`` and
  ``user.signingkey`` from the repository's own config (set by
  :meth:`GitConfigRepo.create`). The message goes in on stdin (``-F -``), so
  multi-line messages and their ``Intent-Id:``/``Trace-Id:`` trailers are kept
  byte for byte.
* **Compare-and-swap.** ``git update-ref refs/heads/B NEW OLD`` moves the
  branch only if it still points at ``OLD`` (the zero id: "only if it does
  not exist yet"). Losing that race raises
  :class:`~orchestrator.errors.BranchMoved`; the new commit is then an
  unreachable object that ``git gc`` eventually prunes, and the branch is
  untouched.

The worktree: :meth:`GitConfigRepo.create` leaves ``HEAD`` *detached* at the
seed commit. Humans browsing the repository see the seeded files, ``git
status`` stays clean however far apx moves the branches, and a stray ``git
commit`` in the worktree cannot move (or, through a stale index, revert) an
environment branch. Look at the live state with ``git log dev``,
``git show prod:Route/…`` and friends, not with the worktree.
"""

from __future__ import annotations

import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from stat import S_IFDIR, S_IFMT
from subprocess import PIPE
from types import TracebackType

import git
from git.objects.fun import tree_entries_from_data, tree_to_stream
from gitdb import IStream, LooseObjectDB  # gitpython's object layer

from orchestrator.errors import BranchMoved, RepoError
from orchestrator.ports import Snapshot
from orchestrator.pr_settings import mask_url
from orchestrator.signing import SigningKey

__all__ = ["PR_REFSPEC", "GitConfigRepo", "StagedCommit", "remote_heads"]

ZERO_OID = "0" * 40
#: Fetches every PR branch ``apx/<intent-id>`` into the local branch of the same name.
PR_REFSPEC = "+refs/heads/apx/*:refs/heads/apx/*"
_FILE_MODE = 0o100644
_DIR_MODE = 0o040000
_HEX40 = re.compile(r"^[0-9a-f]{40}$")
#: Branch names we accept: slash-separated components of safe characters, no
#: component starting with '.' or ending in '.lock' (git's own rules, narrowed
#: so a name can never walk out of ``refs/heads/``).
_BRANCH_RE = re.compile(
    r"^(?!.*\.\.)(?!.*\.lock(?:/|$))[A-Za-z0-9_-][A-Za-z0-9._-]*(?:/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$"
)
#: Snapshots kept in memory. Commits never change, so entries never go stale;
#: the bound only caps memory (a seeded environment is ~64 files, ~60 KiB).
_SNAPSHOT_CACHE_SIZE = 128

#: A directory being edited: name → (mode, binsha) for entries kept as they
#: are, or name → _Dir for subdirectories on a changed path.
_Entries = dict[str, "tuple[int, bytes] | _Dir"]


class _Dir:
    """One directory on a changed path, loaded from the parent tree on demand."""

    __slots__ = ("entries",)

    def __init__(self, entries: _Entries) -> None:
        self.entries = entries


class GitConfigRepo:
    """A config repository in a local, non-bare git repository.

    One instance may be shared by threads (calls are serialised, because
    gitpython's long-lived ``cat-file`` helpers are not thread-safe); separate
    processes each open their own and are kept apart by the compare-and-swap.
    Call :meth:`close` (or use ``with``) to stop the helper processes.
    """

    def __init__(self, path: Path | str) -> None:
        try:
            self._repo = git.Repo(str(path))
        except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
            raise RepoError(f"{path} is not a git repository") from exc
        self.path = Path(self._repo.working_tree_dir or path)
        self._loose = LooseObjectDB(str(Path(self._repo.common_dir) / "objects"))
        self._lock = threading.RLock()
        self._snapshots: OrderedDict[str, Snapshot] = OrderedDict()

    # -- lifecycle -------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: Path,
        *,
        signing_key: SigningKey,
        allowed_signers: Path,
        branches: Sequence[str],
        files: Mapping[str, str],
        committer_name: str = "apx",
        committer_email: str = "apx@localhost",
        message: str = "Seed the environments\n\nCreated by apx init.\n",
    ) -> GitConfigRepo:
        """Make a new repository whose ``branches`` all start at one signed commit of ``files``.

        The environments start identical, so the first prod PR shows exactly
        what it changes. The repository's own config names the signing key and
        the ``allowed_signers`` file (as absolute paths: git resolves relative
        ones against wherever it is run from), so ``git commit-tree -S`` and
        ``git verify-commit`` work in it as they are.
        """
        _init_repository(
            path,
            signing_key=signing_key,
            allowed_signers=allowed_signers,
            branches=branches,
            committer_name=committer_name,
            committer_email=committer_email,
        )

        config_repo = cls(path)
        with config_repo._lock:
            tree = config_repo._write_tree(None, files)
            root = config_repo._commit_tree(tree, parents=(), message=message)
            for branch in branches:
                config_repo._update_ref(branch, new=root, old=ZERO_OID)
            try:
                # Detached, so no environment branch is ever the checked-out one (module docstring).
                config_repo._repo.git.checkout("--quiet", "--detach", root)
            except git.GitCommandError as exc:
                raise RepoError(f"could not check out the seed commit in {path}: {_stderr(exc)}") from exc
        return config_repo

    @classmethod
    def clone(
        cls,
        path: Path,
        *,
        url: str,
        signing_key: SigningKey,
        allowed_signers: Path,
        branches: Sequence[str],
        timeout: float,
        committer_name: str = "apx",
        committer_email: str = "apx@localhost",
    ) -> GitConfigRepo:
        """Make a new repository holding ``branches`` (and the PR branches ``apx/*``) of the
        remote ``url``, configured like :meth:`create` makes one, with ``HEAD`` detached at
        the first branch: what ``apx init`` does on a second host of one installation.

        Every branch must exist on the remote; :class:`RepoError` names the missing ones.
        """
        _init_repository(
            path,
            signing_key=signing_key,
            allowed_signers=allowed_signers,
            branches=branches,
            committer_name=committer_name,
            committer_email=committer_email,
        )
        config_repo = cls(path)
        missing = [b for b in branches if b not in remote_heads(url, timeout=timeout)]
        if missing:
            raise RepoError(f"the config remote has no branch {', '.join(map(repr, missing))}")
        refspecs = [f"+refs/heads/{b}:refs/heads/{b}" for b in branches] + [PR_REFSPEC]
        # --update-head-ok: the new repository's HEAD names the (unborn) first branch.
        args = ["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--update-head-ok", url, *refspecs]
        config_repo._remote_git(args, url=url, timeout=timeout, doing="fetch from")
        with config_repo._lock:
            try:
                config_repo._repo.git.checkout("--quiet", "--detach", f"refs/heads/{branches[0]}")
            except git.GitCommandError as exc:
                raise RepoError(f"could not check out {branches[0]} in {path}: {_stderr(exc)}") from exc
        return config_repo

    def close(self) -> None:
        """Stop gitpython's helper processes; the object cannot be used afterwards."""
        self._repo.close()

    def __enter__(self) -> GitConfigRepo:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- ConfigRepo --------------------------------------------------------------

    def head(self, branch: str) -> str | None:
        """The commit ``branch`` points at, or None if there is no such branch.

        Read from the ref files by gitpython, without spawning git: it is on
        every intent's path.
        """
        _check_branch(branch)
        with self._lock:
            try:
                sha = git.SymbolicReference.dereference_recursive(self._repo, f"refs/heads/{branch}")
            except ValueError:
                return None
            return str(sha)

    def branches(self, prefix: str = "") -> Sequence[str]:
        """Local branch names starting with ``prefix``, sorted."""
        with self._lock:
            names = (str(head.name) for head in self._repo.heads)
            return sorted(name for name in names if name.startswith(prefix))

    def read(self, revision: str) -> Snapshot:
        """Every regular file at ``revision`` (a commit id or branch), as path → text.

        Symlinks and submodules are skipped: an environment holds YAML files.
        Snapshots are cached by commit id, since a commit never changes.
        """
        with self._lock:
            if _HEX40.match(revision) and (cached := self._cached(revision)) is not None:
                return cached
            sha = self._resolve(revision)
            if (cached := self._cached(sha)) is not None:
                return cached
            snapshot = Snapshot(revision=sha, files=self._read_files(sha))
            self._remember(snapshot)
            return snapshot

    def parent(self, revision: str) -> str | None:
        """The first parent of commit ``revision``, or None for a root commit (the seed).

        The first parent is the branch as it was before the commit, also for a
        merge; read through gitpython's long-lived ``cat-file`` helper, no new process.
        """
        with self._lock:
            sha = self._resolve(revision)
            parents = self._repo.commit(sha).parents
            return str(parents[0].hexsha) if parents else None

    def intent_commit(self, branch: str, intent_id: str, *, since: str) -> str | None:
        """The commit on ``branch``'s first-parent line after ``since`` whose ``Intent-Id:``
        trailer is ``intent_id``, if there is one.

        A decision that died between its commit and its record (``kill -9``, a
        power cut) left exactly this behind; the pipeline finishes it from here
        instead of committing the same change again. Usually ``since`` is the
        head (nothing to read); otherwise the commits in between are read through
        gitpython's long-lived ``cat-file`` helper, newest first, with no new process.
        """
        _check_branch(branch)
        trailer = f"Intent-Id: {intent_id}"
        with self._lock:
            head = self.head(branch)
            if head is None:
                return None
            stop = self._resolve(since)
            commit = self._repo.commit(head)
            while commit.hexsha != stop:
                message = commit.message if isinstance(commit.message, str) else commit.message.decode()
                # Only the trailer block (the last paragraph) counts: a rationale may quote one.
                if trailer in message.rstrip("\n").rsplit("\n\n", 1)[-1].splitlines():
                    return str(commit.hexsha)
                if not commit.parents:
                    return None
                commit = commit.parents[0]
            return None

    def commit(
        self,
        *,
        branch: str,
        parent: str,
        files: Mapping[str, str | None],
        message: str,
        merge: str | None = None,
    ) -> str:
        """Make one signed commit of ``files`` on top of ``parent`` and move ``branch`` to it.

        With ``merge`` (a PR branch's head), the commit is a merge commit whose
        second parent is ``merge``: ``files`` are then the merged result, which
        the caller planned and validated against ``parent``.

        ``None`` deletes a path (deleting a path that is not there is a no-op);
        a directory left empty disappears, as it always does in git. The branch
        moves only if it still points at ``parent``, or, when it does not exist
        yet, is still absent: that is how a PR branch ``apx/<intent-id>`` is
        created from the prod head. Otherwise :class:`BranchMoved` is raised and
        the branch is left as it is. The worktree and index are never touched.
        """
        with self._lock:
            staged = self.stage(branch=branch, parent=parent, files=files, message=message, merge=merge)
            return self.land(staged)

    # -- beyond the port -----------------------------------------------------------

    def stage(
        self,
        *,
        branch: str,
        parent: str,
        files: Mapping[str, str | None],
        message: str,
        merge: str | None = None,
    ) -> StagedCommit:
        """The first half of :meth:`commit`: the signed commit object, with no branch moved.

        :class:`BranchMoved` if ``branch`` is already elsewhere than ``parent``
        (or absent). :meth:`land` moves the branch; until then the commit is an
        object nothing points at, which ``git gc`` prunes if it never lands.
        :mod:`orchestrator.config_remote` pushes it in between.
        """
        _check_branch(branch)
        with self._lock:
            parent_sha = self._resolve(parent)
            current = self.head(branch)
            if current is not None and current != parent_sha:
                # Fail before paying for a signature; update-ref's CAS in land()
                # still catches a move that happens after this check.
                raise BranchMoved(f"branch {branch!r} is at {current[:12]}, not at {parent_sha[:12]}")
            tree = self._write_tree(parent_sha, files)
            new = self._commit_tree(
                tree,
                parents=[parent_sha] if merge is None else [parent_sha, self._resolve(merge)],
                message=message,
            )
            return StagedCommit(
                branch=branch,
                commit=new,
                parent=parent_sha,
                expected=None if current is None else parent_sha,
                files=dict(files),
            )

    def land(self, staged: StagedCommit, *, force: bool = False) -> str:
        """Move ``staged.branch`` to ``staged.commit`` and return the commit.

        A compare-and-swap from ``staged.expected`` (:class:`BranchMoved` if the
        branch is elsewhere), unless ``force``: after the config remote accepted
        the commit, the local branch follows it whatever it points at.
        """
        with self._lock:
            if force:
                self._update_ref(staged.branch, new=staged.commit, old=None)
            else:
                old = ZERO_OID if staged.expected is None else staged.expected
                self._update_ref(staged.branch, new=staged.commit, old=old)
            self._carry_snapshot(staged.parent, staged.commit, staged.files)
            return staged.commit

    def verify(self, commit: str) -> bool:
        """Whether ``commit`` carries a good signature by a key in the repo's ``allowed_signers``.

        Runs ``git verify-commit``, so it checks exactly what a human running
        it in this repository would. Unsigned commits and unknown keys are False.
        """
        with self._lock:
            try:
                self._repo.git.verify_commit("--end-of-options", commit)
            except git.GitCommandError:
                return False
            return True

    # -- a remote (orchestrator.config_remote decides when) ------------------------

    def fetch(self, url: str, refspecs: Sequence[str], *, timeout: float) -> bool:
        """``git fetch`` ``refspecs`` from ``url``; False (and nothing fetched) if a branch one of
        them names exactly is not on the remote. FETCH_HEAD is not written: processes share it."""
        args = ["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", url, *refspecs]
        try:
            self._remote_git(args, url=url, timeout=timeout, doing="fetch from")
        except _MissingRemoteRef:
            return False
        return True

    def push(self, url: str, moves: Mapping[str, tuple[str, str | None]], *, timeout: float) -> bool:
        """Push each ``branch: (commit, expected)`` to ``url`` as one compare-and-swap.

        ``expected`` is what the remote branch must still point at (None: it must not
        exist yet), checked by the remote (``--force-with-lease``), all branches or none
        (``--atomic``). True if the remote now has them, False if it refused because a
        branch was not where expected (someone else pushed first); :class:`RepoError` for
        any other failure (unreachable, a hook declined, a timeout), after which the
        outcome is unknown.
        """
        args = ["push", "--porcelain", "--atomic"]
        for branch, (commit, expected) in moves.items():
            _check_branch(branch)
            if not _HEX40.match(commit):
                raise ValueError(f"{commit!r} is not a commit id")
            args.append(f"--force-with-lease=refs/heads/{branch}:{expected or ''}")
        args += [url, *(f"{commit}:refs/heads/{branch}" for branch, (commit, _) in moves.items())]
        try:
            self._remote_git(args, url=url, timeout=timeout, doing="push to")
        except _Refused as exc:
            if exc.race:
                return False
            raise RepoError(f"the config remote {mask_url(url)} refused the push: {exc.reason}") from exc
        return True

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """Whether commit ``ancestor`` is ``descendant`` or in its history."""
        with self._lock:
            try:
                self._repo.git.merge_base("--is-ancestor", ancestor, descendant)
            except git.GitCommandError:
                return False
            return True

    def has_commit(self, revision: str) -> bool:
        """Whether ``revision`` (a full commit id) is in the local object database."""
        if not _HEX40.match(revision):
            return False
        with self._lock:
            try:
                return bool(self._repo.odb.info(bytes.fromhex(revision)).type == b"commit")
            except ValueError:
                return False

    def _remote_git(self, args: list[str], *, url: str, timeout: float, doing: str) -> str:
        with self._lock:
            return _run_remote(self._repo.git, args, url=url, timeout=timeout, doing=doing)

    # -- objects -----------------------------------------------------------------

    def _resolve(self, revision: str) -> str:
        """The full commit id ``revision`` names.

        A full id (what callers pass almost always) is checked through
        gitpython's long-lived ``cat-file`` helper; anything else costs a
        ``git rev-parse``.
        """
        if _HEX40.match(revision):
            try:
                if self._repo.odb.info(bytes.fromhex(revision)).type == b"commit":
                    return revision
            except ValueError:
                pass
            raise RepoError(f"no commit {revision} in the config repo")
        try:
            out = self._repo.git.rev_parse(
                "--verify", "--quiet", "--end-of-options", f"{revision}^{{commit}}"
            )
        except git.GitCommandError as exc:
            raise RepoError(f"no commit {revision!r} in the config repo") from exc
        return str(out)

    def _read_files(self, commit: str) -> dict[str, str]:
        """All regular files of ``commit``: one ``ls-tree`` and one pipelined ``cat-file --batch``.

        Asking gitpython's helper for each object in turn costs a round trip per
        file (~14 ms for the 64-file seed here); this is ~6 ms.
        """
        git_cmd = self._repo.git
        try:
            listing = git_cmd.ls_tree("-r", "-z", "--full-tree", commit, stdout_as_string=False)
        except git.GitCommandError as exc:
            raise RepoError(f"could not list commit {commit}: {_stderr(exc)}") from exc
        paths: list[str] = []
        oids: list[bytes] = []
        for record in listing.split(b"\0"):
            if not record:
                continue
            meta, path = record.split(b"\t", 1)
            mode, kind, oid = meta.split(b" ")
            # Regular files only: symlinks (120000) and submodules (160000) are not config.
            if kind == b"blob" and mode in (b"100644", b"100755"):
                paths.append(path.decode("utf-8", "surrogateescape"))
                oids.append(oid)
        if not oids:
            return {}
        # Keep the wrapper referenced: gitpython kills the process when it is collected.
        handle = git_cmd.execute(["git", "cat-file", "--batch"], as_process=True, istream=PIPE)
        popen = handle.proc
        if popen is None:
            raise RepoError("git cat-file did not start")
        out, err = popen.communicate(b"".join(oid + b"\n" for oid in oids))
        if popen.returncode != 0:
            raise RepoError(f"git cat-file failed reading {commit}: {err.decode(errors='replace').strip()}")
        files: dict[str, str] = {}
        position = 0
        for path in paths:
            newline = out.index(b"\n", position)
            size = int(out[position:newline].split(b" ")[2])
            start = newline + 1
            try:
                files[path] = out[start : start + size].decode("utf-8")
            except UnicodeDecodeError as exc:
                raise RepoError(f"{path} at {commit[:12]} is not UTF-8 text") from exc
            position = start + size + 1  # the object is followed by a newline
        return files

    def _load_dir(self, binsha: bytes) -> _Dir:
        data = self._repo.odb.stream(binsha).read()
        return _Dir({name: (mode, sha) for sha, mode, name in tree_entries_from_data(data)})

    def _store(self, kind: bytes, data: bytes) -> bytes:
        """Write one object as a loose object, in-process.

        gitpython's own ``odb.store`` runs ``git hash-object`` once per object
        (~3 ms each); gitdb's loose writer does the same job in ~0.3 ms. It
        does not fsync, unlike git's defaults: a power cut right after a commit
        could lose a just-written blob; the ref update that follows is made by
        git and is durable.
        """
        istream = self._loose.store(IStream(kind, len(data), BytesIO(data)))
        return bytes(istream.binsha)

    def _write_tree(self, parent: str | None, files: Mapping[str, str | None]) -> str:
        """Write the blobs and the changed trees of ``parent``'s tree with ``files`` applied."""
        # A bad path is the caller's bug, not a repository failure: ValueError, before any write.
        edits = [(_split(path), text) for path, text in files.items()]
        try:
            root = _Dir({}) if parent is None else self._load_dir(self._repo.commit(parent).tree.binsha)
            for parts, text in edits:
                self._apply(root, parts, text)
            return self._store_dir(root, keep_empty=True).hex()
        except (ValueError, OSError) as exc:
            raise RepoError(f"could not write the tree: {exc}") from exc

    def _apply(self, root: _Dir, parts: list[str], text: str | None) -> None:
        directory = root
        for depth, name in enumerate(parts[:-1]):
            entry = directory.entries.get(name)
            if entry is None:
                if text is None:
                    return  # deleting under a directory that does not exist
                entry = directory.entries[name] = _Dir({})
            elif not isinstance(entry, _Dir):
                if S_IFMT(entry[0]) != S_IFDIR:
                    raise ValueError(f"{'/'.join(parts[: depth + 1])} is a file, not a directory")
                entry = directory.entries[name] = self._load_dir(entry[1])
            directory = entry
        name = parts[-1]
        existing = directory.entries.get(name)
        if existing is not None and (isinstance(existing, _Dir) or S_IFMT(existing[0]) == S_IFDIR):
            raise ValueError(f"{'/'.join(parts)} is a directory, not a file")
        if text is None:
            directory.entries.pop(name, None)
        else:
            directory.entries[name] = (_FILE_MODE, self._store(b"blob", text.encode("utf-8")))

    def _store_dir(self, directory: _Dir, *, keep_empty: bool = False) -> bytes:
        """Store ``directory`` (after its edited subdirectories) and return its id.

        Returns an empty id for a directory with no entries left, which the
        caller then drops: git has no empty directories. Only the root tree is
        kept when empty (``keep_empty``): a commit always has a tree.
        """
        rows: list[tuple[bytes, int, str]] = []
        for name, entry in directory.entries.items():
            if isinstance(entry, _Dir):
                sha = self._store_dir(entry)
                if sha:
                    rows.append((sha, _DIR_MODE, name))
            else:
                rows.append((entry[1], entry[0], name))
        if not rows and not keep_empty:
            return b""
        # git orders tree entries by name, comparing a directory as if it ended in '/'.
        rows.sort(key=lambda row: row[2].encode("utf-8") + (b"/" if S_IFMT(row[1]) == S_IFDIR else b""))
        buffer = BytesIO()
        tree_to_stream(rows, buffer.write)
        return self._store(b"tree", buffer.getvalue())

    def _commit_tree(self, tree: str, *, parents: Sequence[str], message: str) -> str:
        args = ["commit-tree", "-S", tree]
        for parent in parents:
            args += ["-p", parent]
        args += ["-F", "-"]
        with tempfile.TemporaryFile() as stdin:
            stdin.write(message.encode("utf-8"))
            stdin.seek(0)
            try:
                out = self._repo.git.execute(["git", *args], istream=stdin)
            except git.GitCommandError as exc:
                raise RepoError(f"git commit-tree failed (signing?): {_stderr(exc)}") from exc
        return str(out).strip()

    def _update_ref(self, branch: str, *, new: str, old: str | None) -> None:
        """Move ``branch`` to ``new`` if it is at ``old`` (the zero id: absent); ``None``: from anywhere."""
        ref = f"refs/heads/{branch}"
        try:
            self._repo.git.update_ref("-m", f"apx: commit {new[:12]}", ref, new, *([old] if old else []))
        except git.GitCommandError as exc:
            now = self.head(branch)
            if old is not None and ((now or ZERO_OID) != old or "cannot lock ref" in _stderr(exc)):
                raise BranchMoved(
                    f"branch {branch!r} moved to {(now or 'nothing')[:12]} while committing "
                    f"(expected {'nothing' if old == ZERO_OID else old[:12]})"
                ) from exc
            raise RepoError(f"git update-ref {ref} failed: {_stderr(exc)}") from exc

    # -- snapshot cache ----------------------------------------------------------

    def _cached(self, sha: str) -> Snapshot | None:
        snapshot = self._snapshots.get(sha)
        if snapshot is not None:
            self._snapshots.move_to_end(sha)
        return snapshot

    def _remember(self, snapshot: Snapshot) -> None:
        self._snapshots[snapshot.revision] = snapshot
        while len(self._snapshots) > _SNAPSHOT_CACHE_SIZE:
            self._snapshots.popitem(last=False)

    def _carry_snapshot(self, parent: str, new: str, files: Mapping[str, str | None]) -> None:
        """Derive the new commit's snapshot from its parent's, sparing the next read()."""
        before = self._snapshots.get(parent)
        if before is None:
            return
        after = dict(before.files)
        for path, text in files.items():
            if text is None:
                after.pop(path, None)
            else:
                after[path] = text
        self._remember(Snapshot(revision=new, files=after))


@dataclass(frozen=True)
class StagedCommit:
    """A signed commit made by :meth:`GitConfigRepo.stage`, its branch not yet moved."""

    branch: str
    commit: str
    parent: str
    #: What the branch must still point at for the commit to land (None: it must not exist yet).
    expected: str | None
    files: Mapping[str, str | None]


class _MissingRemoteRef(Exception):
    """A refspec named a branch the remote does not have."""


class _Refused(Exception):
    """The remote refused a push; ``race`` when only because a branch was not where expected."""

    def __init__(self, *, race: bool, reason: str) -> None:
        super().__init__(reason)
        self.race = race
        self.reason = reason


def _init_repository(
    path: Path,
    *,
    signing_key: SigningKey,
    allowed_signers: Path,
    branches: Sequence[str],
    committer_name: str,
    committer_email: str,
) -> None:
    """``git init`` a repository for ``branches`` (checked first; the first is the initial one),
    configured to sign with ``signing_key`` and verify by itself.

    Both paths are stored absolute: git resolves relative ones against wherever it is run from.
    """
    if not branches:
        raise ValueError("at least one branch is needed")
    for branch in branches:
        _check_branch(branch)
    initial_branch = branches[0]
    if (path / ".git").exists():
        raise RepoError(f"{path} is already a git repository")
    try:
        repo = git.Repo.init(str(path), mkdir=True, initial_branch=initial_branch)
        with repo.config_writer("repository") as config:
            config.set_value("user", "name", committer_name)
            config.set_value("user", "email", committer_email)
            config.set_value("user", "signingkey", str(signing_key.private_path.resolve()))
            config.set_value("gpg", "format", "ssh")
            config.set_value('gpg "ssh"', "allowedSignersFile", str(allowed_signers.resolve()))
            config.set_value("commit", "gpgsign", "true")
        repo.close()
    except git.GitCommandError as exc:
        raise RepoError(f"could not initialise {path}: {_stderr(exc)}") from exc


def remote_heads(url: str, *, timeout: float) -> dict[str, str]:
    """Branch name → commit of every branch on the remote ``url`` (``git ls-remote --heads``).

    Needs no local repository: ``apx init`` asks before it makes one.
    """
    out = _run_remote(git.Git(), ["ls-remote", "--heads", url], url=url, timeout=timeout, doing="list")
    heads: dict[str, str] = {}
    for line in out.splitlines():
        sha, _, ref = line.partition("\t")
        if ref.startswith("refs/heads/"):
            heads[ref.removeprefix("refs/heads/")] = sha
    return heads


def _run_remote(git_cmd: git.Git, args: list[str], *, url: str, timeout: float, doing: str) -> str:
    """Run ``git ARGS`` against a remote, never waiting on a password prompt."""
    if url.startswith("-"):
        raise ValueError(f"{url!r} is not a git URL")
    try:
        out = git_cmd.execute(
            ["git", *args],
            env={"GIT_TERMINAL_PROMPT": "0"},
            kill_after_timeout=timeout,
            with_extended_output=True,
        )
    except git.GitCommandError as exc:
        stdout = exc.stdout if isinstance(exc.stdout, str) else ""
        stderr = exc.stderr if isinstance(exc.stderr, str) else ""
        if "couldn't find remote ref" in stderr:
            raise _MissingRemoteRef from exc
        refused = [line for line in stdout.splitlines() if line.startswith("!")]
        if refused:
            reasons = [line.rsplit("\t", 1)[-1] for line in refused]
            race = all(r.startswith("[rejected]") for r in reasons)
            raise _Refused(race=race, reason="; ".join(reasons)) from exc
        timed_out = exc.status == -9 or "Timeout:" in stderr
        why = f"no answer in {timeout:g}s" if timed_out else _stderr(exc)
        raise RepoError(f"could not {doing} the config remote {mask_url(url)}: {why}") from exc
    return str(out[1])


def _check_branch(branch: str) -> None:
    if not _BRANCH_RE.match(branch):
        raise ValueError(f"{branch!r} is not a branch name apx uses")


def _split(path: str) -> list[str]:
    parts = path.split("/")
    if any(part in ("", ".", "..", ".git") for part in parts):
        raise ValueError(f"{path!r} is not a relative path inside the repository")
    return parts


def _stderr(exc: git.GitCommandError) -> str:
    """The last meaningful line git printed, for a one-line error message."""
    text = exc.stderr if isinstance(exc.stderr, str) else str(exc)
    text = text.replace("stderr:", "").strip().strip("'")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else f"exit status {exc.status}"
