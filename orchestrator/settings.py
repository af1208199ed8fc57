"""Settings: one pydantic-settings model, read from ``apx.yaml`` and ``APX_*``.

Only the composition root (:mod:`orchestrator.bootstrap`) loads settings; the
rest of the code is handed the sub-model it needs. Every duration accepts
``90s``, ``5m``, ``1h``, ``2d`` or a number of seconds, so tests can use
windows of seconds without a second configuration format.

Precedence, highest first: ``APX_*`` environment variables (nested with
``__``, e.g. ``APX_ADMISSION__DEDUPE_WINDOW=10s``; ``APX_DATABASE_URL`` is
honoured as a shortcut), then ``apx.yaml``, then the defaults below.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from agents.llm_settings import LlmSettings
from agents.settings import AgentsSettings
from orchestrator.durations import Duration
from orchestrator.errors import BadInput
from orchestrator.notify.settings import NotificationSettings
from orchestrator.pr_settings import PrProviderSettings, url_secrets
from orchestrator.windows import ChangeWindow


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(_Section):
    #: SQLite file in the home by default (embedded, nothing to run);
    #: ``postgresql+psycopg://…`` to share one log between several workers.
    url: str | None = None


class RateLimitSettings(_Section):
    #: Deploys (intents admitted) per agent per environment per ``per``. The
    #: platform design's default: one deploy per agent per five minutes.
    deploys: int = Field(default=1, ge=1)
    per: Duration = timedelta(minutes=5)


class BreakerSettings(_Section):
    #: Agent deploys allowed per tenant+environment within ``window`` before the
    #: next one trips the breaker (the platform design's "more than 3 in 15 minutes").
    max_deploys: int = Field(default=3, ge=1)
    window: Duration = timedelta(minutes=15)
    #: How long a tripped breaker holds agent intents unless a human resets it.
    cooldown: Duration = timedelta(minutes=30)
    #: Two agents undoing each other's change (A→B→A on one field) is the loop
    #: the breaker exists to stop: open it at once instead of waiting for the count.
    trip_on_oscillation: bool = True


class AdmissionSettings(_Section):
    #: Identical changes (same tenant, environment, canonical changes) within
    #: this window are duplicates of the earlier intent.
    dedupe_window: Duration = timedelta(minutes=5)
    rate_limit: RateLimitSettings = RateLimitSettings()
    breaker: BreakerSettings = BreakerSettings()
    #: Intents above this size are refused before parsing (1 MiB).
    max_intent_bytes: int = Field(default=1 << 20, ge=1024)
    #: How long a submit waits for another process deciding the same environment.
    lock_timeout: Duration = timedelta(seconds=60)
    #: How far back a change counts as "recent" when looking for A→B→A oscillations.
    oscillation_window: Duration = timedelta(minutes=30)


class PolicySettings(_Section):
    #: Directory of the Rego bundle; None = the bundle shipped in ``constraints/``.
    bundle: Path | None = None
    #: Evaluate on this OPA server instead of in-process.
    opa_url: str | None = None
    #: An evaluation slower than this fails closed (the intent is rejected).
    budget: Duration = timedelta(milliseconds=250)
    #: The cumulative limits (e.g. routes per agent) count admitted intents this far back.
    cumulative_window: Duration = timedelta(hours=1)
    #: Compiled bundles, keyed by their exact content and the regopy version.
    #: Default ``<home>/cache/policy``; several homes may share one.
    cache_dir: Path | None = None


class EnvironmentSettings(_Section):
    #: ``auto``: an accepted intent is applied as a signed commit on the branch.
    #: ``pr``: it becomes a signed PR branch that humans review.
    mode: Literal["auto", "pr"] = "auto"
    #: Human approvals a PR needs before it merges (``pr`` mode).
    approvals: int = Field(default=1, ge=0)
    #: The config-repo branch; defaults to the environment's name.
    branch: str | None = None
    #: A review request not approved within this long counts as rejected (default deny).
    review_timeout: Duration = timedelta(hours=72)
    #: When auto-apply may run (Argo CD-style allow/deny windows; none = always).
    #: See docs/how-to/change-windows.md.
    windows: list[ChangeWindow] = Field(default_factory=list)


def _default_environments() -> dict[str, EnvironmentSettings]:
    return {"dev": EnvironmentSettings(mode="auto"), "prod": EnvironmentSettings(mode="pr", approvals=1)}


class AuditSettings(_Section):
    #: Sign a checkpoint of the audit log once this many entries arrived since the last...
    checkpoint_every: int = Field(default=1000, ge=1)
    #: ...or once this long has passed since the last, whichever comes first.
    checkpoint_interval: Duration = timedelta(minutes=5)


class CanarySettings(_Section):
    #: Watch every change that lands for an error-rate regression, and roll it back.
    enabled: bool = True
    #: How long after a change its error rate is compared with the same span before it.
    window: Duration = timedelta(minutes=5)
    #: Roll back when the error rate rose by more than this many percentage points.
    margin: float = Field(default=5.0, gt=0)
    #: Distinct sample times needed before judging (fewer at the end: ``no_data``).
    min_samples: int = Field(default=3, ge=1)
    #: How often ``apx serve``'s scheduler checks open watches.
    check_every: Duration = timedelta(seconds=15)


class RetentionSettings(_Section):
    #: Prune the payload (document, diff, rollback recipe) of decided intents older
    #: than this; their row, status, reasons and digest stay, and so does every
    #: audit entry. ``null`` keeps payloads forever.
    payloads: Duration | None = timedelta(days=365)
    #: How often ``apx serve``'s scheduler runs the pruning job.
    every: Duration = timedelta(hours=1)


class LogSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    #: ``auto``: JSON lines unless stderr is a terminal.
    format: Literal["auto", "json", "console"] = "auto"


class TelemetrySettings(_Section):
    """OpenTelemetry traces (docs/how-to/traces-and-metrics.md). Off by default."""

    #: ``none``: no tracing at all (no SDK set up). ``console``: spans as JSON on
    #: stderr, for a quick look. ``otlp``: OTLP over HTTP to a collector.
    exporter: Literal["none", "console", "otlp"] = "none"
    #: The collector's traces URL, e.g. ``http://collector:4318/v1/traces``. Unset:
    #: the SDK's default, which honours ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``.
    endpoint: str | None = None
    #: Extra request headers for the collector (e.g. an API key).
    headers: dict[str, str] = Field(default_factory=dict)
    #: How long one export (retries included) may take before its batch is dropped.
    #: Short, because a CLI command waits this long at exit if the collector is down.
    timeout: Duration = timedelta(seconds=2)
    #: ``service.name`` on every span.
    service_name: str = Field(default="apx", min_length=1)
    #: Share of intents traced (1.0 = all). Decided from the trace id, so every
    #: process keeps or drops the same intent's spans.
    sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)

    @field_validator("endpoint")
    @classmethod
    def _http_url(cls, endpoint: str | None) -> str | None:
        if endpoint is not None and not endpoint.startswith(("http://", "https://")):
            raise ValueError(f"must be an http:// or https:// URL, not {endpoint!r}")
        return endpoint


class ConfigRepoSettings(_Section):
    """The config repo's shared remote (docs/how-to/run-on-several-hosts.md)."""

    #: A git remote every host of the installation shares: each host's ``config-repo/``
    #: is then a clone kept at the remote's state under each environment's lock, and every
    #: branch apx moves is pushed (compare-and-swap) before the lock is released. An SSH
    #: or HTTPS URL (credentials from ssh or a git credential helper, never in the URL),
    #: or an absolute path. None: the local repo is the only copy (one host).
    remote: str | None = None
    #: Per fetch or push. A decision waits for it while holding its environment's lock,
    #: so it is well below ``admission.lock_timeout`` (60s) that other submitters wait.
    timeout: Duration = timedelta(seconds=20)

    @field_validator("remote")
    @classmethod
    def _remote(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.strip() or value.startswith("-"):
            raise ValueError("give the git URL or absolute path of the shared config repository")
        if url_secrets(value):
            raise ValueError(
                "the URL carries credentials; use an SSH URL or a git credential helper instead "
                "(settings files are no place for secrets)"
            )
        scheme_or_host = value.split("/", 1)[0]
        if ":" not in scheme_or_host and not value.startswith("/"):
            raise ValueError(f"{value!r} is a relative path; give an absolute one")
        return value


class WorkersSettings(_Section):
    """Pipeline workers: the processes that claim queued intents and decide them
    (docs/how-to/run-on-postgresql.md)."""

    #: Worker processes ``apx serve`` starts (``--workers`` overrides). 0: the server
    #: decides in one thread of its own process, as a single-process install wants.
    count: int = Field(default=0, ge=0, le=64)
    #: How long a claim holds before another worker may take the intent over from a
    #: worker that died. A claim only spreads work; a late second worker finds the
    #: intent decided, so a long lease costs recovery time, never a double apply.
    lease: Duration = timedelta(minutes=1)
    #: How often an idle worker looks for claimable intents.
    poll: Duration = timedelta(milliseconds=500)


class Settings(BaseSettings):
    """Everything of one installation. See ``docs/reference/settings.md``."""

    model_config = SettingsConfigDict(env_prefix="APX_", env_nested_delimiter="__", extra="forbid")

    home: Path = Path(".apx")
    database: DatabaseSettings = DatabaseSettings()
    admission: AdmissionSettings = AdmissionSettings()
    policy: PolicySettings = PolicySettings()
    environments: dict[str, EnvironmentSettings] = Field(default_factory=_default_environments)
    log: LogSettings = LogSettings()
    audit: AuditSettings = AuditSettings()
    canary: CanarySettings = CanarySettings()
    #: The Builder, Optimizer and Security agents (docs/how-to/add-an-agent.md).
    agents: AgentsSettings = AgentsSettings()
    #: Models the agents may plan with (docs/how-to/llm-models.md); none = deterministic planners.
    llm: LlmSettings = LlmSettings()
    #: Webhooks told of breaker trips, PRs, merges and rollbacks (docs/how-to/notifications.md).
    notifications: NotificationSettings = NotificationSettings()
    #: Where PRs are shown to reviewers: ``local`` (the branch and apx's record) or ``github``.
    pr_provider: PrProviderSettings = PrProviderSettings()
    retention: RetentionSettings = RetentionSettings()
    #: OpenTelemetry traces; ``/metrics`` needs no setting (docs/how-to/traces-and-metrics.md).
    telemetry: TelemetrySettings = TelemetrySettings()
    workers: WorkersSettings = WorkersSettings()
    #: A git remote shared by several hosts (docs/how-to/run-on-several-hosts.md); none by default.
    config_repo: ConfigRepoSettings = ConfigRepoSettings()

    @model_validator(mode="after")
    def _names(self) -> Settings:
        if not self.environments:
            raise ValueError("environments: at least one environment is needed")
        return self

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{(self.home / 'apx.db').resolve()}"

    @property
    def repo_path(self) -> Path:
        return self.home / "config-repo"

    @property
    def keys_dir(self) -> Path:
        """Signing keys: the commit key and the audit checkpoint key."""
        return self.home / "keys"

    @property
    def checkpoint_file(self) -> Path:
        """Signed audit checkpoints, outside the database."""
        return self.home / "audit" / "checkpoints.jsonl"

    def branch_of(self, environment: str) -> str:
        return self.environments[environment].branch or environment

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_settings passes apx.yaml's values as init kwargs; APX_* wins over them.
        return (env_settings, init_settings)


def load_settings(home: Path | None = None) -> Settings:
    """Read ``<home>/apx.yaml`` and the environment; a bad file is one clear BadInput."""
    home = home or Path(os.environ.get("APX_HOME", ".apx"))
    overrides: dict[str, Any] = {"home": home}
    if url := os.environ.get("APX_DATABASE_URL"):
        overrides["database"] = {"url": url}
    config = home / "apx.yaml"
    try:
        loaded = yaml.safe_load(config.read_text()) if config.exists() else {}
    except yaml.YAMLError as exc:
        raise BadInput(f"{config}: not valid YAML: {exc}".replace("\n", " ")) from exc
    if loaded is not None and not isinstance(loaded, dict):
        raise BadInput(f"{config}: expected a mapping of settings")
    file_values: dict[str, Any] = loaded or {}
    values = {**file_values, **overrides}
    if "database" in overrides and isinstance(file_values.get("database"), dict):
        values["database"] = {**file_values["database"], **overrides["database"]}
    try:
        return Settings(**values)
    except ValueError as exc:
        first = exc.errors()[0] if hasattr(exc, "errors") else None
        if first:
            where = ".".join(str(p) for p in first["loc"])
            raise BadInput(f"{config}: {where}: {first['msg']}") from exc
        raise BadInput(f"{config}: {exc}") from exc


def default_settings_document(
    home: Path, *, database_url: str | None = None, config_remote: str | None = None
) -> str:
    """The commented ``apx.yaml`` that ``apx init`` writes; ``database_url`` (already without a
    password, see :func:`orchestrator.home.init_home`) instead of the home's SQLite file, and
    ``config_remote`` as ``config_repo.remote``."""
    url = database_url or f"sqlite:///{(home / 'apx.db').resolve()}"
    remote = "null" if config_remote is None else json.dumps(config_remote)
    return f"""\
# APX settings. Durations: 90s, 5m, 1h or seconds. APX_* variables override
# (APX_DATABASE_URL, APX_ADMISSION__DEDUPE_WINDOW=10s, ...).
database:
  url: {url}
admission:
  dedupe_window: 5m
  rate_limit: {{deploys: 1, per: 5m}}                   # per agent per environment
  breaker: {{max_deploys: 3, window: 15m, cooldown: 30m}} # per tenant + environment
policy:
  bundle: null                                        # default: the bundle shipped in constraints/
  opa_url: null
environments:
  dev:  {{mode: auto}}                                  # auto-apply as a signed commit
  prod: {{mode: pr, approvals: 1}}                      # signed PR, human approval
audit:
  checkpoint_every: 1000                              # sign a checkpoint every N entries...
  checkpoint_interval: 5m                             # ...or T, whichever comes first
retention:
  payloads: 365d                                      # prune intent payloads older than this (null: never)
  every: 1h
canary:
  window: 5m                                          # after a change lands, compare its error rate...
  margin: 5.0                                         # ...and roll back when it is this many points worse
pr_provider: {{kind: local}}                          # or github (docs/how-to/github-pull-requests.md)
notifications:
  webhooks: []                                        # [{{name, url, format: json|slack, events}}]
telemetry:
  exporter: none                                      # console or otlp (+ endpoint): one trace per intent
config_repo:
  remote: {remote}  # a git remote shared by several hosts (docs/how-to/run-on-several-hosts.md)
"""
