"""The secret scan: every detector fires on a realistic secret, and no message ever repeats it.

The secrets below are generated (deterministically) at import time rather than written out, so
this file holds no token a push-protection scanner would stop, and each is shaped like the real
thing: right prefix, length and alphabet, random body.
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import random
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.ids import is_intent_id
from orchestrator.intent import Intent
from orchestrator.parsing import parse_intent
from orchestrator.seed import seed_files
from validators.base import ValidationContext
from validators.secrets import SecretScanValidator, credential_strength, is_placeholder, looks_random

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
POOL = "WorkerPool/checkout.yaml"
SCANNER = SecretScanValidator()

_rng = random.Random(20250601)
_UPPER_DIGITS = string.ascii_uppercase + string.digits
_ALNUM = string.ascii_letters + string.digits
_B64 = _ALNUM + "+/"


def _pick(alphabet: str, n: int) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


def _b64url(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _pem(kind: str) -> str:
    body = "\n".join(_pick(_B64, 64) for _ in range(4))
    return f"-----BEGIN {kind}PRIVATE KEY-----\n{body}\n-----END {kind}PRIVATE KEY-----"


#: (detector named in the message, secret). Each is also embedded in a sentence for the rationale.
SECRETS: dict[str, tuple[str, str]] = {
    "pem-rsa": ("Private Key", _pem("RSA ")),
    "pem-openssh": ("Private Key", _pem("OPENSSH ")),
    "pem-pkcs8": ("Private Key", _pem("")),
    "aws-key-id": ("AWS Access Key", "AKIA" + _pick(_UPPER_DIGITS, 16)),
    "aws-temporary-key-id": ("AWS Access Key", "ASIA" + _pick(_UPPER_DIGITS, 16)),
    "github-classic": ("GitHub Token", "ghp" + "_" + _pick(_ALNUM, 36)),
    "github-fine-grained": ("GitHub Token", "github" + "_pat_" + _pick(_ALNUM, 22) + "_" + _pick(_ALNUM, 59)),
    "slack-bot": (
        "Slack Token",
        "xox" + "b-" + _pick(string.digits, 12) + "-" + _pick(string.digits, 13) + "-" + _pick(_ALNUM, 24),
    ),
    "slack-webhook": (
        "Slack Token",
        "https://hooks.slack" + ".com/services/T" + _pick(_UPPER_DIGITS, 8)
        + "/B" + _pick(_UPPER_DIGITS, 10) + "/" + _pick(_ALNUM, 24),
    ),
    "jwt": (
        "JSON Web Token",
        _b64url({"alg": "HS256", "typ": "JWT"})
        + "."
        + _b64url({"sub": "svc-checkout", "iat": 1717243200, "scope": "payments:write"})
        + "."
        + _pick(_ALNUM + "-_", 43),
    ),
    "stripe": ("Stripe Access Key", "sk" + "_live_" + _pick(_ALNUM, 24)),
    "basic-auth-url": (
        "Basic Auth Credentials",
        "postgres://ledger:" + _pick(_ALNUM, 18) + "@db.internal.example:5432/ledger",
    ),
    "base64-blob": ("Base64 High Entropy String", _pick(_B64, 44)),
}  # fmt: skip


@functools.cache
def _seed() -> dict[str, dict[str, Any]]:
    return {path: yaml.safe_load(text) for path, text in seed_files().items()}


def seeded() -> dict[str, dict[str, Any]]:
    """A fresh copy of the seeded environment (parsed once: 64 YAML files cost ~100 ms)."""
    return copy.deepcopy(_seed())


def intent(rationale: str = "", changes: list[dict[str, Any]] | None = None) -> Intent:
    pool = seeded()[POOL]
    return Intent.model_validate(
        {
            "apiVersion": "apx/v1",
            "kind": "Intent",
            "metadata": {"tenant": "acme"},
            "spec": {
                "environment": "dev",
                "rationale": rationale,
                "changes": changes or [{"action": "update", "resource": pool}],
            },
        }
    )


def context(
    edit: Callable[[dict[str, Any]], None] | None = None, *, rationale: str = "scale checkout"
) -> ValidationContext:
    """The seeded environment with the checkout pool edited by ``edit``; only the pool counts as changed."""
    before = seeded()
    after = copy.deepcopy(before)
    if edit is not None:
        edit(after[POOL])
    return ValidationContext(
        intent=intent(rationale), agent="builder", before=before, after=after, changed=frozenset({POOL})
    )


def with_env(*values: str) -> Callable[[dict[str, Any]], None]:
    """Put values in ``spec.env[i].value`` of the pool, after two harmless variables."""

    def edit(pool: dict[str, Any]) -> None:
        pool["spec"]["env"] = [
            {"name": "LOG_LEVEL", "value": "info"},
            {"name": "UPSTREAM", "value": "https://ledger.internal.example/v2"},
            *({"name": f"VAR_{i}", "value": v} for i, v in enumerate(values)),
        ]

    return edit


def assert_not_echoed(messages: list[str], secret: str) -> None:
    text = "\n".join(messages)
    for line in secret.splitlines():
        for i in range(len(line) - 5):
            assert line[i : i + 6] not in text, f"message repeats part of the secret: {line[i : i + 6]!r}"


# --- every detector, in a spec field and in the rationale -------------------------------------------


@pytest.mark.parametrize("case", sorted(SECRETS))
def test_a_secret_in_a_spec_field_is_refused_naming_resource_field_and_detector(case: str) -> None:
    detector, secret = SECRETS[case]

    check = SCANNER.check(context(with_env(secret)))

    assert check.name == "secrets"
    assert not check.passed
    assert len(check.messages) == 1
    message = check.messages[0]
    assert message.startswith("WorkerPool/checkout: spec.env[2].value: ")
    assert detector in message
    assert_not_echoed(check.messages, secret)


@pytest.mark.parametrize("case", sorted(SECRETS))
def test_a_secret_in_the_rationale_is_refused(case: str) -> None:
    detector, secret = SECRETS[case]
    rationale = f"Rotated the credential after the incident, new value:\n{secret}\nplease apply before Friday"

    check = SCANNER.check(context(rationale=rationale))

    assert not check.passed
    assert len(check.messages) == 1
    assert check.messages[0].startswith("intent: spec.rationale: ")
    assert detector in check.messages[0]
    assert_not_echoed(check.messages, secret)


@pytest.mark.parametrize(
    ("key", "value", "detector"),
    [
        ("password", "Tr0ub4dor-and-horse", "Credential Field"),
        ("dbPassword", "hunter2", "Credential Field"),
        ("client_secret", "4f1c9e7a-long-enough", "Credential Field"),
        ("apiKey", "k-93jf-2kd9-qq01", "Credential Field"),
        ("AWS_SECRET_ACCESS_KEY", _pick(_B64, 40), "Credential Field"),
        ("token", "s.Wq8RkL2mNpX4vZ7t", "Credential Field"),
        ("signingKey", _pick("0123456789abcdef", 64), "Credential Field"),
        ("key", _pick("0123456789abcdef", 32), "High Entropy Credential"),
        ("authorization", "Bearer " + _pick(_ALNUM, 32), "Base64 High Entropy String"),
        ("webhookSignature", _pick(_ALNUM, 24), "High Entropy Credential"),
    ],
)
def test_a_credential_named_field_with_a_real_value_is_refused(key: str, value: str, detector: str) -> None:
    check = SCANNER.check(context(lambda pool: pool["spec"].update({"database": {key: value}})))

    assert not check.passed
    assert check.messages[0].startswith(f"WorkerPool/checkout: spec.database.{key}: ")
    assert detector in check.messages[0]
    assert_not_echoed(check.messages, value)


@settings(max_examples=200, deadline=None)
@given(millis=st.integers(0, 2**48 - 1), random_bits=st.integers(0, 2**80 - 1))
def test_a_rationale_naming_apx_intents_and_prs_passes(millis: int, random_bits: int) -> None:
    """Every rollback's rationale names the intent it undoes; its 80 random bits used to read as
    a high-entropy secret about once in eighty rollbacks (found as a flaky CLI test)."""
    intent_id = _ulid(millis, random_bits)
    assert is_intent_id(intent_id)
    pr_id = "pr-" + intent_id.removeprefix("in-")
    rationale = f"rollback of {intent_id} requested by alice: errors; see {pr_id} and apx/{intent_id}"

    # Only the rationale is scanned here (nothing changed), so each example costs microseconds.
    check = SCANNER.check(
        ValidationContext(
            intent=intent(rationale), agent="rollback", before={}, after={}, changed=frozenset()
        )
    )

    assert check.passed, check.messages


def test_a_secret_next_to_an_intent_id_is_still_refused() -> None:
    secret = _pick(_ALNUM, 40)
    check = SCANNER.check(context(rationale=f"rollback of in-{_ulid(1, 2)[3:]} with {secret}"))
    assert not check.passed
    assert_not_echoed(check.messages, secret)


def _ulid(millis: int, random_bits: int) -> str:
    """An intent id as :func:`orchestrator.ids.new_intent_id` mints it, from chosen bits."""
    value, chars = (millis << 80) | random_bits, []
    for _ in range(26):
        chars.append("0123456789abcdefghjkmnpqrstvwxyz"[value & 31])
        value >>= 5
    return "in-" + "".join(reversed(chars))


def test_a_keyword_assignment_inside_free_text_is_refused() -> None:
    check = SCANNER.check(context(rationale="temporary db password: Xk29-pLm4-qq81 until the vault is back"))
    assert not check.passed
    assert check.messages[0].startswith("intent: spec.rationale: ")
    assert "Secret Keyword" in check.messages[0]


def test_every_field_with_a_secret_is_named_once() -> None:
    aws = SECRETS["aws-key-id"][1]
    check = SCANNER.check(context(with_env(aws, "ordinary value", aws)))
    assert [m.split(": ")[1] for m in check.messages] == ["spec.env[2].value", "spec.env[4].value"]


def test_a_secret_used_as_a_key_is_named_by_its_parent_and_redacted_from_paths() -> None:
    token = SECRETS["github-classic"][1]

    def edit(pool: dict[str, Any]) -> None:
        pool["metadata"]["labels"] = {token: "x"}
        pool["spec"]["vault"] = {token: {"password": "hunter2-but-longer"}}

    check = SCANNER.check(context(edit))

    assert check.messages[0].startswith("WorkerPool/checkout: metadata.labels (a key): ")
    assert check.messages[1].startswith("WorkerPool/checkout: spec.vault (a key): ")
    assert check.messages[2].startswith("WorkerPool/checkout: spec.vault.<redacted>.password: ")
    assert "Credential Field" in check.messages[2]
    assert_not_echoed(check.messages, token)


def test_the_findings_are_available_as_data() -> None:
    findings = SCANNER.scan(context(with_env(SECRETS["aws-key-id"][1])))
    assert [(f.resource, f.field, f.detectors) for f in findings] == [
        ("WorkerPool/checkout", "spec.env[2].value", ("AWS Access Key",))
    ]


# --- what is not a secret ---------------------------------------------------------------------------


PLACEHOLDERS = [
    "",
    "changeme",
    "${DB_PASSWORD}",
    "<redacted>",
    "********",
    "vault:secret/data/checkout#password",
    "{{ .Values.db.password }}",
    "REPLACE_ME",
    "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db",
]


@pytest.mark.parametrize("value", PLACEHOLDERS)
def test_placeholders_in_credential_fields_pass(value: str) -> None:
    assert is_placeholder(value)
    check = SCANNER.check(context(lambda pool: pool["spec"].update({"database": {"password": value}})))
    assert check.passed, check.messages


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("secretRef", "checkout-db-credentials"),
        ("passwordSecretName", "checkout-db"),
        ("maxTokens", "4096"),
        ("tokenizer", "cl100k_base"),
        ("tokenTtl", "15m"),
        ("auth", "required"),
        ("key", "payments-v1-payment-intents-confirm"),
        ("algorithm", "token_bucket"),
    ],
)
def test_fields_about_credentials_but_not_holding_one_pass(key: str, value: str) -> None:
    check = SCANNER.check(context(lambda pool: pool["spec"].update({"x": {key: value}})))
    assert check.passed, check.messages


def test_everyday_config_values_pass() -> None:
    def edit(pool: dict[str, Any]) -> None:
        pool["metadata"]["labels"] = {
            "commit": "3f2a9c1d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a39",
            "app.kubernetes.io/version": "1.4.0-rc.1+build.7",
            "image-digest": "sha256:" + "9b2f" * 16,
            "request-id": "5d0c6a1e-8f3b-4c2a-9e7d-1b4a6c8e2f90",
        }
        pool["spec"]["notes"] = [
            "/v1/payment-intents/confirm",
            "api.acme.example",
            "10.0.0.0/8",
            "2001:db8::/32",
            "https://grafana.acme.example/d/checkout-latency/checkout?orgId=1&from=now-6h",
            "eu-west-1",
            "enterprise",
        ]

    check = SCANNER.check(context(edit))
    assert check.passed, check.messages


def test_the_whole_seed_environment_scans_clean() -> None:
    env = seeded()
    ctx = ValidationContext(intent=intent("seed"), agent="init", before={}, after=env, changed=frozenset(env))
    assert SCANNER.check(ctx).passed


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_the_examples_scan_clean(path: Path) -> None:
    example = parse_intent(path.read_text(), source=str(path))
    before = seeded()
    after = dict(before)
    for change in example.spec.changes:
        key = change.resource.key.path
        if change.action == "delete":
            after.pop(key, None)
        else:
            after[key] = change.resource.document()
    changed = frozenset(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    ctx = ValidationContext(intent=example, agent="example", before=before, after=after, changed=changed)
    check = SCANNER.check(ctx)
    assert check.passed, check.messages


def test_only_changed_resources_are_scanned() -> None:
    before = seeded()
    after = copy.deepcopy(before)
    after["WorkerPool/legacy.yaml"] = {
        "kind": "WorkerPool",
        "spec": {"password": "committed-by-hand-long-ago"},
    }
    ctx = ValidationContext(intent=intent(), agent="b", before=before, after=after, changed=frozenset({POOL}))
    assert SCANNER.check(ctx).passed


def test_a_deleted_resource_is_not_scanned() -> None:
    before = seeded()
    before[POOL]["spec"]["password"] = "committed-by-hand-long-ago"
    after = copy.deepcopy(before)
    del after[POOL]
    ctx = ValidationContext(intent=intent(), agent="b", before=before, after=after, changed=frozenset({POOL}))
    assert SCANNER.check(ctx).passed


# --- the helpers' rules -----------------------------------------------------------------------------


def test_credential_strength_judges_whole_words() -> None:
    assert credential_strength("password") == "strong"
    assert credential_strength("x-api-key") == "strong"
    assert credential_strength("APIKey") == "strong"
    assert credential_strength("signature") == "weak"
    assert credential_strength("tokenizer") is None
    assert credential_strength("maxTokens") is None
    assert credential_strength("secretKeyRef") is None
    assert credential_strength("piiFields") is None


def test_looks_random_separates_keys_from_identifiers() -> None:
    assert looks_random(_pick("0123456789abcdef", 40))
    assert looks_random(_pick(_ALNUM, 20))
    assert not looks_random("payments-v1-payment-intents-confirm")
    assert not looks_random("short")


_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=60),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=20) | st.integers() | st.booleans(), inner, max_size=4)
    ),
    max_leaves=25,
)


#: What a rationale may hold (the envelope refuses other control characters and lone surrogates).
_RATIONALE_TEXT = st.text(
    st.characters(
        blacklist_categories=("Cs",),
        blacklist_characters=[chr(c) for c in (*range(32), 127) if chr(c) not in "\t\n\r"],
    ),
    max_size=200,
)


@settings(max_examples=200, deadline=None)
@given(document=_values, rationale=_RATIONALE_TEXT)
def test_the_scan_never_raises_on_arbitrary_documents(document: Any, rationale: str) -> None:
    ctx = ValidationContext(
        intent=intent(rationale), agent="b", before={}, after={POOL: document}, changed=frozenset({POOL})
    )
    check = SCANNER.check(ctx)
    assert check.passed == (not check.messages)
