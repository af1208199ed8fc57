"""Reading intents (and config-repo documents) from text, with errors a person can act on.

Everything an agent or a user submits comes through :func:`parse_intent`; the
CLI, the HTTP API and the in-process client call it before anything is
recorded. Bad input never produces a traceback: it raises
:class:`~orchestrator.errors.IntentFormatError` with one line,
``source:line:column: field.path: what is wrong``, found by mapping the
failing field back to where it sits in the text.

YAML is read by our own loop over libyaml's event stream (``CSafeLoader``'s
parser, so the C scanner does the heavy work) rather than ``yaml.safe_load``:

* **aliases are refused** (any ``*name``): they are how "billion laughs"
  documents expand a few bytes into gigabytes, and an intent has no need for
  them. Anchors alone are harmless and ignored.
* **nesting is capped** at :data:`MAX_DEPTH` *before* it is built: libyaml's
  recursive composer crashes the process (SIGSEGV) on ~100k nested brackets,
  which fit easily in the 1 MiB limit.
* **duplicate keys are refused** (``safe_load`` keeps the last one silently:
  ``replicas: 4`` … ``replicas: 150`` would apply 150).
* **only JSON values come out** (strings, finite numbers within ±2**53,
  booleans, null, lists, string-keyed mappings), because intents are
  canonicalised with RFC 8785 and stored as JSON. Unquoted dates stay strings;
  ``!!binary``, ``!!set``, custom tags and merge keys (``<<``) are refused.

JSON input (text starting with ``{``) is read with :mod:`json` so syntax
errors carry JSON's own line and column; the same value checks then apply.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from orchestrator.errors import IntentFormatError
from orchestrator.intent import Intent, Resource, ResourceKey
from orchestrator.resources import Loc, field_problems, format_loc

#: Largest intent accepted, in bytes (the contract: 1 MiB), checked before parsing.
MAX_INTENT_BYTES = 1 << 20
#: Deepest nesting accepted. An intent is ~8 levels deep (``spec.changes[0].resource.spec.plans[0]
#: .rateLimit.rps``); 64 leaves room for any real spec while staying far below what crashes libyaml.
MAX_DEPTH = 64
#: JSON numbers beyond this lose precision in other JSON readers; RFC 8785 refuses them.
MAX_SAFE_INT = 2**53 - 1

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_T = TypeVar("_T", bound=BaseModel)

_TAG = "tag:yaml.org,2002:"
_STR = f"{_TAG}str"
_SCALAR_TAGS = {f"{_TAG}{t}" for t in ("str", "int", "float", "bool", "null", "timestamp")}
_SEQ_TAGS = {None, "!", f"{_TAG}seq"}
_MAP_TAGS = {None, "!", f"{_TAG}map"}
_PLAIN_VALUES = "strings, numbers, booleans, null, lists and mappings"


class _Problem(Exception):
    """A problem found while reading, with its position (1-based) when known."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.message, self.line, self.column = message, line, column


def parse_intent(data: bytes | str, *, source: str = "<stdin>", max_bytes: int = MAX_INTENT_BYTES) -> Intent:
    """Read one ``apx/v1`` ``Intent`` from YAML or JSON text.

    Raises :class:`IntentFormatError` (one line naming ``source``, the line and
    column, and the field) for anything that is not a well-formed intent
    envelope. Specs are not checked against their kind here: that is the schema
    validator's job, and its failure is a recorded decision.
    """
    intent, _ = _read(data, Intent, source=source, max_bytes=max_bytes, what="an Intent")
    return intent


def parse_resource_document(
    data: bytes | str,
    *,
    source: str,
    max_bytes: int = MAX_INTENT_BYTES,
    expect: ResourceKey | None = None,
) -> Resource:
    """Read one resource document (a ``<Kind>/<name>.yaml`` of the config repo).

    With ``expect``, the document must be the resource its path names, so a file
    renamed or edited by hand cannot masquerade as another resource.
    """
    resource, text = _read(data, Resource, source=source, max_bytes=max_bytes, what="a resource")
    if resource.spec is None:
        _fail(source, text, ("spec",), "spec: required field is missing")
    if expect is not None and resource.key != expect:
        _fail(
            source, text, ("metadata", "name"), f"the document is {resource.key} but its path says {expect}"
        )
    return resource


def _read(data: bytes | str, model: type[_T], *, source: str, max_bytes: int, what: str) -> tuple[_T, str]:
    text = _decode(data, source=source, max_bytes=max_bytes)
    try:
        value = _load(text)
    except _Problem as problem:
        raise IntentFormatError(_line(source, problem.line, problem.column, problem.message)) from None
    if not isinstance(value, dict):
        _fail(
            source,
            text,
            (),
            f"expected {what} (a mapping with apiVersion, kind, metadata, spec), got {_kind(value)}",
        )
    try:
        return model.model_validate(value), text
    except ValidationError as exc:
        problems = field_problems(exc, model=model, echo_strings=True)
        first = problems[0]
        loc = first.loc or _leading_loc(first.message)
        more = len(problems) - 1
        tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        _fail(source, text, loc, f"{first}{tail}", cause=exc)


def _fail(source: str, text: str, loc: Loc, message: str, *, cause: Exception | None = None) -> NoReturn:
    line, column = locate(text, loc)
    raise IntentFormatError(_line(source, line, column, message)) from cause


def _line(source: str, line: int | None, column: int | None, message: str) -> str:
    where = f"{source}:{line}:{column}" if line is not None else source
    return f"{where}: {' '.join(message.split())}"


# --- bytes → text -------------------------------------------------------------------------------


def _decode(data: bytes | str, *, source: str, max_bytes: int) -> str:
    raw = data.encode("utf-8", errors="surrogatepass") if isinstance(data, str) else data
    if len(raw) > max_bytes:
        raise IntentFormatError(
            f"{source}: the input is {len(raw):,} bytes, over the limit of {_size(max_bytes)}; "
            "split the change into smaller intents"
        )
    if isinstance(data, str):
        return data.removeprefix("\ufeff")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise IntentFormatError(
            f"{source}:{line}:{column}: not UTF-8 text ({exc.reason} 0x{data[exc.start]:02x}); "
            "save it as UTF-8"
        ) from exc


def _size(n: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit} ({n:,} bytes)"
    return f"{n:,} bytes"


# --- text → value -------------------------------------------------------------------------------


def _load(text: str) -> Any:
    if text.lstrip(" \t\r\n").startswith("{"):
        return _load_json(text)
    return _YamlReader(text).read()


def _load_json(text: str) -> Any:
    try:
        value = json.loads(text, object_pairs_hook=_json_object, parse_constant=_json_constant)
    except json.JSONDecodeError as exc:
        raise _Problem(f"invalid JSON: {exc.msg}", exc.lineno, exc.colno) from None
    except _Problem as problem:
        # json's hooks are not told positions: find the same problem again, with one.
        if problem.message.startswith("duplicate key"):
            raise _YamlReader(text).find(problem) from None
        raise _json_constant_problem(text, problem) from None
    except RecursionError:
        raise _YamlReader(text).find(_Problem(f"nested more than {MAX_DEPTH} levels deep")) from None
    except ValueError as exc:  # e.g. an integer longer than Python's int-from-string limit
        raise _Problem(f"invalid JSON: {exc}") from None
    bad = _json_value_problem(value)
    if bad is not None:
        loc, message = bad
        line, column = locate(text, loc)
        raise _Problem(f"{format_loc(loc) or 'document'}: {message}", line, column)
    return value


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Problem(f"duplicate key {key!r}")
        out[key] = value
    return out


_JSON_CONSTANT = re.compile(r"(?<=[\s:,\[])(NaN|-?Infinity)(?=[\s,\]}])")


def _json_constant(name: str) -> NoReturn:
    raise _Problem(f"{name} is not a JSON number; use a finite number")


def _json_constant_problem(text: str, problem: _Problem) -> _Problem:
    """Position the first bare ``NaN``/``Infinity`` (json's hook is not told where it was)."""
    match = _JSON_CONSTANT.search(text)
    if match is None or problem.line is not None:
        return problem
    return _Problem(problem.message, *_position_of_index(text, match.start()))


def _json_value_problem(value: Any) -> tuple[Loc, str] | None:
    """The first value JSON allowed but an intent does not (too deep, unsafe number), iteratively."""
    stack: list[tuple[Loc, Any]] = [((), value)]
    while stack:
        loc, item = stack.pop()
        if isinstance(item, dict | list) and len(loc) >= MAX_DEPTH:
            return loc, f"nested more than {MAX_DEPTH} levels deep"
        if isinstance(item, dict):
            stack.extend(((*loc, k), v) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend(((*loc, i), v) for i, v in enumerate(item))
        else:
            message = _number_problem(item)
            if message:
                return loc, message
    return None


def _number_problem(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and abs(value) > MAX_SAFE_INT:
        return f"integer is beyond ±2**53 (JSON's safe range); got {len(str(abs(value)))} digits"
    if isinstance(value, float) and not math.isfinite(value):
        return "number is not finite (too large, infinite or NaN)"
    return None


@dataclass
class _Frame:
    """A collection being built: its value, and for a mapping the key awaiting its value."""

    value: dict[str, Any] | list[Any]
    key: str | None = None
    key_lines: dict[str, int] = field(default_factory=dict)


class _YamlReader:
    """Builds plain JSON values from libyaml events, refusing what an intent must not contain."""

    def __init__(self, text: str) -> None:
        self._text = text

    def find(self, problem: _Problem) -> _Problem:
        """``problem`` with a position, if reading this text as YAML meets it too."""
        try:
            self.read()
        except _Problem as found:
            if found.message.startswith(problem.message) and found.line is not None:
                return found
        return problem

    def read(self) -> Any:
        loader = _Loader(self._text)
        try:
            return self._read(loader)
        except yaml.MarkedYAMLError as exc:
            raise self._yaml_problem(exc) from None
        except yaml.reader.ReaderError as exc:
            line, column = _position_of_index(self._text, exc.position)
            raise _Problem(f"invalid YAML: {exc.reason}", line, column) from None
        except yaml.YAMLError as exc:
            raise _Problem(f"invalid YAML: {exc}") from None
        finally:
            loader.dispose()

    def _read(self, loader: Any) -> Any:
        loader.get_event()  # StreamStart
        if loader.check_event(yaml.StreamEndEvent):
            raise _Problem("the document is empty", 1, 1)
        loader.get_event()  # DocumentStart
        value = self._node(loader)
        loader.get_event()  # DocumentEnd
        if not loader.check_event(yaml.StreamEndEvent):
            mark = loader.peek_event().start_mark
            raise _Problem(
                "a second YAML document starts here; submit one intent per file",
                mark.line + 1,
                mark.column + 1,
            )
        return value

    def _node(self, loader: Any) -> Any:
        stack: list[_Frame] = []
        resolved: dict[str, str] = {}  # plain scalar → tag; intents repeat the same few values
        while True:
            event = loader.get_event()
            cls = type(event)
            if cls is yaml.ScalarEvent:
                wants_key = bool(stack) and _wants_key(stack[-1])
                value: Any = self._scalar(loader, event, resolved, key=wants_key)
            elif cls is yaml.SequenceEndEvent or cls is yaml.MappingEndEvent:
                value = stack.pop().value
            elif cls is yaml.SequenceStartEvent or cls is yaml.MappingStartEvent:
                is_map = cls is yaml.MappingStartEvent
                mark = event.start_mark
                if event.tag not in (_MAP_TAGS if is_map else _SEQ_TAGS):
                    raise _at(
                        mark, f"YAML tag {_short(event.tag)} is not supported; use only {_PLAIN_VALUES}"
                    )
                if stack and _wants_key(stack[-1]):
                    raise _at(mark, "mapping keys must be strings, not lists or mappings")
                if len(stack) >= MAX_DEPTH:
                    raise _at(mark, f"nested more than {MAX_DEPTH} levels deep")
                stack.append(_Frame(value={} if is_map else []))
                continue
            elif cls is yaml.AliasEvent:
                raise _at(
                    event.start_mark,
                    f"YAML aliases (*{event.anchor}) are not allowed; write the value out in full",
                )
            else:  # pragma: no cover - libyaml emits no other events inside a document
                raise _at(event.start_mark, f"unexpected YAML event {cls.__name__}")
            if not stack:
                return value
            top = stack[-1]
            if isinstance(top.value, list):
                top.value.append(value)
            elif top.key is None:
                line = event.start_mark.line + 1
                if value in top.value:
                    raise _at(
                        event.start_mark, f"duplicate key {value!r} (first on line {top.key_lines[value]})"
                    )
                top.key, top.key_lines[value] = value, line
            else:
                top.value[top.key] = value
                top.key = None

    def _scalar(self, loader: Any, event: Any, resolved: dict[str, str], *, key: bool) -> Any:
        tag, text = event.tag, event.value
        if tag is None or tag == "!":
            if not event.implicit[0]:
                tag = _STR  # quoted: always a string
            else:
                tag = resolved.get(text)
                if tag is None:
                    tag = resolved[text] = loader.resolve(yaml.ScalarNode, text, event.implicit)
        if tag == _STR:
            return text
        mark = event.start_mark
        if key:
            if tag == f"{_TAG}merge":
                raise _at(mark, "merge keys (<<) are not supported; write the fields out")
            raise _at(mark, f"mapping key {text!r} is not read as a string by YAML; quote it")
        if tag not in _SCALAR_TAGS:
            raise _at(mark, f"YAML tag {_short(tag)} is not supported; use only {_PLAIN_VALUES}")
        if tag == f"{_TAG}timestamp":
            return text  # dates stay text: JSON has no date type
        if tag == f"{_TAG}int" and len(text) > 40:
            raise _at(mark, "integer is beyond ±2**53 (JSON's safe range)")
        try:
            value = loader.yaml_constructors[tag](loader, yaml.ScalarNode(tag, text))
        except (ValueError, KeyError, yaml.YAMLError):
            raise _at(mark, f"{text!r} is not a valid {tag.removeprefix(_TAG)}") from None
        problem = _number_problem(value)
        if problem:
            raise _at(mark, problem)
        return value

    def _yaml_problem(self, exc: yaml.MarkedYAMLError) -> _Problem:
        mark = exc.problem_mark or exc.context_mark
        message = f"invalid YAML: {exc.problem or exc.context}"
        if exc.problem and exc.context:
            start = exc.context_mark
            where = f" at {start.line + 1}:{start.column + 1}" if start is not None else ""
            message += f" ({exc.context}{where})"
        if mark is None:
            return _Problem(message)
        return _Problem(message, mark.line + 1, mark.column + 1)


def _short(tag: str | None) -> str:
    tag = tag or "!"
    return "!!" + tag.removeprefix(_TAG) if tag.startswith(_TAG) else tag


def _wants_key(frame: _Frame) -> bool:
    return isinstance(frame.value, dict) and frame.key is None


def _at(mark: Any, message: str) -> _Problem:
    return _Problem(message, mark.line + 1, mark.column + 1)


def _position_of_index(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "nothing (null)"
    return f"a {type(value).__name__}"


# --- field path → line:column -------------------------------------------------------------------

_LEADING_PATH = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*|\[\d+\])*)(?=[\s:(]|$)")
_PATH_PART = re.compile(r"\.?([A-Za-z_]\w*)|\[(\d+)\]")


def _leading_loc(message: str) -> Loc:
    """``spec.changes[1] changes …`` → ``('spec', 'changes', 1)``.

    Errors raised by a model-level validator carry no location, but intent.py's name their field first.
    """
    match = _LEADING_PATH.match(message)
    if not match:
        return ()
    return tuple(int(i) if i else name for name, i in _PATH_PART.findall(match.group(1)))


def locate(text: str, loc: Loc) -> tuple[int, int]:
    """1-based line and column of the field at ``loc``, or of its nearest ancestor present in ``text``.

    For a mapping entry this is where its key starts; for a list item, where
    the item starts. Works for JSON too (JSON is YAML). Falls back to 1:1.
    """
    best = (1, 1)
    try:
        for path, line, column in _positions(text, len(loc)):
            if path == loc[: len(path)]:
                best = (line, column)
                if len(path) == len(loc):
                    break
    except yaml.YAMLError:
        pass
    return best


@dataclass
class _Cursor:
    """Where the event stream is inside one collection."""

    path: Loc
    is_map: bool
    index: int = 0
    key: str = ""
    wants_key: bool = True

    def advance(self) -> None:
        """A node finished inside this collection: move on to the next key or item."""
        if self.is_map:
            self.wants_key = True
        else:
            self.index += 1


def _positions(text: str, depth: int) -> Iterator[tuple[Loc, int, int]]:
    """(path, line, column) of every node down to ``depth``, in document order, from the event stream."""
    loader = _Loader(text)
    try:
        stack: list[_Cursor] = []
        while True:
            event = loader.get_event()
            if event is None or isinstance(event, yaml.StreamEndEvent | yaml.DocumentEndEvent):
                return
            if isinstance(event, yaml.StreamStartEvent | yaml.DocumentStartEvent):
                continue
            if isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
                stack.pop()
                if stack:
                    stack[-1].advance()
                continue
            mark, top = event.start_mark, (stack[-1] if stack else None)
            where = (mark.line + 1, mark.column + 1)
            if top is not None and top.is_map and top.wants_key:
                if not isinstance(event, yaml.ScalarEvent):
                    return  # a complex key: nothing we accept has one, so nothing to locate
                top.key, top.wants_key = event.value, False
                if len(top.path) < depth:
                    yield (*top.path, top.key), *where
                continue
            if top is None:
                path: Loc = ()
                yield path, *where
            elif top.is_map:
                path = (*top.path, top.key)  # located at its key, above
            else:
                path = (*top.path, top.index)
                if len(path) <= depth:
                    yield path, *where
            if isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
                stack.append(_Cursor(path=path, is_map=isinstance(event, yaml.MappingStartEvent)))
            elif top is not None:
                top.advance()
    finally:
        loader.dispose()
