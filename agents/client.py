"""What an agent may do: look at one tenant's environment, metrics and recent changes, and submit.

:class:`Client` is the agents' one port to the control plane. It has no way to
write the config repo, approve a PR, reset a breaker or read another tenant:
an agent proposes, and only the orchestrator writes. :class:`InProcessClient`
serves it from an :class:`~orchestrator.bootstrap.App` in this process (the
scheduler, ``apx agents run``); :class:`agents.http_client.HttpClient` serves the
same Protocol over ``/v1/`` with a token scoped to the tenant (``apx agents run --server``).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from orchestrator.decision import Decision, Status
from orchestrator.errors import BadInput, UnknownEnvironment

if TYPE_CHECKING:
    from orchestrator.bootstrap import App
    from orchestrator.dataplane.metrics import Sample
    from orchestrator.intent import Intent

#: Statuses of a change that is in the environment now.
LANDED = frozenset({Status.APPLIED, Status.MERGED})


class Client(Protocol):
    """One tenant's view of the control plane, read-only but for :meth:`submit`."""

    tenant: str

    def environment(self, environment: str) -> tuple[str, dict[str, dict[str, Any]]]:
        """``(revision, {"Kind/name": resource document})``: the environment branch's head
        and this tenant's resources at it."""
        ...

    def metrics(self, environment: str, since: datetime, until: datetime) -> list[Sample]:
        """The data plane's samples with ``since <= at < until``."""
        ...

    def recent(self, environment: str, since: datetime) -> list[dict[str, Any]]:
        """This tenant's intents landed in ``environment`` (applied or merged) received since
        ``since``, oldest first: ``{"id", "agent", "targets", "received_at"}``."""
        ...

    def submit(self, intent: Intent, *, agent: str) -> Decision:
        """Submit through the whole pipeline and wait for the decision."""
        ...


class InProcessClient:
    """:class:`Client` on an App in this process, scoped to one ``tenant``."""

    def __init__(self, app: App, *, tenant: str) -> None:
        self._app = app
        self.tenant = tenant

    def _branch(self, environment: str) -> str:
        if environment not in self._app.settings.environments:
            known = ", ".join(sorted(self._app.settings.environments))
            raise UnknownEnvironment(f"environment {environment!r} is not configured (configured: {known})")
        return self._app.settings.branch_of(environment)

    def environment(self, environment: str) -> tuple[str, dict[str, dict[str, Any]]]:
        from orchestrator.changeset import parse_environment

        branch = self._branch(environment)
        revision = self._app.repo.head(branch)
        if revision is None:
            raise UnknownEnvironment(f"the config repo has no branch {branch!r} for {environment!r}")
        resources: dict[str, dict[str, Any]] = {}
        for path, document in parse_environment(self._app.repo.read(revision).files).items():
            if isinstance(document, dict) and (document.get("metadata") or {}).get("tenant") == self.tenant:
                resources[path.removesuffix(".yaml")] = document
        return revision, resources

    def metrics(self, environment: str, since: datetime, until: datetime) -> list[Sample]:
        self._branch(environment)
        return self._app.metrics.read(environment=environment, since=since, until=until)

    def recent(self, environment: str, since: datetime) -> list[dict[str, Any]]:
        self._branch(environment)
        return [
            {
                "id": r.id,
                "agent": r.agent,
                "targets": list(r.targets),
                "received_at": r.received_at.isoformat(),
            }
            for r in self._app.store.recent(environment=environment, since=since, statuses=LANDED)
            if r.tenant == self.tenant
        ]

    def submit(self, intent: Intent, *, agent: str) -> Decision:
        if intent.tenant != self.tenant:
            raise BadInput(
                f"this client acts for tenant {self.tenant!r}; an intent for {intent.tenant!r} is refused"
            )
        return self._app.orchestrator.submit(intent, agent=agent)
