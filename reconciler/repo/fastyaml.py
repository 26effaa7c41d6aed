"""A fast path for the simple YAML that environment files almost always are.

Block mappings and lists of plain or simply quoted scalars, the shape `reconciler promote`
writes, parse here several times faster than through libyaml's node tree. Anything
else (flow collections, anchors, tags, block scalars, odd indentation, duplicate keys,
tabs, non-ASCII) makes `load` return None and the caller uses `yamldoc.parse`, which
decides and reports. So this module never reports a problem: it only skips work, and
a differential test holds it to the same result as `yamldoc.parse`.
"""

from __future__ import annotations

import math
import re
from typing import Any

from reconciler.repo import helmyaml

# Only files this small take the fast path, so the node limits of yamldoc hold here too.
MAX_LINES = 2_000
MAX_INDENT_LEVELS = 32

_CHARS = r"[A-Za-z0-9_./~+=@$%^()\-]"
_KEY = r"[A-Za-z0-9_][A-Za-z0-9_./\-]{0,200}+"
_BLOCK_CHARS = r"[A-Za-z0-9_./~+=@$%^()\-,]"  # ',' only ends flow collections
_PLAIN = (
    rf"(?:[A-Za-z0-9_./~+]|-(?=[A-Za-z0-9_.])){_BLOCK_CHARS}*+"
    rf"(?:{_BLOCK_CHARS}++|:(?=[^ \n])| +(?=[^ #\n]))*+"
)
# Inside [...] and {...}: no ':' ',' or brackets in plain scalars, no ',' in quoted ones,
# so a flow collection on one line splits on ',' without a parser.
_FLOW_ITEM = (
    rf"(?:[A-Za-z0-9_./~+]{_CHARS}*+(?: ++{_CHARS}++)*+"
    r"|\"[ !#-+\--\[\]-~]*+\"|'[ -&(-+\--~]*+')"
)
_FLOW = (
    rf"\[ *+(?:{_FLOW_ITEM}(?: *+, *+{_FLOW_ITEM})*+)? *+\]"
    rf"|\{{ *+(?:{_KEY}: ++{_FLOW_ITEM}(?: *+, *+{_KEY}: ++{_FLOW_ITEM})*+)? *+\}}"
)
# One pass over the whole text; each line is blank or a comment; or an optional "- ",
# an optional "key:" and an optional value; or anything else (the last group), which
# declines the file. Possessive quantifiers: no part of a line ever needs to give
# characters back, and not trying to makes this regex, the hot spot of validate, faster.
_LINE = re.compile(
    r"( *+(?:#[^\n]*)?\n)"
    rf"|( *+)(- ++)?(?:({_KEY}):(?: ++|(?=\n)))?"
    rf"(?:({_PLAIN})|(\"[ !#-\[\]-~]*+\")|('[ -&(-~]*+')|({_FLOW}))?"
    r"(?: *+(?<= )#[^\n]*)? *+\n"
    r"|([^\n]*\n)"
)
_NO_VALUE = object()
_DECLINE = object()
_plain_cache: dict[str, Any] = {}
_string_keys: set[str] = set()


def _plain(text: str) -> Any:
    """The value of a plain scalar as helm reads it, exactly as yamldoc resolves it."""

    cached = _plain_cache.get(text, _NO_VALUE)
    if cached is not _NO_VALUE:
        return cached
    tag, value = helmyaml.resolve(text)
    if tag == helmyaml.TAG_MERGE or (isinstance(value, float) and not math.isfinite(value)):
        value = _DECLINE  # yamldoc merges, or reports the number helm refuses
    if len(_plain_cache) > 50_000:
        _plain_cache.clear()
    _plain_cache[text] = value
    return value


def load(text: str) -> dict[str, Any] | None:
    """The document if the file is simple enough to be sure of it, else None.

    One function on purpose: this loop runs for every line of every file, and splitting it
    into methods costs a sixth of validate's time.
    """

    if "\t" in text or "\r" in text or text.count("\n") > MAX_LINES:
        return None
    if not text.endswith("\n"):
        text += "\n"
    root: dict[str, Any] | None = None
    # (indent, container, is_mapping), innermost last
    stack: list[tuple[int, Any, bool]] = []
    # a `key:` line without a value: its child lines decide what the value is
    pending: tuple[dict[str, Any], str, int] | None = None
    cache_get = _plain_cache.get
    for blank, indent_text, dash, key, plain, double, single, flow, other in _LINE.findall(text):
        if blank:
            continue
        if other or not (dash or key):
            return None
        indent = len(indent_text)
        if plain:
            value = cache_get(plain, _NO_VALUE)
            if value is _NO_VALUE:
                value = _plain(plain)
            if value is _DECLINE:  # also when cached: the second .inf must decline too
                return None
        elif double or single:
            value = (double or single)[1:-1]  # quotes captured, so "" is told from nothing
        elif flow:
            value = _flow(flow)
            if value is _DECLINE:
                return None
        else:
            value = _NO_VALUE
        if pending is not None:
            parent, parent_key, parent_indent = pending
            pending = None
            # A list may sit at its parent key's indent; a mapping must be deeper.
            if indent > parent_indent or (dash and indent == parent_indent):
                child: Any = [] if dash else {}
                parent[parent_key] = child
                stack.append((indent, child, not dash))
                if len(stack) > MAX_INDENT_LEVELS:
                    return None
        elif root is None:
            if dash or indent:
                return None
            root = {}
            stack.append((0, root, True))
        if dash:
            while stack and stack[-1][0] > indent:
                stack.pop()
            if not stack or stack[-1][0] != indent or stack[-1][2]:
                return None
            if not key:
                if value is _NO_VALUE:
                    return None
                stack[-1][1].append(value)
                continue
            # "- key: value" opens a mapping in the list, its keys at the column of `key`
            indent += len(dash)
            mapping: dict[str, Any] = {}
            stack[-1][1].append(mapping)
            stack.append((indent, mapping, True))
        # A list at its parent key's indent ends at the next key of that indent.
        while stack and (stack[-1][0] > indent or (stack[-1][0] == indent and not stack[-1][2])):
            stack.pop()
        if not stack or stack[-1][0] != indent or len(stack) > MAX_INDENT_LEVELS:
            return None
        mapping = stack[-1][1]
        if key in mapping or (key not in _string_keys and not _is_string_key(key)):
            return None
        if value is _NO_VALUE:
            mapping[key] = None
            pending = (mapping, key, indent)
        else:
            mapping[key] = value
    return root


def _flow(text: str) -> Any:
    """A one-line flow collection the regex accepted: scalars only, no ',' inside them."""

    inner = text[1:-1].strip()
    items = [item.strip() for item in inner.split(",")] if inner else []
    if text[0] == "[":
        values = [_scalar(item) for item in items]
        return _DECLINE if _DECLINE in values else values
    mapping: dict[str, Any] = {}
    for item in items:
        key, _, raw = item.partition(":")
        value = _scalar(raw.strip())
        if key in mapping or value is _DECLINE or not _is_string_key(key):
            return _DECLINE
        mapping[key] = value
    return mapping


def _scalar(item: str) -> Any:
    if item[0] in "\"'":
        return item[1:-1]
    return _plain(item)


def _is_string_key(key: str) -> bool:
    if key in _string_keys:
        return True
    if isinstance(_plain(key), str):
        if len(_string_keys) > 50_000:
            _string_keys.clear()
        _string_keys.add(key)
        return True
    return False
