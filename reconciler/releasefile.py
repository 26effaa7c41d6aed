"""Minimal in-place edits of Release files: point a release at a commit ref.

A YAML round trip would drop comments and reorder keys in files people edit by
hand, so the edit replaces only the characters of the `ref:` (or `version:`)
value, found through the YAML node positions, and then proves by re-parsing
that the file means exactly what was intended and nothing else changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

from reconciler.errors import ReconcilerError
from reconciler.model import API_VERSION
from reconciler.repo import helmyaml


class ReleaseFileError(ReconcilerError):
    """A release file that cannot be edited safely without a human."""


@dataclass(frozen=True)
class Edit:
    """The new text and what the release declared before (`ref`, `version` or neither)."""

    text: str
    changed: bool
    previous_key: str | None
    previous_value: str | None


def new_release(name: str, project: str, ref: str) -> str:
    """The text of a new Release file declaring `project` at `ref`."""

    return (
        f"apiVersion: {API_VERSION}\n"
        "kind: Release\n"
        f"name: {name}\n"
        f"project: {project}\n"
        f"ref: {_scalar(ref, None)}\n"
    )


def set_ref(text: str, ref: str, path: str = "release file") -> Edit:
    """Declare `ref` in a Release file's text, replacing its `ref` or pinned `version`."""

    root, document = _parse(text, path)
    pairs = _top_level(root)
    previous: tuple[str | None, str | None]
    if "ref" in pairs:
        key, value = pairs["ref"]
        previous = ("ref", _text_of(value))
        if previous[1] == ref:
            return Edit(text, False, *previous)
        new_text = _replace(text, value, _scalar(ref, value.style))
    elif "version" in pairs:
        key, value = pairs["version"]
        previous = ("version", _text_of(value))
        new_text = _replace(text, value, _scalar(ref, value.style))
        new_text = _splice(new_text, key.start_mark.index, key.end_mark.index, "ref")
    else:
        previous = (None, None)
        new_text = _insert_after(text, pairs, ref)
    expected = {k: v for k, v in document.items() if k != "version"} | {"ref": ref}
    _verify(new_text, expected, path)
    return Edit(new_text, True, *previous)


def _parse(text: str, path: str) -> tuple[MappingNode, dict[str, Any]]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ReleaseFileError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(root, MappingNode) or not isinstance(document, dict):
        raise ReleaseFileError(f"{path}: expected a mapping at the top of the file")
    if root.flow_style:
        raise ReleaseFileError(f"{path}: written as a flow mapping {{...}}; edit it by hand")
    return root, document


def _top_level(root: MappingNode) -> dict[str, tuple[ScalarNode, ScalarNode]]:
    pairs: dict[str, tuple[ScalarNode, ScalarNode]] = {}
    for key, value in root.value:
        if isinstance(key, ScalarNode) and key.value in ("ref", "version", "project"):
            pairs[key.value] = (key, _one_line_scalar(key.value, value))
    return pairs


def _one_line_scalar(name: str, node: Node) -> ScalarNode:
    # Block scalars (| >) and nested values span lines; a one-span replacement
    # would leave their continuation lines behind.
    if not isinstance(node, ScalarNode) or node.style in ("|", ">"):
        raise ReleaseFileError(f"`{name}:` is not a one-line value; edit the file by hand")
    if node.start_mark.line != node.end_mark.line:
        raise ReleaseFileError(f"`{name}:` spans several lines; edit the file by hand")
    return node


def _text_of(node: ScalarNode) -> str | None:
    return str(node.value) if node.value != "" or node.style else None


def _scalar(value: str, style: str | None) -> str:
    quote = style if style in ("'", '"') else None
    # A SHA made only of digits (or digits around one `e`) would load as a number; quote
    # it to stay a string for helm's reading (what the loader uses) and PyYAML's alike.
    plain_is_text = helmyaml.resolve(value)[0] == helmyaml.TAG_STR
    if quote is None and not (plain_is_text and isinstance(yaml.safe_load(value), str)):
        quote = '"'
    return f"{quote}{value}{quote}" if quote else value


def _replace(text: str, node: ScalarNode, replacement: str) -> str:
    start, end = node.start_mark.index, node.end_mark.index
    if start == end and text[start - 1 : start] == ":":
        replacement = " " + replacement  # `ref:` with an empty value
    return _splice(text, start, end, replacement)


def _splice(text: str, start: int, end: int, replacement: str) -> str:
    return text[:start] + replacement + text[end:]


def _insert_after(text: str, pairs: dict[str, tuple[ScalarNode, ScalarNode]], ref: str) -> str:
    if "project" not in pairs:
        body = text if text.endswith("\n") or not text else text + "\n"
        return body + f"ref: {_scalar(ref, None)}\n"
    key, value = pairs["project"]
    line_end = text.find("\n", value.end_mark.index)
    if line_end < 0:
        text, line_end = text + "\n", len(text)
    line = " " * key.start_mark.column + f"ref: {_scalar(ref, None)}\n"
    return text[: line_end + 1] + line + text[line_end + 1 :]


def _verify(new_text: str, expected: dict[str, Any], path: str) -> None:
    try:
        actual = yaml.safe_load(new_text)
    except yaml.YAMLError:
        actual = None
    if actual != expected:
        raise ReleaseFileError(
            f"{path}: cannot change the ref in place without changing something else; edit it by hand"
        )
