"""The testbed: a Kubernetes control plane with simulated nodes, git over smart HTTP and SSH,
an OCI registry, all on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed import pki as pki_mod
from testbed.binaries import TESTBED_DIR, Binaries, find_binaries
from testbed.gitserver import PRIVATE_PREFIX
from testbed.kube import (
    AdminClient,
    apiserver_argv,
    cert_credentials,
    controller_manager_argv,
    etcd_argv,
    fake_node,
    kubeconfig,
    kwok_argv,
    scheduler_argv,
)
from testbed.procs import (
    Proc,
    TestbedError,
    free_ports,
    pid_runs,
    port_is_free,
    wait_until,
)
from testbed.sshserver import GIT_USER, KeyFiles, known_hosts_line, write_keys

STATE_FILE = "state.json"
# Marks a folder as a testbed's, so `up` may wipe it and nothing else.
MARKER_FILE = ".reconciler-testbed"
_START_TIMEOUT = 120.0
# Ports are picked free but another process may bind one before our child does.
_START_ATTEMPTS = 3
# kwok's Stages: how fake Nodes and their Pods behave (see the file).
KWOK_CONFIG = TESTBED_DIR / "kwok.yaml"
FAKE_NODES = ("kwok-node-0", "kwok-node-1", "kwok-node-2")
# The annotation on a Pod (template) that picks its kwok behaviour, and the values.
POD_BEHAVIOUR = "reconciler-testbed/pod"
NEVER_READY = "never-ready"
CRASH_LOOP = "crash-loop"
FAIL = "fail"
_CHART_VERSION = re.compile(r"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")


class CommandError(TestbedError):
    """A helm or git command failed; the message has the command, exit code and stderr."""

    def __init__(self, argv: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        super().__init__(
            f"command failed (exit {returncode}): {' '.join(argv)}\n"
            f"stderr:\n{stderr.strip()}\nstdout:\n{stdout.strip()[-2000:]}"
        )
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = True,
    timeout: float = 300.0,
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        list(argv),
        env=dict(env) if env is not None else None,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise CommandError(argv, result.returncode, result.stdout, result.stderr)
    return result


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:  # noqa: S310 (loopback URL)
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _self_signed_ok() -> ssl.SSLContext:
    # The scheduler serves /readyz with a certificate it made itself; only liveness is asked.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


_ETCD_PREFIX = "reconciler-etcd-"


def _scratch_dir() -> Path:
    # etcd data on tmpfs when there is one: no disk I/O for thousands of helm revisions.
    shm = Path("/dev/shm")  # noqa: S108 (mkdtemp makes a private dir in it)
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    _sweep_orphaned_etcd_data(Path(base or tempfile.gettempdir()))
    return Path(tempfile.mkdtemp(prefix=_ETCD_PREFIX, dir=base))


def _sweep_orphaned_etcd_data(base: Path, min_age: float = 120.0) -> None:
    """Remove etcd data left by runs that were killed hard: tmpfs is memory."""
    in_use: set[str] = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            in_use.update(
                arg.removeprefix(b"--data-dir=").decode(errors="replace")
                for arg in cmdline.read_bytes().split(b"\0")
                if arg.startswith(b"--data-dir=")
            )
    now = time.time()
    for path in base.glob(f"{_ETCD_PREFIX}*"):
        with contextlib.suppress(OSError):
            # The age guard spares a directory whose etcd is just being started.
            if str(path) not in in_use and now - path.stat().st_mtime > min_age:
                shutil.rmtree(path)


_REGISTRY_CONFIG = """\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
  secret: {secret}
"""


@dataclass
class Testbed:
    """A running testbed. Start it with `Testbed.start(workdir)`, end it with `stop()`."""

    __test__ = False  # not a pytest test class, despite the name

    workdir: Path
    binaries: Binaries
    api_port: int
    etcd_port: int
    registry_port: int
    git_port: int
    git_token: str
    etcd_data: Path
    ssh_port: int = 0
    scheduler_port: int = 0
    controllers: bool = True
    procs: list[Proc] = field(default_factory=list)
    startup_seconds: float = 0.0
    # How long the part a bare start waits for took: kube-apiserver ready, git, registry.
    api_startup_seconds: float = 0.0

    # ----- start / stop -------------------------------------------------------------

    @classmethod
    def start(
        cls,
        workdir: Path,
        *,
        registry_port: int | None = None,
        git_port: int | None = None,
        detached: bool = False,
        controllers: bool = True,
    ) -> Testbed:
        """Start everything on free loopback ports (registry and git on fixed ones if given).

        With `controllers` (the default) the cluster works: kube-controller-manager,
        kube-scheduler and kwok with Ready fake Nodes (`FAKE_NODES`), so Pods run and
        namespaces terminate. Without, only the API server (faster start-up): nothing
        schedules a Pod, deletes a namespace's objects or mints a token.
        `detached` children survive this process (for `python -m testbed up`); otherwise
        they die with it even if it is killed hard.
        """
        started = time.monotonic()
        workdir = workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        binaries = find_binaries()
        for what, port in (("registry", registry_port), ("git", git_port)):
            if port and not port_is_free(port):
                raise TestbedError(f"{what} port 127.0.0.1:{port} is already in use")
        (workdir / MARKER_FILE).touch()
        attempt = 1
        while True:
            try:
                bed = cls._launched(
                    workdir, binaries, registry_port, git_port, detached, controllers, started
                )
            except TestbedError as error:
                if attempt >= _START_ATTEMPTS or "address already in use" not in str(error).lower():
                    raise
                # A port was taken between picking it and the child binding it: pick
                # again, keeping the failed attempt's logs aside.
                logs = workdir / "logs"
                if logs.is_dir():
                    failed = workdir / f"logs.failed-{attempt}"
                    shutil.rmtree(failed, ignore_errors=True)
                    logs.rename(failed)
                attempt += 1
                continue
            break
        bed.startup_seconds = time.monotonic() - started
        bed.save_state()
        return bed

    @classmethod
    def _launched(
        cls,
        workdir: Path,
        binaries: Binaries,
        registry_port: int | None,
        git_port: int | None,
        detached: bool,
        controllers: bool,
        started: float,
    ) -> Testbed:
        """One attempt at starting everything; stopped again if it fails."""
        api_port, etcd_port, etcd_peer_port, any_port, scheduler_port = free_ports(5)
        bed = cls(
            workdir=workdir,
            binaries=binaries,
            api_port=api_port,
            etcd_port=etcd_port,
            registry_port=registry_port or any_port,
            git_port=git_port or 0,
            git_token=secrets.token_hex(16),
            etcd_data=_scratch_dir(),
            scheduler_port=scheduler_port if controllers else 0,
            controllers=controllers,
        )
        try:
            pki = bed._launch(detached, etcd_peer_port)
            bed.api_startup_seconds = time.monotonic() - started
            if controllers:
                bed._launch_cluster(pki, detached)
        except BaseException:
            bed.stop()
            raise
        return bed

    def _launch(self, detached: bool, etcd_peer_port: int) -> pki_mod.ControlPlanePKI:
        pki = pki_mod.create(self.workdir / "pki")
        logs = self.workdir / "logs"
        etcd = Proc.spawn(
            "etcd",
            etcd_argv(self.binaries.etcd, self.etcd_data, self.etcd_port, etcd_peer_port),
            logs / "etcd.log",
            detached=detached,
        )
        self.procs.append(etcd)
        registry = self._spawn_registry(logs, detached)
        git = self._spawn_git_server(logs, detached)
        ssh = self._spawn_ssh_server(logs, detached)
        wait_until(
            "etcd health",
            lambda: _http_ok(f"http://127.0.0.1:{self.etcd_port}/health"),
            timeout=_START_TIMEOUT,
            procs=[etcd],
        )
        apiserver = Proc.spawn(
            "kube-apiserver",
            apiserver_argv(
                self.binaries.kube_apiserver,
                pki,
                self.workdir / "pki",
                self.etcd_port,
                self.api_port,
                controllers=self.controllers,
            ),
            logs / "kube-apiserver.log",
            detached=detached,
        )
        self.procs.append(apiserver)
        self.kubeconfig.write_text(
            kubeconfig(
                self.api_url,
                pki.ca.cert_pem(),
                "admin",
                cert_credentials(pki.admin.cert_pem(), pki.admin.key_pem()),
            )
        )
        self.kubeconfig.chmod(0o600)
        self._link_tools()
        port_file = self.workdir / "git.port"
        wait_until("git server", port_file.exists, timeout=_START_TIMEOUT, procs=[git])
        self.git_port = int(port_file.read_text())
        port_file = self.workdir / "ssh.port"
        wait_until("ssh server", port_file.exists, timeout=_START_TIMEOUT, procs=[ssh])
        self.ssh_port = int(port_file.read_text())
        self.ssh_keys.known_hosts.write_text(
            known_hosts_line(self.ssh_keys.host_public_key, self.ssh_port)
        )
        wait_until(
            "registry /v2/",
            lambda: _http_ok(f"http://{self.registry}/v2/"),
            timeout=_START_TIMEOUT,
            procs=[registry],
        )
        wait_until(
            "kube-apiserver /readyz",
            self.admin.ready,
            timeout=_START_TIMEOUT,
            procs=[apiserver, etcd],
            interval=0.1,
        )
        self._check_alive()
        return pki

    def _check_alive(self) -> None:
        # A child that lost its port to another server may have died after that server
        # answered our readiness probe in its place.
        for proc in self.procs:
            if not proc.alive():
                raise TestbedError(
                    f"{proc.name} exited during start-up; log {proc.log}:\n{proc.log_tail()}"
                )

    def _launch_cluster(self, pki: pki_mod.ControlPlanePKI, detached: bool) -> None:
        """Controller-manager, scheduler and kwok on the running API server, and the fake
        Nodes; returns once the Nodes are Ready, the controllers have made the `default`
        ServiceAccount and the scheduler is ready."""
        configs = self.workdir / "control-plane"
        configs.mkdir(exist_ok=True)
        for name in FAKE_NODES:
            # Before kwok starts, so its first list already has them.
            self.admin.ensure("/api/v1/nodes", fake_node(name))
        kcm = self._spawn(
            "kube-controller-manager",
            controller_manager_argv(
                self.binaries.kube_controller_manager,
                pki,
                self._client_kubeconfig(configs, "kube-controller-manager", pki.controller_manager),
            ),
            detached,
        )
        scheduler = self._spawn(
            "kube-scheduler",
            scheduler_argv(
                self.binaries.kube_scheduler,
                self._client_kubeconfig(configs, "kube-scheduler", pki.scheduler),
                self.scheduler_port,
                configs / "kube-scheduler-serving",
            ),
            detached,
        )
        kwok_home = self.workdir / "kwok"
        kwok_home.mkdir(exist_ok=True)
        kwok = self._spawn(
            "kwok",
            kwok_argv(
                self.binaries.kwok,
                self._client_kubeconfig(configs, "kwok", pki.kwok),
                KWOK_CONFIG,
            ),
            detached,
            # kwok also reads ~/.kwok/kwok.yaml: not the caller's.
            env={**os.environ, "HOME": str(kwok_home)},
        )
        apiserver = next(p for p in self.procs if p.name == "kube-apiserver")
        checks: list[tuple[str, Callable[[], bool], Proc]] = [
            ("kwok's Nodes Ready", self._nodes_ready, kwok),
            ("the `default` ServiceAccount", self._default_serviceaccount, kcm),
            (
                "kube-scheduler /readyz",
                lambda: _http_ok(
                    f"https://127.0.0.1:{self.scheduler_port}/readyz", _self_signed_ok()
                ),
                scheduler,
            ),
        ]
        for what, ready, proc in checks:
            wait_until(what, ready, timeout=_START_TIMEOUT, procs=[proc, apiserver], interval=0.1)
        self._check_alive()

    def _spawn(
        self,
        name: str,
        argv: Sequence[str],
        detached: bool,
        env: Mapping[str, str] | None = None,
    ) -> Proc:
        proc = Proc.spawn(
            name, argv, self.workdir / "logs" / f"{name}.log", env=env, detached=detached
        )
        self.procs.append(proc)
        return proc

    def _client_kubeconfig(self, folder: Path, user: str, pair: pki_mod.KeyPair) -> Path:
        path = folder / f"{user}.kubeconfig"
        path.write_text(
            kubeconfig(
                self.api_url,
                self.ca_cert.read_bytes(),
                user,
                cert_credentials(pair.cert_pem(), pair.key_pem()),
            )
        )
        path.chmod(0o600)
        return path

    def _nodes_ready(self) -> bool:
        nodes = self.admin.call("GET", "/api/v1/nodes")["items"]
        ready = {
            node["metadata"]["name"]
            for node in nodes
            for condition in (node.get("status") or {}).get("conditions") or []
            if condition["type"] == "Ready" and condition["status"] == "True"
        }
        return ready >= set(FAKE_NODES)

    def _default_serviceaccount(self) -> bool:
        status, _ = self.admin.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")
        return status == 200

    def _link_tools(self) -> None:
        """bin/ with `helm` (helm 4), `helm3` and `kubectl`, for a shell's PATH."""
        self.bin_dir.mkdir(exist_ok=True)
        for name, target in (
            ("helm", self.binaries.helm4),
            ("helm3", self.binaries.helm3),
            ("kubectl", self.binaries.kubectl),
        ):
            link = self.bin_dir / name
            link.unlink(missing_ok=True)
            link.symlink_to(target)

    def _spawn_registry(self, logs: Path, detached: bool) -> Proc:
        config = self.workdir / "registry" / "config.yml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(
            _REGISTRY_CONFIG.format(
                root=self.workdir / "registry" / "storage",
                port=self.registry_port,
                secret=secrets.token_hex(16),
            )
        )
        # No tracing exporter to dial: the registry would otherwise try an OTLP endpoint.
        env = {**os.environ, "OTEL_TRACES_EXPORTER": "none", "OTEL_SDK_DISABLED": "true"}
        proc = Proc.spawn(
            "registry",
            [str(self.binaries.registry), "serve", str(config)],
            logs / "registry.log",
            env=env,
            detached=detached,
        )
        self.procs.append(proc)
        return proc

    def _spawn_git_server(self, logs: Path, detached: bool) -> Proc:
        (self.git_root / PRIVATE_PREFIX.strip("/")).mkdir(parents=True, exist_ok=True)
        port_file = self.workdir / "git.port"
        port_file.unlink(missing_ok=True)
        repo_root = TESTBED_DIR.parent
        env = {
            **os.environ,
            "TESTBED_GIT_TOKEN": self.git_token,
            "PYTHONPATH": self._pythonpath(repo_root),
        }
        argv = [sys.executable, "-m", "testbed.gitserver", "--root", str(self.git_root)]
        argv += ["--port-file", str(port_file), "--port", str(self.git_port)]
        proc = Proc.spawn(
            "git-server", argv, logs / "git-server.log", env=env, cwd=repo_root, detached=detached
        )
        self.procs.append(proc)
        return proc

    def _spawn_ssh_server(self, logs: Path, detached: bool) -> Proc:
        keys = write_keys(self.ssh_keys.folder)
        port_file = self.workdir / "ssh.port"
        port_file.unlink(missing_ok=True)
        repo_root = TESTBED_DIR.parent
        env = {**os.environ, "PYTHONPATH": self._pythonpath(repo_root)}
        argv = [sys.executable, "-m", "testbed.sshserver", "--root", str(self.git_root)]
        argv += ["--port-file", str(port_file), "--port", str(self.ssh_port)]
        argv += ["--host-key", str(keys.host_key), "--authorized-key", str(keys.client_public_key)]
        proc = Proc.spawn(
            "ssh-server", argv, logs / "ssh-server.log", env=env, cwd=repo_root, detached=detached
        )
        self.procs.append(proc)
        return proc

    @staticmethod
    def _pythonpath(repo_root: Path) -> str:
        # The children import `testbed` from the checkout, whatever the caller's cwd.
        return os.pathsep.join(p for p in (str(repo_root), os.environ.get("PYTHONPATH", "")) if p)

    def stop(self) -> None:
        """Stop every process (apiserver first, etcd last) and drop the etcd data."""
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()
        shutil.rmtree(self.etcd_data, ignore_errors=True)
        (self.workdir / STATE_FILE).unlink(missing_ok=True)

    def __enter__(self) -> Testbed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- a testbed started by another process (`python -m testbed up`) ----------------

    def save_state(self) -> None:
        state: dict[str, Any] = {
            "api_port": self.api_port,
            "etcd_port": self.etcd_port,
            "registry_port": self.registry_port,
            "git_port": self.git_port,
            "ssh_port": self.ssh_port,
            "scheduler_port": self.scheduler_port,
            "controllers": self.controllers,
            "git_token": self.git_token,
            "etcd_data": str(self.etcd_data),
            "startup_seconds": self.startup_seconds,
            "api_startup_seconds": self.api_startup_seconds,
            "procs": [
                {"name": p.name, "pid": p.pid, "log": str(p.log), "executable": self._exe(p)}
                for p in self.procs
            ],
        }
        path = self.workdir / STATE_FILE
        path.write_text(json.dumps(state, indent=2))
        path.chmod(0o600)

    def _exe(self, proc: Proc) -> str:
        if proc.popen is not None and isinstance(proc.popen.args, list):
            return str(proc.popen.args[0])
        return ""

    @classmethod
    def attach(cls, workdir: Path) -> Testbed:
        """The testbed whose state `start` wrote to `workdir` (raises if there is none)."""
        path = workdir.resolve() / STATE_FILE
        if not path.is_file():
            raise TestbedError(f"no testbed state in {workdir}: start one with `make testbed`")
        state = json.loads(path.read_text())
        procs = [
            Proc(name=p["name"], pid=p["pid"], log=Path(p["log"]))
            for p in state["procs"]
            # A pid that now runs something else must never be signalled.
            if pid_runs(p["pid"], p["executable"])
        ]
        return cls(
            workdir=workdir.resolve(),
            binaries=find_binaries(),
            api_port=state["api_port"],
            etcd_port=state["etcd_port"],
            registry_port=state["registry_port"],
            git_port=state["git_port"],
            ssh_port=state.get("ssh_port", 0),
            scheduler_port=state.get("scheduler_port", 0),
            controllers=state.get("controllers", False),
            git_token=state["git_token"],
            etcd_data=Path(state["etcd_data"]),
            procs=procs,
            startup_seconds=state["startup_seconds"],
            api_startup_seconds=state.get("api_startup_seconds", 0.0),
        )

    def healthy(self) -> bool:
        expected = 8 if self.controllers else 5
        return (
            len(self.procs) == expected
            and all(p.alive() for p in self.procs)
            and self.admin.ready()
        )

    # ----- addresses --------------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig (client certificate in group system:masters)."""
        return self.workdir / "kubeconfig"

    @property
    def bin_dir(self) -> Path:
        """`helm` (helm 4), `helm3` and `kubectl` for this testbed's version, as links."""
        return self.workdir / "bin"

    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def ca_cert(self) -> Path:
        return self.workdir / "pki" / "ca.crt"

    @property
    def git_base_url(self) -> str:
        return f"http://127.0.0.1:{self.git_port}"

    @property
    def git_root(self) -> Path:
        return self.workdir / "git"

    @property
    def ssh_keys(self) -> KeyFiles:
        """The SSH server's host key, the client key it accepts, and a known_hosts for it."""
        return KeyFiles(self.workdir / "ssh")

    @property
    def ssh_key(self) -> Path:
        """The private key the SSH git server accepts (user `git`)."""
        return self.ssh_keys.client_key

    @property
    def known_hosts(self) -> Path:
        """A known_hosts file with the SSH git server's host key, for StrictHostKeyChecking."""
        return self.ssh_keys.known_hosts

    @property
    def registry(self) -> str:
        """host:port of the OCI registry (plain HTTP)."""
        return f"127.0.0.1:{self.registry_port}"

    @property
    def chart_repo(self) -> str:
        """Where `publish_chart` pushes: oci://<registry>/charts."""
        return f"oci://{self.registry}/charts"

    @property
    def helm_binaries(self) -> dict[str, Path]:
        return self.binaries.helm

    @property
    def admin(self) -> AdminClient:
        pki_dir = self.workdir / "pki"
        return AdminClient(
            self.api_port, self.ca_cert, pki_dir / "admin.crt", pki_dir / "admin.key"
        )

    def exports(self) -> dict[str, str]:
        """What a shell needs to use this testbed by hand."""
        return {
            "KUBECONFIG": str(self.kubeconfig),
            "RECONCILER_GIT_URL": self.git_url("environments"),
            "RECONCILER_GIT_BASE_URL": self.git_base_url,
            "RECONCILER_GIT_SSH_URL": self.git_ssh_url("environments"),
            "RECONCILER_TESTBED_SSH_KEY": str(self.ssh_key),
            "RECONCILER_TESTBED_KNOWN_HOSTS": str(self.known_hosts),
            "RECONCILER_REGISTRY": self.registry,
            "RECONCILER_CHART_REPO": self.chart_repo,
            "HELM4": str(self.binaries.helm4),
            "HELM3": str(self.binaries.helm3),
        }

    # ----- kubernetes -------------------------------------------------------------------

    def server_version(self) -> dict[str, str]:
        version: dict[str, str] = self.admin.call("GET", "/version")
        return version

    def create_namespace(self, name: str) -> str:
        self.admin.ensure(
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
        )
        return name

    def delete_namespace(self, name: str, *, wait: float = 0.0) -> None:
        """Delete a namespace; with `wait` > 0, wait that many seconds for it to be gone.

        The namespace controller deletes its objects first; on a bare API server (no
        controllers) it stays Terminating forever, so `wait` raises TimeoutError there.
        """
        self.admin.request("DELETE", f"/api/v1/namespaces/{name}")
        if wait > 0:
            self.wait_gone(f"/api/v1/namespaces/{name}", timeout=wait)

    def wait_gone(self, path: str, *, timeout: float = 60.0) -> None:
        """Poll an API path until it answers 404; TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while self.admin.request("GET", path)[0] != 404:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} still exists after {timeout:.0f} s")
            time.sleep(0.1)

    def kubectl(
        self, *args: str, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl as admin against this testbed; raises CommandError on failure."""
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        return run([str(self.binaries.kubectl), *args], env=env, check=check, timeout=timeout)

    def mint_serviceaccount_kubeconfig(
        self, namespace: str, name: str, *, expiration_seconds: int = 3600
    ) -> Path:
        """Create the ServiceAccount if needed and write a kubeconfig with a TokenRequest token.

        The account has no RBAC bindings unless the caller adds some.
        """
        self.create_namespace(namespace)
        self.admin.ensure(
            f"/api/v1/namespaces/{namespace}/serviceaccounts",
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}},
        )
        response = self.admin.call(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": expiration_seconds},
            },
        )
        user = f"system:serviceaccount:{namespace}:{name}"
        path = self.workdir / "kubeconfigs" / f"{namespace}.{name}.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(
            kubeconfig(
                self.api_url,
                self.ca_cert.read_bytes(),
                user,
                {"token": response["status"]["token"]},
            )
        )
        path.chmod(0o600)
        return path

    def aggregate_cluster_roles(self, *, timeout: float = 30.0) -> None:
        """The aggregated ClusterRoles (admin, edit, view) filled, as a real cluster has them.

        With controllers the clusterrole-aggregation controller fills them: this waits until
        it has (TimeoutError after `timeout` seconds). On a bare API server nothing does, so
        this writes them itself.
        """
        path = "/apis/rbac.authorization.k8s.io/v1/clusterroles"
        deadline = time.monotonic() + timeout
        while True:
            roles = {r["metadata"]["name"]: r for r in self.admin.call("GET", path)["items"]}
            wanted = _aggregated_rules(roles)
            if not self.controllers:
                for name, rules in wanted.items():
                    self.admin.call("PUT", f"{path}/{name}", {**roles[name], "rules": rules})
                return
            if all(
                _rule_set(roles[name].get("rules")) == _rule_set(wanted[name]) for name in wanted
            ):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"aggregated ClusterRoles still unfilled after {timeout:.0f} s")
            time.sleep(0.1)

    def wait_until_allowed(
        self,
        namespace: str,
        serviceaccount: str,
        verb: str,
        resource: str,
        *,
        group: str = "",
        in_namespace: str = "",
        timeout: float = 30.0,
    ) -> None:
        """Wait until the authorizer allows a ServiceAccount `verb` on `resource`.

        The RBAC authorizer reads Roles and bindings from an informer cache, so a binding
        that was just created takes a moment to count.
        """
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": f"system:serviceaccount:{namespace}:{serviceaccount}",
                "groups": [
                    "system:serviceaccounts",
                    f"system:serviceaccounts:{namespace}",
                    "system:authenticated",
                ],
                "resourceAttributes": {
                    "verb": verb,
                    "resource": resource,
                    "group": group,
                    "namespace": in_namespace,
                },
            },
        }
        deadline = time.monotonic() + timeout
        path = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
        while not self.admin.call("POST", path, review)["status"].get("allowed"):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{namespace}/{serviceaccount} still may not {verb} {resource} "
                    f"after {timeout:.0f} s"
                )
            time.sleep(0.05)

    # ----- git --------------------------------------------------------------------------

    def git_url(self, name: str, *, private: bool = False, with_token: bool = False) -> str:
        """URL of repository `name` (".git" appended); `with_token` embeds the credentials."""
        repo = name if name.endswith(".git") else f"{name}.git"
        prefix = PRIVATE_PREFIX if private else "/"
        host = f"127.0.0.1:{self.git_port}"
        if with_token:
            host = f"x-access-token:{self.git_token}@{host}"
        return f"http://{host}{prefix}{repo}"

    def git_ssh_url(self, name: str, *, private: bool = False) -> str:
        """ssh:// URL of repository `name` (".git" appended); needs `ssh_key` and `known_hosts`.

        The same repository as `git_url(name)`: both servers serve `git_root`. Over SSH the
        key is the credential, so `private` only changes the path.
        """
        repo = name if name.endswith(".git") else f"{name}.git"
        prefix = PRIVATE_PREFIX if private else "/"
        return f"ssh://{GIT_USER}@127.0.0.1:{self.ssh_port}{prefix}{repo}"

    def create_git_repo(
        self, name: str, *, private: bool = False, allow_filter: bool = True
    ) -> str:
        """A new empty bare repository (default branch main); returns its clone URL.

        A `private` one needs basic auth with `git_token` as password. Like GitHub and
        GitLab it serves partial clones (`uploadpack.allowFilter`); `allow_filter=False`
        stands for a server that does not, over HTTP and SSH alike.
        """
        repo = name if name.endswith(".git") else f"{name}.git"
        path = self.git_root / (PRIVATE_PREFIX.strip("/") if private else "") / repo
        if path.exists():
            raise TestbedError(f"git repository {path} already exists")
        run(["git", "init", "--quiet", "--bare", "--initial-branch=main", str(path)])
        if allow_filter:
            run(["git", "config", "--file", str(path / "config"), "uploadpack.allowFilter", "true"])
        return self.git_url(name, private=private)

    # ----- helm -------------------------------------------------------------------------

    def helm_env(self, kubeconfig: Path | None = None) -> dict[str, str]:
        """Environment for a helm process: this cluster, helm state isolated in the workdir."""
        home = self.workdir / "helm"
        # The caller's HELM_NAMESPACE, HELM_KUBECONTEXT, ... must not leak into tests.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("HELM_")}
        return {
            **inherited,
            "KUBECONFIG": str(kubeconfig or self.kubeconfig),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }

    def helm(
        self,
        *args: str,
        helm: str = "helm4",
        kubeconfig: Path | None = None,
        check: bool = True,
        timeout: float = 300.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run `helm` ("helm4" or "helm3") against this testbed; raises CommandError on failure."""
        binary = self._helm_binary(helm)
        return run(
            [str(binary), *args], env=self.helm_env(kubeconfig), check=check, timeout=timeout
        )

    def _helm_binary(self, helm: str) -> Path:
        try:
            return self.helm_binaries[helm]
        except KeyError:
            raise TestbedError(
                f"unknown helm {helm!r}; one of {sorted(self.helm_binaries)}"
            ) from None

    def publish_chart(
        self,
        chart_dir: Path,
        version: str,
        *,
        helm: str = "helm4",
        app_version: str | None = None,
    ) -> str:
        """Package `chart_dir` at `version` and push it; returns `oci://<registry>/charts/<name>`.

        Install it with `--version <version> --plain-http`.
        """
        if not _CHART_VERSION.match(version):
            raise TestbedError(f"not a SemVer chart version: {version!r}")
        with tempfile.TemporaryDirectory(dir=self.workdir) as out:
            argv = ["package", str(chart_dir), "--version", version, "--destination", out]
            if app_version:
                argv += ["--app-version", app_version]
            self.helm(*argv, helm=helm)
            (package,) = Path(out).glob("*.tgz")
            self.helm("push", str(package), self.chart_repo, "--plain-http", helm=helm)
        name = package.name.removesuffix(f"-{version}.tgz")
        return f"{self.chart_repo}/{name}"


@contextlib.contextmanager
def started(workdir: Path, **kwargs: Any) -> Iterator[Testbed]:
    """`with started(path) as bed:` — a testbed that is stopped however the block ends."""
    bed = Testbed.start(workdir, **kwargs)
    try:
        yield bed
    finally:
        bed.stop()


def _aggregated_rules(roles: Mapping[str, Mapping[str, Any]]) -> dict[str, list[Any]]:
    """The rules of each aggregated ClusterRole (by name) as the aggregation controller sets them."""
    aggregated = {
        name: selectors
        for name, role in roles.items()
        if (selectors := (role.get("aggregationRule") or {}).get("clusterRoleSelectors"))
    }
    rules = {name: list(role.get("rules") or []) for name, role in roles.items()}
    # Aggregates nest (edit is part of admin), so repeat until nothing changes.
    for _ in range(len(aggregated) + 1):
        changed = False
        for name, selectors in aggregated.items():
            merged = [
                rule
                for other_name, other in sorted(roles.items())
                if other_name != name and any(_matches(other, s) for s in selectors)
                for rule in rules[other_name]
            ]
            if merged != rules[name]:
                rules[name] = merged
                changed = True
        if not changed:
            break
    return {name: rules[name] for name in aggregated}


def _rule_set(rules: Sequence[Any] | None) -> set[str]:
    return {json.dumps(rule, sort_keys=True) for rule in rules or []}


def _matches(role: Mapping[str, Any], selector: Mapping[str, Any]) -> bool:
    labels = role["metadata"].get("labels") or {}
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())
