"""`reconciler plan`: what `apply` would do, without doing it."""

from __future__ import annotations

import argparse
from typing import Any

from reconciler.commands import common
from reconciler.commands.engine import register_engine_command, start

PENDING_EXIT = 2


def register(subparsers: Any, name: str, summary: str) -> None:
    exits = (
        "Exit codes: 0 in sync, 2 changes pending or live drift found (like terraform plan "
        "-detailed-exitcode), 1 error."
    )
    register_engine_command(subparsers, name, f"{summary}. {exits}", run)


def run(args: argparse.Namespace) -> int:
    engine, env = start(args)
    the_plan, _ = engine.plan(env, full=args.full)
    if args.output == "json":
        common.dump_json(common.plan_json(the_plan))
    else:
        common.print_plan(the_plan)
    return PENDING_EXIT if the_plan.changes_pending else 0
