"""`reconciler status`: the last pass as recorded in the cluster's status ConfigMap."""

from __future__ import annotations

import argparse
import os
from typing import Any

from reconciler.commands import common
from reconciler.errors import ReconcilerError, UsageError
from reconciler.jsonshape import items
from reconciler.status import StatusStore, status_name
from reconciler.terminal import for_terminal

COLUMNS = [
    "release",
    "namespace",
    "desired",
    "deployed",
    "state",
    "health",
    "helm_status",
    "last_action",
    "message",
]


def register(subparsers: Any, name: str, summary: str) -> None:
    env = os.environ.get
    parser = subparsers.add_parser(
        name,
        help=summary,
        description=summary
        + ". HEALTH is each release's workload health as last read (after its install or "
        "upgrade, and on each full resync): Healthy, Progressing, Degraded or Missing objects. "
        "Exit 1 when a release failed, is held, Degraded or has missing objects.",
    )
    parser.add_argument(
        "-i", "--installation", default=env("RECONCILER_INSTALLATION"), help="installation name"
    )
    parser.add_argument(
        "--kubeconfig", default=env("KUBECONFIG"), help="kubeconfig file (env KUBECONFIG)"
    )
    parser.add_argument("--context", help="kubeconfig context")
    parser.add_argument(
        "--namespace",
        default=env("RECONCILER_NAMESPACE", "reconciler"),
        help="namespace of the reconciler and its status ConfigMap (default: reconciler)",
    )
    common.add_output_flag(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.installation:
        raise UsageError("--installation is required (or set RECONCILER_INSTALLATION)")
    kube, _ = common.connect(args.kubeconfig, args.context)
    document = StatusStore(kube, args.namespace, args.installation).read()
    if not document:
        name = status_name(args.installation)
        raise ReconcilerError(
            f"no status recorded yet: ConfigMap {args.namespace}/{name} not found or empty"
        )
    # The ConfigMap is writable by others: rows that are no mapping are left out.
    rows = [row for row in items(document.get("releases")) if isinstance(row, dict)]
    if args.output == "json":
        common.dump_json(document)
    else:
        revision = str(document.get("revision", ""))[:12]
        head = f"installation {document.get('installation')} at {revision}"
        print(for_terminal(f"{head}, last pass {document.get('time')}"))
        print(common.table(rows, COLUMNS))
    unhealthy = [
        r
        for r in rows
        if r.get("state") in ("failed", "held", "skipped")
        or r.get("health") in ("Degraded", "Missing objects")
    ]
    return 1 if unhealthy else 0
