"""Safe YAML loading for environment files, with a line for every problem.

One file holds one YAML document whose top is a mapping, and only JSON-like data:
strings, numbers, booleans, null, mappings with string keys, lists. Everything else
(duplicate keys, custom tags, several documents, alias bombs) is a problem with its line.
This is the authoritative path; `fastyaml` only skips it for simple files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_FILE_BYTES = 1024 * 1024
# Counted after expanding aliases: a "billion laughs" document is a few hundred bytes
# that expand to 10^9 nodes; it must fail here, long before it reaches memory.
MAX_NODES = 100_000
MAX_DEPTH = 64

TAG_STR = "tag:yaml.org,2002:str"
TAG_MERGE = "tag:yaml.org,2002:merge"
TAG_TIMESTAMP = "tag:yaml.org,2002:timestamp"
TAG_MAP = "tag:yaml.org,2002:map"
TAG_SEQ = "tag:yaml.org,2002:seq"
_CONSTRUCTED_TAGS = (
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
)
_CONSTRUCTOR = yaml.SafeLoader("")


class UnsupportedScalar(Exception):
    """A scalar whose tag has no JSON counterpart."""


def scalar_value(tag: str, value: str) -> Any:
    """The Python value of a resolved scalar, as both YAML paths build it."""

    if tag == TAG_STR:
        return value
    if tag in _CONSTRUCTED_TAGS:
        return _CONSTRUCTOR.yaml_constructors[tag](_CONSTRUCTOR, ScalarNode(tag, value))
    if tag == TAG_TIMESTAMP:
        # Helm reads an unquoted date as a string; so do we, instead of a datetime.
        return value
    raise UnsupportedScalar(tag)


@dataclass(frozen=True)
class YamlProblem:
    line: int | None
    message: str


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
    """libyaml with the tag resolution of plain scalars cached.

    libyaml calls back into Python for every node; resolving a plain scalar runs regular
    expressions, and environment files repeat the same few keys and values thousands of times.
    """

    _resolved: dict[str, str] = {}

    def resolve(self, kind: type[Node], value: Any, implicit: tuple[bool, bool]) -> Any:
        if kind is ScalarNode and implicit[0]:
            tag = self._resolved.get(value)
            if tag is None:
                tag = super().resolve(kind, value, implicit)
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
        root = compose(text)
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
    builder = _Builder()
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
    return YamlProblem(line, f"invalid YAML: {detail}; check the indentation and quoting")


class _Builder:
    """Turns a node tree into plain data, collecting problems instead of stopping at one."""

    def __init__(self) -> None:
        self.problems: list[YamlProblem] = []
        self._budget = MAX_NODES
        self._active: set[int] = set()

    def build(self, node: Node, depth: int) -> Any:
        self._budget -= 1
        if node.tag == TAG_STR and self._budget >= 0:
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
        try:
            if isinstance(node, MappingNode):
                return self._mapping(node, depth)
            return [self.build(item, depth + 1) for item in node.value]
        finally:
            self._active.discard(id(node))

    def _scalar(self, node: ScalarNode) -> Any:
        try:
            return scalar_value(node.tag, node.value)
        except UnsupportedScalar:
            self.problems.append(_unsupported_tag(node))
        except (ValueError, TypeError) as error:
            self.problems.append(YamlProblem(_line(node), f"invalid value: {error}"))
        return None

    def _mapping(self, node: MappingNode, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == TAG_STR and type(key_node) is ScalarNode:
                key: str | None = key_node.value  # nearly every key: skip the general path
            elif key_node.tag == TAG_MERGE and type(key_node) is ScalarNode:
                merged = self._merge_sources(value_node, depth) | merged
                continue
            else:
                key = self._key(key_node)
            value = self.build(value_node, depth + 1)
            if key is None:
                continue
            if key in result:
                self.problems.append(_duplicate(node, key_node, key))
                continue
            result[key] = value
        return merged | result if merged else result

    def _merge_sources(self, node: Node, depth: int) -> dict[str, Any]:
        # `<<: *a` or `<<: [*a, *b]`; earlier sources win, explicit keys win over all.
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
        if not isinstance(node, ScalarNode):
            self.problems.append(YamlProblem(_line(node), "a mapping key must be a plain string"))
            return None
        reported = len(self.problems)
        value = self._scalar(node)
        if isinstance(value, str) or len(self.problems) > reported:
            return value if isinstance(value, str) else None
        shown = _KEY_SHOWN.get(type(value), lambda v: repr(v))(value)
        self.problems.append(
            YamlProblem(
                _line(node),
                f'the key {node.value} is read as {shown}, not a string; quote it ("{node.value}")',
            )
        )
        return None


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


_KEY_SHOWN: dict[type, Callable[[Any], str]] = {
    bool: lambda v: f"the boolean {str(v).lower()}",
    int: lambda v: f"the number {v}",
    float: lambda v: f"the number {v}",
    type(None): lambda v: "null",
}
