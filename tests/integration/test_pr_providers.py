"""PR providers: the local one, and GitHub against recorded API exchanges and a real git remote.

This machine cannot reach GitHub, so its REST API is replayed from
``tests/data/github/*.json`` (see ``tests/cassette.py``: every request must
match the next recorded one, and every recorded one must be used). The git side
is real: a home made by ``init_home``, a PR branch made by ``GitConfigRepo``,
and a bare repository in ``tmp_path`` standing in for GitHub's copy, which the
assertions read with the ``git`` CLI.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cassette import Cassette
from pydantic import ValidationError
from structlog.testing import capture_logs
from test_git_repo import _no_user_git_config, git, git_out  # noqa: F401  (autouse fixture)

from orchestrator.decision import PullRequestRef
from orchestrator.errors import BadInput, InternalError
from orchestrator.git_repo import GitConfigRepo
from orchestrator.home import init_home
from orchestrator.ports import PrProvider, PrPublication
from orchestrator.pr_providers import (
    GitHubPrProvider,
    LocalPrProvider,
    PrProviderError,
    PrProviderSettings,
    PrProviderUnavailable,
    PrPushError,
    build_provider,
)

TOKEN = "ghp_R3c0rdedT0kenNotARealOne00000000000"
INTENT = "in-01jxk5v3m8c2n4p6q8r0s2t4v6"
PR_ID = "pr-01jxk5v3m8c2n4p6q8r0s2t4v6"
BRANCH = f"apx/{INTENT}"
TITLE = "Scale checkout to 6 replicas"
BODY = (
    "p95 over SLO for 5m.\n\nIntent `in-01jxk5v3m8c2n4p6q8r0s2t4v6`, trace 4bf92f3577b34da6a3ce929d0e0e4736."
)
REASON = "rejected by alice-sre: six replicas is more than checkout needs"
PR_URL = "https://github.com/acme/apx-config/pull/42"
GITHUB_HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    init_home(tmp_path / "home")
    return tmp_path / "home"


@pytest.fixture
def config_repo(home: Path) -> Path:
    return home / "config-repo"


@pytest.fixture
def remote(tmp_path: Path, config_repo: Path) -> Path:
    """GitHub's copy of the config repo, set up as a user would: the environment branches pushed once."""
    bare = tmp_path / "github" / "acme" / "apx-config.git"
    bare.mkdir(parents=True)
    git(bare, "init", "--bare", "--quiet")
    git(config_repo, "push", "--quiet", str(bare), "dev", "prod")
    return bare


@pytest.fixture
def pr(config_repo: Path) -> PullRequestRef:
    """A prod PR as the pipeline makes one: a signed commit on ``apx/<intent-id>`` from the prod head."""
    with GitConfigRepo(config_repo) as repo:
        prod = repo.head("prod")
        assert prod is not None
        before = repo.read(prod).files["WorkerPool/checkout.yaml"]
        head = repo.commit(
            branch=BRANCH,
            parent=prod,
            files={"WorkerPool/checkout.yaml": before.replace("replicas: 4", "replicas: 6")},
            message=f"{TITLE}\n\np95 over SLO for 5m.\n\nIntent-Id: {INTENT}\n"
            "Trace-Id: 4bf92f3577b34da6a3ce929d0e0e4736\n",
        )
    return PullRequestRef(id=PR_ID, branch=BRANCH, base="prod", head=head)


@pytest.fixture
def play(pr: PullRequestRef, config_repo: Path) -> Iterator[Callable[..., Cassette]]:
    """Load cassettes (``${head}``/``${base}`` filled in); each must be used up by the test's end."""
    played: list[Cassette] = []

    def load(*names: str, **values: str) -> Cassette:
        base = git_out(config_repo, "rev-parse", "prod")
        values = {"head": pr.head, "base": base, **values}
        cassette = Cassette.load(
            *(f"github/{name}" for name in names), token=TOKEN, headers=GITHUB_HEADERS, **values
        )
        played.append(cassette)
        return cassette

    yield load
    for cassette in played:
        cassette.assert_all_used()


@pytest.fixture
def github(config_repo: Path, remote: Path) -> Callable[..., GitHubPrProvider]:
    def make(cassette: Cassette, **options: Any) -> GitHubPrProvider:
        options = {"remote_url": str(remote), "backoff": 0.0, **options}
        return GitHubPrProvider(
            repo_path=config_repo,
            owner="acme",
            repo="apx-config",
            token=TOKEN,
            client=cassette.client(),
            **options,
        )

    return make


def merge_in_config_repo(config_repo: Path, pr: PullRequestRef) -> str:
    """What apx does on approval: a signed merge commit of the PR branch on prod (not forced)."""
    prod = git_out(config_repo, "rev-parse", "prod")
    tree = git_out(config_repo, "rev-parse", f"{pr.head}^{{tree}}")
    merge = git_out(
        config_repo, "commit-tree", "-S", tree, "-p", prod, "-p", pr.head, "-m", f"Merge PR {pr.id}"
    )
    git(config_repo, "update-ref", "refs/heads/prod", merge, prod)
    return merge


def verified_in(remote: Path, home: Path, commit: str) -> bool:
    """``git verify-commit`` in the remote, trusting only the home's allowed signers."""
    allowed = f"gpg.ssh.allowedSignersFile={home / 'allowed_signers'}"
    return git(remote, "-c", allowed, "verify-commit", commit, check=False).returncode == 0


def one_line(error: BaseException) -> str:
    message = str(error)
    assert "\n" not in message and TOKEN not in message
    return message


# -- publish ------------------------------------------------------------------------------


def test_publish_pushes_the_signed_branch_and_opens_a_pr(
    github: Callable[..., GitHubPrProvider],
    play: Callable[..., Cassette],
    pr: PullRequestRef,
    remote: Path,
    home: Path,
) -> None:
    cassette = play("publish_new")

    publication = github(cassette).publish(pr, title=TITLE, body=BODY)

    assert publication == PrPublication(provider="github", url=PR_URL, number=42)
    assert git_out(remote, "rev-parse", f"refs/heads/{BRANCH}") == pr.head
    assert verified_in(remote, home, pr.head)
    shown = json.loads(cassette.requests[-1].content)["body"]
    assert shown.startswith(BODY) and f"apx prs approve {PR_ID}" in shown


def test_a_body_too_long_for_github_is_cut_and_points_to_apx(
    github: Callable[..., GitHubPrProvider], play: Callable[..., Cassette], pr: PullRequestRef
) -> None:
    cassette = play("publish_new")
    diff = "```diff\n" + "".join(f"-  replicas: {n}\n+  replicas: {n + 1}\n" for n in range(6000)) + "```"

    github(cassette).publish(pr, title=TITLE, body=f"{BODY}\n\n{diff}")

    shown = json.loads(cassette.requests[-1].content)["body"]
    assert len(shown) <= 65_536 and shown.count("```") % 2 == 0
    assert f"the whole change is in `apx prs show {PR_ID}`" in shown


def test_publishing_again_finds_the_pr_instead_of_opening_another(
    github: Callable[..., GitHubPrProvider],
    play: Callable[..., Cassette],
    pr: PullRequestRef,
    remote: Path,
) -> None:
    provider = github(play("publish_new", "publish_existing"))

    first = provider.publish(pr, title=TITLE, body=BODY)
    again = provider.publish(pr, title=TITLE, body=BODY)

    assert again == first == PrPublication(provider="github", url=PR_URL, number=42)
    assert git_out(remote, "rev-parse", f"refs/heads/{BRANCH}") == pr.head


def test_github_refusing_the_pr_is_one_clear_line_without_the_token(
    github: Callable[..., GitHubPrProvider], play: Callable[..., Cassette], pr: PullRequestRef
) -> None:
    with capture_logs() as logs, pytest.raises(PrProviderError) as refused:
        github(play("publish_refused_422")).publish(pr, title=TITLE, body=BODY)

    assert one_line(refused.value) == (
        f"GitHub refused to open the PR for {BRANCH}: 422 Validation Failed: "
        f"A pull request already exists for acme:{BRANCH}."
    )
    assert isinstance(refused.value, InternalError) and not refused.value.retryable
    assert TOKEN not in repr(logs)


def test_a_bad_gateway_is_retried_and_the_pr_opens(
    github: Callable[..., GitHubPrProvider], play: Callable[..., Cassette], pr: PullRequestRef
) -> None:
    waits: list[float] = []
    provider = github(play("publish_502_then_201"), backoff=0.25, sleep=waits.append)

    assert provider.publish(pr, title=TITLE, body=BODY).number == 42
    assert waits == [0.25]


def test_a_pr_created_behind_a_bad_gateway_is_found_not_opened_twice(
    github: Callable[..., GitHubPrProvider], play: Callable[..., Cassette], pr: PullRequestRef
) -> None:
    # The 502 came after GitHub had made the PR: the retry looks it up before creating.
    assert github(play("publish_created_behind_502")).publish(pr, title=TITLE, body=BODY).url == PR_URL


def test_github_down_after_every_retry_is_retryable_and_says_so(
    github: Callable[..., GitHubPrProvider], play: Callable[..., Cassette], pr: PullRequestRef
) -> None:
    with pytest.raises(PrProviderUnavailable) as down:
        github(play("lookup_unavailable"), retries=3).publish(pr, title=TITLE, body=BODY)

    assert one_line(down.value) == (
        f"GitHub did not answer while trying to look up the PR for {BRANCH}: "
        "503 Service Unavailable (after 4 attempts)"
    )
    assert down.value.retryable


def test_a_bad_token_is_named_as_such(
    github: Callable[..., GitHubPrProvider], play: Callable[..., Cassette], pr: PullRequestRef
) -> None:
    with pytest.raises(PrProviderError) as refused:
        github(play("bad_credentials")).publish(pr, title=TITLE, body=BODY)

    assert one_line(refused.value) == f"GitHub refused to look up the PR for {BRANCH}: 401 Bad credentials"


def test_a_used_up_rate_limit_says_when_it_resets_and_is_not_hammered(
    github: Callable[..., GitHubPrProvider], play: Callable[..., Cassette], pr: PullRequestRef
) -> None:
    with pytest.raises(PrProviderUnavailable) as limited:
        github(play("rate_limited")).publish(pr, title=TITLE, body=BODY)

    assert one_line(limited.value) == (
        f"GitHub's API rate limit is used up; could not look up the PR for {BRANCH}; it resets at 13:00 UTC"
    )


def test_a_failed_push_opens_no_pr_and_shows_no_credentials(
    github: Callable[..., GitHubPrProvider], play: Callable[..., Cassette], pr: PullRequestRef
) -> None:
    remote_url = "https://x-access-token:s3cr3t-in-the-url@127.0.0.1:9/acme/apx-config.git"

    with pytest.raises(PrPushError) as failed:
        github(play(), remote_url=remote_url).publish(pr, title=TITLE, body=BODY)

    message = one_line(failed.value)
    assert message.startswith(f"could not push the PR branch {BRANCH} to https://***@127.0.0.1:9/")
    assert "s3cr3t-in-the-url" not in message and "x-access-token" not in message


# -- close and merged --------------------------------------------------------------------


def test_close_comments_the_reason_then_closes_the_pr(
    github: Callable[..., GitHubPrProvider], play: Callable[..., Cassette], pr: PullRequestRef
) -> None:
    cassette = play("close")
    publication = PrPublication(provider="github", url=PR_URL, number=42)

    github(cassette).close(pr, publication, reason=REASON)

    assert [(r.method, r.url.path) for r in cassette.requests[1:]] == [
        ("POST", "/repos/acme/apx-config/issues/42/comments"),
        ("PATCH", "/repos/acme/apx-config/pulls/42"),
    ]


def test_closing_again_does_not_comment_twice(
    github: Callable[..., GitHubPrProvider], play: Callable[..., Cassette], pr: PullRequestRef
) -> None:
    cassette = play("close_again")  # its comments already hold apx's closing comment
    publication = PrPublication(provider="github", url=PR_URL, number=42)

    github(cassette).close(pr, publication, reason=REASON)

    assert [r.method for r in cassette.requests] == ["GET", "PATCH"]


def test_closing_a_pr_that_was_never_on_github_only_looks_for_it(
    github: Callable[..., GitHubPrProvider], play: Callable[..., Cassette], pr: PullRequestRef
) -> None:
    # Published while the local provider was configured: no number to go by, and GitHub has none.
    cassette = play("lookup_none")

    github(cassette).close(pr, PrPublication(provider="local"), reason=REASON)

    assert [r.method for r in cassette.requests] == ["GET"]


def test_merged_pushes_the_signed_merge_to_the_base_and_comments(
    github: Callable[..., GitHubPrProvider],
    play: Callable[..., Cassette],
    pr: PullRequestRef,
    config_repo: Path,
    remote: Path,
    home: Path,
) -> None:
    provider = github(play("publish_new"))
    publication = provider.publish(pr, title=TITLE, body=BODY)
    merge = merge_in_config_repo(config_repo, pr)
    provider = github(play("merged", merge_commit=merge))

    provider.merged(pr, publication, merge_commit=merge)

    assert git_out(remote, "rev-parse", "refs/heads/prod") == merge
    # What makes GitHub mark the PR merged: its head is now reachable from the base.
    assert git(remote, "merge-base", "--is-ancestor", pr.head, "prod", check=False).returncode == 0
    assert verified_in(remote, home, merge)


def test_merged_never_overwrites_a_base_that_moved_on_github(
    github: Callable[..., GitHubPrProvider],
    play: Callable[..., Cassette],
    pr: PullRequestRef,
    config_repo: Path,
    remote: Path,
) -> None:
    # Someone pushed to prod on GitHub behind apx's back.
    with GitConfigRepo(config_repo) as repo:
        prod = repo.head("prod")
        assert prod is not None
        hotfix = repo.commit(branch="hotfix", parent=prod, files={"NOTES.md": "hand edit\n"}, message="x\n")
    git(config_repo, "push", "--quiet", str(remote), "hotfix:prod")
    merge = merge_in_config_repo(config_repo, pr)

    with pytest.raises(PrPushError) as refused:  # and no comment: the cassette is empty
        github(play()).merged(pr, PrPublication(provider="github", number=42), merge_commit=merge)

    message = one_line(refused.value)
    assert message.startswith(f"could not push the prod branch to {remote}: prod [rejected]")
    assert message.endswith("the remote has commits apx does not have, and apx never force-pushes")
    assert git_out(remote, "rev-parse", "refs/heads/prod") == hotfix


def test_merged_without_a_merge_commit_never_deletes_the_remote_base(
    github: Callable[..., GitHubPrProvider],
    play: Callable[..., Cassette],
    pr: PullRequestRef,
    remote: Path,
) -> None:
    prod = git_out(remote, "rev-parse", "refs/heads/prod")

    with pytest.raises(PrPushError) as refused:  # ":refs/heads/prod" would be a delete
        github(play()).merged(pr, PrPublication(provider="github", number=42), merge_commit="")

    assert one_line(refused.value) == "refusing to push the prod branch: '' is not a commit id"
    assert git_out(remote, "rev-parse", "refs/heads/prod") == prod


# -- the port's contract, for both providers ---------------------------------------------

PROVIDERS = ["local", "github"]


@pytest.fixture(params=PROVIDERS)
def provider_for(
    request: pytest.FixtureRequest, github: Callable[..., GitHubPrProvider], play: Callable[..., Cassette]
) -> Callable[..., PrProvider]:
    """A provider of each kind; the GitHub one plays the named cassettes."""

    def make(*cassettes: str, **values: str) -> PrProvider:
        if request.param == "local":
            return LocalPrProvider()
        return github(play(*cassettes, **values))

    return make


def test_every_provider_publishes_and_closes_what_it_published(
    provider_for: Callable[..., PrProvider], pr: PullRequestRef
) -> None:
    provider = provider_for("publish_new", "close")

    publication = provider.publish(pr, title=TITLE, body=BODY)
    provider.close(pr, publication, reason=REASON)

    assert isinstance(publication, PrPublication)
    assert publication.provider == provider.name


def test_every_provider_publishes_and_mirrors_the_merge(
    provider_for: Callable[..., PrProvider], pr: PullRequestRef, config_repo: Path
) -> None:
    merge = merge_in_config_repo(config_repo, pr)
    provider = provider_for("publish_new", "merged", merge_commit=merge)

    publication = provider.publish(pr, title=TITLE, body=BODY)
    provider.merged(pr, publication, merge_commit=merge)

    assert publication.provider == provider.name


def test_the_local_provider_has_no_url() -> None:
    pr = PullRequestRef(id=PR_ID, branch=BRANCH, base="prod", head="0" * 40)
    assert LocalPrProvider().publish(pr, title=TITLE, body=BODY) == PrPublication(provider="local")


# -- settings -------------------------------------------------------------------------------

GITHUB_SECTION = {
    "owner": "acme",
    "repo": "apx-config",
    "remote_url": "git@github.com:acme/apx-config.git",
}


def test_the_local_provider_is_the_default(tmp_path: Path) -> None:
    provider = build_provider(PrProviderSettings(), repo_path=tmp_path)
    assert isinstance(provider, LocalPrProvider) and provider.name == "local"


def test_github_settings_build_a_github_provider_with_the_token_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APX_GITHUB_TOKEN", TOKEN)
    settings = PrProviderSettings.model_validate({"kind": "github", "github": GITHUB_SECTION})

    provider = build_provider(settings, repo_path=tmp_path)

    assert isinstance(provider, GitHubPrProvider) and provider.name == "github"
    assert TOKEN not in settings.model_dump_json()
    provider.shutdown()


def test_a_missing_token_is_one_line_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ACME_GH_TOKEN", raising=False)
    settings = PrProviderSettings.model_validate(
        {"kind": "github", "github": {**GITHUB_SECTION, "token_env": "ACME_GH_TOKEN"}}
    )

    with pytest.raises(BadInput) as missing:
        build_provider(settings, repo_path=tmp_path)

    assert str(missing.value) == (
        "the GitHub PR provider reads its API token from $ACME_GH_TOKEN, which is not set"
    )


@pytest.mark.parametrize(
    ("section", "complaint"),
    [
        (None, "kind github needs a github section"),
        ({**GITHUB_SECTION, "owner": "acme corp"}, "'acme corp' is not a GitHub owner name"),
        ({**GITHUB_SECTION, "repo": "apx-config.git"}, "is not a GitHub repo name (without .git)"),
        (
            {**GITHUB_SECTION, "remote_url": "https://x-access-token:ghp_abc@github.com/acme/apx-config.git"},
            "the URL carries credentials",
        ),
        ({**GITHUB_SECTION, "token_env": "APX-TOKEN"}, "is not an environment variable name"),
        ({**GITHUB_SECTION, "token": TOKEN}, "Extra inputs are not permitted"),
        ({**GITHUB_SECTION, "backoff": "soon"}, "is not a duration"),
    ],
    ids=["no-section", "owner", "repo", "credentials-in-url", "token-env", "token-in-settings", "duration"],
)
def test_bad_github_settings_say_what_is_wrong(section: dict[str, object] | None, complaint: str) -> None:
    with pytest.raises(ValidationError) as bad:
        PrProviderSettings.model_validate({"kind": "github", "github": section})
    assert complaint in str(bad.value)


def test_durations_in_github_settings_read_like_the_rest_of_apx_yaml() -> None:
    settings = PrProviderSettings.model_validate(
        {"kind": "github", "github": {**GITHUB_SECTION, "backoff": "250ms", "push_timeout": "5m"}}
    )
    assert settings.github is not None
    assert settings.github.backoff.total_seconds() == 0.25
    assert settings.model_dump(mode="json")["github"]["push_timeout"] == "5m"
