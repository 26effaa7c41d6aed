"""`reconciler run`: the loop that keeps one installation converged."""

from __future__ import annotations

import argparse
import os
import signal
import threading
from types import FrameType
from typing import Any

from reconciler import log
from reconciler.commands import common
from reconciler.commands.engine import engine_for
from reconciler.loop import Loop, LoopSettings


def register(subparsers: Any, name: str, summary: str) -> None:
    env = os.environ.get
    parser = subparsers.add_parser(
        name,
        help=summary,
        description=summary
        + ". Each poll asks the git server for the branch head first and fetches only when it moved; "
        "a local folder is watched for changes instead. Stops cleanly on SIGTERM.",
    )
    common.add_source_flags(parser)
    common.add_cluster_flags(parser)
    group = parser.add_argument_group("loop")
    group.add_argument(
        "--interval",
        type=float,
        default=float(env("RECONCILER_INTERVAL", "30")),
        help="seconds between polls (default 30)",
    )
    group.add_argument(
        "--resync-interval",
        type=float,
        default=float(env("RECONCILER_RESYNC_INTERVAL", "600")),
        help="seconds between full resyncs that find changes made by hand (default 600)",
    )
    group.add_argument(
        "--once", action="store_true", help="stop after the first pass (for tests and jobs)"
    )
    group.add_argument(
        "--log-format",
        choices=["auto", "json", "text"],
        default="auto",
        help="log lines (auto: json unless a terminal)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    log.setup(args.log_format)
    wiring = common.wiring(args)
    engine = engine_for(wiring)
    settings = LoopSettings(
        interval=args.interval, resync_interval=args.resync_interval, once=args.once
    )
    loop = Loop(engine, wiring.source, settings)
    _stop_on_signals(loop.stop)
    return loop.run()


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("stopping", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
