"""Building an Engine from the command line."""

from __future__ import annotations

import os

from reconciler.commands.common import Wiring
from reconciler.reconcile import Engine, load_revision
from reconciler.status import StatusStore

__all__ = ["engine_for", "load_revision"]

STATUS_NAMESPACE = os.environ.get("RECONCILER_NAMESPACE", "reconciler")


def engine_for(wiring: Wiring) -> Engine:
    status = StatusStore(wiring.kube, STATUS_NAMESPACE, wiring.installation)
    return Engine(wiring.installation, wiring.kube, wiring.helm, status, wiring.options)
