"""`reconciler mirror webhook|poll`: GitHub Deployments into promotions."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler import log
from reconciler.commands import httpflags, pushing
from reconciler.commands.gitflags import read_secret
from reconciler.errors import UsageError
from reconciler.githubapi import DEFAULT_API_URL, Client
from reconciler.mirror.core import Mirror
from reconciler.mirror.ledger import Ledger
from reconciler.mirror.mapping import load_mapping
from reconciler.mirror.poller import Poller
from reconciler.mirror.receiver import serve_webhook
from reconciler.mirror.webhook import MAX_BODY, Deliveries

EPILOG = "See docs/promote-and-mirror.md for the mapping file, endpoints and token permissions."


def register(subparsers: Any, name: str, summary: str) -> None:
    parser = subparsers.add_parser(name, help=summary, description=summary, epilog=EPILOG)
    modes = parser.add_subparsers(dest="mode", metavar="MODE")
    modes.required = True
    webhook = modes.add_parser(
        "webhook",
        help="receive GitHub `deployment` events over HTTP",
        description="Receive GitHub `deployment` events, verify X-Hub-Signature-256, and promote "
        "each deployment's SHA (answers after the push; 401 bad signature, 415 not JSON, "
        "422 unmapped, 200 ignored environments).",
        epilog=EPILOG,
    )
    webhook.add_argument(
        "--listen",
        default=os.environ.get("RECONCILER_WEBHOOK_LISTEN", "127.0.0.1:8080"),
        help="host:port to listen on (default: 127.0.0.1:8080; 0.0.0.0:8080 in a Pod)",
    )
    webhook.add_argument(
        "--secret-file",
        default=os.environ.get("RECONCILER_WEBHOOK_SECRET_FILE"),
        help="file holding the webhook's shared secret (env RECONCILER_WEBHOOK_SECRET_FILE)",
    )
    _shared_flags(webhook, state_required=False)
    httpflags.add_http_flags(webhook, MAX_BODY)
    webhook.set_defaults(func=run_webhook)

    poll = modes.add_parser(
        "poll",
        help="list GitHub Deployments through the REST API",
        description="Poll GET /repos/{owner}/{repo}/deployments for every mapped repository "
        "(conditional requests, pagination, rate limits) and promote new deployments.",
        epilog=EPILOG,
    )
    poll.add_argument(
        "--api-url",
        default=os.environ.get("RECONCILER_GITHUB_API_URL", DEFAULT_API_URL),
        help=f"GitHub API base URL (env RECONCILER_GITHUB_API_URL; default: {DEFAULT_API_URL})",
    )
    poll.add_argument(
        "--github-token-file",
        default=os.environ.get("RECONCILER_GITHUB_TOKEN_FILE"),
        help="file holding a GitHub token with Deployments: read (env RECONCILER_GITHUB_TOKEN_FILE;"
        " default: the --token-file used for git)",
    )
    poll.add_argument(
        "--interval", type=float, default=60.0, help="seconds between polls (default: 60)"
    )
    poll.add_argument("--once", action="store_true", help="poll once and exit (1 if any failed)")
    poll.add_argument(
        "--per-page",
        type=int,
        default=100,
        help="deployments per API page (default: 100, the maximum)",
    )
    poll.add_argument(
        "--since",
        help="for a repository polled the first time, mirror deployments created from this"
        " time on (ISO 8601 with a time zone, e.g. 2024-05-01T00:00:00Z; default: now)",
    )
    _shared_flags(poll, state_required=True)
    poll.set_defaults(func=run_poll)


def _shared_flags(parser: argparse.ArgumentParser, *, state_required: bool) -> None:
    parser.add_argument(
        "--mapping",
        default=os.environ.get("RECONCILER_MIRROR_MAPPING"),
        help="the mapping file (env RECONCILER_MIRROR_MAPPING)",
    )
    parser.add_argument(
        "--state-file",
        type=Path,
        default=os.environ.get("RECONCILER_MIRROR_STATE_FILE"),
        help="JSON file remembering handled deliveries and deployments (env RECONCILER_MIRROR_STATE_FILE)"
        + ("" if state_required else "; optional: commit trailers are checked anyway"),
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="where to keep the clone of the environments repo (default: a temporary folder)",
    )
    parser.add_argument(
        "--log-format", choices=["auto", "text", "json"], default="auto", help="log format"
    )
    pushing.add_push_flags(parser)


def _mirror(args: argparse.Namespace, workdir: Path) -> Mirror:
    if not args.mapping:
        raise UsageError("--mapping is required (or set RECONCILER_MIRROR_MAPPING)")
    mapping = load_mapping(Path(args.mapping))
    # The whole history: commit trailers tell which deployments were mirrored already.
    return Mirror(mapping, pushing.promoter_from_args(args, workdir, depth=None))


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise UsageError(f"--listen {text!r}: expected host:port")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 (the flag says where)


def run_webhook(args: argparse.Namespace) -> int:
    log.setup(args.log_format)
    secret = read_secret(args.secret_file, "--secret-file")
    if not secret:
        raise UsageError("--secret-file is required (or set RECONCILER_WEBHOOK_SECRET_FILE)")
    limits = httpflags.limits_from_args(args)
    host, port = _listen(args.listen)
    with _workdir(args) as workdir:
        mirror = _mirror(args, workdir)
        mirror.promoter.clone.sync()  # fail at start, not at the first delivery
        deliveries = Deliveries(mirror, Ledger.load(args.state_file))
        server = serve_webhook(host, port, secret.encode(), deliveries, limits)
        bound_host, bound_port = server.address
        log.info("webhook: listening", address=f"{bound_host!s}:{bound_port}")
        stop = threading.Event()
        _stop_on_sigterm(stop.set)
        try:
            stop.wait()
        finally:
            server.shutdown()
    return 0


def run_poll(args: argparse.Namespace) -> int:
    log.setup(args.log_format)
    if not args.state_file:
        raise UsageError("--state-file is required (or set RECONCILER_MIRROR_STATE_FILE)")
    token = read_secret(args.github_token_file or args.token_file, "--github-token-file")
    ledger = Ledger.load(args.state_file)
    since = _iso(args.since) if args.since else None
    with _workdir(args) as workdir:
        if not 1 <= args.per_page <= 100:
            raise UsageError("--per-page must be between 1 and 100")
        client = Client(args.api_url, token)
        poller = Poller(client, _mirror(args, workdir), ledger, args.per_page, since)
        if args.once:
            report = poller.poll_once()
            for failure in report.failed:
                log.error("poll: failed", detail=failure)
            return 1 if report.failed else 0
        stop = threading.Event()
        _stop_on_sigterm(stop.set)
        poller.run(args.interval, stop)
    return 0


def _iso(text: str) -> str:
    """`--since` as a UTC ISO 8601 time; a time without a zone is refused, not guessed."""

    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"--since {text!r}: expected an ISO 8601 time, e.g. 2024-05-01T00:00:00Z"
        ) from None
    if when.tzinfo is None:
        raise UsageError(
            f"--since {text!r}: give a time zone, e.g. {when.isoformat()}Z (UTC) or +02:00"
        )
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


@contextlib.contextmanager
def _workdir(args: argparse.Namespace) -> Iterator[Path]:
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        yield args.workdir
        return
    with tempfile.TemporaryDirectory(prefix="reconciler-mirror-") as workdir:
        yield Path(workdir)


def _stop_on_sigterm(stop: Any) -> None:
    # `stop` may block (or take a lock the interrupted code holds): run it off the handler.
    def handler(signum: int, frame: object) -> None:
        threading.Thread(target=stop, daemon=True).start()

    signal.signal(signal.SIGTERM, handler)
