"""GitConfigRepo against real git repositories in ``tmp_path``.

The assertions go through the real ``git`` CLI, as a human or the data plane
would look at the repository, not through the adapter under test.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from orchestrator.errors import BranchMoved, RepoError
from orchestrator.git_repo import GitConfigRepo
from orchestrator.seed import seed_files
from orchestrator.signing import SigningKey, create_signing_key, write_allowed_signers

FILES = {
    "Product/payments-api.yaml": "kind: Product\n",
    "Route/payments-v1-charges.yaml": "kind: Route\npath: /v1/charges\n",
    "Route/payments-healthz.yaml": "kind: Route\npath: /healthz\n",
    "WorkerPool/checkout.yaml": "kind: WorkerPool\nreplicas: 4\n",
}
MESSAGE = (
    "Scale checkout to 6 replicas\n"
    "\n"
    "p95 over SLO for 5m.\n"
    "\n"
    "Intent-Id: in-01j9zqv8t3k4m5n6p7q8r9s0tv\n"
    "Trace-Id: 4bf92f3577b34da6a3ce929d0e0e4736\n"
)


@pytest.fixture(autouse=True)
def _no_user_git_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """The repository's own config must be enough: ignore whatever this machine has."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=repo, check=check, capture_output=True, text=True)


def git_out(repo: Path, *args: str) -> str:
    return git(repo, *args).stdout.strip()


def tree_files(repo: Path, revision: str) -> dict[str, str]:
    names = git_out(repo, "ls-tree", "-r", "--name-only", revision).splitlines()
    return {name: git(repo, "show", f"{revision}:{name}").stdout for name in names}


def raw_message(repo: Path, commit: str) -> str:
    """The commit's message exactly as stored (after the headers, including ``gpgsig``)."""
    raw = git(repo, "cat-file", "commit", commit).stdout
    return raw.split("\n\n", 1)[1]


def worktree_state(repo: Path) -> tuple[str, str, str]:
    index = hashlib.sha256((repo / ".git" / "index").read_bytes()).hexdigest()
    return git_out(repo, "rev-parse", "HEAD"), git_out(repo, "status", "--porcelain"), index


@pytest.fixture
def key(tmp_path: Path) -> SigningKey:
    return create_signing_key(tmp_path / "home")


@pytest.fixture
def allowed_signers(tmp_path: Path, key: SigningKey) -> Path:
    path = tmp_path / "home" / "allowed_signers"
    write_allowed_signers(path, principal="apx@localhost", public_line=key.public_line)
    return path


@pytest.fixture
def repo_path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "config-repo"


@pytest.fixture
def repo(repo_path: Path, key: SigningKey, allowed_signers: Path) -> GitConfigRepo:
    return GitConfigRepo.create(
        repo_path,
        signing_key=key,
        allowed_signers=allowed_signers,
        branches=["dev", "prod"],
        files=FILES,
    )


# -- signing keys --------------------------------------------------------------


def test_signing_key_is_a_private_openssh_key_that_ssh_keygen_accepts(key: SigningKey) -> None:
    assert stat.S_IMODE(key.private_path.stat().st_mode) == 0o600
    assert key.public_line.startswith("ssh-ed25519 ") and key.public_line.endswith(" apx")
    assert key.public_path.read_text() == key.public_line + "\n"
    derived = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(key.private_path)], check=True, capture_output=True, text=True
    ).stdout.split()
    assert derived[:2] == key.public_line.split()[:2]


def test_signing_key_is_never_overwritten(key: SigningKey) -> None:
    with pytest.raises(FileExistsError):
        create_signing_key(key.private_path.parent)


def test_allowed_signers_limits_the_key_to_git_signatures(allowed_signers: Path, key: SigningKey) -> None:
    key_type, key_data = key.public_line.split()[:2]
    assert allowed_signers.read_text() == f'apx@localhost namespaces="git" {key_type} {key_data}\n'


# -- create ------------------------------------------------------------------------


def test_create_points_every_branch_at_one_signed_root_commit(repo: GitConfigRepo, repo_path: Path) -> None:
    dev, prod = repo.head("dev"), repo.head("prod")
    assert dev is not None and dev == prod
    assert git_out(repo_path, "rev-list", "--count", dev) == "1"
    assert git_out(repo_path, "rev-list", "--parents", "-n1", dev) == dev  # no parents: a root commit
    verified = git(repo_path, "verify-commit", dev, check=False)
    assert verified.returncode == 0, verified.stderr
    assert 'Good "git" signature for apx@localhost' in verified.stderr
    assert tree_files(repo_path, dev) == FILES


def test_create_configures_the_repo_to_sign_and_verify_by_itself(
    repo: GitConfigRepo, repo_path: Path, key: SigningKey, allowed_signers: Path
) -> None:
    assert git_out(repo_path, "config", "gpg.format") == "ssh"
    assert git_out(repo_path, "config", "user.signingkey") == str(key.private_path.resolve())
    assert git_out(repo_path, "config", "gpg.ssh.allowedSignersFile") == str(allowed_signers.resolve())
    assert git_out(repo_path, "config", "commit.gpgsign") == "true"
    # A human committing there with plain git gets a commit apx's verify accepts.
    (repo_path / "NOTES.md").write_text("hello\n")
    git(repo_path, "add", "NOTES.md")
    git(repo_path, "commit", "-q", "-m", "human note")
    assert repo.verify(git_out(repo_path, "rev-parse", "HEAD"))


def test_create_leaves_a_clean_worktree_showing_the_files_on_a_detached_head(
    repo: GitConfigRepo, repo_path: Path
) -> None:
    assert (repo_path / "WorkerPool" / "checkout.yaml").read_text() == FILES["WorkerPool/checkout.yaml"]
    assert git_out(repo_path, "status", "--porcelain") == ""
    assert git(repo_path, "symbolic-ref", "-q", "HEAD", check=False).returncode != 0  # detached
    assert git_out(repo_path, "rev-parse", "HEAD") == repo.head("dev")


def test_create_refuses_an_existing_repository(
    repo: GitConfigRepo, repo_path: Path, key: SigningKey, allowed_signers: Path
) -> None:
    with pytest.raises(RepoError, match="already a git repository"):
        GitConfigRepo.create(
            repo_path, signing_key=key, allowed_signers=allowed_signers, branches=["dev"], files=FILES
        )


def test_create_with_the_seed_environment_reads_back_every_resource(
    tmp_path: Path, key: SigningKey, allowed_signers: Path
) -> None:
    seed = seed_files()
    repo = GitConfigRepo.create(
        tmp_path / "seeded", signing_key=key, allowed_signers=allowed_signers, branches=["dev"], files=seed
    )
    assert len(seed) == 64
    assert dict(GitConfigRepo(tmp_path / "seeded").read("dev").files) == seed
    assert sum(1 for path in repo.read("dev").files if path.startswith("Route/")) == 60


# -- open, head, branches, read -------------------------------------------------------


def test_an_existing_repository_opens_with_the_same_heads(repo: GitConfigRepo, repo_path: Path) -> None:
    reopened = GitConfigRepo(repo_path)
    assert reopened.head("dev") == repo.head("dev")
    assert reopened.branches() == ["dev", "prod"]


def test_opening_a_directory_that_is_not_a_repository_is_a_repo_error(tmp_path: Path) -> None:
    with pytest.raises(RepoError, match="not a git repository"):
        GitConfigRepo(tmp_path)


def test_head_of_a_missing_branch_is_none(repo: GitConfigRepo) -> None:
    assert repo.head("staging") is None


def test_read_returns_exactly_the_files_of_the_tree(repo: GitConfigRepo, repo_path: Path) -> None:
    dev = repo.head("dev")
    assert dev is not None
    snapshot = repo.read(dev)
    assert snapshot.revision == dev
    assert dict(snapshot.files) == tree_files(repo_path, dev) == FILES


def test_read_accepts_a_branch_name_and_reports_the_commit(repo: GitConfigRepo) -> None:
    assert repo.read("prod").revision == repo.head("prod")


def test_read_of_an_unknown_revision_is_a_repo_error(repo: GitConfigRepo) -> None:
    with pytest.raises(RepoError):
        repo.read("f" * 40)
    with pytest.raises(RepoError):
        repo.read("no-such-branch")


# -- commit ---------------------------------------------------------------------------


def test_commit_on_dev_makes_one_signed_commit_and_leaves_prod_and_the_worktree_alone(
    repo: GitConfigRepo, repo_path: Path
) -> None:
    root = repo.head("dev")
    assert root is not None
    before = worktree_state(repo_path)
    changed = "kind: WorkerPool\nreplicas: 6\n"

    new = repo.commit(branch="dev", parent=root, files={"WorkerPool/checkout.yaml": changed}, message=MESSAGE)

    assert repo.head("dev") == new == git_out(repo_path, "rev-parse", "refs/heads/dev")
    assert git_out(repo_path, "rev-list", "--parents", "-n1", new) == f"{new} {root}"
    assert git(repo_path, "verify-commit", new, check=False).returncode == 0
    assert repo.verify(new)
    assert raw_message(repo_path, new) == MESSAGE
    assert git_out(repo_path, "log", "-1", "--format=%(trailers:key=Intent-Id,valueonly)", new) == (
        "in-01j9zqv8t3k4m5n6p7q8r9s0tv"
    )
    assert tree_files(repo_path, new) == {**FILES, "WorkerPool/checkout.yaml": changed}
    assert repo.head("prod") == root
    assert worktree_state(repo_path) == before


def test_commit_with_none_deletes_the_file(repo: GitConfigRepo, repo_path: Path) -> None:
    root = repo.head("dev")
    assert root is not None
    new = repo.commit(
        branch="dev", parent=root, files={"Route/payments-healthz.yaml": None}, message="Remove healthz\n"
    )
    expected = {path: text for path, text in FILES.items() if path != "Route/payments-healthz.yaml"}
    assert tree_files(repo_path, new) == expected
    assert dict(repo.read(new).files) == expected
    assert dict(GitConfigRepo(repo_path).read(new).files) == expected  # not just the carried-over cache


def test_deleting_the_last_resource_of_a_kind_removes_its_directory(
    repo: GitConfigRepo, repo_path: Path
) -> None:
    root = repo.head("dev")
    assert root is not None
    new = repo.commit(branch="dev", parent=root, files={"WorkerPool/checkout.yaml": None}, message="m\n")
    assert git_out(repo_path, "ls-tree", "--name-only", new).splitlines() == ["Product", "Route"]


def test_commit_creates_new_kind_directories_and_git_accepts_the_trees(
    repo: GitConfigRepo, repo_path: Path
) -> None:
    root = repo.head("dev")
    assert root is not None
    files = {
        "NetworkPolicy/edge.yaml": "kind: NetworkPolicy\n",
        "Route/payments-v1-refunds.yaml": "kind: Route\npath: /v1/refunds\n",
        "Route/payments-v1-charges.yaml": "kind: Route\npath: /v1/charges\nauth: required\n",
    }
    new = repo.commit(branch="dev", parent=root, files=files, message="m\n")
    assert tree_files(repo_path, new) == {**FILES, **files}
    fsck = git(repo_path, "fsck", "--strict", "--no-dangling", check=False)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def test_commit_creates_a_pr_branch_from_the_prod_head(repo: GitConfigRepo, repo_path: Path) -> None:
    prod = repo.head("prod")
    assert prod is not None
    branch = "apx/in-01j9zqv8t3k4m5n6p7q8r9s0tv"
    new = repo.commit(
        branch=branch, parent=prod, files={"Product/payments-api.yaml": "v: 2\n"}, message="m\n"
    )
    assert repo.head(branch) == new
    assert git_out(repo_path, "rev-parse", f"{new}^") == prod
    assert repo.head("prod") == prod
    assert repo.branches("apx/") == [branch]
    assert repo.branches() == [branch, "dev", "prod"]


def test_commit_on_a_stale_parent_raises_branch_moved_and_leaves_the_branch(
    repo: GitConfigRepo,
) -> None:
    root = repo.head("dev")
    assert root is not None
    moved = repo.commit(
        branch="dev", parent=root, files={"Product/payments-api.yaml": "v: 2\n"}, message="m\n"
    )
    with pytest.raises(BranchMoved):
        repo.commit(branch="dev", parent=root, files={"Product/payments-api.yaml": "v: 3\n"}, message="m\n")
    assert repo.head("dev") == moved


def test_creating_a_branch_that_someone_else_created_meanwhile_raises_branch_moved(
    repo: GitConfigRepo, repo_path: Path
) -> None:
    root = repo.head("prod")
    assert root is not None
    theirs = repo.commit(branch="dev", parent=root, files={"Product/payments-api.yaml": "x\n"}, message="m\n")
    git(repo_path, "update-ref", "refs/heads/apx/in-taken", theirs)
    with pytest.raises(BranchMoved):
        repo.commit(
            branch="apx/in-taken", parent=root, files={"Product/payments-api.yaml": "y\n"}, message="m\n"
        )
    assert repo.head("apx/in-taken") == theirs


def test_concurrent_commits_on_one_branch_let_exactly_one_win(repo: GitConfigRepo, repo_path: Path) -> None:
    root = repo.head("dev")
    assert root is not None
    writers = [GitConfigRepo(repo_path) for _ in range(4)]
    outcomes: list[str] = []
    start = threading.Barrier(len(writers))

    def write(writer: GitConfigRepo, n: int) -> None:
        start.wait()
        try:
            outcomes.append(
                writer.commit(
                    branch="dev", parent=root, files={"Product/payments-api.yaml": f"{n}\n"}, message="m\n"
                )
            )
        except BranchMoved:
            outcomes.append("moved")

    threads = [threading.Thread(target=write, args=(w, n)) for n, w in enumerate(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [outcome for outcome in outcomes if outcome != "moved"]
    assert len(outcomes) == 4 and len(winners) == 1
    assert repo.head("dev") == winners[0]


def test_concurrent_commits_on_different_branches_all_land(repo: GitConfigRepo, repo_path: Path) -> None:
    root = repo.head("prod")
    assert root is not None
    writers = [GitConfigRepo(repo_path) for _ in range(4)]
    heads: dict[str, str] = {}

    def write(writer: GitConfigRepo, n: int) -> None:
        heads[f"apx/in-{n}"] = writer.commit(
            branch=f"apx/in-{n}", parent=root, files={f"Route/r{n}.yaml": f"{n}\n"}, message="m\n"
        )

    threads = [threading.Thread(target=write, args=(w, n)) for n, w in enumerate(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {branch: repo.head(branch) for branch in heads} == heads
    assert all(repo.verify(commit) for commit in heads.values())


def test_commit_on_an_unknown_parent_is_a_repo_error(repo: GitConfigRepo) -> None:
    with pytest.raises(RepoError):
        repo.commit(branch="dev", parent="0123456789" * 4, files={"a/b.yaml": "x\n"}, message="m\n")


def test_commit_refuses_paths_that_leave_the_repository(repo: GitConfigRepo) -> None:
    root = repo.head("dev")
    assert root is not None
    for path in ("../escape.yaml", "/abs.yaml", "Route//x.yaml", ".git/config"):
        with pytest.raises(ValueError):
            repo.commit(branch="dev", parent=root, files={path: "x\n"}, message="m\n")
    assert repo.head("dev") == root


def test_commit_that_cannot_be_signed_is_a_one_line_repo_error_and_moves_nothing(
    repo: GitConfigRepo, key: SigningKey
) -> None:
    root = repo.head("dev")
    assert root is not None
    key.private_path.unlink()
    with pytest.raises(RepoError) as raised:
        repo.commit(branch="dev", parent=root, files={"Product/payments-api.yaml": "x\n"}, message="m\n")
    assert "\n" not in raised.value.message
    assert isinstance(raised.value.__cause__, Exception)
    assert repo.head("dev") == root


# -- verify -----------------------------------------------------------------------------


def test_a_commit_signed_by_another_key_fails_verify(
    repo: GitConfigRepo, repo_path: Path, tmp_path: Path
) -> None:
    stranger = create_signing_key(tmp_path / "stranger")
    tree = git_out(repo_path, "rev-parse", "dev^{tree}")
    forged = git_out(
        repo_path, "-c", f"user.signingkey={stranger.private_path}", "commit-tree", "-S", tree, "-m", "forged"
    )
    assert "BEGIN SSH SIGNATURE" in git_out(repo_path, "cat-file", "commit", forged)
    assert git(repo_path, "verify-commit", forged, check=False).returncode != 0
    assert not repo.verify(forged)


def test_an_unsigned_commit_fails_verify(repo: GitConfigRepo, repo_path: Path) -> None:
    tree = git_out(repo_path, "rev-parse", "dev^{tree}")
    unsigned = git_out(repo_path, "-c", "commit.gpgsign=false", "commit-tree", tree, "-m", "unsigned")
    assert not repo.verify(unsigned)


def test_an_intent_commit_is_found_by_its_trailer_not_by_a_quote_in_the_rationale(
    repo: GitConfigRepo,
) -> None:
    """Crash recovery must never take another intent's commit for this one's."""
    root = repo.head("dev")
    assert root is not None
    quoting = repo.commit(
        branch="dev",
        parent=root,
        files={"Route/payments-healthz.yaml": None},
        message="apx: builder delete Route/payments-healthz in dev\n\nundoes what\nIntent-Id: in-earlier\n"
        "did\n\nIntent-Id: in-quoting\nTrace-Id: 0123\n",
    )

    assert repo.intent_commit("dev", "in-quoting", since=root) == quoting
    assert repo.intent_commit("dev", "in-earlier", since=root) is None
