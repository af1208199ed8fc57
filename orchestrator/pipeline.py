"""The pipeline: from an arriving intent to a recorded decision.

Two phases, both under the environment's lock:

1. **Admit** (:meth:`Orchestrator.submit`): mint ids, run dedupe, rate limit and
   breaker (:mod:`orchestrator.admission`) and record the intent — held, or
   ``queued``. One write, so refused intents are cheap.
2. **Decide** (:meth:`Orchestrator.drain`): take the environment's queued
   intents in arrival order and run each through a langgraph graph —
   ``sequence`` (merge onto the branch as it is now, or refuse a conflict) →
   ``validate`` (the validator chain) → ``route`` (signed commit in an ``auto``
   environment, signed PR branch in a ``pr`` one). The graph is deliberately
   coarse: three nodes, no checkpointer on this hot path; durability comes from
   the intent log (a crash leaves the intent ``queued`` and the next drain
   decides it).

A synchronous submit is "admit, then drain up to my intent"; ``--no-wait``
stops after admitting. Unexpected errors become a ``failed`` decision with
the reason — never a silent drop.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypedDict

import structlog
from langgraph.graph import END, START, StateGraph

from orchestrator import admission, approvals
from orchestrator.approvals import ROLLBACK_AGENT
from orchestrator.canonical import dedupe_key
from orchestrator.changeset import (
    Environment,
    Plan,
    Refusal,
    change_summary,
    environment_deprecations,
    parse_environment,
    plan,
)
from orchestrator.clock import Clock
from orchestrator.cumulative import routes_in_window
from orchestrator.decision import ADMITTED, Check, Decision, PullRequestRef, Rollback, Status
from orchestrator.durations import format_duration
from orchestrator.errors import ApxError, BadInput, BranchMoved, NotFound, UnknownEnvironment
from orchestrator.ids import new_intent_id, new_trace_id
from orchestrator.intent import Intent, check_name
from orchestrator.logs import get_logger
from orchestrator.oscillation import Oscillation, PastChange, detect
from orchestrator.ports import (
    BreakerStore,
    ConfigRepo,
    EnvironmentLock,
    IntentStore,
    Observer,
    ReviewStore,
    Snapshot,
)
from orchestrator.records import BreakerState, IntentRecord, IntentView, PullRequestView
from orchestrator.settings import Settings
from orchestrator.telemetry import AGENT, ENVIRONMENT, INTENT_ID, STATUS, AttributeValue, Telemetry
from orchestrator.verdict import Verdict, combine
from orchestrator.windows import WindowState, window_state
from validators import ValidationContext, Validator, blast_radius
from validators.policy import PolicyEngine
from validators.secrets import SecretScanValidator

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from orchestrator.service_metrics import ServiceMetrics

log = get_logger("apx.pipeline")
_PARSED_CACHE = 16
#: Changes that are in the environment: what an oscillation can undo.
_LANDED = frozenset({Status.APPLIED, Status.MERGED})


class Store(IntentStore, BreakerStore, ReviewStore, Protocol):
    """The intent log, the breakers and the PRs, kept in one database."""


class _State(TypedDict, total=False):
    view: IntentView
    intent: Intent
    head: str
    current: Snapshot
    current_env: Environment
    plan: Plan
    verdict: Verdict
    blast_radius: dict[str, Any]
    #: Replay: decide as usual but write nothing (no commit, no breaker).
    dry_run: bool
    #: Recovery: the commit this intent already made before a crash cut its decision
    #: short; routing records it instead of committing again.
    landed: str
    decision: Decision


class Orchestrator:
    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        repo: ConfigRepo,
        lock: EnvironmentLock,
        clock: Clock,
        validators: Sequence[Validator],
        policy: PolicyEngine,
        secret_scan: SecretScanValidator,
        observers: Sequence[Observer] = (),
        telemetry: Telemetry | None = None,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self._observers = list(observers)
        #: Spans of each intent's trace (off unless ``telemetry.exporter`` is set).
        self._telemetry = telemetry or Telemetry.disabled()
        #: ``apx_decisions_total`` and ``apx_decision_seconds``, when the App serves /metrics.
        self._metrics = metrics
        self._settings = settings
        self._store = store
        self._repo = repo
        self._lock = lock
        self._clock = clock
        self._validators = list(validators)
        self._policy = policy
        self._secret_scan = secret_scan
        self._graph = self._build_graph()
        # Parsed environments by commit id. Commits are immutable, so entries never
        # go stale; parsing ~64 YAML files is the largest cost of a decision otherwise.
        self._parsed: OrderedDict[str, tuple[Snapshot, Environment]] = OrderedDict()
        # The API's threads share one Orchestrator (request threads, the drain worker,
        # scheduled agents); the environment lock orders decisions, this guards the cache.
        self._parsed_lock = threading.Lock()

    # -- phase 1: admit ---------------------------------------------------------

    def submit(self, intent: Intent, *, agent: str, wait: bool = True, admit: bool = True) -> Decision:
        """Record ``intent`` from ``agent`` and, unless ``wait`` is False, decide it.

        ``admit=False`` skips dedupe, rate limit and breaker: only for apx's own
        remedies (a rollback must not wait behind the breaker it may be answering).
        """
        environment = intent.environment
        if environment not in self._settings.environments:
            known = ", ".join(sorted(self._settings.environments))
            raise UnknownEnvironment(f"environment {environment!r} is not configured (configured: {known})")
        try:
            check_name(agent, "agent")
        except ValueError as exc:
            raise BadInput(str(exc)) from exc
        branch = self._settings.branch_of(environment)
        # What the agent saw: its own statement, or the branch as the intent arrives.
        base = intent.metadata.baseRevision or self._repo.head(branch)
        if base is None:
            raise UnknownEnvironment(
                f"the config repo has no branch {branch!r} for environment {environment!r}"
            )
        if intent.metadata.baseRevision:
            try:
                self._repo.read(base)
            except ApxError as exc:
                raise BadInput(f"metadata.baseRevision {base!r} is not a commit of the config repo") from exc

        started = time.perf_counter()
        trace_id = new_trace_id()
        # Secrets are screened before anything is written: the intent log keeps the
        # intent as submitted, and a credential must never land there (or in the repo).
        with self._telemetry.span(
            "apx.secret_scan", trace_id=trace_id, **{AGENT: agent, ENVIRONMENT: environment}
        ):
            findings, document = self._screen_secrets(intent, agent)
        with self._lock.hold(environment):
            now = self._clock.now()
            record = IntentRecord(
                id=new_intent_id(now),
                trace_id=trace_id,
                tenant=intent.tenant,
                environment=environment,
                agent=agent,
                caused_by=intent.metadata.causedBy,
                # The canonical (apx/v1) changes, so an old-version intent dedupes with a
                # current one; for an intent holding a secret, only its redacted form.
                dedupe_key=dedupe_key(
                    tenant=intent.tenant,
                    environment=environment,
                    changes=intent.changes_document() if findings is None else document["spec"]["changes"],
                ),
                base_revision=base,
                received_at=now,
                document=document,
                targets=tuple(str(t) for t in intent.targets),
            )
            structlog.contextvars.bind_contextvars(intent_id=record.id, trace_id=record.trace_id)
            try:
                with self._telemetry.span("apx.admit", trace_id=trace_id, **_span_facts(record)) as span:
                    held = self._admit(record, findings, admit=admit, now=now)
                    span.set_attribute(STATUS, (held.status if held else Status.QUEUED).value)
                if held is not None:
                    self._log_decision(held, started=started)
                    return held
                if wait:
                    for decision in self._drain_locked(environment, until=record.id):
                        if decision.intent_id == record.id:
                            return decision
            finally:
                structlog.contextvars.unbind_contextvars("intent_id", "trace_id")
        waiting = self.change_window(environment)
        reasons = [] if waiting.open else [f"waiting for {environment}'s change window: {waiting.reason}"]
        return self._decision(record, status=Status.QUEUED, reasons=reasons)

    def _admit(
        self, record: IntentRecord, findings: Check | None, *, admit: bool, now: datetime
    ) -> Decision | None:
        """Record the arriving intent, under its environment's lock: its decision if it is
        held (a secret, or dedupe, rate limit or breaker), None if it is queued."""
        if findings is not None:
            refused = self._decision(
                record, status=Status.REJECTED, reasons=list(findings.messages), checks=[findings]
            )
            with self._telemetry.span("apx.record"):
                self._store.receive(record, status=Status.REJECTED, decision=refused)
            return refused
        rules = self._settings.admission
        with self._telemetry.span("apx.admission") as span:
            verdict = (
                admission.Admission(status=Status.QUEUED)
                if not admit
                else admission.admit(
                    admission.Candidate(
                        intent_id=record.id,
                        tenant=record.tenant,
                        environment=record.environment,
                        agent=record.agent,
                        dedupe_key=record.dedupe_key,
                    ),
                    recent=self._store.recent(
                        environment=record.environment,
                        since=now - admission.lookback(rules),
                        statuses=ADMITTED,
                    ),
                    breaker=self._store.breaker(tenant=record.tenant, environment=record.environment),
                    settings=rules,
                    now=now,
                )
            )
            if admit:
                _guard_events(span, verdict)
        # The intent, its first status and any breaker change: one write, one audit trail.
        held = None
        with self._telemetry.span("apx.record"):
            if verdict.admitted:
                self._store.receive(record, status=Status.QUEUED, decision=None, breaker=verdict.breaker)
            else:
                held = self._decision(
                    record,
                    status=verdict.status,
                    reasons=list(verdict.reasons),
                    duplicate_of=verdict.duplicate_of,
                )
                self._store.receive(record, status=verdict.status, decision=held, breaker=verdict.breaker)
        if verdict.tripped and verdict.breaker is not None:
            self._alert_breaker(verdict.breaker)
        return held

    # -- phase 2: decide --------------------------------------------------------

    def _screen_secrets(self, intent: Intent, agent: str) -> tuple[Check | None, dict[str, Any]]:
        """(the failed secrets check or None, the intent document with any secret redacted)."""
        resources = {c.resource.key.path: c.resource.document() for c in intent.spec.changes}
        ctx = ValidationContext(
            intent=intent, agent=agent, before={}, after=resources, changed=frozenset(resources)
        )
        findings, document = self._secret_scan.redact(ctx, intent.model_dump(mode="json", exclude_none=True))
        if not findings:
            return None, document
        return Check(name=self._secret_scan.name, passed=False, messages=[str(f) for f in findings]), document

    def holding(self, environment: str) -> AbstractContextManager[None]:
        """The environment's lock, for maintenance that writes its branch (``apx migrate``)."""
        return self._lock.hold(environment)

    def drain(self, environment: str) -> list[Decision]:
        """Decide every queued intent of ``environment``, oldest first."""
        with self._lock.hold(environment):
            return self._drain_locked(environment, until=None)

    def change_window(self, environment: str) -> WindowState:
        """Whether ``environment`` may change now under its change windows (always, without any)."""
        return window_state(self._settings.environments[environment].windows, self._clock.now())

    def _drain_locked(self, environment: str, *, until: str | None) -> list[Decision]:
        decided: list[Decision] = []
        # Outside its change window an environment's intents stay queued, in order,
        # until a drain after the window opens (``apx serve`` drains on a timer).
        if self._settings.environments[environment].windows and not self.change_window(environment).open:
            log.info("drain.waiting_for_window", environment=environment)
            return decided
        for view in self._store.pending(environment=environment):
            decided.append(self._decide_traced(view))
            if view.record.id == until:
                break
        return decided

    def work(
        self,
        worker: str,
        *,
        environments: Collection[str] | None = None,
        stop: Callable[[], bool] = lambda: False,
    ) -> list[Decision]:
        """Claim and decide queued intents until none is claimable (or ``stop()``).

        What pipeline workers run (``apx drain [--follow]``, ``apx serve``): each
        claim takes the head of one environment's queue (:meth:`IntentStore.claim`,
        ``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so several workers, on any
        hosts, decide different environments at once and each environment in
        arrival order. The decision itself runs under the environment's lock, as
        every decision does, on the intent as it is then: one decided meanwhile
        (by a synchronous submit, say) is skipped.
        """
        lease = self._settings.workers.lease
        decided: list[Decision] = []
        while not stop():
            # Outside its change window an environment's intents wait, claimed by nobody.
            candidates = [
                name
                for name in (environments or self._settings.environments)
                if not self._settings.environments[name].windows or self.change_window(name).open
            ]
            claimed = self._store.claim(worker=worker, environments=candidates, lease=lease)
            if claimed is None:
                break
            try:
                with self._lock.hold(claimed.record.environment):
                    view = self._store.get(claimed.record.id)
                    if view is not None and view.status is Status.QUEUED:
                        decided.append(self._decide_traced(view))
            except BaseException:
                # Give the intent back at once rather than after the lease; the error that
                # got us here is the one to report, so a failing release is only logged.
                try:
                    self._store.release(claimed.record.id, worker=worker)
                except Exception as exc:
                    log.warning("intent.release_failed", intent_id=claimed.record.id, error=str(exc))
                raise
        return decided

    def _decide_traced(self, view: IntentView) -> Decision:
        record = view.record
        with self._telemetry.span("apx.decide", trace_id=record.trace_id, **_span_facts(record)) as span:
            decision = self._decide(view)
            span.set_attribute(STATUS, decision.status.value)
        return decision

    def _decide(self, view: IntentView) -> Decision:
        started = time.perf_counter()
        structlog.contextvars.bind_contextvars(intent_id=view.record.id, trace_id=view.record.trace_id)
        try:
            start = self._recovery(view)
            try:
                state = self._graph.invoke(start)
            except BranchMoved:
                # Someone wrote the branch outside our lock: plan again on the new head, once.
                state = self._graph.invoke(start)
            decision: Decision = state["decision"]
            if "landed" in start and decision.commit != start["landed"]:
                decision = self._decision(
                    view.record,
                    status=Status.FAILED,
                    reasons=[
                        f"commit {start['landed']} for this intent landed before a crash, and deciding "
                        f"it again now says {decision.status.value}: "
                        + "; ".join(decision.reasons or ["no reason"])
                        + ". Check the branch, and roll the commit back if it must not stay."
                    ],
                )
        except Exception as exc:  # never a silent drop: record what went wrong
            log.exception("intent.failed")
            decision = self._decision(
                view.record,
                status=Status.FAILED,
                reasons=[f"internal error while deciding: {type(exc).__name__}: {exc}"],
            )
        finally:
            structlog.contextvars.unbind_contextvars("intent_id", "trace_id")
        with self._telemetry.span("apx.record"):
            self._store.decide(decision, pr=decision.pr)
        self._log_decision(decision, started=started, trace_id=view.record.trace_id, intent_id=view.record.id)
        self._tell(lambda o: o.decided(decision))
        return decision

    def _recovery(self, view: IntentView) -> _State:
        """The graph's input for ``view``. For an intent whose decision a crash cut short
        after its commit (or PR branch) was made, it also names that commit and the head
        it was made on.

        An apply is keyed by intent id: deciding such an intent again finds its commit
        through the ``Intent-Id:`` trailer (its PR through the branch ``apx/<intent-id>``)
        and records it, so a retried apply never makes a second commit or PR.
        """
        record = view.record
        branch = self._settings.branch_of(record.environment)
        landed = self._repo.head(f"apx/{record.id}") or self._repo.intent_commit(
            branch, record.id, since=record.base_revision
        )
        parent = self._repo.parent(landed) if landed else None
        if landed is None or parent is None:
            return {"view": view}
        log.warning("intent.recovered", commit=landed, branch=branch)
        return {"view": view, "head": parent, "landed": landed}

    def observe(self, observer: Observer) -> None:
        self._observers.append(observer)

    def _tell(self, call: Callable[[Observer], None]) -> None:
        """Tell every observer; one that fails is logged and the rest still hear it."""
        for observer in self._observers:
            try:
                call(observer)
            except Exception:
                log.exception("observer.failed", observer=type(observer).__name__)

    def _build_graph(self) -> Any:
        graph = StateGraph(_State)
        graph.add_node("sequence", self._in_span("apx.sequence", self._sequence))
        graph.add_node("validate", self._in_span("apx.validate", self._validate))
        graph.add_node("route", self._in_span("apx.route", self._route))
        graph.add_edge(START, "sequence")
        graph.add_conditional_edges("sequence", _next_unless_decided("validate"), ["validate", END])
        graph.add_conditional_edges("validate", _next_unless_decided("route"), ["route", END])
        graph.add_edge("route", END)
        # Never checkpointed, not even when a checkpointed graph calls it (a review's
        # merge step does): a decision is recorded in the intent log, and langgraph would
        # otherwise save every step's state (plans, snapshots) as a subgraph of the review.
        return graph.compile(checkpointer=False)

    def _in_span(self, name: str, node: Callable[[_State], _State]) -> Any:
        """``node`` as a span of the running decision's trace (langgraph keeps the context).

        Typed ``Any`` like :func:`_next_unless_decided`: langgraph's node protocols
        want a parameter named ``state``, which a ``Callable`` type cannot say.
        """

        def traced(state: _State) -> _State:
            with self._telemetry.span(name):
                return node(state)

        return traced

    def _run_validators(self, ctx: ValidationContext) -> list[Check]:
        """Every validator, in order (like :func:`validators.run_chain`), each in its own span."""
        checks = []
        for validator in self._validators:
            with self._telemetry.span(f"apx.validator.{validator.name}") as span:
                check = validator.check(ctx)
                span.set_attribute("apx.check.passed", check.passed)
            checks.append(check)
        return checks

    def _sequence(self, state: _State) -> _State:
        view = state["view"]
        record = view.record
        intent = Intent.model_validate(record.document)
        head = state.get("head") or self._repo.head(self._settings.branch_of(record.environment))
        if head is None:
            raise NotFound(f"branch for {record.environment} disappeared")
        current, current_env = self._environment(head)
        base_env = current_env if record.base_revision == head else self._environment(record.base_revision)[1]
        result = plan(intent, base=base_env, current=current_env, current_files=current.files)
        if isinstance(result, Refusal):
            prefix = "conflict: " if result.conflict else ""
            check = Check(name="sequence", passed=False, messages=result.reasons)
            return {
                "intent": intent,
                "decision": self._decision(
                    record,
                    status=Status.REJECTED,
                    reasons=[prefix + r for r in result.reasons],
                    checks=[check],
                    revision=head,
                ),
            }
        return {
            "intent": intent,
            "head": head,
            "current": current,
            "current_env": current_env,
            "plan": result,
        }

    def _validate(self, state: _State) -> _State:
        record, intent, planned = state["view"].record, state["intent"], state["plan"]
        ctx = ValidationContext(
            intent=intent,
            agent=record.agent,
            before=state["current_env"],
            after=planned.after,
            changed=planned.changed,
        )
        blast = blast_radius.compute(
            before=ctx.before,
            after=ctx.after,
            changed=ctx.changed,
            tenant=record.tenant,
            environment=record.environment,
        )
        checks = [
            Check(name="sequence", passed=True, messages=planned.notes),
            *self._run_validators(ctx),
            Check(name="blast_radius", passed=True, messages=[blast.summary()]),
        ]
        now = self._clock.now()
        rules = self._settings.policy
        cumulative = routes_in_window(
            intent_id=record.id,
            agent=record.agent,
            tenant=record.tenant,
            targets=record.targets,
            recent=self._store.recent(
                environment=record.environment, since=now - rules.cumulative_window, statuses=ADMITTED
            ),
            window=format_duration(rules.cumulative_window),
        )
        oscillations = self._oscillations(record, intent, state["current_env"], planned, now=now)
        env = self._settings.environments[record.environment]
        policy_input: dict[str, Any] = {
            "intent": {
                "id": record.id,
                "agent": record.agent,
                "tenant": record.tenant,
                "environment": record.environment,
                "mode": env.mode,
            },
            "changes": [
                {
                    "action": c.action,
                    "kind": c.resource.kind,
                    "name": c.resource.metadata.name,
                    "tenant": c.resource.metadata.tenant,
                }
                for c in intent.spec.changes
            ],
            "blast": blast.policy_input(),
            "cumulative": cumulative.policy_input(),
            "now": now.isoformat().replace("+00:00", "Z"),
            "now_ns": int(now.timestamp() * 1_000_000_000),
        }
        with self._telemetry.span("apx.policy", **{"apx.policy.version": self._policy.bundle.label}) as span:
            result = self._policy.evaluate(policy_input)
            span.set_attribute("apx.policy.allowed", result.allowed)
            span.set_attribute("apx.policy.needs_approval", result.needs_approval)
        verdict = combine(
            checks=checks,
            policy=result,
            no_change=not planned.files,
            oscillations=oscillations,
            deprecations=[
                *intent.deprecations(),
                *environment_deprecations(
                    {p: t for p, t in state["current"].files.items() if p in planned.changed},
                    environment=record.environment,
                ),
            ],
        )
        radius = {**blast.as_dict(), "cumulative": cumulative.policy_input()}
        if oscillations and self._settings.admission.breaker.trip_on_oscillation and not state.get("dry_run"):
            self._trip_on_oscillation(record, oscillations, now=now)
        out: _State = {"verdict": verdict, "blast_radius": radius}
        if verdict.rejected:
            out["decision"] = self._decision(
                record,
                status=Status.REJECTED,
                reasons=verdict.reasons,
                checks=verdict.checks,
                # A diff would show the secret the scan found: leave it out.
                diff={}
                if any(c.name == "secrets" and not c.passed for c in verdict.checks)
                else planned.diff,
                blast_radius=radius,
                warnings=verdict.warnings,
                waivers=verdict.waivers,
                revision=state["head"],
            )
        return out

    def _oscillations(
        self, record: IntentRecord, intent: Intent, current: Environment, planned: Plan, *, now: datetime
    ) -> list[Oscillation]:
        """A→B→A on a field: this intent undoing another agent's recent applied change.

        A rollback is an undo by design, asked for by a human or the canary: it is not
        an agent fighting another and neither flags nor trips anything. An agent that
        then sets the value back again is fighting the rollback, and that is flagged.
        """
        if record.agent == ROLLBACK_AGENT:
            return []
        targets = set(record.targets)
        since = now - self._settings.admission.oscillation_window
        recent = [
            r
            for r in self._store.recent(environment=record.environment, since=since, statuses=_LANDED)
            if r.agent != record.agent and targets.intersection(r.targets)
        ]
        history: list[PastChange] = []
        for earlier in recent:
            view = self._store.get(earlier.id)
            if view is None or view.decision is None or view.decision.rollback is None:
                continue
            befores = {_target_of(c): c.get("resource") for c in view.decision.rollback.changes}
            for change in view.record.document["spec"]["changes"]:
                target = _target_of(change)
                if target in targets:
                    before = befores.get(target)
                    history.append(
                        PastChange(
                            intent_id=earlier.id,
                            agent=earlier.agent,
                            target=target,
                            before=before if isinstance(before, dict) and "spec" in before else None,
                            after=change["resource"] if change["action"] != "delete" else None,
                        )
                    )
        found: list[Oscillation] = []
        for change in intent.spec.changes:
            key = change.resource.key
            found += detect(
                agent=record.agent,
                target=str(key),
                current=current.get(key.path),
                proposed=planned.after.get(key.path),
                history=history,
            )
        return found

    def _trip_on_oscillation(
        self, record: IntentRecord, found: Sequence[Oscillation], *, now: datetime
    ) -> None:
        state = self._store.breaker(tenant=record.tenant, environment=record.environment)
        if state is not None and state.open and state.closes_at is not None and state.closes_at > now:
            return
        tripped = BreakerState(
            tenant=record.tenant,
            environment=record.environment,
            open=True,
            opened_at=now,
            closes_at=now + self._settings.admission.breaker.cooldown,
            reason=found[0].describe(),
            tripped_by=record.id,
            count_from=state.count_from if state else None,
            reset_at=state.reset_at if state else None,
            reset_by=state.reset_by if state else None,
        )
        self._store.save_breaker(tripped)
        self._alert_breaker(tripped)

    def _route(self, state: _State) -> _State:
        record, intent, planned, verdict = (
            state["view"].record,
            state["intent"],
            state["plan"],
            state["verdict"],
        )
        env = self._settings.environments[record.environment]
        branch = self._settings.branch_of(record.environment)
        review = env.mode == "pr" or verdict.needs_review
        common: dict[str, Any] = {
            "checks": verdict.checks,
            "diff": planned.diff,
            "blast_radius": state["blast_radius"],
            "warnings": verdict.warnings,
            "waivers": verdict.waivers,
            "revision": state["head"],
        }
        if state.get("dry_run"):
            status = Status.PR_OPEN if review else Status.APPLIED
            reasons = [*verdict.reasons, *verdict.flags]
            return {"decision": self._decision(record, status=status, reasons=reasons, **common)}
        message = _commit_message(record, intent)
        landed = state.get("landed")
        if not review:
            with self._telemetry.span("apx.apply", **{"apx.branch": branch}):
                commit = landed or self._repo.commit(
                    branch=branch, parent=state["head"], files=planned.files, message=message
                )
            # The new head is exactly the plan's result: the next intent need not re-parse it.
            self._remember(commit, self._repo.read(commit), planned.after)
            decision = self._decision(
                record,
                status=Status.APPLIED,
                commit=commit,
                rollback=_rollback(commit, branch, planned),
                reasons=[*verdict.flags, *planned.notes],
                **common,
            )
            return {"decision": decision}
        pr_branch = f"apx/{record.id}"
        with self._telemetry.span("apx.pr.open", **{"apx.branch": pr_branch}):
            commit = landed or self._repo.commit(
                branch=pr_branch, parent=state["head"], files=planned.files, message=message
            )
        pr = PullRequestRef(
            id="pr-" + record.id.removeprefix("in-"),
            branch=pr_branch,
            base=branch,
            head=commit,
            expires_at=self._clock.now() + env.review_timeout,
        )
        why = (
            [f"{branch} changes need {env.approvals} human approval(s): review PR {pr.id}"]
            if env.mode == "pr"
            else [f"review PR {pr.id}: this change needs a human even in {record.environment}"]
        )
        decision = self._decision(
            record,
            status=Status.PR_OPEN,
            commit=commit,
            pr=pr,
            rollback=_rollback(commit, branch, planned),
            reasons=[*why, *verdict.reasons, *verdict.flags, *planned.notes],
            **common,
        )
        return {"decision": decision}

    # -- rollback ------------------------------------------------------------------

    def rollback(self, intent_id: str, *, by: str, reason: str = "") -> Decision:
        """Undo an applied or merged intent through the pipeline, as a new intent.

        The new intent carries the recorded inverse changes, ``causedBy`` the
        original, and is planned from the original's commit: if later changes
        touched the same fields, the field-level merge reports the conflict and
        the rollback is refused as unsafe instead of clobbering them. In an
        ``auto`` environment it applies now; in a ``pr`` one it opens a PR like
        any prod change. The original becomes ``rolled_back`` (naming the undo)
        when the undo lands: here, or when its PR merges (:meth:`landed`).
        """
        view = self._store.get(intent_id)
        if view is None:
            raise NotFound(f"no intent {intent_id!r}")
        if view.status not in (Status.APPLIED, Status.MERGED):
            raise BadInput(
                f"intent {intent_id} is {view.status.value}; "
                "only an applied or merged intent can be rolled back"
            )
        recipe = view.decision.rollback if view.decision else None
        if recipe is None or view.pruned_at is not None:
            raise BadInput(
                f"intent {intent_id} has no rollback recipe left (pruned by retention?); use git revert"
            )
        undo = Intent.model_validate(
            {
                "apiVersion": "apx/v1",
                "kind": "Intent",
                "metadata": {
                    "tenant": view.record.tenant,
                    "causedBy": intent_id,
                    "baseRevision": recipe.commit,
                },
                "spec": {
                    "environment": view.record.environment,
                    "rationale": f"rollback of {intent_id} requested by {by}"
                    + (f": {reason}" if reason else ""),
                    "changes": recipe.changes,
                },
            }
        )
        decision = self.submit(undo, agent=ROLLBACK_AGENT, admit=False)
        if decision.status is Status.APPLIED:
            self.landed(decision)
        elif decision.status is Status.REJECTED:
            decision = decision.model_copy(
                update={
                    "reasons": [f"rollback of {intent_id} refused as unsafe or invalid", *decision.reasons]
                }
            )
        return decision

    def landed(self, decision: Decision) -> None:
        """An intent reached its branch; if it was a rollback, mark the intent it undid."""
        if decision.agent != ROLLBACK_AGENT:
            return
        view = self._store.get(decision.intent_id)
        original = view.record.caused_by if view else None
        target = self._store.get(original) if original else None
        if target is None or target.decision is None:
            return
        self._store.advance(
            target.decision.model_copy(
                update={
                    "status": Status.ROLLED_BACK,
                    "decided_at": self._clock.now(),
                    "rolled_back_by": decision.intent_id,
                    "reasons": [
                        f"rolled back by {decision.intent_id} ({decision.commit or ''})".replace(" ()", "")
                    ],
                }
            ),
            expected=(Status.APPLIED, Status.MERGED),
        )

    # -- merge ---------------------------------------------------------------------

    def merge(self, pr: PullRequestView) -> Decision:
        """Merge an approved PR: re-validate against its base branch as it is now, then
        one signed merge commit; or a ``pr_rejected`` decision saying what stood in the way.

        The caller holds the environment's lock (see :meth:`holding`). Nothing is
        forced: a change that landed since and conflicts field by field, or a check
        that no longer passes on today's branch, rejects the PR with the reason.
        """
        record = pr.intent.record
        with self._telemetry.span("apx.merge", trace_id=record.trace_id, **_span_facts(record)) as span:
            decision = self._merge(pr)
            span.set_attribute(STATUS, decision.status.value)
        return decision

    def _merge(self, pr: PullRequestView) -> Decision:
        view = pr.intent
        recorded = view.decision or self._decision(view.record, status=Status.APPROVED, reasons=[])
        # A merge a crash cut short before its record: the merge commit is on the base
        # already (found by its Intent-Id trailer after the PR's fork point). Record it;
        # never merge twice.
        landed = self._repo.intent_commit(
            pr.base, view.record.id, since=self._repo.parent(pr.head) or pr.head
        )
        head = self._repo.parent(landed) if landed else self._repo.head(pr.base)
        if head is None:
            raise UnknownEnvironment(f"the config repo has no branch {pr.base!r}")
        state = self._graph.invoke({"view": view, "head": head, "dry_run": True})
        checked: Decision = state["decision"]
        now = self._clock.now()
        if landed is None and (checked.status is Status.REJECTED or "plan" not in state):
            return recorded.model_copy(
                update={
                    "status": Status.PR_REJECTED,
                    "decided_at": now,
                    "checks": checked.checks,
                    "reasons": [
                        f"not merged: re-validation against {pr.base} at {head[:12]} failed",
                        *checked.reasons,
                    ],
                }
            )
        if "plan" not in state:  # merged before a crash; today's checks say otherwise
            return recorded.model_copy(
                update={
                    "status": Status.MERGED,
                    "decided_at": now,
                    "commit": landed,
                    "checks": checked.checks,
                    "reasons": [f"merged into {pr.base} as {landed} before a crash; recorded now"],
                }
            )
        planned: Plan = state["plan"]
        intent: Intent = state["intent"]
        approvers = approvals.approvals_at(pr.reviews, pr.head)
        message = _commit_message(
            view.record, intent, extra={"Approved-By": ", ".join(approvers), "Merges": pr.id}
        )
        with self._telemetry.span("apx.merge.commit", **{"apx.branch": pr.base}):
            commit = landed or self._repo.commit(
                branch=pr.base, parent=head, files=planned.files, message=message, merge=pr.head
            )
        self._remember(commit, self._repo.read(commit), planned.after)
        return recorded.model_copy(
            update={
                "status": Status.MERGED,
                "decided_at": now,
                "commit": commit,
                "checks": checked.checks,
                "diff": planned.diff,
                "revision": head,
                "rollback": _rollback(commit, pr.base, planned).model_copy(
                    update={"git": f"git checkout {pr.base} && git revert -m 1 --no-edit {commit}"}
                ),
                "reasons": [
                    f"merged into {pr.base} as signed commit {commit[:12]}, "
                    f"approved by {', '.join(approvers)}"
                ],
            }
        )

    # -- replay -------------------------------------------------------------------

    def replay(self, intent_id: str) -> tuple[Decision, Decision]:
        """Decide a recorded intent again, against the revision it was decided on,
        with this orchestrator's validators and policy; nothing is written.

        Returns (recorded, replayed). Held intents never reached validation:
        they are replayed as if admitted, which is what a policy question asks.
        """
        view = self._store.get(intent_id)
        if view is None:
            raise NotFound(f"no intent {intent_id!r}")
        if view.pruned_at is not None:
            raise BadInput(
                f"intent {intent_id}'s payload was pruned by retention at {view.pruned_at.isoformat()}; "
                f"only its decision and digest ({view.payload_digest}) remain, so it cannot be replayed"
            )
        recorded = view.decision or self._decision(view.record, status=view.status, reasons=[])
        revision = recorded.revision or view.record.base_revision
        state = self._graph.invoke({"view": view, "head": revision, "dry_run": True})
        replayed: Decision = state["decision"]
        return recorded, replayed

    def _environment(self, revision: str) -> tuple[Snapshot, Environment]:
        with self._parsed_lock:
            if revision in self._parsed:
                self._parsed.move_to_end(revision)
                return self._parsed[revision]
        snapshot = self._repo.read(revision)
        return self._remember(revision, snapshot, parse_environment(snapshot.files))

    def _remember(
        self, revision: str, snapshot: Snapshot, parsed: Environment
    ) -> tuple[Snapshot, Environment]:
        with self._parsed_lock:
            self._parsed[revision] = (snapshot, parsed)
            while len(self._parsed) > _PARSED_CACHE:
                self._parsed.popitem(last=False)
        return snapshot, parsed

    # -- breakers ---------------------------------------------------------------

    def breakers(self) -> list[BreakerState]:
        return self._store.breakers()

    def reset_breaker(self, *, tenant: str, environment: str, by: str) -> BreakerState:
        """A human closes a breaker; the deploy count starts again from now."""
        with self._lock.hold(environment):
            state = self._store.breaker(tenant=tenant, environment=environment)
            if state is None:
                raise NotFound(f"there is no breaker for {tenant}/{environment}")
            closed = admission.reset(state, by=by, now=self._clock.now())
            self._store.save_breaker(closed)
        self._tell(lambda o: o.breaker_changed(closed, event="reset"))
        log.info("breaker.reset", tenant=tenant, environment=environment, by=by, was_open=state.open)
        return closed

    def _alert_breaker(self, state: BreakerState) -> None:
        self._tell(lambda o: o.breaker_changed(state, event="tripped"))
        log.warning(
            "breaker.tripped",
            alert=True,
            tenant=state.tenant,
            environment=state.environment,
            reason=state.reason,
            closes_at=state.closes_at.isoformat() if state.closes_at else None,
        )

    # -- helpers ----------------------------------------------------------------

    def _decision(
        self, record: IntentRecord, *, status: Status, reasons: list[str], **fields: Any
    ) -> Decision:
        return Decision(
            intent_id=record.id,
            trace_id=record.trace_id,
            status=status,
            tenant=record.tenant,
            environment=record.environment,
            agent=record.agent,
            reasons=reasons,
            decided_at=self._clock.now(),
            policy_version=fields.pop("policy_version", self._policy.bundle.label),
            **fields,
        )

    def _log_decision(self, decision: Decision, *, started: float, **bound: str) -> None:
        seconds = time.perf_counter() - started
        if self._metrics is not None:
            self._metrics.decided(
                agent=decision.agent,
                environment=decision.environment,
                status=decision.status.value,
                seconds=seconds,
            )
        log.info(
            "intent.decided",
            **bound,
            status=decision.status.value,
            tenant=decision.tenant,
            environment=decision.environment,
            agent=decision.agent,
            reasons=decision.reasons,
            commit=decision.commit,
            pr=decision.pr.id if decision.pr else None,
            duration_ms=round(seconds * 1000, 2),
        )


def _span_facts(record: IntentRecord) -> dict[str, AttributeValue | None]:
    """What a span may say about an intent: ids and names, never its payload."""
    return {INTENT_ID: record.id, AGENT: record.agent, ENVIRONMENT: record.environment}


#: Admission's guards in the contract's order, and the status each holds an intent with.
_GUARDS = (
    ("dedupe", Status.DUPLICATE),
    ("rate_limit", Status.RATE_LIMITED),
    ("breaker", Status.CIRCUIT_OPEN),
)


def _guard_events(span: Span, verdict: admission.Admission) -> None:
    """One span event per guard that ran, ``passed`` or ``held``/``tripped``, in order.

    Events rather than spans: the guards are one pure call of microseconds;
    the time worth seeing is the reads and the write around them.
    """
    for guard, holds in _GUARDS:
        if verdict.status is holds:
            span.add_event(guard, {"outcome": "tripped" if verdict.tripped else "held"})
            return
        span.add_event(guard, {"outcome": "passed"})


def _next_unless_decided(next_node: str) -> Any:
    def route(state: _State) -> str:
        return END if "decision" in state else next_node

    return route


def _target_of(change: Mapping[str, Any]) -> str:
    resource = change.get("resource") or {}
    return f"{resource.get('kind')}/{(resource.get('metadata') or {}).get('name')}"


def _commit_message(record: IntentRecord, intent: Intent, *, extra: Mapping[str, str] = {}) -> str:
    subject = f"apx: {record.agent} {change_summary(intent.spec.changes)} in {record.environment}"
    if "Merges" in extra:
        subject = f"apx: merge {extra['Merges']}: {record.agent} {change_summary(intent.spec.changes)}"
    trailers = [f"Intent-Id: {record.id}", f"Trace-Id: {record.trace_id}", f"Agent: {record.agent}"]
    trailers.append(f"Tenant: {record.tenant}")
    if record.caused_by:
        trailers.append(f"Caused-By: {record.caused_by}")
    trailers += [f"{key}: {value}" for key, value in extra.items() if value]
    body = intent.spec.rationale.strip()
    return "\n\n".join(p for p in (subject, body, "\n".join(trailers)) if p) + "\n"


def _rollback(commit: str, branch: str, planned: Plan) -> Rollback:
    return Rollback(
        commit=commit,
        branch=branch,
        git=f"git checkout {branch} && git revert --no-edit {commit}",
        changes=planned.inverse,
    )
