"""Canary with auto-rollback: watch the data plane's error rate after a change lands.

When an intent lands (applied in dev, merged in prod) apx starts a watch: for
``canary.window`` it compares the environment's error rate since the change
with the rate over the same length of time before it. If the change made the
error rate worse by more than ``canary.margin`` percentage points (the platform
design's default is 5), apx rolls it back through the normal pipeline (a signed
revert commit; in a ``pr`` environment a rollback PR) and records why. A watch
with too few samples to judge is settled as ``no_data``, never as a pass.

:func:`judge` is the pure rule; :class:`CanaryWatcher` applies it to what the
data plane published (:class:`orchestrator.dataplane.metrics.MetricsStore`).
Watches live in the intent log's database, so a check after a restart (the
scheduler, ``apx canary check``) still finds them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from orchestrator import logs
from orchestrator.approvals import ROLLBACK_AGENT
from orchestrator.decision import Decision, Status
from orchestrator.records import CanaryWatch

if TYPE_CHECKING:
    from orchestrator.dataplane.metrics import MetricsStore
    from orchestrator.pipeline import Orchestrator
    from orchestrator.ports import CanaryStore
    from orchestrator.settings import CanarySettings

log = logs.get_logger("apx.canary")

#: Who asks for a canary's rollback.
CANARY_ACTOR = "apx-canary"


@dataclass(frozen=True)
class Judgement:
    #: ``rolled_back``, ``passed``, ``no_data`` or ``watching`` (not over, nothing wrong yet).
    verdict: str
    reason: str
    baseline: float | None = None
    observed: float | None = None


def judge(
    *,
    baseline: float | None,
    observed: float | None,
    samples: int,
    margin: float,
    min_samples: int,
    over: bool,
) -> Judgement:
    """The rule. ``over``: the watch window has ended. A breach rolls back as soon as
    there are enough samples; a pass needs the whole window."""
    if observed is None or samples < min_samples:
        if over:
            return Judgement("no_data", f"only {samples} samples since the change (need {min_samples})")
        return Judgement("watching", "waiting for samples")
    before = baseline if baseline is not None else 0.0
    worse = observed - before
    base_text = f"{before:.1f}%" if baseline is not None else "0% (no samples before the change)"
    text = f"error rate {observed:.1f}% since the change vs {base_text} before"
    if worse > margin:
        return Judgement(
            "rolled_back", f"{text}: {worse:.1f} points worse (margin {margin:g})", baseline, observed
        )
    if over:
        return Judgement("passed", f"{text}: within {margin:g} points", baseline, observed)
    return Judgement("watching", text, baseline, observed)


class CanaryWatcher:
    def __init__(
        self,
        *,
        settings: CanarySettings,
        store: CanaryStore,
        metrics: MetricsStore,
        orchestrator: Orchestrator,
        now: Callable[[], datetime],
    ) -> None:
        self._settings = settings
        self._store = store
        self._metrics = metrics
        self._orchestrator = orchestrator
        self._now = now

    def watch(self, decision: Decision) -> None:
        """Start watching a change that just landed (not apx's own rollbacks)."""
        if not self._settings.enabled or decision.agent == ROLLBACK_AGENT:
            return
        started = decision.decided_at or self._now()
        self._store.watch_canary(
            CanaryWatch(
                intent_id=decision.intent_id,
                environment=decision.environment,
                started_at=started,
                until=started + self._settings.window,
            )
        )

    def check(self) -> list[tuple[CanaryWatch, Judgement]]:
        """Judge every open watch once; roll back the ones that made things worse."""
        now = self._now()
        settled = []
        for watch in self._store.canaries(status="watching"):
            judgement = self._judge(watch, now)
            if judgement.verdict == "watching":
                continue
            if judgement.verdict == "rolled_back":
                undo = self._orchestrator.rollback(
                    watch.intent_id, by=CANARY_ACTOR, reason=f"canary: {judgement.reason}"
                )
                if undo.status not in (Status.APPLIED, Status.PR_OPEN):
                    judgement = Judgement(
                        "rollback_failed",
                        f"{judgement.reason}; the rollback was {undo.status.value}: "
                        + "; ".join(undo.reasons[:2]),
                        judgement.baseline,
                        judgement.observed,
                    )
                log.warning("canary.rolled_back", intent_id=watch.intent_id, reason=judgement.reason)
            self._store.settle_canary(
                watch.intent_id, verdict=judgement.verdict, reason=judgement.reason, at=now
            )
            settled.append((watch, judgement))
        return settled

    def _judge(self, watch: CanaryWatch, now: datetime) -> Judgement:
        end = min(now, watch.until)
        length = watch.until - watch.started_at
        since = self._metrics.read(
            environment=watch.environment,
            since=watch.started_at,
            until=end,
            metric="error_rate",
            scope="pool/",
        )
        observed = self._metrics.error_rate(watch.environment, watch.started_at, end)
        baseline = self._metrics.error_rate(
            watch.environment, watch.started_at - max(length, timedelta(seconds=1)), watch.started_at
        )
        return judge(
            baseline=baseline,
            observed=observed,
            samples=len({s.at for s in since}),
            margin=self._settings.margin,
            min_samples=self._settings.min_samples,
            over=now >= watch.until,
        )
