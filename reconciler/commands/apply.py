"""`reconciler apply`: converge one installation once."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from reconciler.commands import common
from reconciler.commands.engine import register_engine_command, start
from reconciler.execute import Outcome, count_results
from reconciler.terminal import for_terminal


def register(subparsers: Any, name: str, summary: str) -> None:
    exits = "Exit codes: 0 converged, 1 a release failed or an error."
    register_engine_command(subparsers, name, f"{summary}. {exits}", run)


def run(args: argparse.Namespace) -> int:
    engine, env = start(args)
    text = args.output == "text"
    on_plan = common.print_plan if text else _quiet
    result = engine.apply(
        env, full=args.full, on_outcome=_progress if text else _quiet, on_plan=on_plan
    )
    if text:
        _summary(result.outcomes)
        if args.full:
            common.print_health(result.health)
    else:
        document = common.plan_json(result.plan)
        document["outcomes"] = [common.outcome_json(o) for o in result.outcomes]
        if args.full:
            document["health"] = common.health_json(result.health)
        common.dump_json(document)
    return 1 if result.failed else 0


def _progress(outcome: Outcome) -> None:
    where = for_terminal(f"{outcome.namespace}/{outcome.release}")
    print(f"{outcome.result:9} {outcome.kind:9} {where} ({outcome.seconds:.1f}s)", file=sys.stderr)


def _quiet(item: object) -> None:
    return None


def _summary(outcomes: tuple[Outcome, ...]) -> None:
    if not outcomes:
        print("nothing to do")
        return
    print(count_results(outcomes))
    for outcome in outcomes:
        if outcome.result == "succeeded":
            continue
        where = for_terminal(f"{outcome.namespace}/{outcome.release}")
        lines = outcome.message.splitlines() or [""]
        print(f"  {where}: {outcome.result}: {for_terminal(lines[0])}")
        for line in lines[1:]:
            print(f"      {for_terminal(line)}")
