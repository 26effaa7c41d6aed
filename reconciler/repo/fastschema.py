"""Compiles a JSON Schema into one fast yes/no predicate.

jsonschema takes about 60 us per release file and 0.14 s to import; 25,000 files
would blow the validate budget on their own. This compiler supports the keywords our
schemas use, refuses any other (so a new keyword cannot be silently ignored), and is
only asked "valid?": when it says no, `schemas` runs jsonschema on that one document
for the exact errors. A differential test holds it to jsonschema's answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Predicate = Callable[[Any], bool]

_ANNOTATIONS = frozenset(
    {"$schema", "$id", "$comment", "title", "description", "default", "examples", "deprecated"}
)


class UnsupportedSchema(Exception):
    """The schema uses a keyword this compiler does not implement."""


def compile_schema(schema: Mapping[str, Any]) -> Predicate:
    return _Compiler(schema).compile(schema)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


_TYPES: dict[str, Predicate] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": _is_number,
    "integer": _is_integer,
}


def _same(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1, 1.0 is 1."""

    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b) and (_is_number(a) == _is_number(b))


def _unique(items: list[Any]) -> bool:
    keys = set()
    for item in items:
        key = _scalar_key(item)
        if key is None:  # a list or mapping: compare pairwise, as JSON equality says
            return all(not _same(items[i], items[j]) for i in range(len(items)) for j in range(i))
        keys.add(key)
    return len(keys) == len(items)


def _scalar_key(item: Any) -> tuple[str, Any] | None:
    """A hashable key equal for JSON-equal scalars (1 and 1.0 alike, true unlike 1)."""

    if isinstance(item, bool):
        return ("bool", item)
    if isinstance(item, int | float):
        return ("number", item)
    if isinstance(item, str):
        return ("string", item)
    if item is None:
        return ("null", None)
    return None


class _Compiler:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.refs: dict[str, Predicate] = {}

    def compile(self, schema: Mapping[str, Any] | bool) -> Predicate:
        if schema is True:
            return lambda v: True
        if schema is False:
            return lambda v: False
        checks: list[Predicate] = []
        object_checks: list[Predicate] = []
        for keyword, argument in schema.items():
            if keyword in _ANNOTATIONS or keyword == "$defs":
                continue
            if keyword in ("properties", "additionalProperties", "patternProperties"):
                continue  # compiled together below: they depend on each other
            method = getattr(self, "_" + keyword.lstrip("$"), None)
            if method is None:
                raise UnsupportedSchema(f"keyword {keyword!r} is not supported")
            check: Predicate = method(argument, schema)
            (object_checks if keyword in ("required", "propertyNames") else checks).append(check)
        if any(k in schema for k in ("properties", "additionalProperties")):
            object_checks.append(self._object_members(schema))
        if object_checks:
            checks.append(_on_dicts(object_checks))
        return _all(checks)

    def _ref(self, ref: str, _: Mapping[str, Any]) -> Predicate:
        if not ref.startswith("#/"):
            raise UnsupportedSchema(f"only local $ref are supported, not {ref!r}")
        if ref not in self.refs:
            self.refs[ref] = lambda v: True  # placeholder breaks recursion
            target: Any = self.root
            for part in ref[2:].split("/"):
                target = target[part]
            compiled = self.compile(target)
            self.refs[ref] = compiled
        return lambda v: self.refs[ref](v)

    def _type(self, name: str | list[str], _: Mapping[str, Any]) -> Predicate:
        if isinstance(name, str):
            return _TYPES[name]
        tests = [_TYPES[n] for n in name]
        return lambda v: any(t(v) for t in tests)

    def _const(self, expected: Any, _: Mapping[str, Any]) -> Predicate:
        if isinstance(expected, str):
            return lambda v: v == expected and isinstance(v, str)
        return lambda v: _same(v, expected)

    def _enum(self, options: list[Any], _: Mapping[str, Any]) -> Predicate:
        return lambda v: any(_same(v, o) for o in options)

    def _pattern(self, pattern: str, _: Mapping[str, Any]) -> Predicate:
        search = re.compile(pattern).search
        return lambda v: not isinstance(v, str) or search(v) is not None

    def _maxLength(self, limit: int, _: Mapping[str, Any]) -> Predicate:
        return lambda v: not isinstance(v, str) or len(v) <= limit

    def _minLength(self, limit: int, _: Mapping[str, Any]) -> Predicate:
        return lambda v: not isinstance(v, str) or len(v) >= limit

    def _minimum(self, limit: float, _: Mapping[str, Any]) -> Predicate:
        return lambda v: not _is_number(v) or v >= limit

    def _maximum(self, limit: float, _: Mapping[str, Any]) -> Predicate:
        return lambda v: not _is_number(v) or v <= limit

    def _required(self, names: list[str], _: Mapping[str, Any]) -> Predicate:
        wanted = frozenset(names)
        return lambda v: wanted <= v.keys()

    def _propertyNames(self, schema: Any, _: Mapping[str, Any]) -> Predicate:
        check = self.compile(schema)
        return lambda v: all(check(k) for k in v)

    def _items(self, schema: Any, _: Mapping[str, Any]) -> Predicate:
        check = self.compile(schema)
        return lambda v: not isinstance(v, list) or all(check(i) for i in v)

    def _uniqueItems(self, on: bool, _: Mapping[str, Any]) -> Predicate:
        return (lambda v: not isinstance(v, list) or _unique(v)) if on else (lambda v: True)

    def _oneOf(self, schemas: list[Any], _: Mapping[str, Any]) -> Predicate:
        checks = [self.compile(s) for s in schemas]

        def exactly_one(value: Any) -> bool:
            matched = 0
            for check in checks:
                matched += check(value)
            return matched == 1

        return exactly_one

    def _anyOf(self, schemas: list[Any], _: Mapping[str, Any]) -> Predicate:
        checks = [self.compile(s) for s in schemas]
        return lambda v: any(c(v) for c in checks)

    def _allOf(self, schemas: list[Any], _: Mapping[str, Any]) -> Predicate:
        return _all([self.compile(s) for s in schemas])

    def _not(self, schema: Any, _: Mapping[str, Any]) -> Predicate:
        check = self.compile(schema)
        return lambda v: not check(v)

    def _object_members(self, schema: Mapping[str, Any]) -> Predicate:
        if "patternProperties" in schema:
            raise UnsupportedSchema("patternProperties is not supported")
        known = {name: self.compile(s) for name, s in schema.get("properties", {}).items()}
        extra = schema.get("additionalProperties", True)
        other = self.compile(extra)
        everything_allowed = extra is True

        def members(value: dict[str, Any]) -> bool:
            for name, item in value.items():
                check = known.get(name)
                if check is None:
                    if everything_allowed:
                        continue
                    check = other
                if not check(item):
                    return False
            return True

        return members


def _on_dicts(checks: list[Predicate]) -> Predicate:
    combined = _all(checks)
    return lambda v: not isinstance(v, dict) or combined(v)


def _all(checks: list[Predicate]) -> Predicate:
    if not checks:
        return lambda v: True
    if len(checks) == 1:
        return checks[0]
    checks = list(checks)

    def every(value: Any) -> bool:
        # a plain loop: a generator inside all() costs twice as much on this hot path
        for check in checks:  # noqa: SIM110
            if not check(value):
                return False
        return True

    return every
