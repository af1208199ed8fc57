"""The in-process policy engine, on regopy (rego-cpp): the only module that imports regopy.

:class:`RegoPyEngine` compiles a :class:`~validators.policy.Bundle` once
(``Interpreter.build``) and evaluates each intent from the compiled bundle
(``query_bundle``): ~2 ms of CPU for the shipped bundle instead of ~33 ms
with ``query`` per call. The compiled bundle is cached on disk in regopy's
binary format, keyed by the bundle's sha256 and the regopy version: loading it
takes ~1.5 ms, building it ~50 ms.

regopy fails open and can crash the process, so every call here is defensive
(the architecture notes' "Known pitfalls", and more found while building this):

* ``strict_built_in_errors`` is on: an unsupported or failing built-in makes the
  output not ok, instead of silently making its rule undefined.
* A not-ok output is never stringified, never asked for ``node()`` or
  ``binding()`` (each can abort the process); only ``output.ok()`` and
  ``output.results[i].bindings`` are read.
* regopy returns some runtime errors (an unknown function) as an "ok" output
  whose text is not JSON, which its own ``Output`` constructor then fails to
  parse: that exception is a failure like any other.
* Input is handed over as JSON text (``set_input_term``): strings handed over
  as Python objects come back unescaped, so a quote in a name made the output
  unparseable.
* Some Rego aborts the whole process inside regopy (``with input as {...}``
  against rules that read input: an uncaught C++ exception). Sources are
  screened for the known cases (:func:`crash_risks`), and a bundle is first
  compiled and evaluated once in a child process (:func:`check_bundle`), so
  an unknown case costs a refused bundle instead of the server. Only a bundle
  that built cleanly is cached, so a cache hit skips the child.

Compile errors are read from regopy's error text (an S-expression naming the
module, a byte offset and a message) and reported as ``file:line: message``.
:func:`check_bundle`, :func:`missing_builtins` and :func:`run_tests` are the
building blocks of ``apx policy lint`` and ``apx policy test``
(:mod:`constraints.bundle`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import regopy

from validators.policy import (
    DECISION_REF,
    Bundle,
    BundleInfo,
    PolicyLoadError,
    PolicyResult,
    check_input,
    code_only,
    example_input,
    policy_document,
)

#: The query a bundle is compiled for (part of the cache key, like the regopy version).
_QUERY = f"decision := {DECISION_REF}"
_CACHE_FORMAT = "q1"
_PACKAGE = re.compile(r"^package\s+([A-Za-z_][\w.]*)", re.MULTILINE)
_VIOLATION_RULE = re.compile(r"^violation\b", re.MULTILINE)
_TEST_RULE = re.compile(r"^(test_\w+)", re.MULTILINE)
# Top-level errors of regopy's error sequence: "(error 17:policies/x.rego|32|2" (a
# length-prefixed file name, byte offset and length), or "(error" with no location.
_ERROR = re.compile(rb"^ {0,2}\(error(?=\s)(?: (\d+):)?", re.MULTILINE)
_LOCATION = re.compile(rb"\|(\d+)\|(\d+)")
_ERRORMSG = re.compile(rb"\(errormsg (\d+):")
_WITH_INPUT = re.compile(r"\bwith\s+input\s+as\b")
#: How long a child process may take to compile and run a bundle's tests.
CHILD_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class CompileError:
    """One compile error, located in the bundle when regopy says where."""

    file: str | None
    line: int | None
    column: int | None
    message: str

    def __str__(self) -> str:
        if self.file is None:
            return f"bundle: {self.message}"
        if self.line is None:
            return f"{self.file}: {self.message}"
        return f"{self.file}:{self.line}: {self.message}"


@dataclass(frozen=True)
class LoadStats:
    """How the engine got its compiled bundle, for benchmarks and the startup log."""

    source: Literal["built", "cache"]
    ms: float
    cache_path: str | None = None
    #: Why the cache could not be read or written, if it could not (the engine works without it).
    cache_error: str | None = None


@dataclass(frozen=True)
class BundleCheck:
    """What compiling and evaluating a bundle once, in a child process, showed."""

    errors: list[CompileError]
    #: Why evaluating the decision on :func:`~validators.policy.example_input` failed, if it did.
    evaluation_error: str | None = None
    #: How regopy died, if it took the child process with it.
    crash: str | None = None

    @property
    def ok(self) -> bool:
        return not self.errors and self.crash is None


@dataclass(frozen=True)
class TestResult:
    """One ``test_*`` rule of a ``*_test.rego`` file, evaluated."""

    __test__ = False  # not a pytest class

    file: str
    package: str
    name: str
    outcome: Literal["pass", "fail", "error"]
    message: str
    elapsed_ms: float

    @property
    def passed(self) -> bool:
        return self.outcome == "pass"


class RegoPyEngine:
    """Evaluates a bundle's ``data.apx.decision`` in-process with regopy.

    Construction compiles the bundle (or loads it from ``cache_dir``) and raises
    :class:`~validators.policy.PolicyLoadError` with ``file:line`` if it does
    not compile, so the caller can keep the previous engine in force. Unless
    ``isolate`` is False, a bundle not found in the cache is first compiled in a
    child process (:func:`check_bundle`, ~0.5 s), so Rego that makes regopy
    abort refuses the bundle instead of killing the server.

    ``budget_ms`` bounds one evaluation — after the fact: regopy runs in the
    calling thread and cannot be pre-empted, so a runaway policy holds that
    thread (and this engine's lock) until it finishes; its result is then
    discarded and the intent is refused. Use :class:`~validators.opa_server.OpaServerEngine`
    when a hard timeout matters more than latency.

    Thread-safe: one interpreter, guarded by a lock (regopy's interpreter holds
    the input as state between ``set_input_term`` and ``query_bundle``).
    """

    def __init__(
        self, bundle: Bundle, *, cache_dir: Path | None = None, budget_ms: float = 100, isolate: bool = True
    ) -> None:
        self._info = bundle.info
        self._scope = bundle.has_waivers
        self._keys = bundle.input_keys
        self._budget_ms = budget_ms
        self._lock = threading.Lock()
        #: Entry points per rule package, to say which package failed when the decision does.
        self._probes = _violation_entrypoints(bundle.modules)
        self._interpreter = _interpreter()
        started = time.perf_counter()
        cache_path = _cache_path(cache_dir, bundle, list(self._probes)) if cache_dir is not None else None
        compiled, cache_error = (
            (None, None) if cache_path is None else _load_cached(self._interpreter, cache_path)
        )
        if compiled is not None:
            self._compiled = compiled
            self.load_stats = LoadStats(
                source="cache", ms=_ms(started), cache_path=str(cache_path), cache_error=cache_error
            )
            return
        _refuse_unless_safe(bundle, isolate=isolate)
        self._compiled = _build(self._interpreter, bundle, query=_QUERY, entrypoints=list(self._probes))
        ms = _ms(started)
        if cache_path is not None:
            cache_error = _save_cached(self._interpreter, self._compiled, cache_path) or cache_error
        self.load_stats = LoadStats(
            source="built", ms=ms, cache_path=str(cache_path) if cache_path else None, cache_error=cache_error
        )

    @property
    def bundle(self) -> BundleInfo:
        return self._info

    def evaluate(self, input: Mapping[str, Any]) -> PolicyResult:
        started = time.perf_counter()
        problems = check_input(input)
        if problems:
            return PolicyResult.failed_closed(f"the policy input is malformed: {'; '.join(problems)}")
        try:
            term = json.dumps(policy_document(input, scope=self._scope, keys=self._keys), allow_nan=False)
        except (TypeError, ValueError) as exc:
            return PolicyResult.failed_closed(f"the policy input is not JSON ({exc})")
        waiting = time.perf_counter()
        with self._lock:
            # The budget is for evaluating, not for queueing behind other threads.
            waited = time.perf_counter() - waiting
            decision, failure = self._query(term)
        elapsed = _ms(started) - waited * 1000
        if failure is not None:
            return PolicyResult.failed_closed(failure, elapsed_ms=elapsed)
        if elapsed > self._budget_ms:
            return PolicyResult.failed_closed(
                f"evaluation took {elapsed:.1f} ms, over its budget of {self._budget_ms:g} ms",
                elapsed_ms=elapsed,
            )
        return PolicyResult.from_decision(decision, elapsed_ms=elapsed)

    def _query(self, term: str) -> tuple[object, str | None]:
        """The decision, or why there is none. Call with the lock held."""
        try:
            self._interpreter.set_input_term(term)
        except regopy.RegoError as exc:
            return None, f"regopy refused the policy input ({_first_line(exc)})"
        try:
            output = self._interpreter.query_bundle(self._compiled)
        except (regopy.RegoError, ValueError) as exc:
            # ValueError: regopy answered with an error node that its Output could not parse.
            return (
                None,
                f"regopy returned an error instead of a decision ({type(exc).__name__}){self._culprit()}",
            )
        if not output.ok():
            return None, f"regopy reported an evaluation error{self._culprit()}"
        bindings = _bindings(output)
        if bindings is None or "decision" not in bindings:
            return None, f"{DECISION_REF} is undefined (no decision was produced)"
        return bindings["decision"], None

    def _culprit(self) -> str:
        """Which rule package fails on the current input, by evaluating each on its own.

        regopy gives no error text for a failed evaluation (and reading one can
        crash), so this is the most precise reason available: an unsupported
        built-in (regopy has no ``net.cidr_*``), a built-in that failed, or two
        rule bodies producing conflicting values. Only runs on the error path.
        """
        failing = []
        for entrypoint, file in self._probes.items():
            try:
                output = self._interpreter.query_bundle_entrypoint(self._compiled, entrypoint)
                if output.ok():
                    continue
            except (regopy.RegoError, ValueError):
                pass
            failing.append(f"{entrypoint.replace('/', '.')} ({file})")
        if not failing:
            return " (an unsupported or failing built-in, or conflicting rule values)"
        return (
            f" in {', '.join(failing)}: an unsupported or failing built-in (regopy has no net.cidr_*), "
            "or conflicting rule values"
        )


def check_bundle(bundle: Bundle, *, include_tests: bool = True) -> BundleCheck:
    """Compile the bundle (and its tests) and evaluate its decision once, in a child process.

    Returns the compile errors with ``file:line``, whether the decision could
    be evaluated on :func:`~validators.policy.example_input`, and, if regopy
    aborted, how. Known crash patterns are reported without trying
    (:func:`crash_risks`).
    """
    target = bundle if include_tests else _without_tests(bundle)
    risks = crash_risks({**target.modules, **target.tests})
    if risks:
        return BundleCheck(errors=risks)
    reply, crash = _in_child("check", target)
    if crash is not None:
        return BundleCheck(errors=[], crash=crash)
    return BundleCheck(
        errors=[CompileError(**e) for e in reply.get("errors", [])],
        evaluation_error=reply.get("evaluation_error"),
    )


def crash_risks(sources: Mapping[str, str]) -> list[CompileError]:
    """Rego known to abort the process inside regopy, located: ``with input as {...}``.

    (Mocking the whole input fails or aborts; mocking it field by field,
    ``with input.blast as {...}``, works.)
    """
    risks = []
    for file, source in sorted(sources.items()):
        code = code_only(source)
        for match in _WITH_INPUT.finditer(code):
            line = code.count("\n", 0, match.start()) + 1
            risks.append(
                CompileError(
                    file,
                    line,
                    None,
                    "`with input as` crashes or fails in regopy; mock input field by field "
                    "(`with input.blast as {...}`)",
                )
            )
    return risks


def missing_builtins(names: Iterable[str]) -> set[str]:
    """The names among ``names`` that regopy does not implement as built-ins."""
    interpreter = _interpreter()
    return {name for name in names if not interpreter.is_builtin(name)}


def run_tests(bundle: Bundle) -> tuple[list[TestResult], list[CompileError]]:
    """Evaluate every ``test_*`` rule of the bundle's ``*_test.rego`` files, in a child process.

    The bundle and its tests are compiled once, with an entry point per test
    (``query`` per test recompiles everything, and regopy's cost for ``with``
    grows with the whole rule graph). A test passes when it is exactly ``true``;
    undefined is a failure, an evaluation error an error. Returns the results,
    or the errors that kept the tests from running.
    """
    risks = crash_risks({**bundle.modules, **bundle.tests})
    if risks:
        return [], risks
    reply, crash = _in_child("tests", bundle)
    if crash is not None:
        return [], [CompileError(None, None, None, crash)]
    return (
        [TestResult(**r) for r in reply.get("results", [])],
        [CompileError(**e) for e in reply.get("errors", [])],
    )


def _compile_errors(bundle: Bundle) -> list[CompileError]:
    """Every compile error of the bundle's modules and tests (in this process).

    Each module is added on its own so one broken file does not hide another's errors.
    """
    interpreter = _interpreter()
    sources = {**bundle.modules, **bundle.tests}
    errors: list[CompileError] = []
    for name, source in sources.items():
        try:
            interpreter.add_module(name, source)
        except regopy.RegoError as exc:
            errors.extend(_parse_errors(str(exc), sources))
    if errors:
        return errors
    try:
        interpreter.add_data_json(json.dumps(bundle.data))
        interpreter.build(_QUERY, list(_violation_entrypoints(bundle.modules)))
    except regopy.RegoError as exc:
        errors.extend(_parse_errors(str(exc), sources))
    return errors


def _run_tests_here(bundle: Bundle) -> tuple[list[TestResult], list[CompileError]]:
    tests = [
        (file, package, name)
        for file, source in sorted(bundle.tests.items())
        for package in _packages(source)[:1]
        for name in dict.fromkeys(_TEST_RULE.findall(source))
    ]
    errors = _compile_errors(bundle)
    if errors or not tests:
        return [], errors
    sources = {**bundle.modules, **bundle.tests}
    interpreter = _interpreter()
    for name, source in sources.items():
        interpreter.add_module(name, source)
    interpreter.add_data_json(json.dumps(bundle.data))
    entrypoints = [f"{package.replace('.', '/')}/{name}" for _, package, name in tests]
    try:
        compiled = interpreter.build(None, entrypoints)
    except regopy.RegoError as exc:
        return [], _parse_errors(str(exc), sources)
    results = []
    for (file, package, name), entrypoint in zip(tests, entrypoints, strict=True):
        started = time.perf_counter()
        outcome, message = _test_outcome(interpreter, compiled, entrypoint)
        results.append(
            TestResult(
                file=file,
                package=package,
                name=name,
                outcome=outcome,
                message=message,
                elapsed_ms=_ms(started),
            )
        )
    return results, []


def _test_outcome(
    interpreter: Any, compiled: Any, entrypoint: str
) -> tuple[Literal["pass", "fail", "error"], str]:
    try:
        output = interpreter.query_bundle_entrypoint(compiled, entrypoint)
    except (regopy.RegoError, ValueError) as exc:
        return "error", f"regopy returned an error ({type(exc).__name__}), e.g. an unknown function"
    if not output.ok():
        return (
            "error",
            "evaluation failed in regopy (an unsupported or failing built-in, or conflicting values)",
        )
    results = getattr(output, "results", None)
    expressions = getattr(results[0], "expressions", None) if isinstance(results, list) and results else None
    if not isinstance(expressions, list) or not expressions:
        return "fail", "undefined: a condition of the test does not hold"
    if expressions[0] is True:
        return "pass", "ok"
    return "fail", f"the test evaluated to {json.dumps(expressions[0])[:200]}, not true"


def _refuse_unless_safe(bundle: Bundle, *, isolate: bool) -> None:
    modules_only = _without_tests(bundle)
    if isolate:
        check = check_bundle(modules_only)
        problems = [str(e) for e in check.errors] + ([check.crash] if check.crash else [])
    else:
        problems = [str(e) for e in crash_risks(modules_only.modules)]
    if problems:
        where = f"{bundle.info.name} {bundle.info.version} ({bundle.info.path})"
        raise PolicyLoadError(
            f"policy bundle {where} does not compile: {'; '.join(problems)}", errors=problems
        )


def _without_tests(bundle: Bundle) -> Bundle:
    return Bundle(info=bundle.info, compat=bundle.compat, modules=bundle.modules, data=bundle.data)


# The child imports this module from the directory that holds the package, so it
# works whether or not APX is installed, and talks JSON over stdin/stdout.
_CHILD = (
    f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r}); "
    "from validators.rego import _child_main; _child_main()"
)


def _in_child(op: Literal["check", "tests"], bundle: Bundle) -> tuple[dict[str, Any], str | None]:
    """Run ``op`` on ``bundle`` in a fresh interpreter process: (its reply, or how it died)."""
    request = json.dumps(
        {
            "op": op,
            "info": bundle.info.model_dump(),
            "compat": bundle.compat,
            "modules": dict(bundle.modules),
            "tests": dict(bundle.tests),
            "data": bundle.data,
        }
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD],
            input=request,
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {}, f"regopy did not finish compiling the bundle within {CHILD_TIMEOUT_S:g} s"
    except OSError as exc:
        return {}, f"could not start a process to compile the bundle ({exc})"
    if done.returncode != 0:
        tail = " ".join(done.stderr.strip().splitlines()[-3:])[-400:]
        return {}, f"regopy crashed compiling or evaluating the bundle (exit {done.returncode}): {tail}"
    try:
        reply = json.loads(done.stdout)
    except json.JSONDecodeError:
        return {}, "the bundle-checking process answered with something other than JSON"
    return (reply if isinstance(reply, dict) else {}), None


def _child_main() -> None:
    """The child's side of :func:`_in_child`."""
    request = json.load(sys.stdin)
    bundle = Bundle(
        info=BundleInfo(**request["info"]),
        compat=request["compat"],
        modules=request["modules"],
        tests=request["tests"],
        data=request["data"],
    )
    reply: dict[str, Any]
    if request["op"] == "tests":
        results, errors = _run_tests_here(bundle)
        reply = {"results": [asdict(r) for r in results], "errors": [asdict(e) for e in errors]}
    else:
        errors = _compile_errors(bundle)
        evaluation_error = None
        if not errors:
            engine = RegoPyEngine(_without_tests(bundle), budget_ms=float("inf"), isolate=False)
            evaluation_error = engine.evaluate(example_input()).error
        reply = {"errors": [asdict(e) for e in errors], "evaluation_error": evaluation_error}
    json.dump(reply, sys.stdout)


def _interpreter() -> Any:
    interpreter = regopy.Interpreter()
    interpreter.strict_built_in_errors = True
    # Errors are read from the exceptions; regopy would also print them to stderr.
    interpreter.log_level = regopy.LogLevel.NONE
    return interpreter


def _build(interpreter: Any, bundle: Bundle, *, query: str | None, entrypoints: list[str]) -> Any:
    sources = {**bundle.modules}
    errors: list[CompileError] = []
    for name, source in bundle.modules.items():
        try:
            interpreter.add_module(name, source)
        except regopy.RegoError as exc:
            errors.extend(_parse_errors(str(exc), sources))
    if not errors:
        try:
            interpreter.add_data_json(json.dumps(bundle.data))
            compiled = interpreter.build(query, entrypoints)
        except regopy.RegoError as exc:
            errors.extend(_parse_errors(str(exc), sources))
        else:
            if compiled.ok():
                return compiled
            errors.append(CompileError(None, None, None, "regopy could not build the bundle"))
    where = f"{bundle.info.name} {bundle.info.version} ({bundle.info.path})"
    lines = [str(e) for e in errors]
    raise PolicyLoadError(f"policy bundle {where} does not compile: {'; '.join(lines)}", errors=lines)


def _cache_path(cache_dir: Path, bundle: Bundle, entrypoints: list[str]) -> Path:
    """One file per exact compiler input: the modules and the data *as loaded* (the loader
    adds defaults and computed fields, so the bundle's own sha256 is not enough), the
    query, the entry points, and the regopy version."""
    digest = hashlib.sha256()
    for part in (
        _QUERY,
        _CACHE_FORMAT,
        str(regopy.__version__),
        json.dumps(entrypoints),
        json.dumps(sorted(bundle.modules.items())),
        json.dumps(bundle.data, sort_keys=True),
    ):
        digest.update(part.encode() + b"\0")
    return cache_dir / f"{bundle.info.name}-{bundle.info.sha256[:16]}-{digest.hexdigest()[:32]}.rbb"


def _load_cached(interpreter: Any, path: Path) -> tuple[Any, str | None]:
    if not path.is_file():
        return None, None
    try:
        compiled = interpreter.load_bundle(str(path), regopy.BundleFormat.Binary)
    except regopy.RegoError as exc:
        return None, f"cached bundle {path} could not be loaded ({_first_line(exc)}); rebuilt it"
    if not compiled.ok():
        return None, f"cached bundle {path} is not valid; rebuilt it"
    return compiled, None


def _save_cached(interpreter: Any, compiled: Any, path: Path) -> str | None:
    """Write atomically (a reader never sees half a file); a failure only costs the next start a build."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        interpreter.save_bundle(str(temporary), compiled, regopy.BundleFormat.Binary)
        os.replace(temporary, path)
    except (OSError, regopy.RegoError) as exc:
        temporary.unlink(missing_ok=True)
        return f"could not cache the compiled bundle at {path} ({_first_line(exc)})"
    return None


def _bindings(output: Any) -> dict[str, Any] | None:
    results = getattr(output, "results", None)
    if not isinstance(results, list) or len(results) != 1:
        return None
    bindings = getattr(results[0], "bindings", None)
    return bindings if isinstance(bindings, dict) else None


def _violation_entrypoints(modules: Mapping[str, str]) -> dict[str, str]:
    """``apx/rules/routes/violation`` → the file defining it, for each package with a ``violation`` rule."""
    entrypoints: dict[str, str] = {}
    for file, source in sorted(modules.items()):
        packages = _packages(source)
        if packages and _VIOLATION_RULE.search(source):
            entrypoints.setdefault(f"{packages[0].replace('.', '/')}/violation", file)
    return entrypoints


def _packages(source: str) -> list[str]:
    return _PACKAGE.findall(source)


def _parse_errors(text: str, sources: Mapping[str, str]) -> list[CompileError]:
    """regopy's error S-expression → located errors; the AST dump that follows each is dropped."""
    raw = text.encode("utf-8", "replace")
    errors: list[CompileError] = []
    for match in _ERROR.finditer(raw):
        end = match.end()
        file: str | None = None
        offset: int | None = None
        if match.group(1) is not None:
            size = int(match.group(1))
            file = raw[end : end + size].decode("utf-8", "replace")
            end += size
            location = _LOCATION.match(raw, end)
            if location:
                offset = int(location.group(1))
        message = "compile error"
        found = _ERRORMSG.search(raw, end)
        if found:
            size = int(found.group(1))
            message = raw[found.end() : found.end() + size].decode("utf-8", "replace")
        line = column = None
        if file is not None and offset is not None and file in sources:
            before = sources[file].encode("utf-8")[:offset]
            line = before.count(b"\n") + 1
            column = offset - (before.rfind(b"\n") + 1) + 1
        errors.append(CompileError(file, line, column, message))
    if not errors:
        errors.append(CompileError(None, None, None, _first_line(text)))
    return errors


def _first_line(error: object) -> str:
    text = str(error).strip()
    return (text.splitlines() or ["unknown error"])[0][:300]


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
