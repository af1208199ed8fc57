"""Replay recorded HTTP exchanges through httpx, strictly, for APIs this machine cannot reach.

A cassette is a JSON list of exchanges under ``tests/data/<name>.json``::

    [{"request":  {"method": "GET", "path": "/repos/acme/apx-config/pulls",
                   "query": {"head": "acme:apx/in-…", "state": "all"},   # exact, default {}
                   "json": {"state": "closed"}},                         # a subset of the body
      "response": {"status": 200, "headers": {…}, "json": […]}}]         # or "text"; or
                  {"error": "ConnectError", "message": "…"}              # instead of "response"

Requests must arrive in the recorded order, each matching the next exchange
(method, path, query, body subset, bearer token, required headers), and
:meth:`Cassette.assert_all_used` fails if any exchange was left over. So a test
that passes has sent exactly the recorded conversation: no extra request (a
second PR), none missing (a comment never posted). ``${name}`` in any string
is replaced by a value given to :meth:`Cassette.load` (commit ids vary per run).
The transport is httpx's own ``MockTransport``: everything above it — request
building, JSON, status handling — is the real httpx.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from string import Template
from typing import Any

import httpx

DATA = Path(__file__).parent / "data"


class Cassette:
    def __init__(
        self,
        exchanges: list[dict[str, Any]],
        *,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.exchanges = exchanges
        self.token = token
        self.headers = {k.lower(): v for k, v in (headers or {}).items()}
        self.position = 0
        #: The requests replayed so far, for tests that look at what was sent.
        self.requests: list[httpx.Request] = []

    @classmethod
    def load(
        cls,
        *names: str,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        **values: str,
    ) -> Cassette:
        """The exchanges of ``names`` (paths under ``tests/data`` without ``.json``), in order."""
        exchanges: list[dict[str, Any]] = []
        for name in names:
            exchanges += _substitute(json.loads((DATA / f"{name}.json").read_text()), values)
        return cls(exchanges, token=token, headers=headers)

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self))

    def assert_all_used(self) -> None:
        left = self.exchanges[self.position :]
        assert not left, f"{len(left)} recorded exchange(s) never requested, first: {_describe(left[0])}"

    def __call__(self, request: httpx.Request) -> httpx.Response:
        number = self.position + 1
        got = f"{request.method} {request.url.path}"
        assert self.position < len(self.exchanges), f"request {number} ({got}) was not recorded"
        exchange = self.exchanges[self.position]
        self.position += 1
        self.requests.append(request)
        want = exchange["request"]
        where = f"request {number}: expected {_describe(exchange)}, got {got}"
        assert request.method == want["method"] and request.url.path == want["path"], where
        query = dict(request.url.params.multi_items())
        assert query == want.get("query", {}), f"{where}: query {query} != {want.get('query', {})}"
        authorization = request.headers.get("authorization", "")
        assert authorization.startswith("Bearer ") and len(authorization) > len("Bearer "), (
            f"{where}: no bearer token"
        )
        if self.token is not None:
            assert authorization == f"Bearer {self.token}", f"{where}: not the expected token"
        for name, value in self.headers.items():
            assert request.headers.get(name) == value, (
                f"{where}: header {name} is {request.headers.get(name)!r}"
            )
        if "json" in want:
            body = json.loads(request.content or b"null")
            _assert_subset(want["json"], body, where=f"{where}: body")

        if "error" in exchange:
            error = getattr(httpx, exchange["error"])
            raise error(exchange.get("message", exchange["error"]), request=request)
        answer = exchange["response"]
        if "json" in answer:
            return httpx.Response(answer["status"], headers=answer.get("headers"), json=answer["json"])
        return httpx.Response(answer["status"], headers=answer.get("headers"), text=answer.get("text", ""))


def _describe(exchange: Mapping[str, Any]) -> str:
    request = exchange["request"]
    query = "&".join(f"{k}={v}" for k, v in request.get("query", {}).items())
    return f"{request['method']} {request['path']}{'?' + query if query else ''}"


def _assert_subset(want: Any, got: Any, *, where: str) -> None:
    """Every key recorded in ``want`` is in ``got`` with an equal value (recursively for objects)."""
    if isinstance(want, dict):
        assert isinstance(got, dict), f"{where}: expected an object, got {got!r}"
        for key, value in want.items():
            assert key in got, f"{where}: {key!r} missing"
            _assert_subset(value, got[key], where=f"{where}.{key}")
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def _substitute(value: Any, values: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return Template(value).substitute(values)
    if isinstance(value, list):
        return [_substitute(item, values) for item in value]
    if isinstance(value, dict):
        return {key: _substitute(item, values) for key, item in value.items()}
    return value
