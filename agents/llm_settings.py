"""The ``llm:`` section of ``apx.yaml``: which models the agents may call, and how hard to try.

Its own module, importing neither litellm nor :mod:`orchestrator.settings`, so the
main settings can embed :class:`LlmSettings` without paying litellm's multi-second
import, and :mod:`agents.llm` can read it without an import cycle. The fields
map one to one onto litellm's ``Router`` (:func:`agents.llm.build_router`):
fallbacks, per-deployment rpm/tpm limits, retries and cool-downs are litellm's
job, not ours.

No model configured (the default) means no LLM: every agent uses its
deterministic planner, so APX works offline and in tests.

API keys never appear here, only the *name* of the environment variable that
holds one (``api_key_env``); the key is read when the router is built.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from orchestrator.durations import Duration

_GROUP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
#: Environment variable names as people write them for keys: upper case, digits, ``_``.
#: Also what tells a pasted key (``sk-…``, mixed case) from a variable name.
_ENV_NAME_RE = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")

#: The Router strategies we support. ``usage-based-routing-v2`` is the default
#: because it is the one that treats ``rpm``/``tpm`` as limits (a deployment over
#: its quota is skipped and the fallback serves) rather than as shuffle weights.
RoutingStrategy = Literal["usage-based-routing-v2", "simple-shuffle", "least-busy", "latency-based-routing"]


class ModelSettings(BaseModel):
    """One deployment: a litellm model string under a model-group name."""

    # A misplaced key must not be echoed back in a validation error.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    #: The model group this deployment serves (e.g. ``planner``). Several deployments
    #: may share a group; the Router balances between them.
    name: str
    #: litellm's ``provider/model`` string: ``openai/gpt-4o-mini``, ``anthropic/claude-3-5-haiku-latest``.
    model: str
    #: The NAME of the environment variable holding the API key (e.g. ``OPENAI_API_KEY``),
    #: never the key. None: the provider needs none, or litellm finds it itself.
    api_key_env: str | None = None
    #: Another endpoint for the provider (a proxy, a local server, Azure's resource URL).
    api_base: str | None = None
    #: Requests per minute this deployment may take; over it, the Router uses a fallback.
    rpm: int | None = Field(default=None, gt=0)
    #: Tokens per minute, likewise.
    tpm: int | None = Field(default=None, gt=0)
    #: How long one call may take before it counts as a failure. 60s: planning
    #: prompts are a few thousand tokens; a provider slower than that is better skipped.
    timeout: Duration = timedelta(seconds=60)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _GROUP_RE.match(v):
            raise ValueError("a model group name is letters, digits, '.', '_' or '-' (at most 63)")
        return v

    @field_validator("model")
    @classmethod
    def _model(cls, v: str) -> str:
        provider, sep, name = v.partition("/")
        if not (sep and provider and name) or any(ch.isspace() for ch in v):
            raise ValueError("model must be litellm's 'provider/model', e.g. 'openai/gpt-4o-mini'")
        return v

    @field_validator("api_key_env")
    @classmethod
    def _api_key_env(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_NAME_RE.match(v):
            raise ValueError(
                "api_key_env is the NAME of the environment variable holding the key "
                "(e.g. OPENAI_API_KEY), never the key itself"
            )
        return v

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, v: timedelta) -> timedelta:
        if v <= timedelta(0):
            raise ValueError("timeout must be more than zero")
        return v


class LlmSettings(BaseModel):
    """Models for the agents' LLM planners, in the shape of litellm's ``Router``."""

    # Errors name the field, never its value: a key pasted into api_key_env stays out of them.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    #: The deployments. The first one's group is the primary; empty means no LLM.
    models: list[ModelSettings] = Field(default_factory=list)
    #: Model groups to try, in order, when the primary group fails (after its retries).
    #: None: every other configured group, in the order listed. ``[]``: no fallback.
    fallbacks: list[str] | None = None
    #: Retries of a failed call per group, with litellm's jittered back-off. 2: a blip
    #: is retried, a dead provider costs little before the fallback takes over.
    num_retries: int = Field(default=2, ge=0, le=10)
    #: How long a deployment that failed ``allowed_fails`` times in a minute is left
    #: alone. 60s: long enough that a failing provider is not hammered (no thundering herd).
    cooldown: Duration = timedelta(seconds=60)
    #: Failures a deployment may have in a minute before it is cooled down.
    allowed_fails: int = Field(default=2, ge=0)
    #: Which deployment of a group serves a call (see :data:`RoutingStrategy`).
    routing_strategy: RoutingStrategy = "usage-based-routing-v2"
    #: The most a plan may cost in output tokens. 1200: a summary and a few whole resources.
    max_output_tokens: int = Field(default=1200, gt=0, le=32_000)

    @field_validator("cooldown")
    @classmethod
    def _cooldown(cls, v: timedelta) -> timedelta:
        if v < timedelta(0):
            raise ValueError("cooldown cannot be negative")
        return v

    @model_validator(mode="after")
    def _fallbacks_name_groups(self) -> LlmSettings:
        if not self.fallbacks:
            return self
        groups = self.groups
        if not groups:
            raise ValueError("fallbacks are set but no models are configured")
        for name in self.fallbacks:
            if name not in groups:
                raise ValueError(f"fallback {name!r} is not a configured model group ({', '.join(groups)})")
            if name == groups[0]:
                raise ValueError(f"fallback {name!r} is the primary group; fall back to another one")
        if len(set(self.fallbacks)) != len(self.fallbacks):
            raise ValueError("fallbacks name a model group twice")
        return self

    @property
    def enabled(self) -> bool:
        """Whether an LLM is configured at all (else agents plan deterministically)."""
        return bool(self.models)

    @property
    def groups(self) -> list[str]:
        """The model groups, in the order they are first listed."""
        return list(dict.fromkeys(m.name for m in self.models))

    @property
    def primary(self) -> str:
        """The group every call goes to first."""
        if not self.models:
            raise ValueError("no LLM models are configured")
        return self.models[0].name

    @property
    def fallback_order(self) -> list[str]:
        """The groups tried after the primary, in order."""
        if self.fallbacks is not None:
            return list(self.fallbacks)
        return self.groups[1:]
