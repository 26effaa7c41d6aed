"""Leader election on a coordination.k8s.io Lease, as client-go does it.

Expiry is judged by this process's own clock from the moment it last saw the
lease record change, so clock skew between replicas does not matter. Updates
carry the resourceVersion: two candidates never both win the same round.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from reconciler import log
from reconciler.errors import KubeError
from reconciler.kube import LEASES, Kube


@dataclass(frozen=True)
class LeaseSettings:
    namespace: str
    name: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


class LeaderElector:
    """Keeps trying to hold the lease; `is_leader` is what the loop checks before acting."""

    def __init__(
        self,
        kube: Kube,
        settings: LeaseSettings,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[bool], None] = lambda leading: None,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.clock = clock
        self.on_change = on_change
        self._leading = threading.Event()
        self._observed: tuple[str, str] = ("", "")
        self._observed_at = 0.0
        self._renewed_at = 0.0

    @property
    def is_leader(self) -> bool:
        return self._leading.is_set()

    def wait_for_leadership(self, stop: threading.Event) -> bool:
        while not stop.is_set():
            if self._leading.wait(0.2):
                return True
        return False

    def run(self, stop: threading.Event) -> None:
        """Try and renew every retry period until `stop`; then hand the lease back."""

        while not stop.is_set():
            self.tick()
            stop.wait(self.settings.retry_period)
        self.release()

    def tick(self) -> None:
        now = self.clock()
        try:
            won = self._try_acquire_or_renew(now)
        except KubeError as error:
            log.warning("lease update failed", lease=self.settings.name, error=str(error))
            won = False
        if won:
            self._renewed_at = now
            self._set(True)
        elif self.is_leader:
            taken = self._observed[0] != self.settings.identity
            if taken or now - self._renewed_at >= self.settings.renew_deadline:
                self._set(False)

    def release(self) -> None:
        """Give the lease up on shutdown so another replica takes over at once."""

        if not self.is_leader:
            return
        self._set(False)
        try:
            lease = self.kube.get(LEASES.path(self.settings.namespace, self.settings.name))
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.settings.identity:
                lease["spec"] |= {"holderIdentity": "", "leaseDurationSeconds": 1}
                self.kube.request(
                    "PUT", LEASES.path(self.settings.namespace, self.settings.name), body=lease
                )
        except KubeError as error:
            log.warning("could not release the lease", error=str(error))

    def _try_acquire_or_renew(self, now: float) -> bool:
        path = LEASES.path(self.settings.namespace, self.settings.name)
        lease = self.kube.get(path)
        if lease is None:
            self.kube.request("POST", LEASES.path(self.settings.namespace), body=self._new_lease())
            return True
        spec: dict[str, Any] = lease.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        record = (holder, str(spec.get("renewTime") or ""))
        if record != self._observed:
            self._observed, self._observed_at = record, now
        duration = float(spec.get("leaseDurationSeconds") or self.settings.lease_duration)
        held_by_other = holder and holder != self.settings.identity
        if held_by_other and now - self._observed_at < duration:
            return False
        lease["spec"] = self._spec(spec, taking_over=holder != self.settings.identity)
        try:
            self.kube.request("PUT", path, body=lease)
        except KubeError as error:
            if error.status == 409:  # someone else updated it first: they won this round
                return False
            raise
        self._observed = (self.settings.identity, lease["spec"]["renewTime"])
        self._observed_at = now
        return True

    def _new_lease(self) -> dict[str, Any]:
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.settings.name, "namespace": self.settings.namespace},
            "spec": self._spec({}, taking_over=True),
        }

    def _spec(self, spec: dict[str, Any], taking_over: bool) -> dict[str, Any]:
        stamp = _micro_time()
        transitions = int(spec.get("leaseTransitions") or 0)
        return {
            "holderIdentity": self.settings.identity,
            "leaseDurationSeconds": int(self.settings.lease_duration),
            "acquireTime": stamp if taking_over else spec.get("acquireTime", stamp),
            "renewTime": stamp,
            "leaseTransitions": transitions + 1 if taking_over and spec else transitions,
        }

    def _set(self, leading: bool) -> None:
        if leading == self.is_leader:
            return
        if leading:
            self._leading.set()
        else:
            self._leading.clear()
        log.info(
            "leadership " + ("acquired" if leading else "lost"), identity=self.settings.identity
        )
        self.on_change(leading)


def _micro_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
