"""Where testbed/build.sh put the pinned binaries, and which versions were pinned."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from testbed.procs import TestbedError

TESTBED_DIR = Path(__file__).resolve().parent
VERSIONS_FILE = TESTBED_DIR / "versions.env"


def cache_dir() -> Path:
    env = os.environ.get("RECONCILER_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "reconciler-testbed"


def _read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def pinned_versions() -> dict[str, str]:
    """The pins, e.g. {'KUBERNETES_VERSION': 'v1.37.2', ...}."""
    return _read_env_file(VERSIONS_FILE)


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    helm4: Path
    helm3: Path
    registry: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kwok: Path
    kubectl: Path

    @property
    def helm(self) -> dict[str, Path]:
        """Helm binaries by name, the names the fixtures and `Testbed.helm` take."""
        return {"helm4": self.helm4, "helm3": self.helm3}


_HINT = "build them with `make testbed-binaries` (or `bash testbed/build.sh`; built ones are kept)"


def find_binaries() -> Binaries:
    """Read $RECONCILER_CACHE/paths.env; raise with a clear message if anything is missing."""
    paths_env = cache_dir() / "paths.env"
    if not paths_env.is_file():
        raise TestbedError(f"testbed binaries are not built: {paths_env} does not exist; {_HINT}")
    paths = _read_env_file(paths_env)
    keys = {
        "etcd": "ETCD",
        "kube_apiserver": "KUBE_APISERVER",
        "helm4": "HELM4",
        "helm3": "HELM3",
        "registry": "REGISTRY",
        "kube_controller_manager": "KUBE_CONTROLLER_MANAGER",
        "kube_scheduler": "KUBE_SCHEDULER",
        "kwok": "KWOK",
        "kubectl": "KUBECTL",
    }
    found: dict[str, Path] = {}
    missing: list[str] = []
    for attr, key in keys.items():
        path = Path(paths.get(key, ""))
        if key not in paths or not os.access(path, os.X_OK):
            missing.append(f"{key}={paths.get(key, '(not listed)')}")
        found[attr] = path
    if missing:
        raise TestbedError(
            f"testbed binaries missing or not executable ({paths_env}): "
            + ", ".join(missing)
            + f"; {_HINT}"
        )
    return Binaries(**found)
