"""Text from others made safe to print on a terminal.

Value keys, release names and helm's error text come from repo files, Secrets
and the cluster; printed raw, an ESC sequence in them could clear the screen or
rewrite earlier lines (a fake "in sync"). `for_terminal` shows every character
that is not printable (C0 and C1 controls, DEL, bidirectional and zero-width
format characters, line separators) as a visible escape.
"""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\e"}


def _visible(char: str) -> str:
    if char.isprintable():
        return char
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def for_terminal(text: str, keep_newlines: bool = False) -> str:
    """`text` with every unprintable character shown as an escape (`\\e`, `\\x07`, `\\u202e`).

    `keep_newlines` lets line breaks through (for text printed line by line).
    """

    if keep_newlines:
        return "\n".join(for_terminal(line) for line in text.split("\n"))
    if text.isprintable():
        return text
    return "".join(_visible(char) for char in text)
