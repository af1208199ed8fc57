"""Fuzz the API from its own OpenAPI document: no request, however malformed, gets a 5xx,
and every response has the shape the document promises.

schemathesis reads ``/openapi.json`` from the ASGI app (with its lifespan, so
the drain worker runs and generated intents that happen to be valid are really
decided) and generates requests for every operation under ``/v1/`` and the
health checks, valid and invalid ones alike, once with an admin token and once
with an agent token (which sees mostly 403s, and submits). The server-sent
events stream is left out: a stream that waits for decisions is not a
request-response operation to fuzz (``test_api_events.py`` covers it).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from orchestrator.api.app import create_api
from orchestrator.bootstrap import build
from orchestrator.home import init_home
from orchestrator.principals import Principals

#: Examples per token and mode, spread over every operation: enough to reach each
#: parameter and body branch of this API, few enough to finish in well under a minute.
EXAMPLES = 120


@dataclass
class Fuzzed:
    api: FastAPI
    tokens: dict[str, str]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    home = tmp_path_factory.mktemp("fuzz") / "home"
    init_home(home)
    app = build(home)
    principals = Principals.load(home)
    tokens = {
        "root": principals.add("root", "admin", ["*"]),
        "optimizer": principals.add("optimizer", "agent:optimizer", ["acme"]),
    }
    try:
        yield Fuzzed(create_api(app, drain_interval=0.5), tokens)
    finally:
        app.close()


@pytest.fixture(scope="module")
def api_schema(fuzzed: Fuzzed) -> Any:
    loaded = schemathesis.openapi.from_asgi("/openapi.json", fuzzed.api)
    return loaded.include(path_regex=r"^/(v1/|healthz|readyz)").exclude(path="/v1/events")


# schemathesis's pytest integration (``schema.parametrize``) does not run under this
# pytest (it sets a private node attribute pytest 9 removed), so the cases come
# from its Hypothesis strategy for every operation, driven by ``@given`` here.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("who", ["root", "optimizer"])
def test_no_request_gets_a_server_error_or_an_undocumented_response(
    api_schema: Any, fuzzed: Fuzzed, who: str, mode: GenerationMode
) -> None:
    headers = {"Authorization": f"Bearer {fuzzed.tokens[who]}"}

    @given(case=api_schema.as_strategy(mode))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def fuzz(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=[not_a_server_error, response_schema_conformance])

    fuzz()


def test_the_fuzzed_home_still_verifies(fuzzed: Fuzzed) -> None:
    """Whatever the fuzzer sent, the audit log is intact afterwards."""
    app = fuzzed.api.state.apx
    assert app.audit.verify().ok
    assert Path(app.settings.home, "principals.yaml").exists()
