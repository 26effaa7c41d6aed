"""Prometheus metrics of the daemon, in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from reconciler.execute import Outcome
from reconciler.health import HEALTHS
from reconciler.reconcile import PassResult

# Label values as Prometheus favours them: lower case, no spaces.
HEALTH_LABELS = {
    "Healthy": "healthy",
    "Progressing": "progressing",
    "Degraded": "degraded",
    "Missing objects": "missing",
}


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.pass_duration = Histogram(
            "reconciler_pass_duration_seconds", "Duration of a reconcile pass", ["full"], registry=r
        )
        self.last_success = Gauge(
            "reconciler_last_success_timestamp_seconds",
            "Unix time of the last pass without failures",
            registry=r,
        )
        self.revision = Gauge(
            "reconciler_revision_info",
            "The environments revision last acted on",
            ["revision"],
            registry=r,
        )
        self.release_state = Gauge(
            "reconciler_release_state",
            "1 for the state each release is in after the last pass",
            ["namespace", "release", "state"],
            registry=r,
        )
        self.release_health = Gauge(
            "reconciler_release_health",
            "1 for the health each release's workloads had when last read (after its install "
            "or upgrade, or a full resync), 0 for the others",
            ["namespace", "release", "health"],
            registry=r,
        )
        self.helm_ops = Counter(
            "reconciler_helm_operations_total",
            "Helm operations by kind and result",
            ["kind", "result"],
            registry=r,
        )
        self.helm_duration = Histogram(
            "reconciler_helm_operation_duration_seconds",
            "Duration of helm operations",
            ["kind"],
            registry=r,
        )
        self.git_fetch = Histogram(
            "reconciler_git_fetch_duration_seconds", "Duration of git fetches", registry=r
        )
        self.errors = Counter("reconciler_errors_total", "Errors by kind", ["kind"], registry=r)
        self.leader = Gauge("reconciler_leader", "1 while this replica holds the lease", registry=r)

    def observe_outcome(self, outcome: Outcome) -> None:
        self.helm_ops.labels(outcome.kind, outcome.result).inc()
        if outcome.result != "skipped":
            self.helm_duration.labels(outcome.kind).observe(outcome.seconds)

    def observe_pass(self, result: PassResult, seconds: float, full: bool, now: float) -> None:
        self.pass_duration.labels(str(full).lower()).observe(seconds)
        if not result.failed:
            self.last_success.set(now)
        self.revision.clear()
        self.revision.labels(result.plan.revision).set(1)
        self.release_state.clear()
        for key, state in result.states().items():
            self.release_state.labels(key[0], key[1], state.split(":")[0]).set(1)
        self.release_health.clear()
        for key, verdict in result.health.items():
            for health in HEALTHS:
                label = HEALTH_LABELS[health]
                self.release_health.labels(key[0], key[1], label).set(health == verdict.health)

    def render(self) -> bytes:
        return generate_latest(self.registry)
