"""Text from others made safe to print on a terminal.

Value keys, release names and helm's error text come from repo files, Secrets
and the cluster; printed raw, an ESC sequence in them could clear the screen or
rewrite earlier lines (a fake "in sync"). `for_terminal` shows every control
character (C0, DEL, C1) and every bidirectional override as a visible escape.
"""

from __future__ import annotations

import re

# C0 controls, DEL, C1 controls, and the Unicode bidi controls that reorder what is shown.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\e"}


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def for_terminal(text: str, keep_newlines: bool = False) -> str:
    """`text` with every control character shown as an escape (`\\e`, `\\x07`, `\\u202e`).

    `keep_newlines` lets line breaks through (for text printed line by line).
    """

    if keep_newlines:
        return "\n".join(for_terminal(line) for line in text.split("\n"))
    return _UNSAFE.sub(_visible, text)
