"""`reconciler plan`: what `apply` would do, without doing it."""

from __future__ import annotations

import argparse
from typing import Any

from reconciler.commands import common
from reconciler.commands.engine import register_engine_command, start

PENDING_EXIT = 2


def register(subparsers: Any, name: str, summary: str) -> None:
    exits = "Exit codes: 0 in sync, 2 changes pending (like terraform plan -detailed-exitcode), 1 error."
    register_engine_command(subparsers, name, f"{summary}. {exits}", run)


def run(args: argparse.Namespace) -> int:
    engine, env = start(args)
    the_plan, observation = engine.plan(env, full=args.full)
    # A full plan reads every deployed release's workloads too (one read, no waiting).
    health = engine.read_health(observation) if args.full else {}
    if args.output == "json":
        document = common.plan_json(the_plan)
        if args.full:
            document["health"] = common.health_json(health)
        common.dump_json(document)
    else:
        common.print_plan(the_plan)
        common.print_health(health)
    return PENDING_EXIT if the_plan.changes_pending else 0
