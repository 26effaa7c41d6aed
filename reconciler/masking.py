"""Hiding Secret-sourced values in every text an operator reads.

Helm and the API server repeat values in their errors, and not always as they
were given: `fail`/`required` print them raw, `%q` and the API server's
`Invalid value: "..."` print them Go-quoted, `toJson` JSON-escaped (with `<>&`
as `\\u003c`...), `toYaml` single-quoted, `b64enc` in base64, a multi-line value
one line at a time, a list one item at a time, and some of these twice over
(JSON inside a quoted string). `SecretMask` hides every scalar of the
Secret-sourced values in every one of these forms with one regular expression.

Short values (say a 4-character token) are masked only where they stand as a
whole word, so that `r-demo` stays readable when a Secret holds `demo`; longer
values are masked wherever they appear.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import cached_property

from reconciler.repo import helmyaml

MASK = "***"
MIN_LENGTH = 4  # shorter strings would mask ordinary words (and are no secret worth the name)
WHOLE_WORD_BELOW = 8  # values shorter than this are masked only as whole words
# A short value counts as a whole word unless it touches one of these: `r-demo`,
# `templates/demo.yaml` and `demonstrate` keep `demo`; a full stop ending a sentence does not.
_WORD = r"[\w.\-/+]"
_BEFORE = r"(?<![\w.\-/+])"
_AFTER = r"(?![\w\-/+]|\.\w)"

Encoder = Callable[[str], str]


def scalars(tree: object) -> Iterator[str]:
    """Every scalar in a values tree (mapping values and list items, at any depth), as text.

    Booleans and nulls are left out: `true` is no secret, and masking it would
    mask ordinary words.
    """

    # A stack, not recursion: a values tree nested a thousand levels deep is still masked.
    stack: list[object] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, Mapping):
            stack.extend(reversed(list(node.values())))
        elif isinstance(node, list | tuple):
            stack.extend(reversed(node))
        elif isinstance(node, bool) or node is None:
            continue
        elif isinstance(node, int | float) and math.isfinite(node):
            # Helm holds every number as a float64 and prints it as Go does:
            # `{{ .Values.pin }}` shows 12345678 as 1.2345678e+07, 1000.0 as 1000.
            yield str(node)
            yield helmyaml.float64_g(float(node))
        else:
            yield str(node)


def go_quote(text: str) -> str:
    """The inside of Go's `strconv.Quote` (`%q`), which the API server and helm use."""

    out = []
    for char in text:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char in _C_ESCAPES:
            out.append(_C_ESCAPES[char])
        elif char.isprintable():
            out.append(char)
        elif ord(char) < 0x80:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return "".join(out)


_C_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def go_json(text: str) -> str:
    """The inside of Go's `json.Marshal` of a string (sprig's `toJson`): HTML characters escaped."""

    inner = json.dumps(text, ensure_ascii=False)[1:-1]
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        inner = inner.replace(char, escaped)
    return inner.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _go_json_old(text: str) -> str:
    # Go before 1.22 wrote \b and \f as \u0008 and \u000c.
    return go_json(text).replace("\\b", "\\u0008").replace("\\f", "\\u000c")


def _json(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)[1:-1]


def _json_ascii(text: str) -> str:
    return json.dumps(text)[1:-1]


def _yaml_single(text: str) -> str:
    return text.replace("'", "''")


ESCAPES: tuple[Encoder, ...] = (go_quote, go_json, _go_json_old, _json, _json_ascii, _yaml_single)


def _base64_forms(text: str) -> set[str]:
    raw = text.encode("utf-8")
    forms = {base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()}
    return forms | {form.rstrip("=") for form in forms}


def variants(value: str) -> set[str]:
    """Every form in which `value` (or one line of it) may show up in helm's or the API's text."""

    pieces = {value, value.strip()}
    pieces |= {line.strip() for line in value.splitlines()}
    pieces = {piece for piece in pieces if len(piece) >= MIN_LENGTH}
    found = set(pieces)
    for piece in pieces:
        once = {escape(piece) for escape in ESCAPES}
        found |= once
        # Escaped twice: a JSON document printed by %q, a quoted string inside toJson.
        found |= {escape(form) for form in once for escape in ESCAPES}
        found |= _base64_forms(piece)
    return {form for form in found if len(form) >= MIN_LENGTH}


class SecretMask:
    """Masks every Secret-sourced scalar, in every form of `variants`, in a text.

    Build it once per pass from the Secret's values trees; calling it is cheap.
    """

    def __init__(self, values: Iterable[str]) -> None:
        self._forms = frozenset(form for value in values for form in variants(value))

    @classmethod
    def of(cls, *trees: object) -> SecretMask:
        """A mask for every scalar in these values trees."""

        return cls(scalars(list(trees)))

    def __bool__(self) -> bool:
        return bool(self._forms)

    def __call__(self, text: str) -> str:
        if not self._forms or not text:
            return text
        return self._pattern.sub(MASK, text)

    @cached_property
    def _pattern(self) -> re.Pattern[str]:
        # Longest first: a value's JSON form must win over the raw value inside it.
        alternatives = [
            _alternative(form) for form in sorted(self._forms, key=lambda f: (-len(f), f))
        ]
        return re.compile("|".join(alternatives))


def _alternative(form: str) -> str:
    escaped = re.escape(form)
    if len(form) >= WHOLE_WORD_BELOW:
        return escaped
    before = _BEFORE if re.match(_WORD, form[0]) else ""
    after = _AFTER if re.match(_WORD, form[-1]) else ""
    return f"{before}{escaped}{after}"


NO_MASK = SecretMask(())
