"""The server-sent-events stream of decisions: ids from the audit log, resume, tenancy, bounds."""

# The fixtures come from test_api (imported by name, as pytest finds them), so tests
# taking them as arguments "redefine" the imports.
# ruff: noqa: F811

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from test_api import Api, any_settings, api, api_db, globex_pool, pool_intent, settings  # noqa: F401


def events(text: str) -> list[dict[str, Any]]:
    """The events of an SSE body: ``{"event", "id", "data"}`` each (comments skipped)."""
    found = []
    for block in text.split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            name, _, value = line.partition(": ")
            if name in ("event", "id"):
                fields[name] = value
            elif name == "data":
                fields["data"] = json.loads(value)
        if fields:
            found.append(fields)
    return found


def stream(api: Api, name: str, query: str, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    response = api.client.get(f"/v1/events?{query}", headers={**api.auth(name), **(headers or {})})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    return events(response.text)


def test_decisions_stream_with_audit_ids_and_resume_after_the_last_one(api_db: Api) -> None:
    api = api_db
    first = api.submit("optimizer", pool_intent(), wait=30).json()
    second = api.submit("globex-bot", globex_pool(), wait=30).json()

    got = stream(api, "root", "after=0&limit=1&timeout=10")
    assert [(e["event"], e["data"]["intent_id"], e["data"]["status"]) for e in got] == [
        ("decision", first["intent_id"], "applied")
    ]
    resumed = stream(api, "root", "limit=1&timeout=10", headers={"Last-Event-ID": got[0]["id"]})
    assert [e["data"]["intent_id"] for e in resumed] == [second["intent_id"]]
    assert int(resumed[0]["id"]) > int(got[0]["id"])
    assert resumed[0]["data"] == second  # the decision, exactly as ?wait returned it


def test_a_principal_gets_only_its_tenants_decisions(api: Api) -> None:
    api.submit("globex-bot", globex_pool(), wait=30)
    mine = api.submit("optimizer", pool_intent(), wait=30).json()

    got = stream(api, "erin", "after=0&limit=5&timeout=2")

    assert [e["data"]["intent_id"] for e in got] == [mine["intent_id"]]


def test_a_decision_made_while_the_stream_is_open_arrives(api: Api) -> None:
    start = api.app.store.audit.size()
    with ThreadPoolExecutor(1) as pool:
        listening = pool.submit(stream, api, "alice", f"after={start}&limit=1&timeout=30")
        decided = api.submit("optimizer", pool_intent("prod"), wait=30).json()
        got = listening.result(timeout=60)
    assert [(e["data"]["intent_id"], e["data"]["status"]) for e in got] == [(decided["intent_id"], "pr_open")]


def test_a_quiet_stream_ends_at_its_timeout_and_bad_ids_are_refused(api: Api) -> None:
    assert stream(api, "alice", "timeout=0.5") == []
    bad = api.client.get("/v1/events", headers={**api.auth("alice"), "Last-Event-ID": "yesterday"})
    assert bad.status_code == 422 and "Last-Event-ID" in bad.json()["reason"]
    assert api.client.get("/v1/events?timeout=0.5").status_code == 401
    assert api.client.get("/v1/events?timeout=99999", headers=api.auth("alice")).status_code == 422
