"""The helm CLI adapter: speaks the dialect of the helm found (3.13+ or 4.x).

Only this module builds helm command lines. Values reach helm as a private file
that is removed right after the command, never as arguments a process listing
would show.
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from reconciler import proc, scratch
from reconciler.errors import CommandError, HelmError
from reconciler.kube import service_account_identity
from reconciler.model import (
    LABEL_DIGEST,
    LABEL_INSTALLATION,
    LABEL_MANAGED_BY,
    LABEL_SERVICE_ACCOUNT,
    MANAGED_BY,
    ChartRef,
    DesiredRelease,
    Policy,
)
from reconciler.repo import helmyaml

VERSION_PATTERN = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")
# helm's words when the release's namespace is missing, e.g.
# `create: failed to create: namespaces "apps" not found`.
MISSING_NAMESPACE = re.compile(r'namespaces "([^"]+)" not found')
# The API server's refusal, e.g. `User "system:serviceaccount:team:deployer" cannot create
# resource "deployments" in API group "apps" in the namespace "team"`. Every part is matched
# by a narrow class: only these words of helm's (untrusted) text reach the summary.
_NAME = r"[a-z0-9][-a-z0-9.:]{0,252}"
FORBIDDEN = re.compile(
    rf'User "(?P<user>{_NAME})" cannot (?P<verb>[a-z]{{1,32}}) resource "(?P<resource>[a-z0-9/]{{1,128}})"'
    rf'(?: in API group "(?P<group>[a-z0-9.-]{{0,253}})")?'
    rf'(?: in the namespace "(?P<namespace>[a-z0-9-]{{1,63}})")?'
)
# What helm 3 and 4 print when the API server refuses the impersonation itself: its first
# request (the reachability check) fails, and helm drops the reason ("unknown").
UNREACHABLE = re.compile(r"[Kk]ubernetes cluster unreachable")
DESCRIPTION_LIMIT = 240


@dataclass
class HelmCounter:
    """How many helm processes ran: the benchmark's and the no-op test's evidence."""

    processes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self) -> None:
        with self.lock:
            self.processes += 1


@dataclass(frozen=True)
class Helm:
    binary: str
    version: tuple[int, int, int]
    env: Mapping[str, str]
    plain_http: bool = False
    counter: HelmCounter = field(default_factory=HelmCounter, compare=False)
    # Set on shutdown: running helm processes get SIGTERM, which marks a release
    # failed rather than leaving it pending.
    cancel: threading.Event = field(default_factory=threading.Event, compare=False)

    @classmethod
    def detect(
        cls, binary: str = "helm", kubeconfig: str | None = None, plain_http: bool = False
    ) -> Helm:
        """Find helm and its version once; refuse versions whose flags we do not speak."""

        path = shutil.which(binary) or (binary if os.path.isfile(binary) else None)
        if not path:
            raise HelmError(
                f"helm binary {binary!r} not found; install helm 3.13+ or 4.x or pass --helm"
            )
        env = dict(os.environ)
        if kubeconfig:
            env["KUBECONFIG"] = kubeconfig
        # A helm process lives for a second or so: collecting garbage before its heap
        # reaches GOMEMLIMIT is wasted work (a fifth of its CPU time for small charts).
        env.setdefault("GOGC", "off")
        env.setdefault("GOMEMLIMIT", "256MiB")
        try:
            out = proc.run([path, "version", "--template", "{{.Version}}"], env=env, timeout=30)
        except CommandError as error:
            raise HelmError(f"cannot run {path}: {error}") from error
        match = VERSION_PATTERN.search(out.stdout)
        if not match:
            raise HelmError(f"{path} printed no version ({out.stdout.strip()!r}); is it helm?")
        version = (int(match[1]), int(match[2]), int(match[3]))
        if version < (3, 13, 0) or version[0] > 4:
            raise HelmError(
                f"helm {'.'.join(map(str, version))} is not supported; use 3.13+ or 4.x"
            )
        return cls(path, version, env, plain_http)

    @property
    def major(self) -> int:
        return self.version[0]

    def upgrade_install(
        self,
        release: DesiredRelease,
        installation: str,
        policy: Policy,
        description: str,
        fresh: bool = False,
        chart_file: Path | None = None,
        proof: Mapping[str, str] | None = None,
        server_side: bool = False,
    ) -> None:
        """`helm upgrade --install`; `helm install` when helm holds no history for the
        release at all, which skips the history lookup (a tenth of the CPU).

        `chart_file` is the release's chart already pulled (see `pull`); `proof` the
        labels that sign the revision (reconciler.trust); `server_side`: helm 4 applied the
        latest revision server-side, so fields other managers took are forced back."""

        # --reset-values: the values are exactly the file's, even when it is empty (helm
        # otherwise reuses the previous revision's values for an empty one).
        command = ["install"] if fresh else ["upgrade", "--install"]
        reset = [] if fresh else ["--reset-values"]
        history = [] if fresh else ["--history-max", str(policy.history_max)]
        # Helm 4 upgrades a server-side applied release server-side: a field someone took
        # over by hand (`kubectl scale`, `kubectl edit`) conflicts and fails the upgrade.
        # The environments repo is the truth, as helm 3's three-way merge makes it, so
        # those fields are taken back. (Refused for a client-side applied release.)
        force = ["--force-conflicts"] if self.major >= 4 and server_side and not fresh else []
        # createReplace: the reconciler applied crds/ itself just before (reconciler.crds).
        skip_crds = ["--skip-crds"] if release.crds in ("skip", "createReplace") else []
        chart = [str(chart_file)] if chart_file else self._chart_args(release.chart)
        account = (
            {LABEL_SERVICE_ACCOUNT: release.service_account} if release.service_account else {}
        )
        with _values_file(release.values) as values_path:
            argv = [
                *command, release.name, *chart,
                # The reconciler creates missing namespaces itself, once per pass:
                # helm's --create-namespace doubles the CPU time of every install.
                "--namespace", release.namespace,
                "--values", str(values_path),
                "--labels", self._labels(installation, release.digest, {**account, **(proof or {})}),
                "--description", description[:DESCRIPTION_LIMIT],
                *reset,
                *history,
                *force,
                *skip_crds,
                "--timeout", f"{policy.timeout_seconds}s",
                # The API server validates every object it is sent (helm 4's server-side
                # apply rejects unknown fields; helm 3's client-side check only warns), so
                # the client-side OpenAPI pass only costs half of helm's CPU time.
                "--disable-openapi-validation",
                *self._wait_args(policy.wait),
            ]  # fmt: skip
            self._run_for(release.namespace, release.service_account, argv, policy.timeout_seconds)

    def test(self, release: DesiredRelease, policy: Policy) -> None:
        """`helm test`: runs the chart's test hooks and waits for them up to the policy's
        timeout. Raises HelmError (helm's words, unmasked) when a test fails or times out."""

        argv = ["test", release.name, "--namespace", release.namespace]
        argv += ["--timeout", f"{policy.timeout_seconds}s"]
        self._run_for(release.namespace, release.service_account, argv, policy.timeout_seconds)

    def rollback(
        self,
        name: str,
        namespace: str,
        revision: int | None,
        policy: Policy,
        *,
        service_account: str | None,
    ) -> None:
        """Not stopped on shutdown: helm 3 has no SIGTERM handling in rollback, so a stopped
        one stays `pending-rollback`; without --wait it ends within seconds anyway.
        Runs as `service_account` of `namespace` (None: the reconciler itself)."""

        argv = ["rollback", name, *([str(revision)] if revision else []), "--namespace", namespace]
        argv += [
            "--history-max",
            str(policy.history_max),
            "--timeout",
            f"{policy.timeout_seconds}s",
        ]
        self._run_for(namespace, service_account, argv, policy.timeout_seconds, cancellable=False)

    def uninstall(
        self, name: str, namespace: str, policy: Policy, *, service_account: str | None
    ) -> None:
        """Not stopped on shutdown either: a stopped helm 3 leaves the release `uninstalling`.
        Runs as `service_account` of `namespace` (None: the reconciler itself)."""

        # A failed first install may have left nothing behind: nothing to remove is fine.
        argv = ["uninstall", name, "--namespace", namespace, "--ignore-not-found"]
        argv += ["--timeout", f"{policy.timeout_seconds}s"]
        self._run_for(namespace, service_account, argv, policy.timeout_seconds, cancellable=False)

    def pull(self, chart: ChartRef, into: Path, timeout_seconds: int) -> Path:
        """Download a chart archive once, for several releases to install from.

        Raises HelmError when the archive is not exactly `chart.version` (helm reads a
        version as a range in classic repositories: `1.2.3` finds `1.2.3+build.5`)."""

        argv = ["pull", *self._chart_args(chart), "--destination", str(into)]
        self._run(argv, timeout_seconds, identity=[])  # a registry download: no cluster access
        archives = list(into.glob("*.tgz"))
        if len(archives) != 1:
            raise HelmError(
                f"`helm pull {chart.name}` left {len(archives)} chart archives in {into}, not one"
            )
        found = archive_version(archives[0])
        if found != chart.version:
            raise HelmError(
                f"chart {chart.name} {chart.version} is not in {chart.repository}: helm would"
                f" install {found or 'an archive without a version'} instead, which a pinned"
                f" version never means; publish {chart.version} or pin a version the"
                " repository holds"
            )
        return archives[0]

    def _chart_args(self, chart: ChartRef) -> list[str]:
        http = ["--plain-http"] if self.plain_http and chart.is_oci else []
        version = ["--version", chart.version]
        if chart.is_oci:
            return [f"{chart.repository.rstrip('/')}/{chart.name}", *version, *http]
        return [chart.name, *version, "--repo", chart.repository]

    def _wait_args(self, wait: bool) -> list[str]:
        if not wait:
            return []
        return ["--wait=watcher"] if self.major >= 4 else ["--wait"]

    @staticmethod
    def _labels(installation: str, digest: str, proof: Mapping[str, str]) -> str:
        labels = {
            LABEL_MANAGED_BY: MANAGED_BY,
            LABEL_INSTALLATION: installation,
            LABEL_DIGEST: digest,
            **proof,
        }
        return ",".join(f"{k}={v}" for k, v in labels.items())

    def _run_for(
        self,
        namespace: str,
        service_account: str | None,
        argv: Sequence[str],
        timeout_seconds: int,
        cancellable: bool = True,
    ) -> None:
        """Run a helm command on a release of `namespace`: the one way every such command
        (install, upgrade, rollback, uninstall, test) reaches helm, so that each runs as the
        release's ServiceAccount. Raises HelmError; a refusal of the API server to that
        account becomes one line naming the verb, the resource and the account."""

        try:
            identity = impersonation(namespace, service_account)
            self._run(argv, timeout_seconds, cancellable, identity=identity)
        except HelmError as error:
            if service_account is None:
                raise
            refused = _refusal(str(error), namespace, service_account)
            if refused is None:
                raise
            raise HelmError(refused) from error

    def _run(
        self,
        argv: Sequence[str],
        timeout_seconds: int,
        cancellable: bool = True,
        *,
        identity: Sequence[str],
    ) -> None:
        """`identity`: the impersonation flags (`_run_for`), explicitly [] for a command that
        touches no release; a required keyword, so that no release command can forget it."""

        self.counter.add()
        # helm gets its own timeout first; ours is the backstop that sends SIGTERM.
        cancel = self.cancel if cancellable else None
        try:
            proc.run(
                [self.binary, *argv, *identity],
                env=self.env,
                timeout=timeout_seconds + 30,
                cancel=cancel,
            )
        except CommandError as error:
            what = " ".join(argv[:3] if argv[0] == "upgrade" else argv[:2])
            reason = _error_text(error.stderr) or "no message"
            raise HelmError(
                f"`helm {what}` exited {error.returncode}: {reason}{_hint(reason)}"
            ) from error


MAX_CHART_YAML_BYTES = 1024 * 1024


def impersonation(namespace: str, service_account: str | None) -> list[str]:
    """helm's flags to act as ServiceAccount `service_account` of `namespace`, with the groups
    Kubernetes gives a real one (a tenant's RoleBinding may name either); [] for None."""

    if not service_account:
        return []
    user, groups = service_account_identity(namespace, service_account)
    return ["--kube-as-user", user, *(flag for g in groups for flag in ("--kube-as-group", g))]


def _refusal(message: str, namespace: str, service_account: str) -> str | None:
    """One line for the API server's refusal in `message`, or None when it holds none.

    The reconciler's own identity refused to impersonate: the deploy chart does not list
    the account. The account itself refused: its Role lacks the verb, or the account does
    not exist (impersonating a missing account is allowed; it just holds no rights)."""

    account = f"ServiceAccount {namespace}/{service_account}"
    listed = "list it in the deploy chart's rbac.lockdown.serviceAccounts"
    match = FORBIDDEN.search(message)
    if match is None:
        if UNREACHABLE.search(message):
            return (
                f"the reconciler cannot act as {account}: helm found the cluster unreachable as "
                f"that account, as when the reconciler may not impersonate it; {listed} (or "
                "check that the API server is up)"
            )
        return None
    user, _ = service_account_identity(namespace, service_account)
    resource = match["resource"] + (f".{match['group']}" if match["group"] else "")
    where = f" in namespace {match['namespace']}" if match["namespace"] else " cluster-wide"
    if match["verb"] == "impersonate":
        return f"the reconciler may not impersonate {account}: {listed}"
    if match["user"] != user:
        return None
    return (
        f"{account} may not {match['verb']} {resource}{where}: grant it in a Role bound to "
        f"that ServiceAccount (or create the ServiceAccount if it does not exist)"
    )


def archive_version(archive: Path) -> str | None:
    """The `version` of `<chart>/Chart.yaml` in a chart archive, or None when unreadable."""

    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                parts = member.name.split("/")
                if len(parts) == 2 and parts[1] == "Chart.yaml" and member.isfile():
                    if member.size > MAX_CHART_YAML_BYTES:
                        return None
                    handle = tar.extractfile(member)
                    text = handle.read().decode("utf-8") if handle else ""
                    document = yaml.load(text, Loader=_ChartLoader)  # noqa: S506 - safe
                    version = document.get("version") if isinstance(document, dict) else None
                    return str(version) if version is not None else None
    except (OSError, tarfile.TarError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return None


_ChartLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@contextmanager
def _values_file(values: Mapping[str, object]) -> Iterator[Path]:
    folder = scratch.make("values")
    try:
        path = folder / "values.yaml"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            # JSON is YAML that no reader takes for another type: "y" stays a string.
            handle.write(helmyaml.dumps(values))
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _error_text(stderr: str) -> str:
    """helm's whole error: from its first `Error:` line to the end (the lines after it name
    the schema paths or the objects the API server refused), without helm's warnings before
    it; blank lines and indentation dropped. Unmasked and unbounded: the caller does both."""

    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    starts = [i for i, line in enumerate(lines) if line.startswith("Error:")]
    kept = lines[starts[0] :] if starts else lines
    return "\n".join(line.removeprefix("Error: ") for line in kept)


def _hint(reason: str) -> str:
    """The fix for failures whose helm message does not say it."""

    missing = MISSING_NAMESPACE.search(reason)
    if missing:
        # Only namespaced mode (--namespaces) leaves namespaces uncreated.
        return (
            f"; namespace {missing[1]} does not exist: create it "
            "(with --namespaces the reconciler creates no namespaces)"
        )
    return ""
