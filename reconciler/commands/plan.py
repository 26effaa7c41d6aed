"""`reconciler plan`: what `apply` would do, without doing it."""

from __future__ import annotations

import argparse
from typing import Any

from reconciler.commands import common
from reconciler.commands.engine import register_engine_command, start
from reconciler.crds import deployed_differences
from reconciler.excerpt import one_line
from reconciler.terminal import for_terminal

PENDING_EXIT = 2


def register(subparsers: Any, name: str, summary: str) -> None:
    exits = (
        "Exit codes: 0 in sync, 2 changes pending or live drift found (like terraform plan "
        "-detailed-exitcode) or, with --full, CRDs of a chart's crds/ that the cluster serves "
        "differently, 1 error."
    )
    register_engine_command(subparsers, name, f"{summary}. {exits}", run)


def run(args: argparse.Namespace) -> int:
    engine, env = start(args)
    the_plan, observation = engine.plan(env, full=args.full)
    # --full decodes every release: then the CRDs `crds: create` left behind show too, and
    # every deployed release's workloads are read (one read, no waiting).
    crds = (
        deployed_differences(engine.kube, observation.desired.releases, observation.observed)
        if args.full
        else []
    )
    health = engine.read_health(observation) if args.full else {}
    listed = [
        {
            "release": r.name,
            "namespace": r.namespace,
            "differences": [observation.mask(d) for d in found],
        }
        for r, found in crds
    ]
    if args.output == "json":
        document = {**common.plan_json(the_plan), "crds": listed}
        if args.full:
            document["health"] = common.health_json(health)
        common.dump_json(document)
    else:
        common.print_plan(the_plan)
        _print_crds(listed)
        common.print_health(health)
    return PENDING_EXIT if the_plan.changes_pending or crds else 0


def _print_crds(listed: list[dict[str, Any]]) -> None:
    if listed:
        print("CRDs in the charts' crds/ that the cluster serves differently (crds: create):")
    for item in listed:
        for difference in item["differences"]:
            line = f"{item['namespace']}/{item['release']}: {difference}"
            print("  " + for_terminal(one_line(line)))
