"""PR providers: where humans see a prod PR — apx's own record, or a real GitHub PR.

apx owns every PR it opens: the signed branch ``apx/<intent-id>`` in the config
repo, the record, the approvals and the signed merge commit. A provider only
mirrors that to a review tool (the :class:`~orchestrator.ports.PrProvider`
port). :func:`build_provider` is called by the composition root with
:class:`PrProviderSettings`; the review flow calls ``publish`` when a PR opens,
``close`` when it is rejected or expires, ``merged`` after apx merged it.

* :class:`LocalPrProvider` — the PR *is* the branch plus the record; nothing
  to mirror. Always available, the default.
* :class:`GitHubPrProvider` — pushes the signed branch with ``git push`` (the
  commit ids, and so the signatures, arrive unchanged) and opens a PR through
  GitHub's REST API with httpx. On merge it pushes the base branch: apx made
  the merge commit, and GitHub marks a PR merged once its head is reachable
  from the base. Approvals are given in apx, never read from GitHub reviews.

Every call is idempotent, so a retry after a crash or a timeout never opens a
second PR or posts a second comment: ``publish`` looks the PR up by its head
branch before opening one, and comments carry a hidden marker that is looked
for first. A transient failure (5xx, connection) re-runs the whole
look-up-then-act step, because a create that "failed" with a 502 may well
have created the PR.

Secrets: the API token travels only in the ``Authorization`` header. The git
push authenticates however ``remote_url`` says (an SSH key, a credential
helper); credentials in that URL are masked in every message. This module is
the only one that imports httpx, and imports it only when a GitHub provider is
built, so installations on the local provider never pay for it.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
)

from orchestrator.decision import PullRequestRef
from orchestrator.errors import BadInput, InternalError
from orchestrator.logs import get_logger
from orchestrator.ports import PrProvider, PrPublication
from orchestrator.pr_settings import (
    DEFAULT_API_URL,
    OWNER_RE,
    REPO_RE,
    GitHubSettings,
    PrProviderSettings,
    check_github_name,
    mask_url,
    url_secrets,
)

if TYPE_CHECKING:
    import httpx

__all__ = [
    "GitHubPrProvider",
    "GitHubSettings",
    "LocalPrProvider",
    "PrProviderError",
    "PrProviderSettings",
    "PrProviderUnavailable",
    "PrPushError",
    "build_provider",
]

log = get_logger("apx.pr")

#: The REST API version the request and response shapes here were written against.
API_VERSION = "2022-11-28"

#: A full commit id: what apx pushes, never a ref name that could resolve elsewhere.
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$")
#: Branch names apx makes (as GitConfigRepo accepts them); nothing that reads as an option or a refspec.
_BRANCH_RE = re.compile(r"^(?!.*\.\.)[A-Za-z0-9_-][A-Za-z0-9._-]*(?:/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$")

_T = TypeVar("_T")
_M = TypeVar("_M", bound=BaseModel)


# -- errors ------------------------------------------------------------------------


class PrProviderError(InternalError):
    """The review tool refused a PR operation."""

    code = "pr_provider"


class PrProviderUnavailable(PrProviderError):
    """The review tool did not answer (5xx, network, rate limit); try again later."""

    code = "pr_provider_unavailable"
    retryable = True


class PrPushError(PrProviderError):
    """git could not push a branch to the review tool's remote."""

    code = "pr_push"


# -- the local provider --------------------------------------------------------------


class LocalPrProvider:
    """The PR is the branch ``apx/<intent-id>`` in the config repo plus apx's record.

    There is nothing to mirror, so the calls only log; reviewers use
    ``apx prs show`` and ``git diff prod apx/<intent-id>`` in the config repo.
    """

    name = "local"

    def publish(self, pr: PullRequestRef, *, title: str, body: str) -> PrPublication:
        log.info("pr.published", provider=self.name, pr=pr.id, branch=pr.branch, base=pr.base, head=pr.head)
        return PrPublication(provider=self.name)

    def close(self, pr: PullRequestRef, publication: PrPublication, *, reason: str) -> None:
        log.info("pr.closed", provider=self.name, pr=pr.id, branch=pr.branch, reason=reason)

    def merged(self, pr: PullRequestRef, publication: PrPublication, *, merge_commit: str) -> None:
        log.info("pr.merged", provider=self.name, pr=pr.id, base=pr.base, merge_commit=merge_commit)


# -- the GitHub provider -------------------------------------------------------------


class _Transient(Exception):
    """A failure worth retrying; carries the one-line reason and what we were doing."""

    def __init__(self, reason: str, *, doing: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.doing = doing


class _Ref(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    ref: str
    sha: str | None = None


class _PullRequest(BaseModel):
    """The fields of GitHub's pull-request object this module reads."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    number: int
    html_url: str
    state: str
    head: _Ref
    base: _Ref


class _Comment(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    body: str | None = None


class GitHubPrProvider:
    """A real PR on GitHub for each apx PR; the branch is pushed with git, the PR made over REST.

    ``remote_url`` is where ``git push`` sends branches (the GitHub repository
    ``owner/repo``, by SSH or HTTPS with a credential helper); ``token`` is for
    the REST API only. ``client`` is an httpx client to send requests through
    (tests pass one with a recorded transport); without one the provider makes
    its own, closed by :meth:`shutdown`. Transient failures are retried
    ``retries`` times, waiting ``backoff`` seconds, doubling each time.
    """

    name = "github"

    def __init__(
        self,
        *,
        repo_path: Path,
        remote_url: str,
        owner: str,
        repo: str,
        token: str,
        client: httpx.Client | None = None,
        api_url: str = DEFAULT_API_URL,
        retries: int = 3,
        backoff: float = 0.5,
        timeout: float = 30.0,
        push_timeout: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not token:
            raise ValueError("the GitHub PR provider needs an API token")
        if not remote_url or remote_url.startswith("-"):
            raise ValueError("remote_url must name a git remote")
        check_github_name("owner", owner, OWNER_RE)
        check_github_name("repo", repo, REPO_RE)
        import httpx  # here, not at the top: see the module docstring

        # Redirects: GitHub answers a renamed or transferred repository with one.
        self._client = client if client is not None else httpx.Client(timeout=timeout, follow_redirects=True)
        self._owns_client = client is None
        self._repo_path = Path(repo_path)
        self._remote_url = remote_url
        self._remote_shown = mask_url(remote_url)
        self._owner = owner
        self._repo = repo
        self._api = f"{api_url.rstrip('/')}/repos/{owner}/{repo}"
        self._token = token
        self._headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
            "Authorization": f"Bearer {token}",
            "User-Agent": "apx-control-plane",
        }
        self._retries = retries
        self._backoff = backoff
        self._push_timeout = push_timeout
        self._sleep = sleep

    # -- lifecycle -----------------------------------------------------------------

    def shutdown(self) -> None:
        """Close the HTTP connections this provider opened (``close`` closes a PR, not this)."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> GitHubPrProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # -- PrProvider ----------------------------------------------------------------

    def publish(self, pr: PullRequestRef, *, title: str, body: str) -> PrPublication:
        """Push the PR's head commit to ``pr.branch`` on the remote, then find or open its PR.

        The commit the record names (``pr.head``) is pushed, not whatever the
        local branch points at, so the PR on GitHub shows exactly what apx
        validated. Pushing the same commit again is a no-op, and the look-up
        finds the PR an earlier call opened, so ``publish`` can be repeated.
        """
        self._push({pr.branch: pr.head}, what=f"the PR branch {pr.branch}")

        def step() -> tuple[_PullRequest, bool]:
            found = self._find(pr)
            if found is not None:
                return found, False
            return self._open(pr, title=title, body=body), True

        found, opened = self._retrying(step)
        if not opened and found.state != "open":
            log.warning("pr.github_not_open", pr=pr.id, number=found.number, state=found.state)
        log.info(
            "pr.published" if opened else "pr.already_published",
            provider=self.name,
            pr=pr.id,
            branch=pr.branch,
            number=found.number,
            url=found.html_url,
        )
        return PrPublication(provider=self.name, url=found.html_url, number=found.number)

    def close(self, pr: PullRequestRef, publication: PrPublication, *, reason: str) -> None:
        """Comment ``reason`` on the GitHub PR (once) and close it; the branch is left in place."""
        number = self._number(pr, publication)
        if number is None:
            log.info("pr.closed", provider=self.name, pr=pr.id, github="no PR to close")
            return
        text = f"Closed by apx: {reason}"
        self._retrying(lambda: self._comment_once(number, marker=_marker("closed", pr), text=text))
        self._retrying(
            lambda: self._call(
                "PATCH",
                f"{self._api}/pulls/{number}",
                json={"state": "closed"},
                doing=f"close PR #{number} ({pr.branch})",
            )
        )
        log.info("pr.closed", provider=self.name, pr=pr.id, number=number, reason=reason)

    def merged(self, pr: PullRequestRef, publication: PrPublication, *, merge_commit: str) -> None:
        """Push ``merge_commit`` to ``pr.base`` on the remote and say so on the PR.

        GitHub marks the PR merged by itself once the pushed base contains the
        PR's head. The push is never forced: if the remote's base has commits
        apx does not have (someone merged or pushed on GitHub), it is refused
        and reported, and nothing is overwritten.
        """
        self._push({pr.base: merge_commit}, what=f"the {pr.base} branch")
        number = self._number(pr, publication)
        if number is not None:
            text = f"Merged by apx into `{pr.base}` as {merge_commit} (a signed merge commit)."
            self._retrying(lambda: self._comment_once(number, marker=_marker("merged", pr), text=text))
        log.info(
            "pr.merged", provider=self.name, pr=pr.id, number=number, base=pr.base, merge_commit=merge_commit
        )

    # -- REST steps (each idempotent, so a retry may run it again) -------------------

    def _find(self, pr: PullRequestRef) -> _PullRequest | None:
        """The PR on GitHub from ``pr.branch`` into ``pr.base``, in any state, if there is one."""
        doing = f"look up the PR for {pr.branch}"
        answer = self._call(
            "GET",
            f"{self._api}/pulls",
            params={"head": f"{self._owner}:{pr.branch}", "state": "all"},
            doing=doing,
        )
        if not isinstance(answer, list):
            raise PrProviderError(f"GitHub answered the request to {doing} with something that is not a list")
        for item in answer:
            found = _parse(_PullRequest, item, doing=doing)
            if found.head.ref == pr.branch and found.base.ref == pr.base:
                return found
        return None

    def _open(self, pr: PullRequestRef, *, title: str, body: str) -> _PullRequest:
        doing = f"open the PR for {pr.branch}"
        answer = self._call(
            "POST",
            f"{self._api}/pulls",
            json={"title": title, "head": pr.branch, "base": pr.base, "body": _fit(body, pr) + _footer(pr)},
            doing=doing,
        )
        return _parse(_PullRequest, answer, doing=doing)

    def _number(self, pr: PullRequestRef, publication: PrPublication) -> int | None:
        """The GitHub PR number: from the publication, or looked up (it was published elsewhere)."""
        if publication.provider == self.name and publication.number is not None:
            return publication.number
        found = self._retrying(lambda: self._find(pr))
        return found.number if found is not None else None

    def _comment_once(self, number: int, *, marker: str, text: str) -> None:
        """Post ``text`` on PR ``number`` unless a comment with ``marker`` is already there."""
        doing = f"comment on PR #{number}"
        url: str | None = f"{self._api}/issues/{number}/comments"
        params: dict[str, str] | None = {"per_page": "100"}
        while url is not None:
            response = self._send("GET", url, params=params, doing=f"read the comments of PR #{number}")
            page = _json(response)
            if not isinstance(page, list):
                raise PrProviderError(
                    f"GitHub answered the request to {doing} with something that is not a list"
                )
            for item in page:
                if marker in (_parse(_Comment, item, doing=doing).body or ""):
                    return
            # GitHub pages with Link headers; the next URL carries its own query.
            url, params = response.links.get("next", {}).get("url"), None
        self._call(
            "POST", f"{self._api}/issues/{number}/comments", json={"body": f"{text}\n\n{marker}"}, doing=doing
        )

    # -- HTTP ------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        url: str,
        *,
        doing: str,
        params: Mapping[str, str] | None = None,
        json: Any = None,
    ) -> Any:
        return _json(self._send(method, url, doing=doing, params=params, json=json))

    def _send(
        self,
        method: str,
        url: str,
        *,
        doing: str,
        params: Mapping[str, str] | None = None,
        json: Any = None,
    ) -> httpx.Response:
        """One request. 2xx is returned; 5xx and network failures raise :class:`_Transient`."""
        import httpx  # already loaded by __init__; see the module docstring

        try:
            response = self._client.request(method, url, params=params, json=json, headers=self._headers)
        except httpx.TransportError as exc:
            raise _Transient(self._scrub(f"{type(exc).__name__}: {exc}"), doing=doing) from exc
        status = response.status_code
        if status < 300:
            return response
        if status >= 500:
            raise _Transient(f"{status} {response.reason_phrase}", doing=doing)
        if status == 429 or (status == 403 and response.headers.get("x-ratelimit-remaining") == "0"):
            raise PrProviderUnavailable(
                f"GitHub's API rate limit is used up; could not {doing}{_reset_time(response)}"
            )
        raise PrProviderError(self._scrub(f"GitHub refused to {doing}: {status} {_api_message(response)}"))

    def _retrying(self, step: Callable[[], _T]) -> _T:
        """Run ``step``, again after a transient failure, up to ``retries`` more times."""
        attempt = 0
        while True:
            try:
                return step()
            except _Transient as exc:
                if attempt >= self._retries:
                    tries = f"{attempt + 1} attempt{'s' if attempt else ''}"
                    raise PrProviderUnavailable(
                        f"GitHub did not answer while trying to {exc.doing}: {exc.reason} (after {tries})"
                    ) from exc
                delay = self._backoff * 2**attempt
                log.warning("pr.github_retry", doing=exc.doing, reason=exc.reason, attempt=attempt + 1)
                if delay > 0:
                    self._sleep(delay)
                attempt += 1

    # -- git -------------------------------------------------------------------------

    def _push(self, refs: Mapping[str, str], *, what: str) -> None:
        """``git push`` each commit to its branch on the remote; never forced.

        ``GIT_TERMINAL_PROMPT=0``: a remote that wants a password fails at once
        instead of hanging a server on a prompt nobody sees.
        """
        for branch, commit in refs.items():
            # An empty source would make "<src>:<dst>" a *delete* of the remote branch.
            if not _COMMIT_RE.match(commit):
                raise PrPushError(f"refusing to push {what}: {commit!r} is not a commit id")
            if not _BRANCH_RE.match(branch):
                raise PrPushError(f"refusing to push {what}: {branch!r} is not a branch name")
        refspecs = [f"{commit}:refs/heads/{branch}" for branch, commit in refs.items()]
        try:
            done = subprocess.run(
                ["git", "push", "--porcelain", self._remote_url, *refspecs],
                cwd=self._repo_path,
                env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
                capture_output=True,
                text=True,
                timeout=self._push_timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise PrPushError(
                f"could not push {what} to {self._remote_shown}: no answer in {self._push_timeout:g}s"
            ) from exc
        except OSError as exc:
            raise PrPushError(
                f"could not push {what}: could not run git in {self._repo_path} ({exc.strerror})"
            ) from exc
        if done.returncode != 0:
            why = self._scrub(_push_failure(done.stdout, done.stderr))
            raise PrPushError(f"could not push {what} to {self._remote_shown}: {why}")
        log.info("pr.pushed", remote=self._remote_shown, refs=sorted(refs))

    def _scrub(self, text: str) -> str:
        """``text`` with the API token and any credentials of the remote URL masked."""
        text = text.replace(self._remote_url, self._remote_shown)
        if len(self._token) >= 8:  # a real token; masking a few letters would only garble the text
            text = text.replace(self._token, "***")
        for secret in url_secrets(self._remote_url):
            text = text.replace(secret, "***")
        return text


def _parse(model: type[_M], data: Any, *, doing: str) -> _M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        where = ".".join(str(part) for part in exc.errors()[0]["loc"]) or "the object"
        raise PrProviderError(
            f"GitHub's answer to the request to {doing} is not what apx expects ({where})"
        ) from exc


def _marker(event: str, pr: PullRequestRef) -> str:
    """Hidden in the rendered comment; how a repeated call knows it already commented."""
    return f"<!-- apx:{event} {pr.id} -->"


#: GitHub refuses a PR body longer than 65,536 characters; keep room for the footer.
_MAX_BODY = 64_000


def _fit(body: str, pr: PullRequestRef) -> str:
    """``body``, cut to what GitHub accepts: a large change's diff can be longer."""
    if len(body) <= _MAX_BODY:
        return body
    cut = body[:_MAX_BODY].rsplit("\n", 1)[0]
    if cut.count("```") % 2:  # cut inside a diff block: close it, or the rest renders as code
        cut += "\n```"
    return f"{cut}\n\n… (cut here: the whole change is in `apx prs show {pr.id}`)"


def _footer(pr: PullRequestRef) -> str:
    return (
        "\n\n---\n"
        f"This PR is managed by apx. Review and decide it in apx: `apx prs show {pr.id}`, "
        f"`apx prs approve {pr.id}` or `apx prs reject {pr.id}`. GitHub reviews are not counted, "
        "and apx merges it itself with a signed merge commit: please do not merge it here."
    )


def _json(response: httpx.Response) -> Any:
    if response.status_code == 204 or not response.content:
        return None
    try:
        return response.json()
    except ValueError as exc:
        raise PrProviderError(
            f"GitHub answered {response.request.method} {response.request.url.path} with something "
            "that is not JSON"
        ) from exc


def _api_message(response: httpx.Response) -> str:
    """GitHub's error as one line: its ``message`` and the details in ``errors``."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return response.reason_phrase or "no reason given"
    message = str(data.get("message") or response.reason_phrase)
    details: list[str] = []
    for error in data.get("errors") or []:
        if isinstance(error, dict):
            if error.get("message"):
                details.append(str(error["message"]))
            else:
                details.append(" ".join(str(error[k]) for k in ("resource", "field", "code") if error.get(k)))
        elif isinstance(error, str):
            details.append(error)
    text = f"{message}: {'; '.join(details)}" if details else message
    return " ".join(text.split())


def _reset_time(response: httpx.Response) -> str:
    reset = response.headers.get("x-ratelimit-reset")
    if reset and reset.isdigit():
        return f"; it resets at {datetime.fromtimestamp(int(reset), UTC):%H:%M} UTC"
    retry_after = response.headers.get("retry-after")
    return f"; GitHub asks to wait {retry_after}s" if retry_after and retry_after.isdigit() else ""


def _push_failure(stdout: str, stderr: str) -> str:
    """The line that says why a push failed: a refused ref, else git's own error."""
    refused = []
    for line in stdout.splitlines():
        # --porcelain: "<flag>\t<from>:<to>\t<summary> (<reason>)"; "!" is a refused ref.
        parts = line.split("\t")
        if len(parts) == 3 and parts[0] == "!":
            branch = parts[1].rpartition(":")[2].removeprefix("refs/heads/")
            refused.append(f"{branch} {parts[2]}")
    if refused:
        why = "; ".join(refused)
        if "fetch first" in why or "non-fast-forward" in why:
            why += " - the remote has commits apx does not have, and apx never force-pushes"
        return why
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and not line.startswith("hint:")]
    for prefix in ("fatal:", "error:", "remote:"):
        for at, line in enumerate(lines):
            if line.startswith(prefix):
                # "fatal: Could not read from remote repository." follows the line that says why (ssh).
                return f"{lines[at - 1]}; {line}" if at else line
    return lines[-1] if lines else "git push failed"


# -- composition ----------------------------------------------------------------------


def build_provider(
    settings: PrProviderSettings, *, repo_path: Path, client: httpx.Client | None = None
) -> PrProvider:
    """The provider ``settings`` ask for; the GitHub token is read from its variable now.

    A missing token is bad configuration (:class:`BadInput`), found at start-up
    rather than when the first prod PR opens. ``client`` is for tests.
    """
    if settings.kind == "local" or settings.github is None:
        return LocalPrProvider()
    github = settings.github
    token = os.environ.get(github.token_env, "").strip()
    if not token:
        raise BadInput(
            f"the GitHub PR provider reads its API token from ${github.token_env}, which is not set"
        )
    return GitHubPrProvider(
        repo_path=repo_path,
        remote_url=github.remote_url,
        owner=github.owner,
        repo=github.repo,
        token=token,
        client=client,
        api_url=github.api_url,
        retries=github.retries,
        backoff=github.backoff.total_seconds(),
        timeout=github.timeout.total_seconds(),
        push_timeout=github.push_timeout.total_seconds(),
    )
