"""Several hosts, one config repo: keep this host's clone at a shared git remote's state.

With ``config_repo.remote`` set, :mod:`orchestrator.bootstrap` wraps the home's
:class:`~orchestrator.git_repo.GitConfigRepo` in a :class:`RemoteConfigRepo` and
the environment lock in a :class:`SyncingLock`; the pipeline sees the same two
ports as on one host and is not changed. The remote is the source of truth, and
the environment lock (a PostgreSQL advisory lock when the hosts share the
database) is what lets one host at a time write an environment's branch:

* **Sync under the lock.** Right after an environment's lock is acquired, the
  environment's branch and every PR branch ``apx/*`` are fetched *into the local
  branches* (forced): whatever this clone held, it now holds what the remote
  says. Admission, sequencing, crash recovery (the ``Intent-Id:`` trailer look-up)
  and merges all run on that state, so a commit another host pushed, even one
  pushed just before that host crashed, is seen here.
* **Push before the local branch moves.** :meth:`RemoteConfigRepo.commit` makes
  the signed commit object, pushes it to the remote as a compare-and-swap
  (``--force-with-lease=<branch>:<expected>``, ``--atomic``) and only then moves
  the local branch. A local branch therefore never points at a commit the remote
  lacks; a commit made but never pushed (a crash in between) is an unreachable
  object, not applied anywhere.
* **A lost race re-plans.** If the remote refuses the push because the branch is
  no longer where this host expected (someone pushed outside apx's lock), the
  branch is synced again and :class:`~orchestrator.errors.BranchMoved` is raised:
  the pipeline plans the intent once more on the new head, as it does for a local
  compare-and-swap. Nothing is half done: the remote refused everything
  (``--atomic``), the local branch never moved.
* **Unknown outcome.** A push that fails otherwise (unreachable, timeout) may
  still have landed; the remote is asked once. If it has the commit, the commit
  counts as made; if not, or if it cannot be asked, :class:`RepoError` fails the
  decision with a message saying what to check.
* **Reads outside the lock.** ``apx intents blame``, ``apx rollback``, the review
  page and the API read commits any host made. A commit this clone does not have
  yet is fetched on demand (every remote branch, into ``refs/remotes/config-remote/*``,
  which nothing but humans reads); local branches are written only under their
  environment's lock (PR branches under any), never by such a read.

Who calls it: only :mod:`orchestrator.bootstrap` (and ``apx init`` through
:mod:`orchestrator.home`). Git itself is driven through :class:`GitConfigRepo`,
the one module that imports gitpython.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TypeVar

from orchestrator import logs
from orchestrator.errors import BranchMoved, RepoError
from orchestrator.git_repo import PR_REFSPEC, GitConfigRepo, remote_heads
from orchestrator.ports import EnvironmentLock, Snapshot
from orchestrator.pr_settings import mask_url

__all__ = ["TRACKING", "RemoteConfigRepo", "SyncingLock"]

log = logs.get_logger("apx.config_remote")

#: Where reads outside a lock fetch the remote's branches to (``git log config-remote/dev``).
TRACKING = "config-remote"
_T = TypeVar("_T")


class RemoteConfigRepo:
    """A ``ConfigRepo`` whose branches live on a shared git remote; ``local`` is this host's clone.

    Safe to share between threads for the same reasons as :class:`GitConfigRepo`:
    each branch is written only under its environment's lock.
    """

    def __init__(self, local: GitConfigRepo, *, url: str, timeout: float) -> None:
        self._local = local
        self._url = url
        self._timeout = timeout
        self.url_shown = mask_url(url)

    @property
    def local(self) -> GitConfigRepo:
        return self._local

    # -- ConfigRepo --------------------------------------------------------------

    def head(self, branch: str) -> str | None:
        """The local branch's commit. An environment branch this clone has never seen
        (added on the remote since) is fetched first; PR branches are not: their absence
        is the normal answer, and the environment's sync brings the ones that exist."""
        head = self._local.head(branch)
        if head is None and not branch.startswith("apx/"):
            # Not forced: outside the lock this only ever creates the branch, never moves it.
            try:
                refspec = f"refs/heads/{branch}:refs/heads/{branch}"
                self._local.fetch(self._url, [refspec], timeout=self._timeout)
            except RepoError as exc:
                log.warning("config_remote.fetch_failed", branch=branch, error=exc.message)
            head = self._local.head(branch)
        return head

    def branches(self, prefix: str = "") -> Sequence[str]:
        return self._local.branches(prefix)

    def read(self, revision: str) -> Snapshot:
        return self._fetching(revision, lambda: self._local.read(revision))

    def parent(self, revision: str) -> str | None:
        return self._fetching(revision, lambda: self._local.parent(revision))

    def intent_commit(self, branch: str, intent_id: str, *, since: str) -> str | None:
        return self._fetching(since, lambda: self._local.intent_commit(branch, intent_id, since=since))

    def commit(
        self,
        *,
        branch: str,
        parent: str,
        files: Mapping[str, str | None],
        message: str,
        merge: str | None = None,
    ) -> str:
        """Make the signed commit, push it as a compare-and-swap, then move the local branch.

        :class:`BranchMoved` if the branch is not where this host expected, locally
        or on the remote (the local branch then shows the remote's tip);
        :class:`RepoError` if the remote could not be written.
        """
        staged = self._local.stage(branch=branch, parent=parent, files=files, message=message, merge=merge)
        if not self._push(branch, staged.commit, expected=staged.expected):
            self.sync(branch)
            now = self._local.head(branch)
            raise BranchMoved(
                f"branch {branch!r} on the config remote {self.url_shown} is at {(now or 'nothing')[:12]}, "
                f"not at {(staged.expected or 'nothing')[:12]}: another writer pushed first"
            )
        return self._local.land(staged, force=True)

    # -- beyond the port -----------------------------------------------------------

    def sync(self, branch: str) -> None:
        """Set the local ``branch`` and every PR branch to the remote's tips.

        Call it holding ``branch``'s environment lock (:class:`SyncingLock` does).
        """
        before = self._local.head(branch)
        refspecs = [PR_REFSPEC]
        if not branch.startswith("apx/"):
            refspecs.insert(0, f"+refs/heads/{branch}:refs/heads/{branch}")
        if not self._local.fetch(self._url, refspecs, timeout=self._timeout):
            if before is not None:
                raise RepoError(
                    f"the config remote {self.url_shown} has no branch {branch!r}, which this host's "
                    f"config repo has; publish it once with `git -C {self._local.path} push "
                    f"{self.url_shown} {branch}` (docs/how-to/run-on-several-hosts.md)"
                )
            self._local.fetch(self._url, [PR_REFSPEC], timeout=self._timeout)
            return
        after = self._local.head(branch)
        if before is not None and after != before and after is not None:
            if self._local.is_ancestor(before, after):
                log.debug("config_remote.synced", branch=branch, was=before, now=after)
            else:
                # Only a commit made outside apx can do this: apx pushes before it moves a branch.
                log.warning(
                    "config_remote.local_branch_replaced",
                    branch=branch,
                    was=before,
                    now=after,
                    hint=f"the old tip stays in `git -C {self._local.path} reflog {branch}`",
                )

    def verify(self, commit: str) -> bool:
        return self._local.verify(commit)

    def close(self) -> None:
        self._local.close()

    def _push(self, branch: str, commit: str, *, expected: str | None) -> bool:
        """True if the remote's ``branch`` is now ``commit``; False if it was not at ``expected``."""
        try:
            return self._local.push(self._url, {branch: (commit, expected)}, timeout=self._timeout)
        except RepoError as exc:
            # The push may have landed before the failure (a timeout while the remote wrote it).
            try:
                landed = remote_heads(self._url, timeout=self._timeout).get(branch) == commit
            except RepoError:
                landed = False
            if landed:
                log.warning("config_remote.push_landed_despite_error", branch=branch, commit=commit)
                return True
            raise RepoError(
                f"{exc.message}. Commit {commit[:12]} may or may not be on {branch!r} there; the next "
                "decision in this environment syncs from the remote and carries on from what it holds"
            ) from exc

    def _fetching(self, revision: str, call: Callable[[], _T]) -> _T:
        """``call()``; if it failed because this clone lacks commit ``revision``, fetch and retry once."""
        try:
            return call()
        except RepoError as missing:
            if self._local.has_commit(revision) or len(revision) != 40:
                raise
            refspec = f"+refs/heads/*:refs/remotes/{TRACKING}/*"
            try:
                self._local.fetch(self._url, [refspec], timeout=self._timeout)
            except RepoError as exc:
                # Another process fetching at the same moment may hold these refs' locks; the
                # objects may have arrived all the same. Say what went wrong if they did not.
                if not self._local.has_commit(revision):
                    raise RepoError(f"{missing.message}; fetching it failed: {exc.message}") from exc
            return call()


class SyncingLock:
    """An environment lock that syncs the environment's branch from the remote once acquired."""

    def __init__(
        self, lock: EnvironmentLock, repo: RemoteConfigRepo, *, branch_of: Callable[[str], str]
    ) -> None:
        self._lock = lock
        self._repo = repo
        self._branch_of = branch_of

    @contextmanager
    def hold(self, environment: str) -> Iterator[None]:
        with self._lock.hold(environment):
            self._repo.sync(self._branch_of(environment))
            yield
