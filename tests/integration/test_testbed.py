"""Smoke tests of the testbed itself: each real part does what later tests rely on."""

from __future__ import annotations

import base64
import gzip
import json
import os
import secrets
import shlex
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from testbed import Testbed, pinned_versions, run
from testbed import core as testbed_core
from testbed.procs import free_ports
from testbed.sshserver import write_keys

pytestmark = pytest.mark.testbed


def _sha_version() -> str:
    # The "g" keeps the prerelease identifier alphanumeric even if the sha starts with 0.
    return f"1.0.0-g{secrets.token_hex(4)[:7]}"


def _release_payload(secret: Any) -> dict[str, Any]:
    """The Helm release JSON: base64 (API) of base64 (Helm) of gzip."""
    inner = base64.b64decode(secret.data["release"])
    decoded: dict[str, Any] = json.loads(gzip.decompress(base64.b64decode(inner)))
    return decoded


def test_server_reports_the_pinned_kubernetes_version(testbed: Testbed) -> None:
    pinned = pinned_versions()["KUBERNETES_VERSION"]
    assert testbed.server_version()["gitVersion"] == pinned


def test_apiserver_needs_tls_client_credentials(testbed: Testbed) -> None:
    assert testbed.api_url.startswith("https://127.0.0.1:")
    context = ssl.create_default_context(cafile=str(testbed.ca_cert))
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(f"{testbed.api_url}/api/v1/secrets", context=context)
    assert anonymous.value.code == 401


@pytest.mark.helm3
def test_helm_installs_chart_from_registry(
    helm: Any, publish_chart: Callable[..., str], namespace: str, kube: Any
) -> None:
    version = _sha_version()
    ref = publish_chart("smoke", version, helm=helm.binary)
    assert ref.endswith("/charts/smoke")

    helm(
        *("upgrade", "--install", "smoke", ref, "--version", version, "--plain-http"),
        *("--namespace", namespace, "--set", "message=first"),
    )

    core = client.CoreV1Api(kube)
    secret = core.read_namespaced_secret("sh.helm.release.v1.smoke.v1", namespace)
    assert secret.type == "helm.sh/release.v1"
    assert secret.metadata.labels["owner"] == "helm"
    assert secret.metadata.labels["status"] == "deployed"
    release = _release_payload(secret)
    assert release["chart"]["metadata"]["version"] == version
    assert release["config"] == {"message": "first"}
    configmap = core.read_namespaced_config_map("smoke", namespace)
    assert configmap.data == {"message": "first", "chartVersion": version}


def test_helm_rollback_creates_a_deployed_revision(
    helm: Any, publish_chart: Callable[..., str], namespace: str, kube: Any
) -> None:
    v1, v2 = _sha_version(), _sha_version()
    ref = publish_chart("smoke", v1)
    publish_chart("smoke", v2)
    common = ("--plain-http", "--namespace", namespace)
    helm("upgrade", "--install", "rb", ref, "--version", v1, "--set", "message=one", *common)
    helm("upgrade", "--install", "rb", ref, "--version", v2, "--set", "message=two", *common)

    helm("rollback", "rb", "1", "--namespace", namespace)

    core = client.CoreV1Api(kube)
    secrets_ = core.list_namespaced_secret(namespace, label_selector="owner=helm,name=rb").items
    by_revision = {int(s.metadata.labels["version"]): s.metadata.labels["status"] for s in secrets_}
    assert by_revision == {1: "superseded", 2: "superseded", 3: "deployed"}
    assert core.read_namespaced_config_map("rb", namespace).data["message"] == "one"
    history = json.loads(helm("history", "rb", "--namespace", namespace, "-o", "json").stdout)
    assert [entry["revision"] for entry in history] == [1, 2, 3]


def test_serviceaccount_without_permissions_is_denied(
    testbed: Testbed, namespace: str, make_kube_client: Callable[[Path], Any]
) -> None:
    kubeconfig = testbed.mint_serviceaccount_kubeconfig(namespace, "nobody")
    core = client.CoreV1Api(make_kube_client(kubeconfig))

    with pytest.raises(ApiException) as denied:
        core.list_namespaced_secret(namespace)
    assert denied.value.status == 403
    assert "system:serviceaccount:" in denied.value.body

    # The same token works once RBAC allows it: the 403 came from authorization.
    rbac = client.RbacAuthorizationV1Api(make_kube_client(testbed.kubeconfig))
    rule = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "read"}, "rules": [rule]})
    role_ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read"}
    subject = {"kind": "ServiceAccount", "name": "nobody", "namespace": namespace}
    binding = {"metadata": {"name": "nobody-reads"}, "roleRef": role_ref, "subjects": [subject]}
    rbac.create_namespaced_role_binding(namespace, binding)
    testbed.wait_until_allowed(namespace, "nobody", "list", "secrets", in_namespace=namespace)
    assert core.list_namespaced_secret(namespace).items == []


def _git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    env_args = ["-c", "user.name=Testbed", "-c", "user.email=testbed@example.invalid"]
    return run(["git", *env_args, *args], cwd=cwd, env=env).stdout.strip()


def _ssh_argv(bed: Testbed, key: Path | None = None) -> list[str]:
    """OpenSSH as a careful client runs it: one key, strict host key checking, no prompts."""
    return [
        *("ssh", "-i", str(key or bed.ssh_key), "-o", "IdentitiesOnly=yes"),
        *("-o", f"UserKnownHostsFile={bed.known_hosts}", "-o", "StrictHostKeyChecking=yes"),
        *("-o", "BatchMode=yes", "-F", "/dev/null"),
    ]


def _over_ssh(bed: Testbed) -> dict[str, str]:
    return {**os.environ, "GIT_SSH_COMMAND": shlex.join(_ssh_argv(bed))}


def _ssh(bed: Testbed, command: str, *, user: str = "git", key: Path | None = None) -> Any:
    argv = [*_ssh_argv(bed, key), "-p", str(bed.ssh_port), f"{user}@127.0.0.1", command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_git_clone_push_fetch_over_http(git_repo: str, tmp_path: Path) -> None:
    assert git_repo.startswith("http://127.0.0.1:")
    writer, reader = tmp_path / "writer", tmp_path / "reader"
    _git("clone", "--quiet", git_repo, str(writer))
    (writer / "a.txt").write_text("one\n")
    _git("add", "a.txt", cwd=writer)
    _git("commit", "--quiet", "-m", "one", cwd=writer)
    _git("push", "--quiet", "origin", "HEAD:main", cwd=writer)

    _git("clone", "--quiet", git_repo, str(reader))
    assert (reader / "a.txt").read_text() == "one\n"

    (writer / "b.bin").write_bytes(secrets.token_bytes(2 * 1024 * 1024))  # a chunked push
    _git("add", "b.bin", cwd=writer)
    _git("commit", "--quiet", "-m", "two", cwd=writer)
    _git("push", "--quiet", "origin", "main", cwd=writer)

    _git("fetch", "--quiet", "origin", cwd=reader)
    assert _git("rev-parse", "origin/main", cwd=reader) == _git("rev-parse", "HEAD", cwd=writer)
    assert _git("ls-remote", git_repo, "refs/heads/main").startswith(
        _git("rev-parse", "HEAD", cwd=writer)
    )


def test_private_git_repo_needs_the_token(git_server: Testbed, tmp_path: Path) -> None:
    name = f"private-{secrets.token_hex(3)}"
    url = git_server.create_git_repo(name, private=True)
    denied = subprocess.run(
        ["git", "ls-remote", url],
        capture_output=True,
        text=True,
        env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert denied.returncode != 0

    authed = git_server.git_url(name, private=True, with_token=True)
    _git("clone", "--quiet", authed, str(tmp_path / "c"))
    _git("commit", "--quiet", "--allow-empty", "-m", "x", cwd=tmp_path / "c")
    _git("push", "--quiet", "origin", "HEAD:main", cwd=tmp_path / "c")
    assert "refs/heads/main" in _git("ls-remote", authed)


def test_git_over_ssh_serves_the_repositories_of_the_http_server(
    git_server: Testbed, git_repo: str, tmp_path: Path
) -> None:
    name = git_repo.rsplit("/", 1)[1]
    ssh_url = git_server.git_ssh_url(name)
    assert ssh_url == f"ssh://git@127.0.0.1:{git_server.ssh_port}/{name}"
    over_ssh = _over_ssh(git_server)
    via_http, via_ssh = tmp_path / "via-http", tmp_path / "via-ssh"
    _git("clone", "--quiet", git_repo, str(via_http))
    _git("commit", "--quiet", "--allow-empty", "-m", "over http", cwd=via_http)
    _git("push", "--quiet", "origin", "HEAD:main", cwd=via_http)

    _git("clone", "--quiet", ssh_url, str(via_ssh), env=over_ssh)
    assert _git("log", "-1", "--format=%s", cwd=via_ssh) == "over http"
    (via_ssh / "big.bin").write_bytes(secrets.token_bytes(2 * 1024 * 1024))
    _git("add", "big.bin", cwd=via_ssh)
    _git("commit", "--quiet", "-m", "over ssh", cwd=via_ssh)
    _git("push", "--quiet", "origin", "main", cwd=via_ssh, env=over_ssh)

    _git("pull", "--quiet", "--ff-only", "origin", "main", cwd=via_http)
    assert (via_http / "big.bin").read_bytes() == (via_ssh / "big.bin").read_bytes()
    head = _git("rev-parse", "HEAD", cwd=via_ssh)
    assert _git("ls-remote", ssh_url, "refs/heads/main", env=over_ssh).startswith(head)


def test_ssh_server_accepts_only_its_client_key_for_user_git(
    git_server: Testbed, git_repo: str, tmp_path: Path
) -> None:
    command = f"git-upload-pack '/{git_repo.rsplit('/', 1)[1]}'"
    other = write_keys(tmp_path / "other").client_key
    for user, key in (("git", other), ("root", None)):
        refused = _ssh(git_server, command, user=user, key=key)
        assert refused.returncode == 255
        # "(publickey)" lists what the server offers: no password, no keyboard-interactive.
        assert "Permission denied (publickey)." in refused.stderr


@pytest.mark.parametrize(
    "command",
    [
        "ls",
        "git-upload-pack",
        "git-upload-archive '/{repo}'",
        "git-upload-pack '/{repo}' extra",
        "git-upload-pack '/{repo}'; touch /tmp/pwned",
        "git-receive-pack '/missing.git'",
        "git-upload-pack '{dotdot}'",
        "git-receive-pack '/private/../{dotdot}'",
        "git-upload-pack '{absolute}'",
        "git-upload-pack '{symlink}'",
    ],
)
def test_ssh_server_runs_nothing_but_git_on_a_repository_under_its_root(
    git_server: Testbed, git_repo: str, tmp_path: Path, command: str
) -> None:
    # A real bare repository outside the root, named by a relative path, an absolute one,
    # and a symlink inside the root.
    outside = tmp_path / "outside.git"
    _git("init", "--quiet", "--bare", str(outside))
    link = git_server.git_root / f"link-{secrets.token_hex(3)}.git"
    link.symlink_to(outside)
    paths = {
        "repo": git_repo.rsplit("/", 1)[1],
        "dotdot": os.path.relpath(outside, git_server.git_root),
        "absolute": str(outside),
        "symlink": f"/{link.name}",
    }
    refused = _ssh(git_server, command.format(**paths))
    assert refused.returncode == 1
    assert refused.stderr.startswith("testbed ssh: "), refused.stderr
    assert refused.stdout == ""


def test_registry_serves_oci_distribution_api(
    registry: str, publish_chart: Callable[..., str]
) -> None:
    version = _sha_version()
    publish_chart("smoke", version)
    with urllib.request.urlopen(f"http://{registry}/v2/charts/smoke/tags/list") as response:
        tags = json.load(response)["tags"]
    assert version in tags


def test_free_ports_never_coincide() -> None:
    ports = free_ports(20)
    assert len(set(ports)) == 20


def test_start_picks_new_ports_when_another_process_took_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    picks: list[list[int]] = []

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = int(squatter.getsockname()[1])

        def first_pick_collides(count: int) -> list[int]:
            ports = free_ports(count)
            if not picks:
                ports[1] = taken  # etcd's client port: someone else bound it meanwhile
            picks.append(ports)
            return ports

        monkeypatch.setattr(testbed_core, "free_ports", first_pick_collides)
        # The bare API server: the faster start-up, for a test that needs no controllers.
        with Testbed.start(tmp_path / "bed", controllers=False) as bed:
            assert len(picks) == 2
            assert bed.etcd_port != taken
            assert bed.admin.ready()
            assert bed.healthy()
            names = {proc.name for proc in bed.procs}
            assert "kube-apiserver" in names
            assert not names & {"kube-controller-manager", "kube-scheduler", "kwok"}
            assert bed.admin.call("GET", "/api/v1/nodes")["items"] == []
    failed_log = tmp_path / "bed" / "logs.failed-1" / "etcd.log"
    assert "address already in use" in failed_log.read_text()
