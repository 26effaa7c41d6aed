"""Which charts a pass downloads once, and how a failed download is shared."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast

import pytest

from reconciler.charts import SharedCharts
from reconciler.errors import HelmError
from reconciler.helm import Helm
from reconciler.model import ChartRef, DesiredRelease
from reconciler.plan import Action, ActionKind

WEB = ChartRef("oci://registry.local/charts", "web", "1.0.0")
WEB_NEXT = ChartRef("oci://registry.local/charts", "web", "1.1.0")
WORKER = ChartRef("https://charts.example.com", "worker", "2.0.0")


class PullRecorder:
    """Stands in for `Helm.pull`: writes an archive and counts the calls."""

    def __init__(self, fail: bool = False) -> None:
        self.pulled: list[ChartRef] = []
        self.fail = fail
        self.lock = threading.Lock()

    def pull(self, chart: ChartRef, into: Path, timeout_seconds: int) -> Path:
        time.sleep(0.01)  # long enough for concurrent callers to overlap
        with self.lock:
            self.pulled.append(chart)
        if self.fail:
            raise HelmError(f"`helm pull {chart.name}` exited 1: not found")
        archive = into / f"{chart.name}-{chart.version}.tgz"
        archive.write_bytes(b"chart")
        return archive


def action(kind: ActionKind, name: str, chart: ChartRef) -> Action:
    desired = DesiredRelease(name, "apps", name, chart, {})
    return Action(kind, name, "apps", "why", desired)


def shared(recorder: PullRecorder, *actions: Action) -> SharedCharts:
    return SharedCharts(cast(Helm, recorder), actions)


def test_a_chart_used_once_is_left_to_its_own_helm_process() -> None:
    recorder = PullRecorder()
    with shared(recorder, action("upgrade", "a", WEB), action("install", "b", WEB_NEXT)) as charts:
        assert charts.archive(WEB) is None
        assert charts.archive(WEB_NEXT) is None
    assert recorder.pulled == []


def test_a_shared_chart_is_pulled_once_however_many_threads_ask() -> None:
    recorder = PullRecorder()
    actions = [action("install", f"r{i}", WEB) for i in range(20)] + [
        action("upgrade", "w1", WORKER),
        action("upgrade", "w2", WORKER),
    ]
    with shared(recorder, *actions) as charts:
        with ThreadPoolExecutor(8) as pool:
            paths = list(pool.map(lambda a: charts.archive(a.desired.chart), actions))
        assert {p.name for p in paths if p} == {"web-1.0.0.tgz", "worker-2.0.0.tgz"}
        assert all(p is not None and p.exists() for p in paths)
        assert sorted(c.name for c in recorder.pulled) == ["web", "worker"]
    assert not any(p.exists() for p in paths if p), "the archives go with the pass"


def test_uninstalls_do_not_count_as_uses() -> None:
    recorder = PullRecorder()
    actions = [action("install", "a", WEB), action("uninstall", "b", WEB)]
    with shared(recorder, *actions) as charts:
        assert charts.archive(WEB) is None


def test_a_failed_pull_fails_every_release_of_that_chart_with_one_attempt() -> None:
    recorder = PullRecorder(fail=True)
    with shared(recorder, *(action("install", f"r{i}", WEB) for i in range(5))) as charts:
        for _ in range(5):
            with pytest.raises(HelmError, match="not found"):
                charts.archive(WEB)
    assert recorder.pulled == [WEB]
