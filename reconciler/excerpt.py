"""Long messages cut to a limit with their head and their tail kept.

Helm's errors say what failed on their first line and why on their last ones
(the value paths a schema rejected, the fields the API server refused), so a
message that must fit a limit keeps both ends and says how much it left out.
Cut only text that is already masked: a cut could leave part of a secret that
the mask would no longer recognise.
"""

from __future__ import annotations

MESSAGE_LIMIT = 4000  # characters of an outcome or held reason (status, JSON, logs)


def bounded(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """`text` if it fits in `limit` characters, else its head and tail around a marker."""

    if len(text) <= limit:
        return text
    room = max(limit - len(_marker(len(text))), 2)
    head = room // 3  # what failed
    tail = room - head  # why: helm puts the details last
    return text[:head] + _marker(len(text) - room) + text[len(text) - tail :]


def _marker(cut: int) -> str:
    return f" [...{cut} characters cut...] "


def one_line(text: str) -> str:
    """The lines of `text` joined with ` | ` (for a table cell or a one-line description)."""

    return " | ".join(line.strip() for line in text.splitlines() if line.strip())
