"""`reconciler run`: the loop that keeps one installation converged."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import threading
import time
from types import FrameType
from typing import Any

from reconciler import log, scratch
from reconciler.commands import common, httpflags
from reconciler.commands.engine import STATUS_NAMESPACE, engine_for
from reconciler.commands.gitflags import read_secret
from reconciler.deployments import DeploymentReporter
from reconciler.events import EventRecorder
from reconciler.execute import Outcome
from reconciler.github import GitHubConfig
from reconciler.httpserve import Limits
from reconciler.leader import LeaderElector, LeaseSettings
from reconciler.loop import Loop, LoopSettings
from reconciler.metrics import Metrics
from reconciler.notify import Notifier
from reconciler.reconcile import Engine, PassResult
from reconciler.server import MAX_BODY, Endpoints, serve

HEALTHY_WITHIN = 300.0  # a loop that has not polled for this long is stuck


def register(subparsers: Any, name: str, summary: str) -> None:
    env = os.environ.get
    parser = subparsers.add_parser(
        name,
        help=summary,
        description=summary
        + ". Each poll asks the git server for the branch head first and fetches only when it moved; "
        "a local folder is watched for changes instead. Stops cleanly on SIGTERM. With "
        "RECONCILER_GITHUB_TOKEN_FILE set, posts GitHub Deployment statuses for promotion commits "
        "that carry a Deployment-Id trailer (RECONCILER_GITHUB_API_URL for GitHub Enterprise).",
    )
    common.add_source_flags(parser)
    common.add_cluster_flags(parser)
    group = parser.add_argument_group("loop")
    group.add_argument(
        "--interval",
        type=float,
        default=float(env("RECONCILER_INTERVAL", "30")),
        help="seconds between polls (default 30)",
    )
    group.add_argument(
        "--resync-interval",
        type=float,
        default=float(env("RECONCILER_RESYNC_INTERVAL", "600")),
        help="seconds between full resyncs that find changes made by hand and read every "
        "release's workload health (default 600)",
    )
    group.add_argument(
        "--once", action="store_true", help="stop after the first pass (for tests and jobs)"
    )
    group.add_argument(
        "--shutdown-grace",
        type=float,
        default=float(env("RECONCILER_SHUTDOWN_GRACE", "25")),
        help="on SIGTERM, seconds to let running helm operations finish before stopping them with SIGTERM (default 25)",
    )
    group.add_argument(
        "--log-format",
        choices=["auto", "json", "text"],
        default="auto",
        help="log lines (auto: json unless a terminal)",
    )
    daemon = parser.add_argument_group("daemon")
    daemon.add_argument(
        "--listen",
        default=env("RECONCILER_LISTEN", ""),
        help="serve /healthz, /readyz, /metrics (and /hooks/git) on HOST:PORT, e.g. :8080 (env RECONCILER_LISTEN)",
    )
    daemon.add_argument(
        "--webhook-secret-file",
        default=env("RECONCILER_WEBHOOK_SECRET_FILE"),
        help="enable POST /hooks/git, a push webhook verified by X-Hub-Signature-256 that triggers a poll at once",
    )
    daemon.add_argument(
        "--leader-elect",
        action="store_true",
        default=env("RECONCILER_LEADER_ELECT", "") in ("1", "true"),
        help="act only while holding the Lease reconciler-<installation> (env RECONCILER_LEADER_ELECT)",
    )
    daemon.add_argument("--lease-duration", type=float, default=15.0, help="seconds (default 15)")
    daemon.add_argument(
        "--notify-url-file",
        default=env("RECONCILER_NOTIFY_URL_FILE"),
        help="file holding a Slack-compatible webhook URL; each pass that acted is posted there",
    )
    daemon.add_argument(
        "--notify-failures-only",
        action="store_true",
        default=env("RECONCILER_NOTIFY_FAILURES_ONLY", "") in ("1", "true"),
        help="notify only about passes with a failure",
    )
    httpflags.add_http_flags(parser, MAX_BODY)
    parser.set_defaults(func=run)


class Reporter:
    """Metrics and Events for the loop."""

    def __init__(
        self, metrics: Metrics, events: EventRecorder | None, notifier: Notifier | None = None
    ) -> None:
        self.metrics = metrics
        self.events = events
        self.notifier = notifier
        self._held: set[tuple[str, str, str]] = set()
        self._health: dict[tuple[str, str], str] = {}

    def outcome(self, outcome: Outcome) -> None:
        self.metrics.observe_outcome(outcome)
        if self.events:
            self.events.outcome(outcome)

    def passed(self, result: PassResult, seconds: float, full: bool) -> None:
        self.metrics.observe_pass(result, seconds, full, time.time())
        self._gave_up(result)
        self._health_changed(result)
        if self.events:
            for drifted in result.plan.drifted:
                self.events.drifted(drifted)
        if self.notifier:
            self.notifier.passed(result)

    def _gave_up(self, result: PassResult) -> None:
        """One Warning Event per release that newly gave up (not one per poll)."""

        holds = {(h.namespace, h.release, h.reason): h for h in result.plan.held if h.gave_up}
        if self.events:
            for key in holds.keys() - self._held:
                self.events.gave_up(holds[key])
        self._held = set(holds)

    def _health_changed(self, result: PassResult) -> None:
        """One Event per release whose health changed (a full resync found it Degraded, or
        healthy again), not one per poll; the first pass only records what it saw."""

        now: dict[tuple[str, str], str] = {k: v.health for k, v in result.health.items()}
        if self.events and self._health:
            for key, health in sorted(now.items()):
                before = self._health.get(key)
                if before is None or before == health:
                    continue
                verdict = result.health[key]
                kind = "Normal" if verdict.healthy else "Warning"
                where = f"{key[0]}/{key[1]}"
                self.events.emit(kind, "Healthy" if verdict.healthy else "Unhealthy",
                                 f"{where}: {before} -> {verdict.summary()}")  # fmt: skip
        self._health = now

    def fetched(self, seconds: float) -> None:
        self.metrics.git_fetch.observe(seconds)

    def failed(self, kind: str) -> None:
        self.metrics.errors.labels(kind).inc()


def run(args: argparse.Namespace) -> int:
    log.setup(args.log_format)
    limits = httpflags.limits_from_args(args)  # a wrong --http-* value fails before any work
    wiring = common.wiring(args)
    swept = scratch.sweep_orphans()
    if swept:
        log.info("removed scratch folders of an earlier process", folders=len(swept))
    engine = engine_for(wiring)
    metrics = Metrics()
    events = (
        EventRecorder(wiring.kube, STATUS_NAMESPACE, wiring.installation) if not args.once else None
    )
    elector = _elector(args, engine, metrics) if args.leader_elect else None
    settings = LoopSettings(
        interval=args.interval, resync_interval=args.resync_interval, once=args.once
    )
    deployments = DeploymentReporter(wiring.installation, GitHubConfig.from_env())
    url = read_secret(args.notify_url_file, "--notify-url-file")
    notifier = Notifier(url, wiring.installation, args.notify_failures_only) if url else None
    reporter = Reporter(metrics, events, notifier)
    loop = Loop(engine, wiring.source, settings, elector, reporter, deployments)
    server = _serve(args, loop, metrics, limits) if args.listen else None
    _stop_on_signals(loop, engine, args.shutdown_grace)
    threads = []
    if elector:
        threads.append(
            threading.Thread(target=elector.run, args=(loop.stop,), name="lease", daemon=True)
        )
        threads[-1].start()
    log.info(
        "started",
        installation=wiring.installation,
        repo=wiring.source_label,
        leader_elect=bool(elector),
        namespaces=",".join(sorted(wiring.options.namespaces)) or "(all)",
    )
    try:
        return loop.run()
    finally:
        loop.stop.set()
        for thread in threads:
            thread.join(timeout=5)
        if server:
            server.shutdown()


def _elector(args: argparse.Namespace, engine: Engine, metrics: Metrics) -> LeaderElector:
    identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    settings = LeaseSettings(
        namespace=STATUS_NAMESPACE,
        name=f"reconciler-{args.installation}",
        identity=identity,
        lease_duration=args.lease_duration,
        renew_deadline=args.lease_duration * 2 / 3,
        retry_period=max(args.lease_duration / 7.5, 0.2),
    )
    return LeaderElector(
        engine.kube, settings, on_change=lambda leading: metrics.leader.set(int(leading))
    )


def _serve(args: argparse.Namespace, loop: Loop, metrics: Metrics, limits: Limits) -> Any:
    secret = read_secret(args.webhook_secret_file, "--webhook-secret-file")
    endpoints = Endpoints(
        healthy=lambda: (
            time.monotonic() - loop.state.heartbeat < max(HEALTHY_WITHIN, args.interval * 3)
        ),
        ready=lambda: loop.state.synced,
        metrics=metrics.render,
        wake=loop.wake,
        webhook_secret=secret.encode() if secret else None,
    )
    server = serve(args.listen, endpoints, limits)
    host, port = server.address
    # The bound address, so `--listen 127.0.0.1:0` (any free port) can be found.
    log.info("listening", address=f"{host!s}:{port}")
    return server


def _stop_on_signals(loop: Loop, engine: Engine, grace: float) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("stopping", signal=signal.Signals(signum).name, grace_seconds=grace)
        loop.stop.set()
        loop.wake.set()
        # Running helm gets `grace` seconds to finish, then SIGTERM (never SIGKILL
        # first), so a release ends deployed or failed, not pending.
        timer = threading.Timer(grace, engine.cancel_helm)
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
