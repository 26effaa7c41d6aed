"""A corpus of YAML scalar spellings and keys that helm reads in surprising ways.

`corpus_text()` is one values document: every spelling as a value, unquoted (where it can
be a plain scalar), single- and double-quoted, and a set of keys. Every entry is one helm
accepts, so the document installs; what helm refuses is tested separately.
"""

from __future__ import annotations

import itertools

_BOOLEANS = ["y", "yes", "true", "on", "n", "no", "false", "off"]
_NULLS = ["~", "null", "Null", "NULL", "nULL", "none", "None", "nil"]
_INTS = [
    "0", "-0", "+0", "00", "007", "08", "09", "0755", "0o17", "0O17", "0x1F", "0X1F", "0x1f",
    "-0x1F", "+0x1F", "0b101", "0B101", "-0b101", "0b-101", "+12", "-12", "1_000", "1__0",
    "_1", "1_", "0x", "0b", "0o", "0o8", "0x1g", "0b2", "1,000", "1.000", "12e", "0e0",
]  # fmt: skip
_FLOATS = [
    "1e3", "1E3", "1e+3", "1e-3", "-1e3", "7e10", "01443e5", "6.02e23", "1.", "1.0", "1.5",
    ".5", "-.5", "+.5", ".5e3", "._5", ".5_0", "1e400", "-1e400", "1e-400", "-0.0", "0.0",
    "3.14159265358979323846", "1_0.5", "1.5_0", "1_e3", "0.1", "1e21", "1e20", "100e-2",
    "inf", "Infinity", "NaN", "nan", "0x1p-2", "1.7976931348623157e308",
]  # fmt: skip
_LONG = [
    "9007199254740993", "9223372036854775807", "9223372036854775808",
    "-9223372036854775808", "-9223372036854775809", "18446744073709551615",
    "18446744073709551616", "12345678901234567890", "123456789012345678901234567890",
    "100000000000000000000", "1000000000000000000000",
]  # fmt: skip
_TIMES = [
    "12:30", "12:45", "1:30:00", "190:20:30", "12:30.5", "-1:30", "00:00", "24:00:00",
    "2024-01-01", "2001-12-14t21:59:43.10-05:00", "2001-12-14 21:59:43.10", "2024-1-1",
    "2024-01-01T00:00:00Z", "20240101", "2024-13-45",
]  # fmt: skip
_OTHER = [
    "héllo", "日本語", "😀", "ÿ", "a b", "=", "<", "a#b", "a:b", "http://x:80/y",
    "v1.2.3", "1.2.3", "1.2.3+build.5", "0.1.0-rc.1", "sha256:abc", "true1", "yes!",
]  # fmt: skip
# Escapes only a double-quoted scalar can carry: NEL, line and paragraph separators,
# no-break space, BOM, control characters, astral characters, a surrogate-free \U.
_DOUBLE_ONLY = [
    r"\u00e9", r"\U0001F600", r"\x41", r"\N", r"\L", r"\P", r"\_", r"\ufeff", r"\x7f",
    r"\x85", r"\t", r"\0", r"\e", r"\a", r"\v", r"it\'s", r"a\nb", r"trailing\n", r"\"quoted\"",
    r"back\\slash", r"\ufffe",
]  # fmt: skip
_SPACED = ["trailing ", " leading", "  both  ", "", " "]
_KEYS = [
    "8080", "-1", "0", "true", "false", "1.5", "0.5", "2024-01-01", "12:30", ".inf",
    "-.inf", ".nan", "1e3x", "a b", "héllo", "日本", "with.dot", "with/slash", "UPPER",
]  # fmt: skip
_QUOTED_KEYS = ["on", "off", "yes", "no", "y", "n", "~", "null", "", "0x1F", "007", "1e3", "1.50"]
_BLOCKS = [
    "|\n  line one\n  line two\n",
    "|-\n  stripped\n",
    "|+\n  kept\n\n",
    ">\n  folded\n  text\n",
    ">-\n  folded\n  stripped\n",
    "|\n  trailing spaces   \n",
]


def _cases(word: str) -> list[str]:
    return sorted({word, word.lower(), word.upper(), word.title(), word.swapcase(), _mixed(word)})


def _mixed(word: str) -> str:
    return "".join(c.upper() if i % 2 else c.lower() for i, c in enumerate(word))


def spellings() -> list[str]:
    """Every value spelling as YAML source text (plain, single- and double-quoted)."""

    plain_words = [
        *itertools.chain.from_iterable(_cases(w) for w in _BOOLEANS),
        *_NULLS,
        *_INTS,
        *_FLOATS,
        *_LONG,
        *_TIMES,
        *_OTHER,
    ]
    out: list[str] = []
    for word in plain_words:
        out.append(word)
        out.append("'" + word.replace("'", "''") + "'")
        out.append('"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"')
    out.append("")  # nothing at all: null
    out.extend('"' + escaped + '"' for escaped in _DOUBLE_ONLY)
    out.extend("'" + spaced + "'" for spaced in _SPACED)
    out.extend('"' + spaced + '"' for spaced in _SPACED)
    out.extend(['"line\\n"', '"two\\n\\n"', '"cr\\r\\n"', '"tab\\there"'])
    return out


def key_spellings() -> list[str]:
    """Key spellings helm keeps as written (plain), and quoted ones it would change if bare."""

    quoted = [f'"{k}"' for k in _QUOTED_KEYS] + [f"'{k}'" for k in ("Yes", "ON", "N", "NULL")]
    return [*_KEYS, *quoted]


def corpus_text() -> str:
    """One values document holding every spelling, key and block scalar."""

    lines = ["# every scalar spelling of tests/support/scalars.py", "values:"]
    for n, spelling in enumerate(spellings()):
        lines.append(f"  v{n:03d}: {spelling}".rstrip() if spelling else f"  v{n:03d}:")
    lines.append("keys:")
    for n, key in enumerate(key_spellings()):
        lines.append(f"  {key}: k{n:02d}")
    lines.append("list: [y, n, '0x1F', 0x1F, 12:30, 1e3, ~, '', \"\\u00e9\"]")
    lines.append("flow: {a: on, b: 'off', c: 007, d: 2024-01-01}")
    for n, block in enumerate(_BLOCKS):
        lines.append(f"block{n}: {block}".rstrip("\n"))
    lines.append("anchors:")
    lines.append("  base: &base {x: 1, z: yes}")
    lines.append("  merged:")
    lines.append("    <<: *base")
    lines.append("    x: 2")
    lines.append("  alias: *base")
    return "\n".join(lines) + "\n"


def count() -> int:
    return len(spellings()) + len(key_spellings())
