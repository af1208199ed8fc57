"""The agents' :class:`~agents.client.Client` over the HTTP API, for agents on other hosts.

An agent that runs beside ``apx serve`` uses
:class:`~agents.client.InProcessClient`; one that runs elsewhere
(``apx agents run optimizer --server URL``) uses :class:`HttpClient` with an
``agent:<name>`` token scoped to its tenant. Both serve the same four calls,
and the server answers the read side through an ``InProcessClient`` itself
(``orchestrator/api/environments.py``), so an agent sees the same thing either
way. The token decides who the agent is: :meth:`HttpClient.submit` states the
agent it was asked to submit as, and the server refuses the intent (403, exit
2 in the CLI) if that is not the token's agent.

Errors are those of :mod:`orchestrator.remote`: a refusal is
``Forbidden``/``Unauthenticated``, an unknown environment ``BadInput``, a server
that does not answer ``InternalError`` naming the URL.
"""

from __future__ import annotations

from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from orchestrator.dataplane.metrics import Sample
from orchestrator.errors import BadInput, InternalError
from orchestrator.remote import DECISION_TIMEOUT, Remote, path_segment

if TYPE_CHECKING:
    import httpx

    from orchestrator.decision import Decision
    from orchestrator.intent import Intent


class HttpClient:
    """:class:`~agents.client.Client` on an APX server at ``base_url``, scoped to one ``tenant``."""

    def __init__(
        self,
        base_url: str,
        token: str,
        tenant: str,
        *,
        decision_timeout: float = DECISION_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.tenant = tenant
        self._remote = Remote(base_url, token, transport=transport)
        self._decision_timeout = decision_timeout

    @property
    def server(self) -> str:
        return self._remote.server

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._remote.close()

    def environment(self, environment: str) -> tuple[str, dict[str, dict[str, Any]]]:
        body = self._remote.get(f"/v1/environments/{path_segment(environment)}", {"tenant": self.tenant})
        try:
            return str(body["revision"]), dict(body["resources"])
        except (KeyError, TypeError) as exc:
            raise self._unreadable("environment", exc) from exc

    def metrics(self, environment: str, since: datetime, until: datetime) -> list[Sample]:
        if since.tzinfo is None or until.tzinfo is None:
            raise BadInput("metrics: since and until must carry a time zone")
        body = self._remote.get(
            f"/v1/environments/{path_segment(environment)}/metrics",
            {"tenant": self.tenant, "since": since.isoformat(), "until": until.isoformat()},
        )
        try:
            return [
                Sample(
                    at=datetime.fromisoformat(item["at"]),
                    environment=item["environment"],
                    commit=item["commit"],
                    scope=item["scope"],
                    metric=item["metric"],
                    value=float(item["value"]),
                )
                for item in body
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise self._unreadable("metrics", exc) from exc

    def recent(self, environment: str, since: datetime) -> list[dict[str, Any]]:
        if since.tzinfo is None:
            raise BadInput("recent: since must carry a time zone")
        body = self._remote.get(
            f"/v1/environments/{path_segment(environment)}/recent",
            {"tenant": self.tenant, "since": since.isoformat()},
        )
        if not isinstance(body, list):
            raise self._unreadable("recent", TypeError(type(body).__name__))
        return [
            {
                "id": item["id"],
                "agent": item["agent"],
                "targets": list(item["targets"]),
                "received_at": item["received_at"],
            }
            for item in body
        ]

    def submit(self, intent: Intent, *, agent: str) -> Decision:
        if intent.tenant != self.tenant:
            raise BadInput(
                f"this client acts for tenant {self.tenant!r}; an intent for {intent.tenant!r} is refused"
            )
        document = intent.model_dump(mode="json", exclude_none=True)
        # The server takes the agent from the token; stating it lets the server refuse
        # a run whose token belongs to another agent instead of recording it under that name.
        document["metadata"]["agent"] = agent
        return self._remote.submit(document, wait=True, timeout=self._decision_timeout)

    def _unreadable(self, what: str, exc: Exception) -> InternalError:
        return InternalError(
            f"the APX server at {self.server} sent a {what} answer this apx cannot read: {exc}"
        )
