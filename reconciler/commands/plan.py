"""`reconciler plan`: what `apply` would do, without doing it."""

from __future__ import annotations

import argparse
from typing import Any

from reconciler.commands import common
from reconciler.commands.engine import engine_for, load_revision

PENDING_EXIT = 2


def register(subparsers: Any, name: str, summary: str) -> None:
    parser = subparsers.add_parser(
        name,
        help=summary,
        description=summary
        + ". Exit codes: 0 in sync, 2 changes pending (like terraform plan -detailed-exitcode), 1 error.",
    )
    common.add_source_flags(parser)
    common.add_cluster_flags(parser)
    common.add_output_flag(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    wiring = common.wiring(args)
    env = load_revision(wiring.source)
    engine = engine_for(wiring)
    the_plan, _ = engine.plan(env, full=args.full)
    if args.output == "json":
        common.dump_json(common.plan_json(the_plan))
    else:
        common.print_plan(the_plan)
    return PENDING_EXIT if the_plan.changes_pending else 0
