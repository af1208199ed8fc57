"""The ``pr_provider:`` section of ``apx.yaml``: which review tool mirrors apx's PRs.

:class:`orchestrator.settings.Settings` nests :class:`PrProviderSettings` as
``pr_provider``; the composition root hands it to
:func:`orchestrator.pr_providers.build_provider`. It lives apart from the
providers because the I/O-free core imports ``orchestrator.settings``, and the
providers import httpx and structlog.
Durations use the shared syntax of :mod:`orchestrator.durations`.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from orchestrator.durations import Duration

__all__ = [
    "DEFAULT_API_URL",
    "GitHubSettings",
    "PrProviderSettings",
    "check_github_name",
    "mask_url",
    "url_secrets",
]

DEFAULT_API_URL = "https://api.github.com"

#: GitHub's rules for user and organisation names.
OWNER_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$")
REPO_RE = re.compile(r"^(?!\.\.?$)(?!.*\.git$)[A-Za-z0-9._-]{1,100}$")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_github_name(field: str, value: str, pattern: re.Pattern[str]) -> str:
    if not pattern.match(value):
        hint = " (without .git)" if field == "repo" and value.endswith(".git") else ""
        raise ValueError(f"{value!r} is not a GitHub {field} name{hint}")
    return value


class GitHubSettings(BaseModel):
    """Where the GitHub PRs go. The token is never here: only the name of the variable holding it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The user or organisation owning the repository (``acme`` in github.com/acme/apx-config).
    owner: str
    #: The repository's name, without ``.git``.
    repo: str
    #: Where ``git push`` sends branches: ``git@github.com:acme/apx-config.git`` or an
    #: HTTPS URL whose credentials come from a git credential helper, never from the URL.
    remote_url: str
    #: The environment variable holding the API token; read when the provider is built.
    token_env: str = "APX_GITHUB_TOKEN"
    #: GitHub Enterprise Server: ``https://HOST/api/v3``.
    api_url: str = DEFAULT_API_URL
    #: Retries after a 5xx or a network failure; each waits ``backoff``, doubling.
    retries: int = Field(default=3, ge=0, le=10)
    backoff: Duration = timedelta(milliseconds=500)
    #: Per HTTP request.
    timeout: Duration = timedelta(seconds=30)
    #: Per ``git push``; a config repo push is small, but the first may carry its history.
    push_timeout: Duration = timedelta(minutes=2)

    @field_validator("owner")
    @classmethod
    def _owner(cls, value: str) -> str:
        return check_github_name("owner", value, OWNER_RE)

    @field_validator("repo")
    @classmethod
    def _repo(cls, value: str) -> str:
        return check_github_name("repo", value, REPO_RE)

    @field_validator("token_env")
    @classmethod
    def _token_env(cls, value: str) -> str:
        if not _ENV_RE.match(value):
            raise ValueError(f"{value!r} is not an environment variable name")
        return value

    @field_validator("remote_url")
    @classmethod
    def _remote_url(cls, value: str) -> str:
        if not value.strip() or value.startswith("-"):
            raise ValueError("give the git URL of the GitHub repository")
        try:
            urlsplit(value)
        except ValueError as exc:
            raise ValueError(f"not a git URL ({exc})") from None
        if url_secrets(value):
            raise ValueError(
                "the URL carries credentials; use an SSH URL or a git credential helper instead "
                "(settings files are no place for secrets)"
            )
        return value

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
            raise ValueError(f"{value!r} is not an http(s) URL of a GitHub API")
        return value.rstrip("/")


class PrProviderSettings(BaseModel):
    """Which review tool mirrors apx's PRs: ``local`` (none; the default) or ``github``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["local", "github"] = "local"
    github: GitHubSettings | None = None

    @model_validator(mode="after")
    def _github_needs_its_section(self) -> PrProviderSettings:
        if self.kind == "github" and self.github is None:
            raise ValueError("kind github needs a github section (owner, repo, remote_url)")
        return self


def url_secrets(url: str) -> list[str]:
    """The credentials in ``url``: a password, and the user of an http(s) URL (often a token)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    user = parts.username if parts.password or parts.scheme in ("http", "https") else None
    return [secret for secret in (parts.password, user) if secret and len(secret) > 2]


def mask_url(url: str) -> str:
    """``url`` fit to print: the user part of an http(s) URL (often a token) becomes ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "the configured remote"
    if "@" not in parts.netloc or not (parts.password or parts.scheme in ("http", "https")):
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"***@{host}").geturl()
