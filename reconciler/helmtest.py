"""`helm test` as a gate: an install or upgrade counts only once the chart's tests pass.

`test_gate` builds the verifier that `execute` calls after each install and upgrade helm
reported done. A failing test raises, so the attempt fails and remediation and retries
apply as for a failed helm run. The message names each test Pod and its phase, read from
the release record helm updates after running the tests (chart text: the caller masks
and bounds the message like every other helm text).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from reconciler.errors import HelmError, ReconcilerError
from reconciler.helm import Helm
from reconciler.kube import Kube, Resource, as_release_account
from reconciler.model import DesiredRelease, Policy
from reconciler.observe import latest_record
from reconciler.plan import Action

NAME_LIMIT = 253  # a Kubernetes object name; longer text in a record is not helm's
PHASE_LIMIT = 32
SHOWN_PODS = 5
PODS = Resource("v1", "pods")


def test_gate(helm: Helm, policy: Policy, kube: Kube | None) -> Callable[[Action], None]:
    """The verifier running `helm test` for releases whose `test` is on (project `test`,
    else `policy.test`); other releases pass untouched. Raises HelmError naming the test
    Pods that did not succeed and their phase (`kube` None: helm's words alone)."""

    def verify(action: Action) -> None:
        release = action.desired
        if release is None or not release.test:
            return
        try:
            helm.test(release, policy)
        except HelmError as error:
            pods = _test_pods(kube, release) if kube else ""
            raise HelmError(f"helm test failed{pods}: {error}") from error

    return verify


def _test_pods(kube: Kube, release: DesiredRelease) -> str:
    """`: test Pod ns/name Failed, ...`: the test hooks helm recorded, those that did not
    succeed first; empty when the record cannot be read (the failure stands anyway)."""

    try:
        record = latest_record(kube, release.namespace, release.name)
    except ReconcilerError:
        return ""
    hooks = (record or {}).get("hooks")
    runs = [run for hook in hooks if (run := _test_run(hook))] if isinstance(hooks, list) else []
    if not runs:
        return ""
    # Pods are read as the release's account: in lockdown the reconciler has no rights there.
    acting = as_release_account(kube, release.namespace, release.service_account)
    runs = [
        (name, _live_phase(acting, release.namespace, name, kind) or phase, kind)
        for name, phase, kind in runs
    ]
    runs.sort(key=lambda run: run[1] == "Succeeded")
    shown = [f"test {kind} {release.namespace}/{name} {phase}" for name, phase, kind in runs]
    more = f" and {len(shown) - SHOWN_PODS} more" if len(shown) > SHOWN_PODS else ""
    return ": " + ", ".join(shown[:SHOWN_PODS]) + more


def _live_phase(kube: Kube, namespace: str, name: str, kind: str) -> str:
    """The test Pod's phase as the cluster has it now (helm records a Pod it stopped waiting
    for as Failed; the cluster says Running), or "" when it is gone or unreadable."""

    if kind != "Pod":
        return ""
    try:
        pod = kube.get(PODS.path(namespace, name))
    except ReconcilerError:
        return ""
    status = (pod or {}).get("status")
    phase = status.get("phase") if isinstance(status, Mapping) else None
    return str(phase)[:PHASE_LIMIT] if phase else ""


def _test_run(hook: Any) -> tuple[str, str, str] | None:
    """(name, phase, kind) of one test hook of a release record, or None for other hooks."""

    if not isinstance(hook, Mapping):
        return None
    events = hook.get("events")
    if not isinstance(events, list) or not {"test", "test-success"} & {str(e) for e in events}:
        return None
    run = hook.get("last_run")
    phase = run.get("phase") if isinstance(run, Mapping) else None
    return (
        str(hook.get("name") or "?")[:NAME_LIMIT],
        str(phase or "not run")[:PHASE_LIMIT],
        str(hook.get("kind") or "object")[:PHASE_LIMIT],
    )
