"""The real testbed: a working Kubernetes cluster (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, kwok's fake Nodes that run Pods without
containers), helm 3 and 4, kubectl, a git server (smart HTTP and SSH, the same
repositories) and an OCI registry, all on 127.0.0.1, for the integration tests, the demo
and manual use. `Testbed.start(workdir, controllers=False)` starts the API server alone.

A Pod (template) annotated `POD_BEHAVIOUR: NEVER_READY` runs but never becomes Ready,
`CRASH_LOOP` crash-loops, and `FAIL` makes a Pod that runs to completion fail
(testbed/kwok.yaml).

    from testbed import Testbed
    bed = Testbed.start(workdir)
    try:
        bed.helm("upgrade", "--install", ...)
    finally:
        bed.stop()
"""

from testbed.binaries import Binaries, find_binaries, pinned_versions
from testbed.core import (
    CRASH_LOOP,
    FAIL,
    FAKE_NODES,
    NEVER_READY,
    POD_BEHAVIOUR,
    CommandError,
    Testbed,
    run,
    started,
)
from testbed.kube import KubeAPIError
from testbed.procs import TestbedError

__all__ = [
    "CRASH_LOOP",
    "FAIL",
    "FAKE_NODES",
    "NEVER_READY",
    "POD_BEHAVIOUR",
    "Binaries",
    "CommandError",
    "KubeAPIError",
    "Testbed",
    "TestbedError",
    "find_binaries",
    "pinned_versions",
    "run",
    "started",
]
