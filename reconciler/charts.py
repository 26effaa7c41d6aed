"""Charts that several releases of one pass install: pulled once, installed from the archive.

Every `helm install oci://...` downloads its chart again, and for a classic repository
the whole index too; that is a third of the CPU time of a cold converge. A chart that
only one action needs is left to that action's own helm process, so a pass that
changes one release still runs one helm process, except from a classic HTTP repository:
there helm takes `--version 1.2.3` as a range that `1.2.3+build.5` satisfies, so its
charts are always pulled first and installed only when the archive holds exactly the
pinned version (`Helm.pull` checks).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from reconciler import scratch
from reconciler.errors import HelmError, ReconcilerError
from reconciler.helm import Helm
from reconciler.model import ChartRef
from reconciler.plan import Action


class SharedCharts:
    """Pulls each chart needed by two or more actions once, on first use, into a folder
    that lives as long as the pass."""

    def __init__(self, helm: Helm, actions: Iterable[Action], timeout_seconds: int = 300) -> None:
        uses = Counter(
            a.desired.chart for a in actions if a.desired and a.kind in ("install", "upgrade")
        )
        self._shared = {chart for chart, count in uses.items() if count > 1 or not chart.is_oci}
        # Charts whose crds/ the reconciler applies itself (reconciler.crds) are read locally.
        self._shared |= {
            a.desired.chart
            for a in actions
            if a.desired and a.kind in ("install", "upgrade") and a.desired.crds == "createReplace"
        }
        self._helm = helm
        self._timeout_seconds = timeout_seconds
        self._folder: Path | None = None
        self._locks = {chart: threading.Lock() for chart in self._shared}
        self._pulled: dict[ChartRef, Path | ReconcilerError] = {}
        self._folder_lock = threading.Lock()

    def archive(self, chart: ChartRef) -> Path | None:
        """The pulled archive of a shared (or HTTP) chart; None when the action should fetch it
        itself.

        A failed pull is remembered, so the releases of a missing chart fail with one
        helm process, not one each.
        """

        if chart not in self._shared:
            return None
        with self._locks[chart]:
            if chart not in self._pulled:
                self._pulled[chart] = self._pull(chart)
            pulled = self._pulled[chart]
        if isinstance(pulled, ReconcilerError):
            raise HelmError(str(pulled))  # a fresh one per release: each thread raises its own
        return pulled

    def close(self) -> None:
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)

    def __enter__(self) -> SharedCharts:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _pull(self, chart: ChartRef) -> Path | ReconcilerError:
        into = Path(tempfile.mkdtemp(prefix="chart-", dir=self._root()))
        try:
            return self._helm.pull(chart, into, self._timeout_seconds)
        except ReconcilerError as error:
            return error

    def _root(self) -> Path:
        with self._folder_lock:
            if self._folder is None:
                self._folder = scratch.make("charts")
            return self._folder
