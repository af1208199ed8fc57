"""The OPA-server engine over real HTTP, and the contract both engines share.

Production points ``policy.opa_url`` at a real OPA. Here a small server
speaks the slice of OPA's REST API the engine uses — ``PUT/GET/DELETE
/v1/policies/{id}``, ``PUT /v1/data/{path}``, ``POST /v1/data/{path}`` — and
evaluates with regopy underneath, so the same bundle must give the same
decisions in-process and over HTTP. It runs on 127.0.0.1 in a thread and is
shut down after the tests that use it.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import regopy

from constraints.bundle import DEFAULT_BUNDLE, load_bundle
from validators.opa_server import OpaServerEngine
from validators.policy import (
    POLICY_ERROR_RULE,
    PolicyEngine,
    PolicyLoadError,
    PolicyServerUnavailable,
    example_input,
)
from validators.rego import RegoPyEngine

_ERROR_AT = re.compile(r"\(error \d+:[^|\n]*\|(\d+)\|\d+\s*\(errormsg \d+:([^)\n]*)")


class FakeOpa:
    """OPA's policy and data API on 127.0.0.1, evaluated by regopy. Not a product fake: a test peer."""

    def __init__(self) -> None:
        self.policies: dict[str, str] = {}
        self.data: dict[str, Any] = {}
        self.requests: list[tuple[str, str]] = []
        #: Seconds to stall each decision request (a slow OPA); cut short at shutdown.
        self.delay_s = 0.0
        self._released = threading.Event()
        self._lock = threading.Lock()
        self._compiled: dict[str, tuple[Any, Any]] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def restart_empty(self) -> None:
        """What an OPA without persistence looks like after a restart."""
        with self._lock:
            self.policies.clear()
            self.data.clear()
            self._compiled.clear()

    def close(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- the API ------------------------------------------------------------------------------------

    def put_policy(self, policy_id: str, text: str) -> tuple[int, dict[str, Any]]:
        interpreter = regopy.Interpreter()
        interpreter.log_level = regopy.LogLevel.NONE
        try:
            interpreter.add_module(policy_id, text)
        except regopy.RegoError as exc:
            errors = [
                {
                    "code": "rego_parse_error",
                    "message": message,
                    "location": {"file": policy_id, "row": text.encode()[: int(offset)].count(b"\n") + 1},
                }
                for offset, message in _ERROR_AT.findall(str(exc))
            ]
            return 400, {
                "code": "invalid_parameter",
                "message": "error(s) occurred while compiling module(s)",
                "errors": errors,
            }
        with self._lock:
            self.policies[policy_id] = text
            self._compiled.clear()
        return 200, {}

    def put_data(self, path: list[str], document: Any) -> None:
        with self._lock:
            node = self.data
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = document
            self._compiled.clear()

    def evaluate(self, path: list[str], input_document: Any) -> tuple[int, dict[str, Any]]:
        if self.delay_s:
            self._released.wait(self.delay_s)
        with self._lock:
            ref = ".".join(["data", *path])
            if ref not in self._compiled:
                interpreter = regopy.Interpreter()
                interpreter.strict_built_in_errors = True
                interpreter.log_level = regopy.LogLevel.NONE
                for policy_id, text in self.policies.items():
                    interpreter.add_module(policy_id, text)
                interpreter.add_data_json(json.dumps(self.data))
                self._compiled[ref] = (interpreter, interpreter.build(f"result := {ref}"))
            interpreter, compiled = self._compiled[ref]
            interpreter.set_input_term(json.dumps(input_document))
            try:
                output = interpreter.query_bundle(compiled)
            except (regopy.RegoError, ValueError):
                return 500, {"code": "internal_error", "message": "evaluation error"}
            if not output.ok():
                return 500, {"code": "internal_error", "message": "evaluation error"}
            bindings = output.results[0].bindings if output.results else {}
            return 200, ({"result": bindings["result"]} if "result" in bindings else {})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        opa = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: dict[str, Any] | None) -> None:
                payload = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length", 0)))

            def _route(self) -> tuple[str, str]:
                opa.requests.append((self.command, self.path))
                match = re.fullmatch(r"/v1/(policies|data)/?(.*)", self.path.split("?")[0])
                return (match.group(1), match.group(2)) if match else ("", "")

            def do_GET(self) -> None:
                api, _ = self._route()
                if api == "policies":
                    self._reply(200, {"result": [{"id": i, "raw": t} for i, t in opa.policies.items()]})
                else:
                    self._reply(404, {"code": "resource_not_found", "message": "not found"})

            def do_PUT(self) -> None:
                api, path = self._route()
                body = self._body()
                if api == "policies":
                    self._reply(*opa.put_policy(path, body.decode()))
                elif api == "data" and path:
                    opa.put_data(path.split("/"), json.loads(body))
                    self._reply(204, None)
                else:
                    self._reply(404, {"code": "resource_not_found", "message": "not found"})

            def do_DELETE(self) -> None:
                api, path = self._route()
                if api == "policies" and opa.policies.pop(path, None) is not None:
                    self._reply(200, {})
                else:
                    self._reply(404, {"code": "resource_not_found", "message": "not found"})

            def do_POST(self) -> None:
                api, path = self._route()
                if api != "data":
                    self._reply(404, {"code": "resource_not_found", "message": "not found"})
                    return
                request = json.loads(self._body() or b"{}")
                self._reply(*opa.evaluate([p for p in path.split("/") if p], request.get("input")))

        return Handler


@pytest.fixture(scope="module")
def opa() -> Iterator[FakeOpa]:
    server = FakeOpa()
    yield server
    server.close()


@pytest.fixture
def fresh_opa() -> Iterator[FakeOpa]:
    server = FakeOpa()
    yield server
    server.close()


@pytest.fixture(scope="module", params=["regopy", "opa-server"])
def engine(request: pytest.FixtureRequest, opa: FakeOpa) -> PolicyEngine:
    """The shipped bundle behind each engine: the contract cases below run over both."""
    bundle = load_bundle(None)
    if request.param == "regopy":
        return RegoPyEngine(bundle, isolate=False, budget_ms=10_000)
    return OpaServerEngine(bundle, opa.url, timeout_s=5)


def _input(**blast: Any) -> dict[str, Any]:
    document = example_input()
    document["blast"].update(blast)
    return document


def _network(**fields: Any) -> dict[str, Any]:
    return {**example_input()["blast"]["network"], **fields}


CONTRACT = [
    ("nothing-fires", example_input(), [], []),
    ("too-many-routes", _input(routes_touched=60), ["max-routes-per-intent"], []),
    ("quota-raise", _input(quota_factor=3), ["max-quota-factor"], []),
    ("replicas", _input(replicas_after_max=101), ["max-replicas"], []),
    (
        "world-ingress",
        _input(network=_network(changed=True, opens_world=True)),
        ["no-world-ingress"],
        ["network-change-needs-approval"],
    ),
    (
        "prod",
        {**example_input(), "intent": {**example_input()["intent"], "environment": "prod"}},
        [],
        ["prod-needs-approval"],
    ),
    ("malformed", {**example_input(), "now_ns": "noon"}, [POLICY_ERROR_RULE], []),
]


@pytest.mark.parametrize(("name", "document", "deny", "approve"), CONTRACT, ids=[c[0] for c in CONTRACT])
def test_both_engines_decide_the_same(
    engine: PolicyEngine, name: str, document: dict[str, Any], deny: list[str], approve: list[str]
) -> None:
    result = engine.evaluate(document)
    assert sorted(v.rule for v in result.deny) == deny
    assert sorted(v.rule for v in result.require_approval) == approve
    assert engine.bundle.name == "apx-default"


def test_both_engines_give_identical_results(opa: FakeOpa) -> None:
    bundle = load_bundle(None)
    local, remote = (
        RegoPyEngine(bundle, isolate=False, budget_ms=10_000),
        OpaServerEngine(bundle, opa.url, timeout_s=5),
    )
    for _, document, _, _ in CONTRACT:
        a, b = local.evaluate(document), remote.evaluate(document)
        assert a.model_copy(update={"elapsed_ms": 0}) == b.model_copy(update={"elapsed_ms": 0})


def test_construction_pushes_every_module_and_the_data(fresh_opa: FakeOpa) -> None:
    bundle = load_bundle(None)
    OpaServerEngine(bundle, fresh_opa.url)
    pushed = {path for method, path in fresh_opa.requests if method == "PUT"}
    assert {f"/v1/policies/apx-default/{module}" for module in bundle.modules} <= pushed
    assert "/v1/data/apx" in pushed
    assert not any(p.endswith("_test.rego") for p in pushed)
    assert fresh_opa.data["apx"]["limits"]["max_replicas"] == 100


def test_a_new_push_removes_modules_that_are_gone(fresh_opa: FakeOpa) -> None:
    fresh_opa.put_policy("apx-default/apx/rules/old.rego", "package apx.rules.old\n")
    fresh_opa.put_policy("someone-else/x.rego", "package x\n")
    OpaServerEngine(load_bundle(None), fresh_opa.url)
    assert "apx-default/apx/rules/old.rego" not in fresh_opa.policies
    assert "someone-else/x.rego" in fresh_opa.policies


def test_a_module_opa_refuses_is_a_load_error_with_file_and_line(fresh_opa: FakeOpa, tmp_path: Path) -> None:
    path = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, path)
    (path / "apx" / "rules" / "broken.rego").write_text("package apx.rules.broken\n\nx if {\n\t1 ==\n}\n")
    with pytest.raises(PolicyLoadError) as refused:
        OpaServerEngine(load_bundle(path), fresh_opa.url)
    assert refused.value.errors == ["apx-default/apx/rules/broken.rego:4: Invalid boolean operator"]


def test_an_unreachable_server_refuses_the_bundle_at_load() -> None:
    with pytest.raises(PolicyServerUnavailable):
        OpaServerEngine(load_bundle(None), "http://127.0.0.1:9", timeout_s=0.5)


def test_a_server_that_went_away_fails_closed() -> None:
    server = FakeOpa()
    engine = OpaServerEngine(load_bundle(None), server.url, timeout_s=0.5)
    server.close()
    result = engine.evaluate(example_input())
    assert [v.rule for v in result.deny] == [POLICY_ERROR_RULE]
    assert result.error is not None and "could not be asked" in result.error


def test_a_slow_server_fails_closed_at_the_timeout(fresh_opa: FakeOpa) -> None:
    engine = OpaServerEngine(load_bundle(None), fresh_opa.url, timeout_s=0.2)
    fresh_opa.delay_s = 5
    result = engine.evaluate(example_input())
    assert not result.allowed
    assert result.error is not None and "did not answer within 0.2 s" in result.error
    assert result.elapsed_ms < 2000


def test_a_server_that_restarted_empty_gets_the_bundle_again(fresh_opa: FakeOpa) -> None:
    engine = OpaServerEngine(load_bundle(None), fresh_opa.url)
    fresh_opa.restart_empty()
    result = engine.evaluate(_input(replicas_after_max=101))
    assert [v.rule for v in result.deny] == ["max-replicas"]
    assert fresh_opa.policies


def test_an_evaluation_error_on_the_server_fails_closed(fresh_opa: FakeOpa, tmp_path: Path) -> None:
    path = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, path)
    (path / "apx" / "rules" / "cidr.rego").write_text(
        "package apx.rules.cidr\n\nimport rego.v1\n\n"
        'violation contains "outside 10/8" if {\n'
        "\tsome cidr in input.blast.network.added_cidrs\n"
        '\tnot net.cidr_contains("10.0.0.0/8", cidr)\n}\n'
    )
    engine = OpaServerEngine(load_bundle(path), fresh_opa.url)
    result = engine.evaluate(_input(network=_network(changed=True, added_cidrs=["8.8.8.8/32"])))
    assert [v.rule for v in result.deny] == [POLICY_ERROR_RULE]
    assert result.error is not None and "HTTP 500" in result.error


@pytest.mark.parametrize("url", ["opa:8181", "ftp://opa:8181", "http://opa:8181/v1"])
def test_a_malformed_opa_url_is_refused(url: str) -> None:
    with pytest.raises(PolicyLoadError, match="must look like"):
        OpaServerEngine(load_bundle(None), url)
