"""The reconcile loop: poll (cheap head check first), watch, resync, never act on a bad revision."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler import log
from reconciler.errors import ReconcilerError, ValidationError
from reconciler.model import Environments
from reconciler.reconcile import Engine, PassResult, load_revision
from reconciler.source import GitSource, LocalSource


@dataclass(frozen=True)
class LoopSettings:
    interval: float = 30.0
    resync_interval: float = 600.0
    once: bool = False


@dataclass
class LoopState:
    """What the loop knows between passes; read by health and metrics."""

    head: str = ""
    good: Environments | None = None
    invalid_head: str = ""
    last_result: PassResult | None = None
    last_success: float = 0.0
    passes: int = 0
    errors: dict[str, int] = field(default_factory=dict)


class Loop:
    def __init__(
        self, engine: Engine, source: GitSource | LocalSource, settings: LoopSettings
    ) -> None:
        self.engine = engine
        self.source = source
        self.settings = settings
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
        """One poll; True when the pass ran and every action succeeded."""

        full = time.monotonic() >= self._next_resync
        try:
            self._refresh()
            if self.state.good is None:
                return False
            result = self.engine.apply(self.state.good, full=full)
        except ReconcilerError as error:
            kind = type(error).__name__
            self.state.errors[kind] = self.state.errors.get(kind, 0) + 1
            log.error("pass failed", error=str(error), kind=kind)
            return False
        if full:
            self._next_resync = time.monotonic() + self.settings.resync_interval
        self._report(result, full)
        return not result.failed

    def _refresh(self) -> None:
        """Fetch and load a new revision when the head moved; keep the last good one if it is invalid."""

        head = self.source.head()
        if head == self.state.head and self.state.good is not None:
            return
        if head == self.state.invalid_head:
            return
        try:
            env = load_revision(self.source)
        except ValidationError as error:
            self.state.invalid_head = head
            self.state.errors["ValidationError"] = self.state.errors.get("ValidationError", 0) + 1
            for problem in error.problems:
                log.error(
                    "invalid revision; keeping the last good one",
                    revision=head,
                    problem=problem.render(),
                )
            kept = self.state.good.revision if self.state.good else "none"
            log.error(
                "not acting on an invalid revision",
                revision=head,
                kept=kept,
                problems=len(error.problems),
            )
            return
        self.state.head = head
        self.state.good = env
        log.info("new revision", revision=env.revision)

    def _report(self, result: PassResult, full: bool) -> None:
        self.state.passes += 1
        self.state.last_result = result
        if not result.failed:
            self.state.last_success = time.time()
        the_plan = result.plan
        if the_plan.actions or result.outcomes:
            log.info(
                "pass done",
                revision=the_plan.revision,
                full=full,
                actions=len(the_plan.actions),
                failed=len(result.failed),
                held=len(the_plan.held),
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
    from watchdog.observers import Observer

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            if "/.git/" not in str(event.src_path):
                wake.set()

    observer = Observer()
    observer.schedule(Handler(), str(path), recursive=True)
    observer.start()
    return observer
