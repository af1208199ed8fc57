"""Secret scan: refuse an intent that would commit a credential into the config repo.

An agent that pastes a token into a spec (or into its rationale, which is stored
and shown) leaks it to everyone who can read the repo or the intent log, and git
keeps it forever. :class:`SecretScanValidator` is the step in the validator chain
that stops that; the pipeline builds it once and calls :meth:`~SecretScanValidator.check`
per intent.

Three kinds of rule run over every string in each changed resource and in the
rationale:

* detect-secrets' plugins (AWS, Stripe, Slack, basic-auth URLs, high-entropy
  base64, …), run in-process on the text through their ``analyze_string``.
  We deliberately do not go through ``scan_line``/``analyze_line``: those read
  detect-secrets' global settings (mutated by ``transient_settings``, so not
  safe to share between threads) and, when a verification filter is configured,
  call the vendor's API with the secret. Instantiating the plugins ourselves
  needs no config file and can never touch the network.
* our own patterns for what matters in YAML config and detect-secrets misses or
  matches narrowly: PEM private-key blocks of any type, AWS key ids, GitHub
  tokens (including ``github_pat_``), Slack tokens and webhooks, JWTs.
* field names: a field named like a credential (``password``, ``clientSecret``,
  ``apiKey``, …) with a real value, and a random-looking value in a field whose
  name only hints at one (``key``, ``signature``, ``authorization``, …).

A finding names the resource, the field and the detector, never the value: the
message is recorded on the decision, logged and printed. As a last guard, any
detected value that still turns up in a resource name or field path (a token
used as a mapping key, say) is replaced by ``<redacted>``.

Speed matters because this runs on every intent, before the policy. Values
shorter than :data:`MIN_SCANNED_LENGTH` are skipped unless their field is named
like a credential; identical values (every Route's ``host``) are scanned once;
all remaining lines are joined into one text, over which each pattern runs once,
and only a detect-secrets plugin that finds something there is rerun line by
line to say where. Its plugins also skip values of a known-safe shape
(:data:`_SAFE_SHAPE`: lowercase names, hosts, paths, CIDRs). Scanning a 60-route
intent took 3.3 ms on a busy 2-core runner where ``sum(range(100))`` takes
1.5 µs (about three times a laptop's), 80% of it walking the documents; before
these measures it took 17 ms.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
import re
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.filters.heuristic import (
    is_indirect_reference,
    is_likely_id_string,
    is_potential_uuid,
    is_prefixed_with_dollar_sign,
    is_sequential_string,
    is_templated_secret,
)
from detect_secrets.plugins.base import BasePlugin
from detect_secrets.plugins.high_entropy_strings import HighEntropyStringsPlugin
from detect_secrets.plugins.keyword import CONFIG_DENYLIST_REGEX_TO_GROUP, DENYLIST, KeywordDetector

from orchestrator.decision import Check
from orchestrator.resources import format_loc
from validators.base import ValidationContext

Loc = tuple[str | int, ...]

#: detect-secrets plugins we leave out. Public IPs are not secrets here, and CIDRs are the whole
#: point of a NetworkPolicy. Hex entropy fires on every commit sha and digest in a label; random
#: hex in a credential-named field is still caught by our field rules.
_EXCLUDED_PLUGINS = frozenset({"IPPublicDetector", "HexHighEntropyString"})

#: Shorter values are not scanned by pattern: no token format we know is this short, and short
#: values are most of a spec (enums, names, numbers). Credential-named fields are checked anyway.
MIN_SCANNED_LENGTH = 8

REDACTED = "<redacted>"

#: Every regex of detect-secrets' KeywordDetector needs one of its keywords; searching for them alone
#: is cheap, and skips its slow regexes on the (usual) text that has none.
_KEYWORD_RE = re.compile("|".join(DENYLIST), re.IGNORECASE)

# --- our patterns ---------------------------------------------------------------------------------
# None may match across a newline: the scan runs over lines joined by "\n". Each starts with a
# literal so the regex engine can skip ahead; the "not glued to a longer token" test that a
# leading lookbehind would do (and that would make every pattern ten times slower) is done on the
# character before a match, listed third.

_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_OWN_PATTERNS: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("Private Key", re.compile(r"-----BEGIN[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----"), ""),
    ("Private Key", re.compile(r"PuTTY-User-Key-File-\d"), ""),
    (
        "AWS Access Key",
        re.compile(r"(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Z0-9])"),
        _ALNUM[:26] + _ALNUM[52:],
    ),
    (
        "GitHub Token",
        re.compile(r"gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{22,242}"),
        _ALNUM + "_",
    ),
    ("Slack Token", re.compile(r"xox[abposre]-[A-Za-z0-9-]{10,}|xapp-[A-Za-z0-9-]{10,}"), _ALNUM),
    (
        "Slack Token",
        re.compile(r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/]{16,}"),
        "",
    ),
    (
        "JSON Web Token",
        re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
        _ALNUM + "_-",
    ),
)

# --- credential-named fields ----------------------------------------------------------------------

CREDENTIAL_FIELD = "Credential Field"
HIGH_ENTROPY_CREDENTIAL = "High Entropy Credential"

_WORD_RE = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
#: One word of the field name is enough: ``password``, ``dbPassword``, ``client_secret``.
_STRONG_WORDS = frozenset(
    {
        "password", "passwd", "passphrase", "pwd", "secret", "secrets", "token", "tokens",
        "apikey", "credential", "credentials", "privatekey", "accesskey", "secretkey",
    }
)  # fmt: skip
#: Two adjacent words: ``apiKey``, ``private_key``, ``ACCESS_KEY``.
_STRONG_PAIRS = frozenset(
    {
        ("api", "key"), ("private", "key"), ("access", "key"), ("secret", "key"), ("auth", "key"),
        ("signing", "key"), ("encryption", "key"), ("master", "key"), ("session", "key"),
        ("service", "key"), ("account", "key"), ("client", "key"), ("db", "pass"), ("key", "pass"),
    }
)  # fmt: skip
#: Words that only hint at a credential: the value must also look random to count.
_WEAK_WORDS = frozenset(
    {
        "key", "keys", "auth", "authorization", "bearer", "signature", "salt", "hmac", "cert",
        "certificate", "dsn", "cookie", "session", "license", "webhook", "connection", "conn",
        "otp", "nonce", "pass",
    }
)  # fmt: skip
#: A field about a credential rather than holding one (``secretRef``, ``tokenTtl``, ``maxTokens``,
#: ``rateLimit.algorithm: token_bucket`` as a key): its value is a name, a number or a setting.
_EXEMPT_LAST_WORDS = frozenset(
    {
        "ref", "refs", "name", "names", "file", "path", "url", "uri", "endpoint", "id", "ids", "ttl",
        "type", "kind", "length", "policy", "field", "fields", "enabled", "required", "rotation",
        "expiry", "expires", "header", "source", "provider", "bucket", "count", "limit", "format",
        "version", "lifetime", "seconds", "timeout", "algorithm", "mode", "env", "var", "selector",
        "store", "mount", "hint", "usage", "scope", "scopes", "rate", "window",
    }
)  # fmt: skip
_EXEMPT_FIRST_WORDS = frozenset({"max", "min", "num", "no", "use", "require", "allow"})

_PLACEHOLDER_WORDS = frozenset(
    {
        "changeme", "changeit", "replaceme", "replace", "redacted", "placeholder", "example", "dummy",
        "todo", "tbd", "none", "null", "nil", "empty", "unset", "secret", "password", "token",
        "xxx", "notset", "fixme", "sample", "test", "yoursecret", "yourpassword", "yourtoken",
        "yourapikey", "apikey", "hidden", "masked", "removed", "required", "optional", "default",
    }
)  # fmt: skip
_REFERENCE_RE = re.compile(
    r"^(?:\$\{[^{}]*\}|\{\{[^{}]*\}\}|<[^<>]*>|\$[A-Za-z_][A-Za-z0-9_]*|%\([^)]*\)s"
    r"|(?:vault|ssm|env|secretsmanager|gcpsm|azkv|k8s|op|file)://\S+"
    r"|(?:vault|ssm|env):[A-Za-z0-9_/#.:-]+"
    r"|arn:aws:(?:secretsmanager|ssm|kms):\S*)$",
    re.IGNORECASE,
)


def _words(key: str) -> list[str]:
    return [w.lower() for w in _WORD_RE.findall(key)]


def credential_strength(key: str) -> str | None:
    """``"strong"`` if a field named ``key`` holds a credential by its name, ``"weak"`` if the name
    only hints at one, None otherwise. Word-based so ``tokenizer`` and ``maxTokens`` are not hits."""
    words = _words(key)
    if not words or words[-1] in _EXEMPT_LAST_WORDS or words[0] in _EXEMPT_FIRST_WORDS:
        return None
    if any(w in _STRONG_WORDS for w in words) or any(p in _STRONG_PAIRS for p in itertools.pairwise(words)):
        return "strong"
    if any(w in _WEAK_WORDS for w in words):
        return "weak"
    return None


def is_placeholder(value: str) -> bool:
    """Values people commit where the real secret is injected later: empty, ``changeme``,
    ``${DB_PASSWORD}``, ``<redacted>``, ``vault:kv/db#password``, ``****``."""
    stripped = value.strip()
    if not stripped or len(set(stripped)) == 1 or _REFERENCE_RE.match(stripped):
        return True
    normalized = re.sub(r"[^a-z0-9]", "", stripped.lower())
    return normalized in _PLACEHOLDER_WORDS or (
        normalized.startswith(("your", "insert", "enter", "replace", "put"))
        and normalized.endswith(("key", "secret", "password", "token", "here"))
    )


def _shannon(value: str) -> float:
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


_HEX = frozenset("0123456789abcdefABCDEF")


def looks_random(value: str) -> bool:
    """A value like a generated key: long, no spaces, and nearly as varied as its length allows.

    The ratio of its entropy to the most its length (and alphabet, for hex) allows separates
    ``9f8c2b…`` and ``q3vR8xZ2…`` (about 0.95) from identifiers such as ``payments-v1-charges``
    (about 0.75), whatever their length.
    """
    if len(value) < 16 or any(ch.isspace() for ch in value):
        return False
    alphabet = 16 if set(value) <= _HEX else 64
    ceiling = math.log2(min(len(value), alphabet))
    return _shannon(value) / ceiling >= 0.85


# --- findings -------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Finding:
    """One field that holds a secret. It deliberately has no place for the value."""

    #: ``Kind/name`` of the resource, or ``intent`` for the rationale.
    resource: str
    #: ``spec.x.y[2]``, with `` (a key)`` when the secret is a mapping key.
    field: str
    #: The detectors that fired, in the order they did.
    detectors: tuple[str, ...]
    #: Where in the resource, as a path of keys and list indices, so the Security agent can
    #: remove the value; empty when the secret is a mapping key (the path would hold it).
    loc: tuple[str | int, ...] = ()

    def __str__(self) -> str:
        return (
            f"{self.resource}: {self.field}: holds what looks like a secret "
            f"(detector: {', '.join(self.detectors)}); reference it from a secret store instead"
        )


class _Where(NamedTuple):
    """A place in a changed resource (a tuple, not a dataclass: one is made per scanned string)."""

    resource: str
    loc: Loc
    is_key: bool = False

    @property
    def field(self) -> str:
        field = format_loc(self.loc) or "(document)"
        return f"{field} (a key)" if self.is_key else field


class _Collector:
    """Findings keyed by place, plus the raw values, kept only to redact them from messages."""

    def __init__(self) -> None:
        self.detectors: dict[_Where, list[str]] = {}
        self.values: set[str] = set()
        #: Document order of every place looked at, so messages read top to bottom.
        self.order: dict[_Where, int] = {}

    def visit(self, where: _Where) -> None:
        self.order.setdefault(where, len(self.order))

    def add(self, where: _Where, detector: str, value: str) -> None:
        found = self.detectors.setdefault(where, [])
        if detector not in found:
            found.append(detector)
        self.values.add(value)

    def findings(self) -> list[Finding]:
        places = sorted(self.detectors, key=lambda w: self.order.get(w, len(self.order)))
        return [
            Finding(
                resource=w.resource,
                field=w.field,
                detectors=tuple(self.detectors[w]),
                # A key that is the secret would carry it in its own path: no place for it here.
                loc=() if w.is_key else w.loc,
            )
            for w in places
        ]


class _Lines:
    """Unique lines of text to scan, each with every place it occurs and the field name there.

    Lines hold values only: field names are judged by our own rules (:func:`credential_strength`),
    which know that ``secretRef: db-creds`` names a secret rather than holding one.
    """

    def __init__(self) -> None:
        self.text: list[str] = []
        self.where: list[list[tuple[_Where, str | None]]] = []
        self._index: dict[str, int] = {}

    def add(self, line: str, where: _Where, key: str | None) -> None:
        i = self._index.get(line)
        if i is None:
            i = self._index[line] = len(self.text)
            self.text.append(line)
            self.where.append([])
        self.where[i].append((where, key))


#: Lowercase words of at most 15 characters joined by ``-._/`` — names, hosts, paths, CIDRs,
#: versions, enums: most of a spec. detect-secrets' plugins are skipped on these (several of its
#: regexes cost milliseconds per few kB): every token format they know needs an uppercase or
#: symbol-rich prefix or a random run of 16+ characters. Our own patterns (lowercase Slack tokens)
#: and the entropy check still see them.
_SAFE_SHAPE = re.compile(r"/?[a-z0-9]{0,15}(?:[-._/][a-z0-9]{1,15})*/?")


_strength = functools.lru_cache(maxsize=4096)(credential_strength)


class SecretScanValidator:
    """Fails when a changed resource or the rationale holds a secret; names where, never what.

    Build it once: it instantiates detect-secrets' plugins (all of them but :data:`_EXCLUDED_PLUGINS`,
    so an upgrade's new detectors apply without a change here). :meth:`check` keeps no state.
    """

    name = "secrets"

    def __init__(self) -> None:
        # The mapping is typed with an unbound TypeVar upstream; its values are plugin classes.
        classes = cast(dict[str, type[BasePlugin]], get_mapping_from_secret_type_to_class())
        plugins = [cls() for cls in classes.values() if cls.__name__ not in _EXCLUDED_PLUGINS]
        self._entropy = [
            (p, re.compile(f"[{re.escape(p.charset)}]{{{math.floor(2**p.entropy_limit) + 1},}}"))
            for p in plugins
            if isinstance(p, HighEntropyStringsPlugin)
        ]
        self._regex = [p for p in plugins if not isinstance(p, HighEntropyStringsPlugin)]

    def check(self, ctx: ValidationContext) -> Check:
        messages = [str(f) for f in self.scan(ctx)]
        return Check(name=self.name, passed=not messages, messages=messages)

    def scan(self, ctx: ValidationContext) -> list[Finding]:
        """The findings as data, in document order: what :meth:`check` reports, one per field."""
        return _public(self._scan(ctx))

    def redact(self, ctx: ValidationContext, document: object) -> tuple[list[Finding], Any]:
        """The findings for ``ctx``, and a copy of ``document`` in which every string
        holding a found secret is replaced by ``<redacted>``: what may be stored."""
        found = self._scan(ctx)
        return _public(found), _redact_tree(document, found.values) if found.values else document

    def scan_resources(self, documents: Mapping[str, object]) -> list[Finding]:
        """Findings in whole resources already in an environment (``{"Kind/name": document}``).

        The Security agent's scan: secrets that reached the config repo by a path
        other than apx (a hand-made commit), which the pipeline's check never saw.
        """
        return _public(self._scan_documents(documents))

    def redact_resources(self, documents: Mapping[str, object]) -> dict[str, Any]:
        """``documents`` with every string holding a secret replaced by ``<redacted>``, whatever
        its field is called: what may leave the building, such as an LLM prompt."""
        found = self._scan_documents(documents)
        return {key: _redact_tree(document, found.values) for key, document in documents.items()}

    def _scan_documents(self, documents: Mapping[str, object]) -> _Collector:
        found = _Collector()
        lines = _Lines()
        for resource in sorted(documents):
            _visit(resource, documents[resource], found, lines)
        self._scan_lines(found, lines)
        return found

    def _scan(self, ctx: ValidationContext) -> _Collector:
        found = _Collector()
        lines = _Lines()
        for path in sorted(ctx.changed):
            document = ctx.after.get(path)
            if document is not None:  # None: deleted, nothing is being written
                _visit(path.removesuffix(".yaml"), document, found, lines)
        rationale = _Where("intent", ("spec", "rationale"))
        for line in ctx.intent.spec.rationale.splitlines():
            if len(line) >= MIN_SCANNED_LENGTH:
                lines.add(line, rationale, None)
        self._scan_lines(found, lines)
        return found

    def _scan_lines(self, found: _Collector, lines: _Lines) -> None:
        """Run every detector over all lines joined into one text, and attribute hits to lines."""
        if not lines.text:
            return
        blob = "\n".join(lines.text)
        starts = list(itertools.accumulate((len(t) + 1 for t in lines.text[:-1]), initial=0))

        def line_at(pos: int) -> int:
            return bisect.bisect_right(starts, pos) - 1

        for detector, pattern, not_after in _OWN_PATTERNS:
            for match in pattern.finditer(blob):
                start = match.start()
                if start and blob[start - 1] in not_after:
                    continue
                for where, _ in lines.where[line_at(start)]:
                    found.add(where, detector, match.group())

        for entropy, run in self._entropy:
            # Entropy is at most log2 of the number of distinct characters, so the run regex asks
            # for enough characters and set() rules out the rest before the plugin computes it.
            limit = entropy.entropy_limit
            for match in run.finditer(blob):
                value = match.group()
                if math.log2(len(set(value))) <= limit or entropy.calculate_shannon_entropy(value) <= limit:
                    continue
                if _only_apx_ids(value, entropy):
                    continue
                i = line_at(match.start())
                if _filtered(value, lines.text[i], entropy):
                    continue
                for where, key in lines.where[i]:
                    # detect-secrets skips ids by the name before them; our lines hold values only.
                    if key is None or _words(key)[-1:] not in (["id"], ["ids"]):
                        found.add(where, entropy.secret_type, value)

        risky = [i for i, text in enumerate(lines.text) if not _SAFE_SHAPE.fullmatch(text)]
        if not risky:
            return
        risky_blob = "\n".join(lines.text[i] for i in risky)
        for plugin in self._regex:
            # No plugin anchors on line ends, so a hit on a line is a hit in the joined text; most
            # plugins find nothing there and are done after one pass.
            if isinstance(plugin, KeywordDetector) and not _KEYWORD_RE.search(risky_blob):
                continue  # the cheap necessary condition of its slow regexes
            if not any(_hits(plugin, risky_blob)):
                continue
            for i in risky:
                line = lines.text[i]
                for value in _hits(plugin, line):
                    if value and not _filtered(value, line, plugin):
                        for where, _ in lines.where[i]:
                            found.add(where, plugin.secret_type, value)


def _public(found: _Collector) -> list[Finding]:
    """The findings, with any secret that is part of a resource name or field path redacted."""
    return [
        Finding(
            resource=_redact(f.resource, found.values),
            field=_redact(f.field, found.values),
            detectors=f.detectors,
            loc=f.loc,
        )
        for f in found.findings()
    ]


def _visit(resource: str, document: object, found: _Collector, lines: _Lines) -> None:
    """Check field names and queue every string worth scanning, with where it sits.

    The enclosing name of a list item is the list's own, so ``tokens: [..]`` items are judged by
    ``tokens``. Iterative, so a pathologically deep hand-written document cannot hit the recursion
    limit (a validator reports, it never crashes); inlined because it runs for every string of
    every changed resource, and most are skipped at the first test.
    """
    stack: list[tuple[object, Loc, str | None]] = [(document, (), None)]
    while stack:
        node, here, name = stack.pop()
        children: Iterable[tuple[object, object]]
        if isinstance(node, dict | Mapping):  # dict first: the ABC check is ten times slower
            children = node.items()
        elif isinstance(node, list | tuple):
            children = enumerate(node)
        else:  # only the document itself can be a bare string
            if isinstance(node, str):
                _string(resource, here, name, node, found, lines)
            continue
        nested: list[tuple[object, Loc, str | None]] = []
        is_list = not isinstance(node, dict | Mapping)
        for k, v in children:
            field: str | int
            if is_list:
                field, key = cast(int, k), name
            else:
                field = key = k if isinstance(k, str) else str(k)
                if len(key) >= MIN_SCANNED_LENGTH and isinstance(k, str):
                    _string(resource, here, None, k, found, lines, is_key=True)
            if isinstance(v, str):
                # The common case, a short value in an ordinary field, is decided here.
                if len(v) >= MIN_SCANNED_LENGTH or (key is not None and _strength(key) is not None):
                    _string(resource, (*here, field), key, v, found, lines)
            elif isinstance(v, dict | list | tuple | Mapping):
                nested.append((v, (*here, field), key))
        stack.extend(reversed(nested))  # popped first to last: document order


def _string(
    resource: str,
    loc: Loc,
    key: str | None,
    text: str,
    found: _Collector,
    lines: _Lines,
    *,
    is_key: bool = False,
) -> None:
    scan_text = len(text) >= MIN_SCANNED_LENGTH and not text.isdigit()
    strength = None if key is None else _strength(key)
    if not scan_text and strength is None:
        return
    where = _Where(resource, loc, is_key)
    found.visit(where)
    if strength == "strong" and not is_placeholder(text):
        found.add(where, CREDENTIAL_FIELD, text)
    elif strength == "weak" and looks_random(text.strip()) and not is_placeholder(text):
        found.add(where, HIGH_ENTROPY_CREDENTIAL, text)
    if scan_text:
        for line in text.splitlines():
            lines.add(line, where, key)


def _hits(plugin: BasePlugin, text: str) -> Iterator[str]:
    if isinstance(plugin, KeywordDetector):
        # The YAML flavour: ``password: hunter2`` needs no quotes.
        return iter(plugin.analyze_string(text, denylist_regex_to_group=CONFIG_DENYLIST_REGEX_TO_GROUP))
    return iter(plugin.analyze_string(text))


def _filtered(value: str, line: str, plugin: BasePlugin) -> bool:
    """detect-secrets' default heuristic filters (the ones that need no file), plus placeholders:
    a hit that is one, or inside a value that as a whole is a reference such as ``vault:…`` or
    ``arn:aws:secretsmanager:…`` (whose ``secretsmanager:eu-west-1`` reads like an assignment)."""
    return (
        is_placeholder(value)
        or is_placeholder(line)
        or is_sequential_string(value)
        or is_potential_uuid(value)
        or is_templated_secret(value)
        or is_prefixed_with_dollar_sign(value)
        or is_likely_id_string(value, line, plugin)
        or (isinstance(plugin, KeywordDetector) and is_indirect_reference(line))
    )


#: apx's own intent and PR ids (:mod:`orchestrator.ids`): 80 random bits in base32 read as a
#: high-entropy string, so about one rationale in eighty that names an intent (every
#: rollback's does) would be refused as holding a secret.
_APX_ID_RE = re.compile(r"(?:in|pr)-[0-9a-hjkmnp-tv-z]{26}")


def _only_apx_ids(value: str, plugin: HighEntropyStringsPlugin) -> bool:
    """Whether ``value`` is high-entropy only because it holds apx intent or PR ids."""
    rest = _APX_ID_RE.sub("", value)
    if rest == value:
        return False
    return (
        len(rest) <= math.floor(2**plugin.entropy_limit)
        or plugin.calculate_shannon_entropy(rest) <= plugin.entropy_limit
    )


def _redact(text: str, values: Collection[str]) -> str:
    """``text`` with every detected value in it replaced: a secret can sit in a path or a name too."""
    for value in sorted(values, key=len, reverse=True):
        if len(value) >= 6 and value in text:
            text = text.replace(value, REDACTED)
    return text


__all__ = [
    "CREDENTIAL_FIELD",
    "HIGH_ENTROPY_CREDENTIAL",
    "Finding",
    "SecretScanValidator",
    "credential_strength",
    "is_placeholder",
    "looks_random",
]


def _redact_tree(value: Any, secrets: Collection[str]) -> Any:
    """``value`` with every string (key or value) that contains one of ``secrets`` replaced."""
    if isinstance(value, str):
        return "<redacted>" if any(secret in value for secret in secrets) else value
    if isinstance(value, Mapping):
        return {_redact_tree(k, secrets): _redact_tree(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_tree(v, secrets) for v in value]
    return value
