"""Safe YAML loading for environment files, with a line for every problem.

One file holds one YAML document whose top is a mapping, and only JSON-like data:
strings, numbers, booleans, null, mappings with string keys, lists. Everything else
(duplicate keys, custom tags, several documents, alias bombs) is a problem with its line.
This is the authoritative path; `fastyaml` only skips it for simple files.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from reconciler.repo import helmyaml

MAX_FILE_BYTES = 1024 * 1024
# Counted after expanding aliases: a "billion laughs" document is a few hundred bytes
# that expand to 10^9 nodes; it must fail here, long before it reaches memory.
MAX_NODES = 100_000
MAX_DEPTH = 64

TAG_STR = helmyaml.TAG_STR
TAG_MERGE = helmyaml.TAG_MERGE
TAG_TIMESTAMP = "tag:yaml.org,2002:timestamp"
TAG_MAP = "tag:yaml.org,2002:map"
TAG_SEQ = "tag:yaml.org,2002:seq"
_RESOLVED_TAGS = (helmyaml.TAG_NULL, helmyaml.TAG_BOOL, helmyaml.TAG_INT, helmyaml.TAG_FLOAT)


class UnsupportedScalar(Exception):
    """A scalar whose tag has no JSON counterpart."""


def scalar_value(tag: str, value: str) -> Any:
    """The value of a scalar as helm reads it (`helmyaml`), for both YAML paths.

    Raises UnsupportedScalar for tags helm would not read as plain data, ValueError for
    a value its tag cannot take (`!!int abc`, `!!binary` that is not UTF-8 base64).
    """

    if tag == TAG_STR:
        return value
    if tag in _RESOLVED_TAGS:
        return helmyaml.resolve_tagged(tag, value)
    if tag == TAG_TIMESTAMP:
        # go-yaml hands an unquoted date to helm as its text, not as a time.
        return value
    if tag == helmyaml.TAG_BINARY:
        try:
            return base64.b64decode("".join(value.split()), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise ValueError("!!binary holds no base64 of UTF-8 text") from None
    raise UnsupportedScalar(tag)


@dataclass(frozen=True)
class YamlProblem:
    """`hidden` is the message without any text of the document, for Secret sources."""

    line: int | None
    message: str
    hidden: str = ""

    @property
    def safe(self) -> str:
        return self.hidden or self.message


class _Abort(Exception):
    """Stops building a document that cannot be built at all (too big, recursive)."""

    def __init__(self, problem: YamlProblem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def decode(data: bytes) -> tuple[str | None, YamlProblem | None]:
    """The file's text, or why it is not UTF-8 (with the line of the first bad byte)."""

    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        bad = data[error.start : error.start + 1].hex()
        return None, YamlProblem(
            line, f"the file is not UTF-8 (byte 0x{bad} cannot be decoded); save it as UTF-8"
        )


# PyYAML wheels ship libyaml; a build without it still works, only slower.
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[valid-type,misc]
    """libyaml's parser with helm's resolution of plain scalars (`helmyaml`), cached.

    libyaml calls back into Python for every node; resolving a plain scalar runs regular
    expressions, and environment files repeat the same few keys and values thousands of times.
    """

    _resolved: dict[str, str] = {}

    def resolve(self, kind: type[Node], value: Any, implicit: tuple[bool, bool]) -> Any:
        if kind is ScalarNode and implicit[0]:
            tag = self._resolved.get(value)
            if tag is None:
                tag = helmyaml.resolve(value)[0]
                if len(self._resolved) > 50_000:
                    self._resolved.clear()
                self._resolved[value] = tag
            return tag
        return super().resolve(kind, value, implicit)

    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        pass  # no path resolvers are registered; skip the bookkeeping

    def ascend_resolver(self) -> None:
        pass


def compose(text: str) -> Node | None:
    """The node tree of a single-document stream (C parser); raises yaml.YAMLError."""

    return _compose(text)[0]


# helm's go-yaml reads the escape \' in double quotes as ', which libyaml refuses: each one
# is written as \x27 (the same character) and the text parsed again, a few times at most.
MAX_QUOTE_ESCAPES = 20


def _compose(text: str) -> tuple[Node | None, str]:
    """The node tree and the text it was composed from (with \' rewritten)."""

    for _ in range(MAX_QUOTE_ESCAPES):
        try:
            return _compose_once(text), text
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            at = mark.index if mark is not None else -1
            if (
                getattr(error, "problem", "") != "found unknown escape character"
                or text[at : at + 2] != "\\'"
            ):
                raise
            text = text[:at] + "\\x27" + text[at + 2 :]
    return _compose_once(text), text


def _compose_once(text: str) -> Node | None:
    loader = _Loader(text)
    try:
        node: Node | None = loader.get_single_node()
    finally:
        loader.dispose()
    return node


def parse(data: bytes) -> tuple[dict[str, Any] | None, list[YamlProblem]]:
    """The document of one file as plain data, or every problem found in it."""

    text, problem = decode(data)
    if text is None:
        return None, [problem] if problem else []
    try:
        root, text = _compose(text)
    except yaml.YAMLError as error:
        return None, [_syntax_problem(error)]
    if root is None:
        return None, [YamlProblem(1, "the file is empty; it needs at least apiVersion, kind, name")]
    if not isinstance(root, MappingNode):
        found = "a list" if isinstance(root, SequenceNode) else "a single value"
        return None, [
            YamlProblem(
                _line(root), f"the top of the file must be a mapping (key: value), not {found}"
            )
        ]
    return _build_mapping(root, text)


def parse_values(text: str) -> tuple[dict[str, Any] | None, list[YamlProblem]]:
    """A values document (an in-cluster ConfigMap or Secret key) as helm reads it:
    nothing or null is `{}`; else a mapping, or every problem found in it."""

    try:
        root, text = _compose(text)
    except yaml.YAMLError as error:
        return None, [_syntax_problem(error)]
    if root is None or (isinstance(root, ScalarNode) and root.tag == helmyaml.TAG_NULL):
        return {}, []
    if not isinstance(root, MappingNode):
        found = "a list" if isinstance(root, SequenceNode) else "a single value"
        return None, [
            YamlProblem(_line(root), f"the values must be a mapping (key: value), not {found}")
        ]
    return _build_mapping(root, text)


def _build_mapping(root: MappingNode, text: str) -> tuple[dict[str, Any] | None, list[YamlProblem]]:
    """The document of a mapping node, or every problem found in it."""

    builder = _Builder(text)
    try:
        document = builder.build(root, 0)
    except _Abort as abort:
        return None, [abort.problem]
    if builder.problems:
        return None, builder.problems
    assert isinstance(document, dict)
    return document, []


def locate(text: str, path: Sequence[str | int]) -> int | None:
    """The line where the field at `path` is written, or of its nearest written parent."""

    try:
        node = compose(text)
    except yaml.YAMLError:
        return None
    return line_in(node, path)


def line_in(node: Node | None, path: Sequence[str | int]) -> int | None:
    """Like `locate`, in a tree composed once for all the problems of a file."""

    if node is None:
        return None
    line = _line(node)
    for step in path:
        child = _child(node, step)
        if child is None:
            break
        line, node = child
    return line


def _child(node: Node, step: str | int) -> tuple[int, Node] | None:
    if isinstance(node, MappingNode) and isinstance(step, str):
        found = None
        for key, value in node.value:
            if isinstance(key, ScalarNode) and key.value == step:
                found = (_line(key), value)
        return found
    if isinstance(node, SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
        item: Node = node.value[step]
        return _line(item), item
    return None


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _syntax_problem(error: yaml.YAMLError) -> YamlProblem:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    line = mark.line + 1 if mark is not None else None
    context = str(getattr(error, "context", "") or "")
    problem = str(getattr(error, "problem", "") or error)
    if "expected a single document" in context:
        return YamlProblem(
            line, "the file holds several YAML documents ('---'); keep one document per file"
        )
    detail = f"{context}, {problem}" if context else problem
    return YamlProblem(
        line,
        f"invalid YAML: {detail}; check the indentation and quoting",
        "invalid YAML; check the indentation and quoting",
    )


_SLASH_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\/")


class _Builder:
    """Turns a node tree into plain data, collecting problems instead of stopping at one."""

    def __init__(self, text: str = "") -> None:
        # libyaml reads what helm's go-yaml v2 refuses: the escape \/, and a `?` inside
        # a plain scalar in [ ] or { }. Only a text holding one needs its scalars looked at.
        self._text = text if "\\/" in text or "?" in text else ""
        self._flow = 0  # how many flow collections ([ ] { }) the node being built is in
        self.problems: list[YamlProblem] = []
        self._budget = MAX_NODES
        self._active: set[int] = set()

    def build(self, node: Node, depth: int) -> Any:
        self._budget -= 1
        if node.tag == TAG_STR and self._budget >= 0 and not self._text:
            return node.value  # most nodes: the one case worth a shortcut
        if self._budget < 0:
            raise _Abort(
                YamlProblem(
                    _line(node),
                    f"the document expands to more than {MAX_NODES:,} values through"
                    " anchors and aliases (an alias bomb?); write the values out instead",
                )
            )
        if depth > MAX_DEPTH:
            raise _Abort(YamlProblem(_line(node), f"nested deeper than {MAX_DEPTH} levels"))
        if isinstance(node, ScalarNode):
            return self._scalar(node)
        if id(node) in self._active:
            raise _Abort(
                YamlProblem(_line(node), "an alias refers to its own parent (a recursive alias)")
            )
        if node.tag not in (TAG_MAP, TAG_SEQ):
            self.problems.append(_unsupported_tag(node))
            return None
        self._active.add(id(node))
        flow = int(bool(getattr(node, "flow_style", False)))
        self._flow += flow
        try:
            if isinstance(node, MappingNode):
                return self._mapping(node, depth)
            return [self.build(item, depth + 1) for item in node.value]
        finally:
            self._flow -= flow
            self._active.discard(id(node))

    def _scalar(self, node: ScalarNode, key: bool = False) -> Any:
        if self._text and self._flow and not node.style and "?" in node.value:
            self.problems.append(
                YamlProblem(
                    _line(node),
                    "helm's YAML reader ends a plain value at ? inside [ ] or { }; quote the value",
                )
            )
            return None
        if self._text and node.style == '"' and _SLASH_ESCAPE.search(self._raw(node)):
            self.problems.append(
                YamlProblem(
                    _line(node),
                    "helm's YAML reader has no escape \\/ in double quotes; write / instead",
                )
            )
            return None
        try:
            value = scalar_value(node.tag, node.value)
        except UnsupportedScalar:
            self.problems.append(_unsupported_tag(node))
            return None
        except (ValueError, TypeError) as error:
            self.problems.append(
                YamlProblem(_line(node), f"invalid value: {error}", "a value its tag cannot take")
            )
            return None
        if not key and isinstance(value, float) and not math.isfinite(value):
            self.problems.append(
                YamlProblem(
                    _line(node),
                    f"{node.value} is not a number helm accepts (its values pass through JSON,"
                    f' which has no NaN or infinity); quote it ("{node.value}") for a string',
                    "NaN or an infinity, which helm does not accept (quote it for a string)",
                )
            )
            return None
        return value

    def _raw(self, node: Node) -> str:
        return self._text[node.start_mark.index : node.end_mark.index]

    def _mapping(self, node: MappingNode, depth: int) -> dict[str, Any]:
        # In order, as go-yaml v2 builds it for helm: a merge (<<) sets its keys over
        # those before it, a later key over the merge.
        result: dict[str, Any] = {}
        written: set[str] = set()
        for key_node, value_node in node.value:
            if key_node.tag == TAG_STR and type(key_node) is ScalarNode and not self._text:
                key: str | None = key_node.value  # nearly every key: skip the general path
            elif key_node.tag == TAG_MERGE and type(key_node) is ScalarNode:
                result.update(self._merge_sources(value_node, depth))
                continue
            else:
                key = self._key(key_node)
            value = self.build(value_node, depth + 1)
            if key is None:
                continue
            if key in written:
                self.problems.append(_duplicate(node, key_node, key))
                continue
            written.add(key)
            result[key] = value
        return result

    def _merge_sources(self, node: Node, depth: int) -> dict[str, Any]:
        # `<<: *a` or `<<: [*a, *b]`; earlier sources win.
        sources: Sequence[Node] = node.value if isinstance(node, SequenceNode) else [node]
        merged: dict[str, Any] = {}
        for source in reversed(sources):
            if not isinstance(source, MappingNode):
                self.problems.append(
                    YamlProblem(_line(source), "a merge key (<<) takes a mapping or a list of them")
                )
                continue
            built = self.build(source, depth + 1)
            if isinstance(built, dict):  # None when the source itself is a problem
                merged.update(built)
        return merged

    def _key(self, node: Node) -> str | None:
        """The key as helm makes it a string; a problem when helm refuses or changes it."""

        if not isinstance(node, ScalarNode):
            self.problems.append(YamlProblem(_line(node), "a mapping key must be a plain string"))
            return None
        reported = len(self.problems)
        value = self._scalar(node, key=True)
        if len(self.problems) > reported:
            return None
        try:
            key = helmyaml.helm_key(node.tag, value)
        except helmyaml.KeyProblem as error:
            self.problems.append(
                YamlProblem(
                    _line(node),
                    f'the key {node.value}: {error}; quote it ("{node.value}") to keep it as written',
                )
            )
            return None
        if key != node.value:
            self.problems.append(
                YamlProblem(
                    _line(node),
                    f'the key {node.value} is read by helm as "{key}"; quote it ("{node.value}")'
                    " to keep it as written",
                )
            )
            return None
        return key


def _duplicate(mapping: MappingNode, key_node: Node, key: str) -> YamlProblem:
    first = next(k for k, _ in mapping.value if isinstance(k, ScalarNode) and k.value == key)
    return YamlProblem(
        _line(key_node),
        f'duplicate key "{key}" (first at line {_line(first)}); YAML would silently keep only'
        " the last one, so remove one of them",
    )


def _unsupported_tag(node: Node) -> YamlProblem:
    return YamlProblem(
        _line(node),
        f"the YAML tag {node.tag} is not supported here; write plain data"
        " (quote a value to make it a string)",
    )
