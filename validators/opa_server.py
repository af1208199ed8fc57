"""The policy engine on an OPA server, through opa-python-client: the only module importing it.

Used when ``policy.opa_url`` is set: production runs a real OPA (the same
bundle directory is a valid OPA bundle), and APX pushes the bundle it has in
force rather than trusting whatever the server holds. Construction pushes
every policy module (``PUT /v1/policies/<bundle>/<path>``, replacing modules
of an earlier push that are gone) and each top-level document of the data
(``PUT /v1/data/apx``); each evaluation is ``POST /v1/data/apx/decision``
with ``{"input": ...}``.

Fails closed like :class:`~validators.rego.RegoPyEngine`: a timeout, a refused
connection, an HTTP error or an undefined/ill-formed decision is a
``policy-error`` denial. An OPA that restarted empty answers "undefined", so
the engine pushes the bundle again once before giving up.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
from opa_client import OpaClient
from opa_client.errors import ConnectionsError, RegoParseError, TypeException

from validators.policy import (
    DECISION_PATH,
    Bundle,
    BundleInfo,
    PolicyLoadError,
    PolicyResult,
    PolicyServerUnavailable,
    check_input,
    policy_document,
)

_PACKAGE, _RULE = DECISION_PATH.rsplit("/", 1)


class OpaServerEngine:
    """Evaluates a bundle's ``data.apx.decision`` on an OPA server at ``url``.

    ``timeout_s`` bounds every HTTP request; unlike regopy, a slow policy here
    really is cut off. Raises :class:`~validators.policy.PolicyLoadError` when
    OPA refuses a module (with OPA's ``file:line`` errors) and
    :class:`~validators.policy.PolicyServerUnavailable` when it cannot be reached.
    """

    def __init__(self, bundle: Bundle, url: str, *, timeout_s: float = 1.0) -> None:
        self._bundle = bundle
        self._url = url
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
            raise PolicyLoadError(f"policy.opa_url {url!r} must look like http://host:8181 (no path)")
        # No retries: a decision waits at most timeout_s per request, and the
        # pipeline (not the HTTP layer) decides what a failure means.
        self._client = OpaClient(
            host=parts.hostname,
            port=parts.port or (443 if parts.scheme == "https" else 80),
            ssl=parts.scheme == "https",
            timeout=timeout_s,
            retries=0,
        )
        self.push()

    @property
    def bundle(self) -> BundleInfo:
        return self._bundle.info

    def push(self) -> None:
        """Load the bundle into OPA: its modules, then its data; drop modules an earlier push left behind."""
        prefix = f"{self._bundle.info.name}/"
        ids = {f"{prefix}{path}": source for path, source in sorted(self._bundle.modules.items())}
        try:
            stale = [
                i for i in self._client.get_policies_list() if str(i).startswith(prefix) and i not in ids
            ]
            for policy_id in stale:
                self._client.delete_policy(policy_id)
            for policy_id, source in ids.items():
                self._client.update_policy_from_string(source, policy_id, rego_compat=False)
            for root, document in self._bundle.data.items():
                self._client.update_or_create_data(document, root)
        except RegoParseError as exc:
            errors = [_opa_error(e) for e in exc.errors] or [str(exc)]
            raise PolicyLoadError(
                f"OPA at {self._url} refused policy bundle {self._bundle.info.label}: {'; '.join(errors)}",
                errors=errors,
            ) from exc
        except TypeException as exc:
            raise PolicyLoadError(
                f"data.json: every top-level value must be an object ({exc.expression})"
            ) from exc
        except (requests.RequestException, ConnectionsError, ValueError) as exc:
            raise PolicyServerUnavailable(
                f"could not load policy bundle {self._bundle.info.label} into OPA at {self._url}: {exc}"
            ) from exc

    def evaluate(self, input: Mapping[str, Any]) -> PolicyResult:
        started = time.perf_counter()
        problems = check_input(input)
        if problems:
            return PolicyResult.failed_closed(f"the policy input is malformed: {'; '.join(problems)}")
        document = policy_document(input, scope=self._bundle.has_waivers, keys=self._bundle.input_keys)
        body, failure = self._query(document)
        if failure is None and "result" not in body:
            # An OPA that restarted has no policies: push again, once.
            try:
                self.push()
            except (PolicyLoadError, PolicyServerUnavailable) as exc:
                failure = f"OPA has no decision and the bundle could not be pushed again ({exc.message})"
            else:
                body, failure = self._query(document)
                if failure is None and "result" not in body:
                    failure = f"OPA at {self._url} returned no decision: data.apx.decision is undefined"
        elapsed = (time.perf_counter() - started) * 1000
        if failure is not None:
            return PolicyResult.failed_closed(failure, elapsed_ms=elapsed)
        return PolicyResult.from_decision(body["result"], elapsed_ms=elapsed)

    def _query(self, input: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        try:
            body = self._client.query_rule(input_data=input, package_path=_PACKAGE, rule_name=_RULE)
        except requests.Timeout:
            return {}, f"OPA at {self._url} did not answer within {self._client.timeout:g} s"
        except requests.HTTPError as exc:
            return {}, f"OPA at {self._url} answered {_status(exc)}: {_server_message(exc)}"
        except (requests.RequestException, ValueError) as exc:
            return {}, f"OPA at {self._url} could not be asked ({type(exc).__name__}: {exc})"
        if not isinstance(body, dict):
            return {}, f"OPA at {self._url} answered with something other than a JSON object"
        return body, None

    def close(self) -> None:
        self._client.close_connection()


def _opa_error(error: object) -> str:
    """OPA's ``{"message", "location": {"file", "row"}}`` → ``file:line: message``."""
    if not isinstance(error, dict):
        return str(error)
    message = str(error.get("message", "error"))
    location = error.get("location")
    if isinstance(location, dict) and location.get("file"):
        return f"{location['file']}:{location.get('row', '?')}: {message}"
    return message


def _status(exc: requests.HTTPError) -> str:
    response = exc.response
    return f"HTTP {response.status_code}" if response is not None else "an HTTP error"


def _server_message(exc: requests.HTTPError) -> str:
    response = exc.response
    if response is None:
        return str(exc)
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("message", body))[:300] if isinstance(body, dict) else str(body)[:300]
