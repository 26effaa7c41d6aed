"""The real testbed: etcd + kube-apiserver, helm 3 and 4, a git server (smart HTTP and
SSH, the same repositories) and an OCI registry, all on 127.0.0.1, for the integration
tests, the demo and manual use.

    from testbed import Testbed
    bed = Testbed.start(workdir)
    try:
        bed.helm("upgrade", "--install", ...)
    finally:
        bed.stop()
"""

from testbed.binaries import Binaries, find_binaries, pinned_versions
from testbed.core import CommandError, Testbed, run, started
from testbed.kube import KubeAPIError
from testbed.procs import TestbedError

__all__ = [
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
