"""The agents' settings: the ``agents:`` section of ``apx.yaml``.

A sub-model of its own (not in :mod:`orchestrator.settings`) so the agents
package owns its knobs; the main ``Settings`` holds it as ``agents``. Every
threshold is here, so tests and operators can use windows of seconds and
their own limits. Durations use the one syntax of every setting
(:data:`orchestrator.durations.Duration`: ``90s``, ``5m``, ``1h``).

Defaults come from the platform design: the Optimizer watches 5 minutes of
metrics before it proposes and runs every 5 minutes; the Security agent scans
hourly; the Builder only runs when asked.
"""

from __future__ import annotations

import math
from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.durations import Duration


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BuilderSettings(_Section):
    #: Accept requests at all (``apx agents run builder`` refuses when false).
    enabled: bool = True
    #: Where its routes are proposed when ``--env`` is not given.
    environment: str = "dev"
    #: A pool it sizes that another agent changed this recently names that change as its cause.
    react_within: Duration = timedelta(minutes=15)


class OptimizerSettings(_Section):
    #: Run on the scheduler (and on demand).
    enabled: bool = True
    #: How often the scheduler runs it: the platform design's one deploy per agent per 5 minutes.
    every: Duration = timedelta(minutes=5)
    environment: str = "dev"
    #: Metrics it reads before proposing (read-only): the design's "watch for 5 minutes".
    window: Duration = timedelta(minutes=5)
    #: How often the data plane publishes a sample: ``apx dataplane run``'s default tick.
    sample_interval: Duration = timedelta(seconds=1)
    #: Distinct sample times a pool needs in the window before any proposal.
    #: None: the window's worth, ``floor(window / sample_interval)`` (300 by default).
    min_samples: int | None = Field(default=None, ge=1)
    #: Mean utilisation (0..1) above which it scales up...
    scale_up_above: float = Field(default=0.75, gt=0, le=1)
    #: ...and below which it scales down.
    scale_down_below: float = Field(default=0.3, ge=0, lt=1)
    #: The utilisation a resize aims for (replicas = ceil(replicas * utilisation / target)).
    target_utilisation: float = Field(default=0.5, gt=0, le=1)
    #: p95 latency SLO in milliseconds: a mean p95 above it scales up whatever the utilisation.
    p95_slo_ms: float = Field(default=300.0, gt=0)
    #: Another agent's landed change this recent that feeds a pool is what a resize reacts
    #: to (``causedBy``). The breaker's window: an older change cannot be part of a loop it stops.
    react_within: Duration = timedelta(minutes=15)

    @model_validator(mode="after")
    def _thresholds(self) -> OptimizerSettings:
        if self.scale_down_below >= self.scale_up_above:
            raise ValueError("scale_down_below must be lower than scale_up_above")
        if self.sample_interval <= timedelta(0) or self.window < self.sample_interval:
            raise ValueError("window must be at least one sample_interval, and sample_interval positive")
        return self

    @property
    def samples_needed(self) -> int:
        """The fewest distinct samples a pool needs before the Optimizer proposes for it."""
        if self.min_samples is not None:
            return self.min_samples
        return max(1, math.floor(self.window / self.sample_interval))


class SecuritySettings(_Section):
    enabled: bool = True
    #: The design's hourly read-only scan.
    every: Duration = timedelta(hours=1)
    environment: str = "dev"
    #: Ingress open to the whole IPv4 internet is narrowed to this network: RFC 1918's
    #: 10.0.0.0/8, the internal range the seeded ``edge`` policy already admits.
    narrow_to: str = "10.0.0.0/8"
    #: ...and the whole IPv6 internet to this one: unique local addresses (RFC 4193).
    narrow_to_v6: str = "fd00::/8"
    #: Route paths that may stay ``auth: none`` (public probes); any other such route is flagged.
    public_paths: list[str] = Field(default_factory=lambda: ["/healthz", "/readyz", "/livez"])
    #: Highest trace sample rate (0..1) the observability budget allows; the seed uses 0.1.
    max_sample_rate: float = Field(default=0.1, ge=0, le=1)
    #: Routes one proposal may fix: the policy's 50-routes-per-intent limit. The rest wait
    #: for the next scan (said in the rationale).
    max_routes: int = Field(default=50, ge=1)
    #: As the Optimizer's: a finding on a resource another agent changed this recently
    #: names that change as its cause.
    react_within: Duration = timedelta(minutes=15)


class AgentsSettings(_Section):
    """``agents:`` in ``apx.yaml``."""

    #: Tenants the scheduled runs look after (on demand: ``--tenant``).
    tenants: list[str] = Field(default_factory=lambda: ["acme"])
    builder: BuilderSettings = BuilderSettings()
    optimizer: OptimizerSettings = OptimizerSettings()
    security: SecuritySettings = SecuritySettings()
