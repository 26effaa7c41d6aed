"""Workload health: is each live object of a release what its controller was asked for?

Pure rules on live object JSON, after kstatus (kubernetes-sigs/cli-utils
`pkg/kstatus/status`), the rules helm 4's `--wait=watcher`, Flux and kubectl's
`rollout status` share. Each object is Current (ready), InProgress (its controller
is still working), Failed (stalled: a deadline exceeded, a failed Job, crash-looping
Pods) or NotFound; a release is Healthy when every object is Current. Reading the
objects is the caller's (`reconciler.workloads`).

Beyond kstatus: any object with a `Ready` condition counts it (custom resources of
operators), a Service of type LoadBalancer needs an ingress address (as helm's own
readiness check has it), and a workload whose Pods crash-loop or cannot pull their
image is Failed rather than merely InProgress (kstatus reports that only once the
Deployment's progress deadline, 10 minutes by default, is exceeded).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from reconciler.jsonshape import items, mapping

ObjectStatus = Literal["Current", "InProgress", "Failed", "NotFound"]
Health = Literal["Healthy", "Progressing", "Degraded", "Missing objects"]
HEALTHS: tuple[Health, ...] = ("Healthy", "Progressing", "Degraded", "Missing objects")

# Kinds whose Pods tell why they are not ready (a crash loop is Failed, not InProgress).
POD_OWNERS = frozenset({"apps/Deployment", "apps/StatefulSet", "apps/DaemonSet", "apps/ReplicaSet"})
# Container waiting reasons no retry of the kubelet fixes by itself.
STUCK_REASONS = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)
# How long a Pod may wait for a node before it counts as unschedulable (kstatus's window).
SCHEDULE_WINDOW = timedelta(seconds=15)
MESSAGE_LIMIT = 200
# Objects a release's status row lists (the rest are counted): an outage must not make the
# status ConfigMap outgrow its 1 MiB.
SHOWN_OBJECTS = 5
NAME_LIMIT = 253  # a Kubernetes name's own limit; a tenant's record may hold any length

Verdict = tuple[ObjectStatus, str]
JsonObject = Mapping[str, Any]


@dataclass(frozen=True)
class ObjectRef:
    """One object of a release: `namespace` is "" for a cluster-scoped one."""

    api_version: str
    kind: str
    namespace: str
    name: str

    @property
    def group_kind(self) -> str:
        group = self.api_version.rpartition("/")[0]
        return f"{group}/{self.kind}" if group else self.kind

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}"


@dataclass(frozen=True)
class ObjectResult:
    ref: ObjectRef
    status: ObjectStatus
    message: str

    def __str__(self) -> str:
        return f"{self.ref}: {self.message}" if self.message else str(self.ref)


@dataclass(frozen=True)
class ReleaseHealth:
    """A release's health and the objects that make it less than Healthy (worst first)."""

    health: Health
    unhealthy: tuple[ObjectResult, ...] = ()

    @property
    def healthy(self) -> bool:
        return self.health == "Healthy"

    def summary(self, limit: int = 5) -> str:
        """`Progressing: Deployment ns/web: Available: 0/2; ...` (at most `limit` objects)."""

        if not self.unhealthy:
            return self.health
        shown = "; ".join(str(r) for r in self.unhealthy[:limit])
        more = len(self.unhealthy) - limit
        return f"{self.health}: {shown}" + (f" and {more} more" if more > 0 else "")

    def as_json(self) -> dict[str, Any]:
        """The status row's form: at most `SHOWN_OBJECTS` objects (worst first), bounded
        texts, and `more_unhealthy` counting the rest."""

        return {
            "health": self.health,
            "unhealthy": [
                {
                    "kind": _bounded(r.ref.kind, NAME_LIMIT),
                    "namespace": _bounded(r.ref.namespace, NAME_LIMIT),
                    "name": _bounded(r.ref.name, NAME_LIMIT),
                    "status": r.status,
                    "message": _bounded(r.message),
                }
                for r in self.unhealthy[:SHOWN_OBJECTS]
            ],
            "more_unhealthy": max(len(self.unhealthy) - SHOWN_OBJECTS, 0),
        }


def masked(health: ReleaseHealth, mask: Callable[[str], str]) -> ReleaseHealth:
    """The same verdict with every text masked: a condition may quote a value, and an
    object's name, namespace or kind may be rendered from one (`web-{{ .Values.suffix }}`)."""

    return replace(
        health,
        unhealthy=tuple(
            replace(r, ref=masked_ref(r.ref, mask), message=mask(r.message))
            for r in health.unhealthy
        ),
    )


def masked_ref(ref: ObjectRef, mask: Callable[[str], str]) -> ObjectRef:
    """`ref` with every field masked."""

    return ObjectRef(mask(ref.api_version), mask(ref.kind), mask(ref.namespace), mask(ref.name))


def health_of(document: Mapping[str, Any]) -> ReleaseHealth | None:
    """A verdict from its `as_json` form (the status ConfigMap, which anyone with write
    access to it may have edited), None when it is not one."""

    name = mapping(document).get("health")
    if name not in HEALTHS:
        return None
    unhealthy = []
    for item in items(document.get("unhealthy"))[:SHOWN_OBJECTS]:
        if not isinstance(item, dict) or item.get("status") not in _RANK:
            continue
        kind, namespace, obj = (
            _bounded(str(item.get(field, "")), NAME_LIMIT)
            for field in ("kind", "namespace", "name")
        )
        ref = ObjectRef("", kind, namespace, obj)
        unhealthy.append(ObjectResult(ref, item["status"], _bounded(str(item.get("message", "")))))
    return ReleaseHealth(name, tuple(unhealthy))


_RANK: dict[ObjectStatus, int] = {"Failed": 0, "NotFound": 1, "InProgress": 2, "Current": 3}
_HEALTH_OF: dict[ObjectStatus, Health] = {
    "Failed": "Degraded",
    "NotFound": "Missing objects",
    "InProgress": "Progressing",
    "Current": "Healthy",
}


def release_health(results: Iterable[ObjectResult]) -> ReleaseHealth:
    """The worst object decides: any Failed is Degraded, else any NotFound is Missing
    objects, else any InProgress is Progressing, else Healthy (no objects: Healthy)."""

    unhealthy = sorted(
        (r for r in results if r.status != "Current"),
        key=lambda r: (_RANK[r.status], str(r.ref)),
    )
    if not unhealthy:
        return ReleaseHealth("Healthy")
    return ReleaseHealth(_HEALTH_OF[unhealthy[0].status], tuple(unhealthy))


def object_status(obj: JsonObject, now: datetime | None = None) -> Verdict:
    """kstatus's verdict on one live object (with its status), and why."""

    verdict = _generic(obj) or _specific(obj, now) or _ready_condition(obj)
    status, message = verdict or ("Current", "")
    return status, _bounded(message)


def workload_status(obj: JsonObject, pods: Sequence[JsonObject], now: datetime) -> Verdict:
    """A workload's verdict, Failed when one of its Pods is stuck (the Pod named)."""

    status, message = object_status(obj, now)
    if status != "InProgress":
        return status, message
    for pod in pods:
        pod_verdict, why = pod_status(pod, now)
        if pod_verdict == "Failed":
            name = _get(pod, "metadata", "name") or "?"
            return "Failed", _bounded(f"{message}; Pod {name}: {why}" if message else why)
    return status, message


def owns_pods(ref: ObjectRef) -> bool:
    return ref.group_kind in POD_OWNERS


def pod_selector(obj: JsonObject) -> str | None:
    """`spec.selector` as a label selector string; None when it has none or one the
    label selector syntax cannot say (then no Pod is read)."""

    selector = _get(obj, "spec", "selector")
    if not isinstance(selector, dict):
        return None
    labels = selector.get("matchLabels") or {}
    expressions = selector.get("matchExpressions") or []
    if not isinstance(labels, Mapping) or not isinstance(expressions, list):
        return None
    parts = [f"{k}={v}" for k, v in sorted(labels.items(), key=lambda kv: (str(kv[0]), str(kv[1])))]
    for expression in expressions:
        if not isinstance(expression, Mapping):
            return None
        key, operator = expression.get("key"), expression.get("operator")
        values = ",".join(str(v) for v in items(expression.get("values")))
        if operator == "In":
            parts.append(f"{key} in ({values})")
        elif operator == "NotIn":
            parts.append(f"{key} notin ({values})")
        elif operator == "Exists":
            parts.append(str(key))
        elif operator == "DoesNotExist":
            parts.append(f"!{key}")
        else:
            return None
    return ",".join(parts) or None


def pod_status(pod: JsonObject, now: datetime | None = None) -> Verdict:
    phase = _get(pod, "status", "phase") or ""
    if phase in ("Succeeded", "Failed"):
        return "Current", f"Pod has completed ({phase})"
    if phase == "Running":
        if _condition(pod, "Ready").get("status") == "True":
            return "Current", ""
        stuck = _stuck_containers(pod)
        if stuck:
            return "Failed", "containers " + ", ".join(stuck)
        return "InProgress", "Pod is running but not Ready"
    if phase == "Pending":
        stuck = _stuck_containers(pod)
        if stuck:
            return "Failed", "containers " + ", ".join(stuck)
        scheduled = _condition(pod, "PodScheduled")
        if scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
            created = _timestamp(_get(pod, "metadata", "creationTimestamp"))
            if now is None or created is None or now - created > SCHEDULE_WINDOW:
                return "Failed", f"Pod cannot be scheduled: {scheduled.get('message', '')}"
        return "InProgress", "Pod is Pending"
    return "InProgress", "Pod not yet observed"


def _generic(obj: JsonObject) -> Verdict | None:
    if _get(obj, "metadata", "deletionTimestamp"):
        return "InProgress", "being deleted"
    generation = _get(obj, "metadata", "generation")
    observed = _get(obj, "status", "observedGeneration")
    if isinstance(generation, int) and isinstance(observed, int) and generation != observed:
        return (
            "InProgress",
            f"generation {generation} not yet observed by its controller (at {observed})",
        )
    reconciling = _condition(obj, "Reconciling")
    if reconciling.get("status") == "True":
        return "InProgress", str(reconciling.get("message") or "Reconciling")
    stalled = _condition(obj, "Stalled")
    if stalled.get("status") == "True":
        return "Failed", str(stalled.get("message") or "Stalled")
    return None


def _specific(obj: JsonObject, now: datetime | None) -> Verdict | None:
    api_version = str(mapping(obj).get("apiVersion") or "")
    group = api_version.rpartition("/")[0]
    kind = str(mapping(obj).get("kind") or "")
    rule = _RULES.get(f"{group}/{kind}" if group else kind)
    if rule is None:
        return None
    if kind == "Pod":
        return pod_status(obj, now)
    return rule(obj)


def _deployment(obj: JsonObject) -> Verdict:
    progressing = _condition(obj, "Progressing")
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return "Failed", "progress deadline exceeded"
    want = _int(obj, ("spec", "replicas"), 1)
    replicas = _int(obj, ("status", "replicas"), 0)
    updated = _int(obj, ("status", "updatedReplicas"), 0)
    ready = _int(obj, ("status", "readyReplicas"), 0)
    available = _int(obj, ("status", "availableReplicas"), 0)
    if want > replicas:
        return "InProgress", f"Replicas: {replicas}/{want}"
    if want > updated:
        return "InProgress", f"Updated: {updated}/{want}"
    if replicas > want:
        return "InProgress", f"Pending termination: {replicas - want}"
    if updated > available:
        return "InProgress", f"Available: {available}/{updated}"
    if want > ready:
        return "InProgress", f"Ready: {ready}/{want}"
    # Without a progress deadline the controller never sets Progressing: do not wait for it.
    deadline = _get(obj, "spec", "progressDeadlineSeconds")
    rolled_out = progressing.get("status") == "True" and (
        progressing.get("reason") == "NewReplicaSetAvailable"
    )
    if deadline is not None and deadline != 2**31 - 1 and not rolled_out:
        return "InProgress", "new ReplicaSet not yet available"
    if _condition(obj, "Available").get("status") != "True":
        return "InProgress", "Deployment not Available"
    return "Current", ""


def _statefulset(obj: JsonObject) -> Verdict:
    want = _int(obj, ("spec", "replicas"), 1)
    replicas = _int(obj, ("status", "replicas"), 0)
    ready = _int(obj, ("status", "readyReplicas"), 0)
    current = _int(obj, ("status", "currentReplicas"), 0)
    updated = _int(obj, ("status", "updatedReplicas"), 0)
    partition = _int(obj, ("spec", "updateStrategy", "rollingUpdate", "partition"), -1)
    if want > replicas:
        return "InProgress", f"Replicas: {replicas}/{want}"
    if want > ready:
        return "InProgress", f"Ready: {ready}/{want}"
    if replicas > want:
        return "InProgress", f"Pending termination: {replicas - want}"
    # OnDelete: Pods take a new template only when someone deletes them, so an old
    # revision is expected; readiness above is still required.
    if _get(obj, "spec", "updateStrategy", "type") == "OnDelete":
        return "Current", ""
    if partition != -1:
        if updated < want - partition:
            return "InProgress", f"Updated: {updated}/{want - partition} (partitioned rollout)"
        return "Current", ""
    if want > current:
        return "InProgress", f"Current: {current}/{want}"
    if _get(obj, "status", "currentRevision") != _get(obj, "status", "updateRevision"):
        return "InProgress", "update revision not yet current"
    return "Current", ""


def _daemonset(obj: JsonObject) -> Verdict:
    # The controller always sets these once it acted: their absence means it has not yet.
    if _get(obj, "metadata", "generation") is None:
        return "InProgress", "no metadata.generation yet"
    if _get(obj, "status", "observedGeneration") is None:
        return "InProgress", "not yet observed by its controller"
    desired = _int(obj, ("status", "desiredNumberScheduled"), -1)
    if desired == -1:
        return "InProgress", "no status.desiredNumberScheduled yet"
    # OnDelete: Pods take a new template only when deleted; old Pods may stay, ready.
    on_delete = _get(obj, "spec", "updateStrategy", "type") == "OnDelete"
    for field, label in (
        ("currentNumberScheduled", "Scheduled"),
        ("updatedNumberScheduled", "Updated"),
        ("numberAvailable", "Available"),
        ("numberReady", "Ready"),
    ):
        have = _int(obj, ("status", field), 0)
        if desired > have and not (on_delete and label == "Updated"):
            return "InProgress", f"{label}: {have}/{desired}"
    return "Current", ""


def _replicaset(obj: JsonObject) -> Verdict:
    failure = _condition(obj, "ReplicaFailure")
    if failure.get("status") == "True":
        return "InProgress", f"replica failure: {failure.get('message', '')}"
    want = _int(obj, ("spec", "replicas"), 1)
    for field, label in (
        ("fullyLabeledReplicas", "Labelled"),
        ("availableReplicas", "Available"),
        ("readyReplicas", "Ready"),
    ):
        have = _int(obj, ("status", field), 0)
        if want > have:
            return "InProgress", f"{label}: {have}/{want}"
    replicas = _int(obj, ("status", "replicas"), 0)
    if replicas > want:
        return "InProgress", f"Pending termination: {replicas - want}"
    return "Current", ""


def _job(obj: JsonObject) -> Verdict:
    for kind, verdict in (("Complete", "Current"), ("Failed", "Failed"), ("Suspended", "Current")):
        condition = _condition(obj, kind)
        if condition.get("status") == "True":
            if verdict == "Failed":
                failed = _int(obj, ("status", "failed"), 0)
                why = condition.get("message") or condition.get("reason") or ""
                return "Failed", f"Job failed ({failed} failed Pod(s)){': ' + why if why else ''}"
            return "Current", ""
    if not _get(obj, "status", "startTime"):
        return "InProgress", "Job not started"
    return "Current", ""


def _pvc(obj: JsonObject) -> Verdict:
    phase = _get(obj, "status", "phase") or "unknown"
    if phase != "Bound":
        return "InProgress", f"not Bound (phase {phase})"
    return "Current", ""


def _service(obj: JsonObject) -> Verdict:
    if _get(obj, "spec", "type") != "LoadBalancer":
        return "Current", ""
    if not _get(obj, "spec", "clusterIP"):
        return "InProgress", "no cluster IP yet"
    if not _get(obj, "status", "loadBalancer", "ingress"):
        return "InProgress", "LoadBalancer has no ingress address yet"
    return "Current", ""


def _crd(obj: JsonObject) -> Verdict:
    names = _condition(obj, "NamesAccepted")
    if names.get("status") == "False":
        return "Failed", str(names.get("message") or "names not accepted")
    established = _condition(obj, "Established")
    if established.get("status") == "True":
        return "Current", ""
    if established.get("status") == "False" and established.get("reason") != "Installing":
        return "Failed", str(established.get("message") or "not established")
    return "InProgress", "not yet established"


def _always(obj: JsonObject) -> Verdict:
    return "Current", ""


_RULES: dict[str, Callable[[JsonObject], Verdict]] = {
    "apps/Deployment": _deployment,
    "extensions/Deployment": _deployment,
    "apps/StatefulSet": _statefulset,
    "apps/DaemonSet": _daemonset,
    "extensions/DaemonSet": _daemonset,
    "apps/ReplicaSet": _replicaset,
    "batch/Job": _job,
    "PersistentVolumeClaim": _pvc,
    "Service": _service,
    "Pod": _always,  # see _specific: Pods need the clock
    "apiextensions.k8s.io/CustomResourceDefinition": _crd,
    "ConfigMap": _always,
    "Secret": _always,
    "batch/CronJob": _always,
    "policy/PodDisruptionBudget": _always,
}


def _ready_condition(obj: JsonObject) -> Verdict | None:
    """Any other object that reports a `Ready` condition (most operators' resources)."""

    ready = _condition(obj, "Ready")
    if not ready:
        return None
    if ready.get("status") == "True":
        return "Current", ""
    why = ready.get("message") or ready.get("reason") or f"Ready is {ready.get('status')}"
    return "InProgress", f"not Ready: {why}"


def _stuck_containers(pod: JsonObject) -> list[str]:
    stuck = []
    for field in ("initContainerStatuses", "containerStatuses"):
        for status in items(_get(pod, "status", field)):
            waiting = mapping(_get(status, "state", "waiting"))
            if waiting.get("reason") in STUCK_REASONS:
                restarts = status.get("restartCount", 0)
                stuck.append(f"{status.get('name', '?')} {waiting['reason']} ({restarts} restarts)")
    return stuck


def _condition(obj: JsonObject, kind: str) -> Mapping[str, Any]:
    for condition in items(_get(obj, "status", "conditions")):
        if isinstance(condition, dict) and condition.get("type") == kind:
            return condition
    return {}


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _int(obj: JsonObject, path: tuple[str, ...], default: int) -> int:
    value = _get(obj, *path)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _timestamp(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _bounded(message: str, limit: int = MESSAGE_LIMIT) -> str:
    """Controllers' and operators' text: one line, bounded (a condition may hold a page)."""

    line = " ".join(str(message).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
