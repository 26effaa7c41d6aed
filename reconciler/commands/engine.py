"""The commands that run the engine once (`plan`, `apply`): their flags and their set-up."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

from reconciler.commands import common
from reconciler.model import Environments
from reconciler.reconcile import Engine, load_revision
from reconciler.status import StatusStore

STATUS_NAMESPACE = os.environ.get("RECONCILER_NAMESPACE", "reconciler")


def engine_for(wiring: common.Wiring) -> Engine:
    status = StatusStore(wiring.kube, STATUS_NAMESPACE, wiring.installation)
    return Engine(wiring.installation, wiring.kube, wiring.helm, status, wiring.options)


def register_engine_command(
    subparsers: Any, name: str, description: str, run: Callable[[argparse.Namespace], int]
) -> None:
    parser = subparsers.add_parser(name, help=description.split(". ")[0], description=description)
    common.add_source_flags(parser)
    common.add_cluster_flags(parser)
    common.add_output_flag(parser)
    parser.set_defaults(func=run)


def start(args: argparse.Namespace) -> tuple[Engine, Environments]:
    """Connect, sync the repo and load it (an invalid revision stops here)."""

    wiring = common.wiring(args)
    env = load_revision(wiring.source, wiring.installation)
    return engine_for(wiring), env
