"""Policy bundles on disk: load and version them, lint them, run their unit tests.

A bundle is a directory (the default one ships in ``constraints/bundle/``)::

    .manifest            {"metadata": {"name", "version" (semver), "compat": "backward"|"breaking"}, ...}
                         (or bundle.yaml with name, version, compat at the top level)
    data.json            base documents; the default rules read data.apx.{limits,
                         protected_environments, enforcement, waivers}
    **/*.rego            policies; the decision is data.apx.decision
    **/*_test.rego       unit tests (test_* rules), run by `apx policy test`, never loaded to decide

``.manifest`` is OPA's own bundle manifest, so the same directory is a valid
OPA bundle (``opa test``/``opa run -b`` work on it). Its version is the
author's claim; its sha256 (every file's relative path and bytes, in path
order) is what says exactly which content decided, and what the compiled-bundle
cache is keyed by.

The loader checks everything that would otherwise fail *open* at evaluation:
limits that are missing (it fills in the defaults) or not numbers (Rego
compares across types without complaint),
unknown enforcement modes, waivers without a ticket, with an unknown key (a
typo in ``tenant`` would widen a waiver to every tenant) or without a
timezone. It turns each waiver's RFC 3339 ``expires`` into ``expires_ns``
because regopy's ``time.parse_rfc3339_ns`` rejects the ``Z`` suffix.

Called by the composition root (the bundle in force), ``apx policy
lint|test|version`` and replay.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, cast

import yaml

from validators.policy import Bundle, BundleInfo, PolicyLoadError, code_only
from validators.rego import TestResult, check_bundle, missing_builtins
from validators.rego import run_tests as _run_rego_tests

__all__ = [
    "DEFAULT_BUNDLE",
    "Bundle",
    "TestReport",
    "TestResult",
    "bundle_sha256",
    "lint",
    "load_bundle",
    "run_tests",
]

#: The bundle shipped with APX (package data).
DEFAULT_BUNDLE = Path(__file__).resolve().parent / "bundle"
#: Limits a bundle's data.json may leave out: leaving one out cannot switch its rule off.
DEFAULT_LIMITS = {
    "max_routes_per_intent": 50,
    "max_routes_per_window": 50,
    "max_quota_factor": 2,
    "max_rate_limit_factor": 2,
    "max_replicas": 100,
}

# semver.org's own regular expression.
_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
_COMPAT = ("backward", "breaking")
_MODES = ("enforce", "warn", "dryrun")
_WAIVER_KEYS = {"rule", "tenant", "resource", "reason", "ticket", "expires"}
_RESOURCE = re.compile(r"^[A-Za-z][A-Za-z0-9]*/[^/\s]+$")
_SKIPPED_DIRS = {"__pycache__", ".git"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class TestReport:
    """What ``apx policy test`` prints: one result per test, or why none could run."""

    __test__ = False  # not a pytest class

    results: list[TestResult] = field(default_factory=list)
    #: Problems that stopped the tests from running (load or compile errors, no tests found).
    errors: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Every test passed, and there was at least one: a bundle without tests does not pass."""
        return not self.errors and bool(self.results) and all(r.passed for r in self.results)

    @property
    def failures(self) -> list[TestResult]:
        return [r for r in self.results if not r.passed]

    def summary(self) -> str:
        if self.errors:
            return f"tests did not run: {'; '.join(self.errors)}"
        ok = sum(r.passed for r in self.results)
        return f"{ok}/{len(self.results)} tests passed"


def load_bundle(path: Path | None = None) -> Bundle:
    """Read, check and version the bundle at ``path`` (the shipped one when None).

    Raises :class:`~validators.policy.PolicyLoadError` naming the file (and the
    line or key) for anything wrong. Compiling is the engine's job.
    """
    root = (path or DEFAULT_BUNDLE).resolve()
    if not root.is_dir():
        raise PolicyLoadError(f"policy bundle {root} is not a directory")
    name, version, compat = _manifest(root)
    modules: dict[str, str] = {}
    tests: dict[str, str] = {}
    for file in _files(root):
        relative = file.relative_to(root).as_posix()
        if file.suffix != ".rego":
            continue
        source = _read_text(file, relative)
        (tests if file.name.endswith("_test.rego") else modules)[relative] = source
    if not modules:
        raise PolicyLoadError(f"policy bundle {root} has no .rego policy files")
    nested = [
        f.relative_to(root).as_posix() for f in _files(root) if f.name == "data.json" and f.parent != root
    ]
    if nested:
        raise PolicyLoadError(f"{', '.join(nested)}: only a data.json at the bundle root is supported")
    data = _with_rule_packages(_data(root), modules)
    return Bundle(
        info=BundleInfo(name=name, version=version, sha256=bundle_sha256(root), path=str(root)),
        compat=compat,
        modules=modules,
        tests=tests,
        data=data,
    )


def bundle_sha256(path: Path) -> str:
    """sha256 over every file under ``path``: relative path, size and bytes, in path order.

    Framing each file with its path and size means moving bytes between files
    or renaming one changes the digest.
    """
    digest = hashlib.sha256()
    for file in _files(path):
        content = file.read_bytes()
        digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        digest.update(len(content).to_bytes(8, "big"))
        digest.update(content)
    return digest.hexdigest()


def lint(path: Path | None = None) -> list[str]:
    """Every problem found in the bundle, as ``file:line: message`` (empty means clean).

    Beyond loading and compiling, it checks what regopy accepts but gets wrong
    at evaluation — calls to built-ins it lacks, ``with input as`` (which can
    abort the process), a package named ``input`` or ``data``, a rule named like
    a data.json key, ``sort()`` — and evaluates the decision on
    :func:`~validators.policy.example_input` (in a child process), which catches
    the rest: conflicting values, recursion, unknown functions.
    """
    try:
        bundle = load_bundle(path)
    except PolicyLoadError as exc:
        return exc.errors or [exc.message]
    problems = _static_problems(bundle)
    check = check_bundle(bundle)
    problems += [str(e) for e in check.errors]
    if check.crash:
        problems.append(f"bundle: {check.crash}")
    if check.evaluation_error:
        problems.append(
            f"bundle: evaluating the decision on the example input failed: {check.evaluation_error}"
        )
    return problems


def run_tests(path: Path | None = None) -> TestReport:
    """Run the bundle's ``*_test.rego`` unit tests (every ``test_*`` rule)."""
    try:
        bundle = load_bundle(path)
    except PolicyLoadError as exc:
        return TestReport(errors=exc.errors or [exc.message])
    if not bundle.tests:
        return TestReport(errors=[f"{bundle.info.path}: no *_test.rego files"])
    results, errors = _run_rego_tests(bundle)
    if errors:
        return TestReport(errors=[str(e) for e in errors])
    if not results:
        return TestReport(errors=["no test_* rules found in the *_test.rego files"])
    return TestReport(results=results)


# -- manifest and data ----------------------------------------------------------


def _manifest(root: Path) -> tuple[str, str, Literal["backward", "breaking"]]:
    opa_manifest, yaml_manifest = root / ".manifest", root / "bundle.yaml"
    if opa_manifest.is_file():
        where = ".manifest"
        try:
            document = json.loads(_read_text(opa_manifest, where))
        except json.JSONDecodeError as exc:
            raise _load_error(f"{where}:{exc.lineno}: {exc.msg}") from exc
        metadata = document.get("metadata") if isinstance(document, dict) else None
        fields = metadata if isinstance(metadata, dict) else {}
        where = ".manifest: metadata"
    elif yaml_manifest.is_file():
        where = "bundle.yaml"
        try:
            document = yaml.safe_load(_read_text(yaml_manifest, where))
        except yaml.YAMLError as exc:
            raise _load_error(f"{where}: {exc}") from exc
        fields = document if isinstance(document, dict) else {}
    else:
        raise _load_error(f"policy bundle {root} has no .manifest or bundle.yaml naming its version")
    name, version, compat = fields.get("name"), fields.get("version"), fields.get("compat")
    if not isinstance(name, str) or not name.strip():
        raise _load_error(f"{where}.name must be a non-empty string")
    if not isinstance(version, str) or not _SEMVER.match(version):
        raise _load_error(f"{where}.version must be a semantic version (MAJOR.MINOR.PATCH), got {version!r}")
    if compat not in _COMPAT:
        raise _load_error(f"{where}.compat must be backward or breaking, got {compat!r}")
    return name, version, cast(Literal["backward", "breaking"], compat)


def _data(root: Path) -> dict[str, Any]:
    file = root / "data.json"
    try:
        data = json.loads(_read_text(file, "data.json")) if file.is_file() else {}
    except json.JSONDecodeError as exc:
        raise _load_error(f"data.json:{exc.lineno}: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise _load_error("data.json: must be an object")
    apx = data.get("apx", {})
    if not isinstance(apx, dict):
        raise _load_error("data.json: apx must be an object")
    if "rule_packages" in apx:
        raise _load_error("data.json: apx.rule_packages is computed by the loader; remove it")
    problems = [
        *_check_limits(apx.get("limits")),
        *_check_environments(apx.get("protected_environments")),
        *_check_enforcement(apx.get("enforcement")),
    ]
    waivers, waiver_problems = _check_waivers(apx.get("waivers"))
    problems += waiver_problems
    if problems:
        raise PolicyLoadError(
            f"data.json: {'; '.join(problems)}", errors=[f"data.json: {p}" for p in problems]
        )
    authored = apx.get("limits")
    limits: dict[str, Any] = authored if isinstance(authored, dict) else {}
    apx = {**apx, "limits": {**DEFAULT_LIMITS, **limits}}
    if waivers is not None:
        apx["waivers"] = waivers
    return {**data, "apx": apx}


def _with_rule_packages(data: dict[str, Any], modules: Mapping[str, str]) -> dict[str, Any]:
    """List the packages ``data.apx.rules.<name>`` that define ``violation``, as data.apx.rule_packages.

    The decision iterates this list: regopy evaluates every rule of every
    package when the package is left unbound (~6 ms a decision instead of ~0.5).
    Computed, never written by hand, so a new rule file cannot be forgotten.
    """
    packages = sorted(
        {
            package.removeprefix("apx.rules.")
            for source in modules.values()
            for package in _PACKAGE_LINE.findall(source)[:1]
            if _RULE_PACKAGE.match(package) and _VIOLATION.search(source)
        }
    )
    apx = data.get("apx", {})
    return {**data, "apx": {**apx, "rule_packages": packages}}


def _check_limits(limits: object) -> list[str]:
    if limits is None:
        return []
    if not isinstance(limits, dict):
        return ["apx.limits must be an object of numbers"]
    return [
        f"apx.limits.{key} must be a number, got {value!r}"
        for key, value in limits.items()
        if isinstance(value, bool) or not isinstance(value, int | float)
    ]


def _check_environments(environments: object) -> list[str]:
    if environments is None or (
        isinstance(environments, list) and all(isinstance(e, str) for e in environments)
    ):
        return []
    return ["apx.protected_environments must be a list of environment names"]


def _check_enforcement(enforcement: object) -> list[str]:
    if enforcement is None:
        return []
    if not isinstance(enforcement, dict):
        return ["apx.enforcement must be an object mapping rule ids to enforce, warn or dryrun"]
    return [
        f"apx.enforcement.{rule} must be one of {', '.join(_MODES)}, got {mode!r}"
        for rule, mode in enforcement.items()
        if mode not in _MODES
    ]


def _check_waivers(waivers: object) -> tuple[list[dict[str, Any]] | None, list[str]]:
    if waivers is None:
        return None, []
    if not isinstance(waivers, list):
        return None, ["apx.waivers must be a list"]
    checked: list[dict[str, Any]] = []
    problems: list[str] = []
    for index, waiver in enumerate(waivers):
        where = f"apx.waivers[{index}]"
        if not isinstance(waiver, dict):
            problems.append(f"{where} must be an object")
            continue
        unknown = sorted(set(waiver) - _WAIVER_KEYS)
        if unknown:
            problems.append(
                f"{where} has unknown keys {', '.join(unknown)} (allowed: {', '.join(sorted(_WAIVER_KEYS))})"
            )
        for key in ("rule", "reason", "ticket"):
            if not isinstance(waiver.get(key), str) or not waiver[key].strip():
                problems.append(f"{where}.{key} must be a non-empty string")
        for key in ("tenant", "resource"):
            if key in waiver and not isinstance(waiver[key], str):
                problems.append(f"{where}.{key} must be a string (omit it to waive everywhere)")
        resource = waiver.get("resource")
        if isinstance(resource, str) and not _RESOURCE.match(resource):
            problems.append(f"{where}.resource must look like Kind/name, got {resource!r}")
        expires_ns, problem = _expiry_ns(waiver.get("expires"))
        if problem:
            problems.append(f"{where}.expires {problem}")
            continue
        checked.append({**waiver, "expires_ns": expires_ns})
    return checked, problems


def _expiry_ns(expires: object) -> tuple[int, str | None]:
    if not isinstance(expires, str):
        return 0, "must be an RFC 3339 time such as 2025-07-01T00:00:00Z (waivers are time-bound)"
    try:
        moment = datetime.fromisoformat(expires)
    except ValueError:
        return 0, f"is not an RFC 3339 time: {expires!r}"
    if moment.tzinfo is None:
        return 0, f"needs a timezone (Z or ±HH:MM): {expires!r}"
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000, None


# -- static checks regopy does not make -------------------------------------------

_KEYWORDS = {
    "if",
    "else",
    "not",
    "some",
    "every",
    "in",
    "contains",
    "with",
    "as",
    "default",
    "import",
    "package",
    "set",
}
_CALL = re.compile(r"(?<![\w.\]])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\s*\(")
_FUNCTION_HEAD = re.compile(r"^([A-Za-z_]\w*)\s*\(", re.MULTILINE)
_IMPORT = re.compile(r"^import\s+([\w.]+)(?:\s+as\s+(\w+))?", re.MULTILINE)
_RULE_HEAD = re.compile(r"^(?:default\s+)?([A-Za-z_]\w*)\b", re.MULTILINE)
_SORT = re.compile(r"(?<![\w.])sort\s*\(")


def _static_problems(bundle: Bundle) -> list[str]:
    sources = {**bundle.modules, **bundle.tests}
    stripped = {file: code_only(source) for file, source in sources.items()}
    functions = {name for code in stripped.values() for name in _FUNCTION_HEAD.findall(code)}
    problems: list[str] = []
    calls: dict[str, list[str]] = {}
    for file, code in stripped.items():
        packages = _PACKAGE_LINE.findall(code)
        if not packages:
            problems.append(f"{file}:1: no package declaration")
            continue
        package = packages[0]
        aliases = {"data", "input"}
        for target, alias in _IMPORT.findall(code):
            aliases.add(alias or target.rsplit(".", 1)[-1])
        for match in _CALL.finditer(code):
            name = match.group(1)
            head = name.split(".", 1)[0]
            if name in _KEYWORDS or head in aliases or name in functions:
                continue
            calls.setdefault(name, []).append(f"{file}:{_line(code, match.start())}")
        for match in _SORT.finditer(code):
            problems.append(
                f"{file}:{_line(code, match.start())}: regopy's sort() returns arrays that never compare "
                "equal or index correctly; use a set"
            )
        if package.startswith("apx.rules.") and not _RULE_PACKAGE.match(package) and _VIOLATION.search(code):
            problems.append(
                f"{file}:{_line(code, code.find('package'))}: package {package} is not collected; "
                "rule packages are apx.rules.<name>"
            )
        segments = package.split(".")
        if "input" in segments[1:] or "data" in segments[1:]:
            problems.append(
                f"{file}:{_line(code, code.find('package'))}: package {package} shadows input/data in regopy"
            )
        if file in bundle.modules:
            problems += _data_conflicts(file, code, package, bundle.data)
    for name in sorted(missing_builtins(calls)):
        for where in calls[name]:
            problems.append(
                f"{where}: {name} is not a built-in regopy implements, so a rule calling it fails at "
                "evaluation; compute the fact in Python and pass it in the input"
            )
    return problems


_PACKAGE_LINE = re.compile(r"^package\s+([A-Za-z_][\w.]*)", re.MULTILINE)
_RULE_PACKAGE = re.compile(r"^apx\.rules\.[A-Za-z_]\w*$")
_VIOLATION = re.compile(r"^violation\b", re.MULTILINE)


def _data_conflicts(file: str, code: str, package: str, data: Mapping[str, Any]) -> list[str]:
    """Rules named like a data.json key at the same path read themselves in regopy (a recursion)."""
    node: object = data
    for segment in package.split("."):
        node = node.get(segment) if isinstance(node, Mapping) else None
    if not isinstance(node, Mapping):
        return []
    return [
        f"{file}:{_line(code, match.start())}: rule {match.group(1)} has the path of the data.json key "
        f"data.{package}.{match.group(1)}; rename one of them"
        for match in _RULE_HEAD.finditer(code)
        if match.group(1) in node
    ]


def _line(code: str, offset: int) -> int:
    return code.count("\n", 0, max(offset, 0)) + 1


# -- files ---------------------------------------------------------------------


def _files(root: Path) -> list[Path]:
    return sorted(
        (
            p
            for p in root.rglob("*")
            if p.is_file() and not _SKIPPED_DIRS.intersection(p.relative_to(root).parts)
        ),
        key=lambda p: p.relative_to(root).as_posix(),
    )


def _read_text(file: Path, where: str) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _load_error(f"{where}: cannot be read as UTF-8 text ({exc})") from exc


def _load_error(message: str) -> PolicyLoadError:
    return PolicyLoadError(message, errors=[message])
