"""Fixtures for tests on the real testbed (see testbed/ and DESIGN.md, "Real parts").

One control plane per session (per xdist worker); every test gets its own namespace and
git repository, so tests never see each other's objects.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from testbed import Testbed, TestbedError

CHARTS_DIR = Path(__file__).parent / "charts"
# (whole start-up, of which kube-apiserver ready) in seconds, one pair per testbed.
_STARTUP_KEY = pytest.StashKey[list[tuple[float, float]]]()
_HELM3_MARK = "helm3"
TESTBED_FIXTURES = frozenset(
    {"testbed", "namespace", "git_server", "git_repo", "registry", "publish_chart", "helm", "kube"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A test that uses the testbed is a testbed test, whether or not it says so, so
    # `-m "not testbed"` reliably selects the tests that need no binaries.
    for item in items:
        if TESTBED_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.testbed)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Every helm test runs with helm 4; those marked `helm3` also with the pinned helm 3.
    if "helm_binary" in metafunc.fixturenames:
        names = (
            ["helm4", "helm3"] if metafunc.definition.get_closest_marker(_HELM3_MARK) else ["helm4"]
        )
        metafunc.parametrize("helm_binary", names, indirect=True)


def _record_startup(config: pytest.Config, seconds: tuple[float, float]) -> None:
    config.stash.setdefault(_STARTUP_KEY, []).append(seconds)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    # Under xdist each worker starts its own testbed; the controller prints them all.
    seconds = getattr(node, "workeroutput", {}).get("testbed_startup")
    if seconds is not None:
        _record_startup(node.config, (seconds[0], seconds[1]))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    startups = config.stash.get(_STARTUP_KEY, [])
    if startups:
        # The API server alone is what a bare start (`Testbed.start(controllers=False)`)
        # waits for; the rest is controller-manager, scheduler and kwok's nodes.
        times = ", ".join(
            f"{whole:.2f}s (API server alone {api:.2f}s, controllers and nodes {whole - api:.2f}s)"
            for whole, api in startups
        )
        terminalreporter.write_line(f"testbed start-up: {times}")


@pytest.fixture(scope="session")
def testbed(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Testbed]:
    """The whole testbed (one per session): etcd, kube-apiserver, kube-controller-manager,
    kube-scheduler, kwok with Ready fake Nodes, git server, registry."""
    try:
        bed = Testbed.start(tmp_path_factory.mktemp("testbed"))
    except TestbedError as error:
        failure = str(error)
    else:
        failure = ""
    if failure:
        # Never skip: a suite that silently skips its integration tests proves nothing.
        pytest.fail(f"cannot start the testbed: {failure}", pytrace=False)
    seconds = (bed.startup_seconds, bed.api_startup_seconds)
    _record_startup(request.config, seconds)
    if hasattr(request.config, "workeroutput"):
        request.config.workeroutput["testbed_startup"] = list(seconds)
    try:
        yield bed
    finally:
        bed.stop()


def _dns_label(text: str, limit: int) -> str:
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return label[:limit].strip("-") or "t"


@pytest.fixture
def namespace(testbed: Testbed, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test, deleted afterwards."""
    name = f"{_dns_label(request.node.name, 50)}-{secrets.token_hex(3)}"
    testbed.create_namespace(name)
    yield name
    testbed.delete_namespace(name)


@pytest.fixture(scope="session")
def git_server(testbed: Testbed) -> Testbed:
    """The git server: `.git_base_url`, `.create_git_repo(name, private=)`,
    `.git_url(name, private=, with_token=)`, `.git_token` over smart HTTP; the same
    repositories over SSH at `.git_ssh_url(name)` with `.ssh_key` and `.known_hosts`."""
    return testbed


@pytest.fixture
def git_repo(git_server: Testbed, request: pytest.FixtureRequest) -> str:
    """Clone URL of a fresh, empty bare repository (default branch main)."""
    return git_server.create_git_repo(f"{_dns_label(request.node.name, 60)}-{secrets.token_hex(3)}")


@pytest.fixture(scope="session")
def registry(testbed: Testbed) -> str:
    """host:port of the OCI registry (plain HTTP; charts live under oci://<registry>/charts)."""
    return testbed.registry


class PublishChart(Protocol):
    def __call__(
        self,
        chart: str | Path,
        version: str,
        *,
        helm: str = "helm4",
        app_version: str | None = None,
    ) -> str: ...


@pytest.fixture(scope="session")
def publish_chart(testbed: Testbed) -> PublishChart:
    """`publish_chart(chart, version, helm="helm4")` -> "oci://<registry>/charts/<name>".

    `chart` is a directory, or a name under tests/charts/ (e.g. "smoke").
    """

    def publish(
        chart: str | Path, version: str, *, helm: str = "helm4", app_version: str | None = None
    ) -> str:
        path = Path(chart) if Path(chart).is_dir() else CHARTS_DIR / chart
        return testbed.publish_chart(path, version, helm=helm, app_version=app_version)

    return publish


@pytest.fixture(scope="session")
def charts_dir() -> Path:
    return CHARTS_DIR


class HelmRunner:
    """`helm("upgrade", "--install", ...)` with the parametrized binary; raises CommandError."""

    def __init__(self, bed: Testbed, binary: str) -> None:
        self.bed = bed
        self.binary = binary
        self.path = bed.helm_binaries[binary]

    def __call__(
        self, *args: str, kubeconfig: Path | None = None, check: bool = True, timeout: float = 300
    ) -> Any:
        return self.bed.helm(
            *args, helm=self.binary, kubeconfig=kubeconfig, check=check, timeout=timeout
        )

    @property
    def major(self) -> int:
        return 3 if self.binary == "helm3" else 4


@pytest.fixture
def helm_binary(request: pytest.FixtureRequest) -> str:
    """ "helm4", or "helm4" and "helm3" for tests marked `@pytest.mark.helm3`."""
    name: str = request.param
    return name


@pytest.fixture
def helm(testbed: Testbed, helm_binary: str) -> HelmRunner:
    """Runs the parametrized helm against the testbed (KUBECONFIG and helm homes isolated)."""
    return HelmRunner(testbed, helm_binary)


@pytest.fixture(scope="session")
def kube(testbed: Testbed) -> Iterator[Any]:
    """kubernetes.client.ApiClient with admin rights (cluster-admin via system:masters)."""
    from kubernetes import config

    client = config.new_client_from_config(config_file=str(testbed.kubeconfig))  # type: ignore[no-untyped-call]
    yield client
    client.close()


@pytest.fixture
def make_kube_client() -> Callable[[Path], Any]:
    """Build an ApiClient from another kubeconfig (e.g. a minted ServiceAccount's)."""
    from kubernetes import config

    def build(kubeconfig: Path) -> Any:
        return config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]

    return build
