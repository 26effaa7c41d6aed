"""Flags (and environment variables) for the limits of an HTTP server: `run` and `mirror webhook`."""

from __future__ import annotations

import argparse
import os
from typing import TypeVar

from reconciler.errors import UsageError
from reconciler.httpserve import Limits

_DEFAULTS = Limits(max_body=0)
T = TypeVar("T", int, float)


def add_http_flags(parser: argparse.ArgumentParser, max_body: int) -> None:
    env = os.environ.get
    group = parser.add_argument_group("HTTP limits (docs/deploy.md, 'HTTP limits')")
    group.add_argument(
        "--http-max-connections",
        default=env("RECONCILER_HTTP_MAX_CONNECTIONS", str(_DEFAULTS.max_connections)),
        help="open connections; beyond it the oldest ones still waiting for their client are "
        "dropped after a 1 s grace (sooner at twice as many), new ones refused (503) only then "
        f"(env RECONCILER_HTTP_MAX_CONNECTIONS; default {_DEFAULTS.max_connections})",
    )
    group.add_argument(
        "--http-header-timeout",
        default=env("RECONCILER_HTTP_HEADER_TIMEOUT", f"{_DEFAULTS.header_timeout:g}"),
        help="seconds a connection has, from opening or from its previous answer, to send "
        "complete request headers; idle connections close after it too "
        f"(env RECONCILER_HTTP_HEADER_TIMEOUT; default {_DEFAULTS.header_timeout:g})",
    )
    group.add_argument(
        "--http-body-timeout",
        default=env("RECONCILER_HTTP_BODY_TIMEOUT", f"{_DEFAULTS.body_timeout:g}"),
        help="seconds to receive a whole request body, else 408 "
        f"(env RECONCILER_HTTP_BODY_TIMEOUT; default {_DEFAULTS.body_timeout:g})",
    )
    group.add_argument(
        "--http-max-body",
        default=env("RECONCILER_HTTP_MAX_BODY", str(max_body)),
        help="bytes a webhook body may declare and send, else 413 before it is read "
        f"(env RECONCILER_HTTP_MAX_BODY; default {max_body})",
    )


def limits_from_args(args: argparse.Namespace) -> Limits:
    """The limits the flags ask for. Raises UsageError naming the flag and what it takes."""

    return Limits(
        max_body=_number(args.http_max_body, "--http-max-body", int),
        max_connections=_number(args.http_max_connections, "--http-max-connections", int),
        header_timeout=_number(args.http_header_timeout, "--http-header-timeout", float),
        body_timeout=_number(args.http_body_timeout, "--http-body-timeout", float),
    )


def _number(text: str, flag: str, kind: type[T]) -> T:
    try:
        value = kind(text)
    except ValueError:
        value = kind(0)
    if not value > 0:
        raise UsageError(f"{flag} {text!r}: expected a positive {kind.__name__} (see --help)")
    return value
