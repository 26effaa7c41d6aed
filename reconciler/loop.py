"""The reconcile loop: poll (cheap head check first), watch, resync, never act on a bad revision.

Only the lease holder acts. A replica that is not leading still fetches and
validates, so it is ready to take over at once and its readiness means
something.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from reconciler import log
from reconciler.deployments import DeploymentReporter
from reconciler.errors import ReconcilerError, ValidationError, unexpected
from reconciler.execute import Outcome
from reconciler.model import Environments
from reconciler.reconcile import Engine, PassResult, load_revision
from reconciler.source import GitSource, LocalSource


class Leadership(Protocol):
    @property
    def is_leader(self) -> bool: ...


class Observer(Protocol):
    """Where the loop reports: metrics, events. Every method is best effort."""

    def outcome(self, outcome: Outcome) -> None: ...

    def passed(self, result: PassResult, seconds: float, full: bool) -> None: ...

    def fetched(self, seconds: float) -> None: ...

    def failed(self, kind: str) -> None: ...


class _Quiet:
    def outcome(self, outcome: Outcome) -> None:
        return None

    def passed(self, result: PassResult, seconds: float, full: bool) -> None:
        return None

    def fetched(self, seconds: float) -> None:
        return None

    def failed(self, kind: str) -> None:
        return None


class _Always:
    is_leader = True


@dataclass(frozen=True)
class LoopSettings:
    interval: float = 30.0
    resync_interval: float = 600.0
    once: bool = False


@dataclass
class LoopState:
    """What the loop knows between passes; read by health and readiness."""

    head: str = ""
    good: Environments | None = None
    invalid_head: str = ""
    last_result: PassResult | None = None
    synced: bool = False
    heartbeat: float = field(default_factory=time.monotonic)


class Loop:
    def __init__(
        self,
        engine: Engine,
        source: GitSource | LocalSource,
        settings: LoopSettings,
        leadership: Leadership | None = None,
        observer: Observer | None = None,
        deployments: DeploymentReporter | None = None,
    ) -> None:
        self.engine = engine
        self.source = source
        self.settings = settings
        self.leadership = leadership or _Always()
        self.observer = observer or _Quiet()
        self.deployments = deployments
        self.state = LoopState()
        self.stop = threading.Event()
        self.wake = threading.Event()
        self._next_resync = 0.0

    def run(self) -> int:
        watcher = (
            _watch(self.source.path, self.wake) if isinstance(self.source, LocalSource) else None
        )
        try:
            while not self.stop.is_set():
                ok = self.once()
                if self.settings.once:
                    return 0 if ok else 1
                self.wake.wait(self.settings.interval)
                self.wake.clear()
        finally:
            if watcher is not None:
                watcher.stop()
        return 0

    def once(self) -> bool:
        """One poll; True when the revision is good and every action succeeded."""

        self.state.heartbeat = time.monotonic()
        full = time.monotonic() >= self._next_resync
        try:
            self._refresh()
            if self.state.good is None or not self.leadership.is_leader:
                return self.state.good is not None
            started = time.monotonic()
            result = self.engine.apply(
                self.state.good, full=full, on_outcome=self.observer.outcome, proceed=self._proceed
            )
        except ReconcilerError as error:
            self.observer.failed(type(error).__name__)
            log.error("pass failed", error=str(error), kind=type(error).__name__)
            return False
        except Exception as error:  # the daemon outlives a bug or hostile input
            self.observer.failed(type(error).__name__)
            log.error("pass failed", error=unexpected(error), kind=type(error).__name__)
            return False
        if full:
            self._next_resync = time.monotonic() + self.settings.resync_interval
        self._report(result, full, time.monotonic() - started)
        if self.deployments:
            self.deployments.settle(self.state.good, result)
        return not result.failed

    def _proceed(self) -> str:
        if self.stop.is_set():
            return "shutting down"
        if not self.leadership.is_leader:
            return "lost the lease; another replica acts now"
        return ""

    def _refresh(self) -> None:
        """Fetch and load a new revision when the head moved; keep the last good one if it is invalid."""

        head = self.source.head()
        if head == self.state.head or head == self.state.invalid_head:
            return
        started = time.monotonic()
        try:
            env = load_revision(self.source, self.engine.installation)
        except ValidationError as error:
            self._refuse(head, error)
            return
        finally:
            self.observer.fetched(time.monotonic() - started)
        previous = self.state.good.revision if self.state.good else ""
        self.state.head = head
        self.state.good = env
        self.state.synced = True
        log.info("new revision", revision=env.revision)
        self._track_deployments(previous, env.revision)

    def _track_deployments(self, previous: str, revision: str) -> None:
        if self.deployments is None or self.deployments.config is None:
            return
        if not isinstance(self.source, GitSource) or not self.leadership.is_leader:
            return
        try:
            self.deployments.track(self.source.messages_since(previous, revision))
        except ReconcilerError as error:
            log.warning("cannot read the new commits for deployment statuses", error=str(error))

    def _refuse(self, head: str, error: ValidationError) -> None:
        self.state.invalid_head = head
        self.observer.failed("ValidationError")
        kept = self.state.good.revision if self.state.good else "none"
        for problem in error.problems:
            log.error("invalid revision", revision=head, problem=problem.render())
        log.error(
            "not acting on an invalid revision; keeping the last good one",
            revision=head,
            kept=kept,
            problems=len(error.problems),
        )

    def _report(self, result: PassResult, full: bool, seconds: float) -> None:
        self.state.last_result = result
        self.observer.passed(result, seconds, full)
        the_plan = result.plan
        if the_plan.actions:
            log.info(
                "pass done",
                revision=the_plan.revision,
                full=full,
                actions=len(the_plan.actions),
                failed=len(result.failed),
                held=len(the_plan.held),
                seconds=round(seconds, 3),
            )
        for drifted in the_plan.drifted:
            log.warning(
                "live drift",
                release=drifted.release,
                namespace=drifted.namespace,
                policy=drifted.policy,
                drift=drifted.drift.summary(10),
            )
        for outcome in result.outcomes:
            log.info(
                f"{outcome.kind} {outcome.result}",
                release=outcome.release,
                namespace=outcome.namespace,
                seconds=round(outcome.seconds, 2),
                message=outcome.message,
            )


def _watch(path: Path, wake: threading.Event) -> Any:
    """Wake the loop when a file under `path` changes (development mode)."""

    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer as FileObserver

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            if "/.git/" not in str(event.src_path):
                wake.set()

    observer = FileObserver()
    observer.schedule(Handler(), str(path), recursive=True)
    observer.start()
    return observer
