"""Reading JSON that others wrote: chart files, release records, live objects' status,
the status ConfigMap.

Any field may hold any JSON type (a tenant writes its release Secrets, a controller its
objects' status), so readers take a field through `mapping`, `items` or `text`, which
give an empty value of the expected shape for anything else. Recursive walks check
`too_deep` first: a document nested a thousand levels would exhaust Python's stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Deeper than any Kubernetes object or CRD schema in the wild (a schema takes two levels
# per nested object), far below what exhausts Python's stack.
MAX_DEPTH = 200
_EMPTY: Mapping[str, Any] = {}


def mapping(value: Any) -> Mapping[str, Any]:
    """`value` when it is a mapping, else an empty one."""

    return value if isinstance(value, Mapping) else _EMPTY


def items(value: Any) -> list[Any]:
    """`value` when it is a list, else an empty one."""

    return value if isinstance(value, list) else []


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether mappings and lists nest more than `limit` levels in `value` (iterative:
    safe on any depth)."""

    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, Mapping):
            children: Any = node.values()
        elif isinstance(node, list | tuple):
            children = node
        else:
            continue
        if depth >= limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
