"""Helm's reading of YAML scalars and keys, and values in a form helm cannot misread.

Helm 3 and 4 read every values file with sigs.k8s.io/yaml (v1.6): go-yaml v2 builds
`map[interface{}]interface{}` with YAML 1.1 scalars, the keys become strings, the whole
is encoded as JSON and decoded again with Go's `encoding/json`. So a chart sees:

- `y`, `Y`, `yes`, `on`, `true` (and `n`, `no`, `off`, `false`) in the spellings of
  `resolve.go` as booleans; `~`, `null`, `Null`, `NULL` and nothing as null;
- integers in Go's base-0 syntax after every `_` is removed (`0x1F`, `0o17`, `0b101`,
  `0755` octal, `+5`, `1_000`), floats matching `[-+]?(\\.d+|d+(\\.d*)?)([eE][-+]?d+)?`;
  no base 60 (`12:30` is a string), dates stay strings;
- every number as a float64 (the JSON round trip), so `1e3` and `1000` are one value
  and integers beyond 2^53 are rounded;
- `.inf` and `.nan` values as an error (JSON has no such number);
- keys converted with `strconv`: `on:` becomes "true", `0x1F:` "31", `1.50:` "1.5"
  (float32 formatting), a null key or one beyond int64 is an error.

Helm 3 reads only the first YAML document of a file, helm 4 merges all of them, so
several documents are refused. `helm_key` and `resolve` are the reference for both
YAML paths of the project (`yamldoc`, `fastyaml`); `canonical` is the one form in
which desired and deployed values are compared; `dumps` writes JSON (which is YAML)
that helm reads back to exactly the canonical values.
"""

from __future__ import annotations

import functools
import json
import math
import re
import struct
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

TAG_STR = "tag:yaml.org,2002:str"
TAG_NULL = "tag:yaml.org,2002:null"
TAG_BOOL = "tag:yaml.org,2002:bool"
TAG_INT = "tag:yaml.org,2002:int"
TAG_FLOAT = "tag:yaml.org,2002:float"
TAG_MERGE = "tag:yaml.org,2002:merge"
TAG_BINARY = "tag:yaml.org,2002:binary"

INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1

_MAP: dict[str, tuple[str, Any]] = {}
for _value, _tag, _words in (
    (True, TAG_BOOL, "y Y yes Yes YES true True TRUE on On ON"),
    (False, TAG_BOOL, "n N no No NO false False FALSE off Off OFF"),
    (None, TAG_NULL, "~ null Null NULL"),
    (math.nan, TAG_FLOAT, ".nan .NaN .NAN"),
    (math.inf, TAG_FLOAT, ".inf .Inf .INF +.inf +.Inf +.INF"),
    (-math.inf, TAG_FLOAT, "-.inf -.Inf -.INF"),
    ("<<", TAG_MERGE, "<<"),
):
    for _word in _words.split():
        _MAP[_word] = (_tag, _value)
_MAP[""] = (TAG_NULL, None)

_MAP_ONLY = frozenset("yYnNtTfFoO~")
_NUMERIC = frozenset("+-0123456789")
_YAML_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
_DOT_FLOAT = re.compile(r"\.[0-9_]+(?:[eE][-+]?[0-9][0-9_]*)?")
_DIGITS = {2: frozenset("01"), 8: frozenset("01234567"), 10: frozenset("0123456789")}
_DIGITS[16] = frozenset("0123456789abcdefABCDEF")


@functools.lru_cache(maxsize=65536)  # environment files repeat the same few scalars
def resolve(text: str) -> tuple[str, Any]:
    """(tag, value) of a plain scalar as go-yaml v2 `resolve("", text)` gives it to helm.

    Integers are Python ints (above `INT64_MAX` they are Go uint64), NaN and infinities
    are floats (helm rejects them later), a timestamp is its text.
    """

    found = _MAP.get(text)
    if found is not None:
        return found
    hint = text[0]
    if hint == ".":
        number = _dot_float(text)
        return (TAG_FLOAT, number) if number is not None else (TAG_STR, text)
    if hint in _MAP_ONLY or hint not in _NUMERIC:
        return TAG_STR, text
    plain = text.replace("_", "")
    integer = _go_int(plain, signed=True, base=0)
    if integer is None:
        integer = _go_int(plain, signed=False, base=0)
    if integer is not None:
        return TAG_INT, integer
    if _YAML_FLOAT.fullmatch(plain):
        number = float(plain)
        if math.isfinite(number):  # Go's ParseFloat fails on overflow: a string then
            return TAG_FLOAT, number
    if plain.startswith("0b"):
        integer = _go_int(plain[2:], signed=True, base=2)
        if integer is None:
            integer = _go_int(plain[2:], signed=False, base=2)
    elif plain.startswith("-0b"):
        integer = _go_int("-" + plain[3:], signed=True, base=2)
    if integer is not None:
        return TAG_INT, integer
    return TAG_STR, text


def resolve_tagged(tag: str, text: str) -> Any:
    """The value of a scalar with an explicit standard tag (`!!str 12`, `!!int "3"`).

    Raises ValueError where go-yaml fails ("cannot decode !!str `x` as a !!int").
    """

    if tag == TAG_STR:
        return text
    found, value = resolve(text) if text else (TAG_NULL, None)
    if found == tag or (found == TAG_INT and tag == TAG_FLOAT):
        return float(value) if tag == TAG_FLOAT and value is not None else value
    raise ValueError(f"cannot read {text!r} as a {tag.rsplit(':', 1)[-1]}")


def _dot_float(text: str) -> float | None:
    # Go's ParseFloat on the whole text: digits and `_` separators between digits.
    if not _DOT_FLOAT.fullmatch(text) or not any(c.isdigit() for c in text.split("e")[0]):
        return None
    if "_" in text and not _underscores_ok(text):
        return None
    number = float(text.replace("_", ""))
    return number if math.isfinite(number) else None


def _underscores_ok(text: str) -> bool:
    """Go's strconv.underscoreOK for a text without sign or base prefix."""

    saw = "^"
    for char in text:
        if char.isdigit():
            saw = "0"
        elif char == "_":
            if saw != "0":
                return False
            saw = "_"
        elif saw == "_":
            return False
        else:
            saw = "!"
    return saw != "_"


def _go_int(text: str, *, signed: bool, base: int) -> int | None:
    """strconv.ParseInt (signed) or ParseUint with 64 bits; base 0 reads Go's prefixes."""

    negative = False
    if signed and text[:1] in ("+", "-"):
        negative, text = text[0] == "-", text[1:]
    if not text:
        return None
    if base == 0:
        base = 10
        if text[0] == "0":
            prefix = text[1:2].lower()
            if len(text) >= 3 and prefix in ("b", "o", "x"):
                base, text = {"b": 2, "o": 8, "x": 16}[prefix], text[2:]
            else:
                base, text = 8, text[1:]
    if not set(text) <= _DIGITS[base]:
        return None
    value = int(text, base) if text else 0
    if negative:
        value = -value
    if signed:
        return value if -(2**63) <= value <= INT64_MAX else None
    return value if value <= UINT64_MAX else None


# --- keys --------------------------------------------------------------------------


class KeyProblem(ValueError):
    """A mapping key helm refuses (null, beyond int64, a list or mapping)."""


def helm_key(tag: str, value: Any) -> str:
    """The string helm makes of a resolved key (sigs.k8s.io/yaml convertToJSONableObject)."""

    if tag == TAG_STR or isinstance(value, str):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        raise KeyProblem("null is not a key helm accepts")
    if isinstance(value, int) and tag == TAG_INT:
        if value > INT64_MAX:
            raise KeyProblem("a number beyond 64-bit integers is not a key helm accepts")
        return str(value)
    if isinstance(value, (int, float)):
        return _float32_g(float(value))
    raise KeyProblem("not a key helm accepts")


def _float32_g(number: float) -> str:
    """Go's strconv.FormatFloat(number, 'g', -1, 32), with sigs.k8s.io/yaml's .inf/.nan."""

    if math.isnan(number):
        return ".nan"
    try:
        single = struct.unpack("<f", struct.pack("<f", number))[0]
    except OverflowError:
        single = math.copysign(math.inf, number)
    if math.isinf(single):
        return ".inf" if single > 0 else "-.inf"
    return _shortest_g(single, lambda x: struct.unpack("<f", struct.pack("<f", x))[0], 10)


def float64_g(number: float) -> str:
    """Go's strconv.FormatFloat(number, 'g', -1, 64): how `{{ .Values.x }}` (fmt's %v)
    prints a number of a values file, e.g. 12345678 as 1.2345678e+07. Finite numbers only."""

    return _shortest_g(number, float, 18)


def _shortest_g(single: float, rounded: Callable[[float], float], most: int) -> str:
    if single == 0:
        return "-0" if math.copysign(1, single) < 0 else "0"
    for precision in range(1, most):
        text = f"{single:.{precision - 1}e}"
        if rounded(float(text)) == single:
            break
    mantissa, exponent_text = text.split("e")
    sign = "-" if mantissa.startswith("-") else ""
    digits = mantissa.lstrip("-").replace(".", "").rstrip("0") or "0"
    exponent = int(exponent_text)
    if exponent < -4 or exponent >= 6:
        body = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{body}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    if exponent < 0:
        return f"{sign}0.{'0' * (-exponent - 1)}{digits}"
    whole = digits[: exponent + 1].ljust(exponent + 1, "0")
    fraction = digits[exponent + 1 :]
    return f"{sign}{whole}{'.' + fraction if fraction else ''}"


# --- values as the chart sees them ---------------------------------------------------


class ValueProblem(ValueError):
    """A value helm cannot take (NaN, an infinity)."""


def canonical(value: Any) -> Any:
    """`value` as helm hands it to the chart: numbers are float64, shown as an int when
    integral and below 1e21 (as Go's JSON prints them), else as a float.

    Raises ValueProblem for NaN and infinities, which helm refuses.
    """

    if isinstance(value, Mapping):
        return {str(key): canonical(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(item) for item in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:
            raise ValueProblem("a number too large for helm (float64)") from None
        if not math.isfinite(number):
            raise ValueProblem(
                f"{value!r} is not a number helm accepts (JSON has no NaN or infinity)"
            )
        negative_zero = number == 0 and math.copysign(1, number) < 0
        if number.is_integer() and abs(number) < 1e21 and not negative_zero:
            # The shortest digits, as Go's JSON prints the float64: 12345678901234567000.
            return int(Decimal(repr(number)))
        return number
    raise ValueProblem(f"a value of type {type(value).__name__} is not plain data")


def same(a: Any, b: Any) -> bool:
    """True when two canonical values are one value to helm (True and 1 are not; -0 and 0 are)."""

    return _key(a) == _key(b)


def _key(value: Any) -> str:
    return json.dumps(_signless(value), sort_keys=True, separators=(",", ":"), default=str)


def _signless(value: Any) -> Any:
    # Python's json reads helm's "-0" as the int 0: negative zero is not a difference.
    if isinstance(value, float) and value == 0:
        return 0
    if isinstance(value, Mapping):
        return {key: _signless(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_signless(item) for item in value]
    return value


# Characters a YAML reader would fold, refuse or drop even inside double quotes.
_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")


def dumps(values: Mapping[str, Any]) -> str:
    """Canonical values as JSON text that go-yaml reads back unchanged: every string
    double-quoted, characters YAML treats specially escaped."""

    text = json.dumps(values, ensure_ascii=False, allow_nan=False, sort_keys=True)
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n"
