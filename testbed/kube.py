"""Control-plane command lines (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kwok), kubeconfigs, and a tiny admin REST client.

The apiserver flags follow what Kubernetes' own integration tests and controller-runtime's
envtest pass: one etcd member on loopback, only the secure port, RBAC on. The controller-
manager and scheduler run as kubeadm runs them, minus leader election and serving; kwok
stands in for the kubelets of a few fake Nodes (testbed/kwok.yaml).
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from testbed.pki import ControlPlanePKI


def etcd_argv(binary: Path, data_dir: Path, client_port: int, peer_port: int) -> list[str]:
    client = f"http://127.0.0.1:{client_port}"
    peer = f"http://127.0.0.1:{peer_port}"
    return [
        str(binary),
        "--name=testbed",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=testbed={peer}",
        # Throwaway data: skipping fsync makes every write (each helm revision) cheap.
        "--unsafe-no-fsync",
        "--log-level=warn",
        "--quota-backend-bytes=4294967296",
    ]


def apiserver_argv(
    binary: Path,
    pki: ControlPlanePKI,
    cert_dir: Path,
    etcd_port: int,
    port: int,
    *,
    controllers: bool = True,
) -> list[str]:
    """`controllers`: whether a controller-manager will run (it creates the ServiceAccounts
    the ServiceAccount admission plugin makes every Pod wait for)."""
    url = f"https://127.0.0.1:{port}"
    disabled = [
        # Nodes would start tainted not-ready until the node-lifecycle controller, which
        # also evicts Pods from nodes without heartbeats, clears the taint. kwok's nodes
        # are Ready from the start and no node-lifecycle controller runs.
        "TaintNodesByCondition",
    ]
    if not controllers:
        # No controller-manager creates `default` ServiceAccounts, so (as envtest does) do
        # not make every Pod wait for one.
        disabled.append("ServiceAccount")
    return [
        str(binary),
        f"--etcd-servers=http://127.0.0.1:{etcd_port}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        # The `kubernetes` Service endpoints may not point at loopback, and nothing in
        # the testbed reaches the API through that Service.
        "--endpoint-reconciler-type=none",
        f"--secure-port={port}",
        f"--cert-dir={cert_dir}",
        f"--tls-cert-file={pki.serving.cert}",
        f"--tls-private-key-file={pki.serving.key}",
        f"--client-ca-file={pki.ca.cert}",
        "--authorization-mode=Node,RBAC",
        "--anonymous-auth=false",
        f"--service-account-issuer={url}",
        f"--service-account-key-file={pki.sa_public}",
        f"--service-account-signing-key-file={pki.sa_private}",
        f"--api-audiences={url}",
        "--service-cluster-ip-range=10.0.0.0/24",
        "--allow-privileged=true",
        f"--disable-admission-plugins={','.join(disabled)}",
        # A single-user test server needs no request fairness queues; skipping them
        # saves their bootstrap objects and a start-up hook.
        "--enable-priority-and-fairness=false",
        "--profiling=false",
        "--v=1",
    ]


# The controllers what charts create needs; nothing for nodes, volumes, certificates or
# quotas. The aggregation of the `admin`, `edit` and `view` ClusterRoles and the
# kube-root-ca.crt ConfigMap every namespace gets come with it, as on any cluster.
CONTROLLERS = (
    "namespace-controller",
    "garbage-collector-controller",
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "daemonset-controller",
    "job-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "endpoints-controller",
    "endpointslice-controller",
    "clusterrole-aggregation-controller",
    "root-ca-certificate-publisher-controller",
)


def controller_manager_argv(binary: Path, pki: ControlPlanePKI, kubeconfig_path: Path) -> list[str]:
    return [
        str(binary),
        f"--kubeconfig={kubeconfig_path}",
        "--leader-elect=false",
        # Nothing probes it over HTTP; one port less to pick.
        "--secure-port=0",
        f"--controllers={','.join(CONTROLLERS)}",
        # Each controller under its own ServiceAccount and bootstrap ClusterRole, as
        # kubeadm runs it: a role a controller lacks fails here as it would there.
        "--use-service-account-credentials=true",
        # Signs the legacy token Secrets the serviceaccount-token controller fills.
        f"--service-account-private-key-file={pki.sa_private}",
        f"--root-ca-file={pki.ca.cert}",
        # The client-side rate limit (20/s) would pace namespace deletion and garbage
        # collection behind hundreds of test namespaces; the apiserver is ours alone.
        "--kube-api-qps=500",
        "--kube-api-burst=1000",
        "--v=1",
    ]


def scheduler_argv(binary: Path, kubeconfig_path: Path, port: int, cert_dir: Path) -> list[str]:
    return [
        str(binary),
        f"--kubeconfig={kubeconfig_path}",
        f"--authentication-kubeconfig={kubeconfig_path}",
        f"--authorization-kubeconfig={kubeconfig_path}",
        # The probe is anonymous: no front-proxy client CA to look up (the apiserver has none).
        "--authentication-skip-lookup=true",
        "--leader-elect=false",
        # Served only for the testbed's /readyz probe (anonymous, always-allowed path).
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={cert_dir}",
        "--kube-api-qps=500",
        "--kube-api-burst=1000",
        "--v=1",
    ]


# kwok manages only Nodes with this annotation, the way its own tooling marks them.
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"


def kwok_argv(binary: Path, kubeconfig_path: Path, config: Path) -> list[str]:
    return [
        str(binary),
        f"--kubeconfig={kubeconfig_path}",
        f"--config={config}",
        f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
        # Pod IPs outside the Service range 10.0.0.0/24 (kwok's default CIDR).
        "--cidr=10.244.0.0/16",
        "--node-ip=10.243.0.1",
        # No Node leases: nothing (no node-lifecycle controller) watches them.
        "--node-lease-duration-seconds=0",
    ]


def fake_node(name: str) -> dict[str, Any]:
    """A Node for kwok to run: its stages (testbed/kwok.yaml) set it Ready."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_NODE_ANNOTATION: "fake"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
    }


def kubeconfig(
    server: str, ca_pem: bytes, user: str, credentials: dict[str, str], context: str = "testbed"
) -> str:
    """A self-contained kubeconfig (all certificates inline) for one user."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": context,
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": user}}],
        "current-context": context,
    }
    return yaml.safe_dump(config, sort_keys=False)


def cert_credentials(cert_pem: bytes, key_pem: bytes) -> dict[str, str]:
    return {
        "client-certificate-data": base64.b64encode(cert_pem).decode(),
        "client-key-data": base64.b64encode(key_pem).decode(),
    }


class KubeAPIError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {body[:500]}")
        self.status = status


@dataclass(frozen=True)
class AdminClient:
    """Just enough REST for the testbed itself (readiness, namespaces, tokens)."""

    port: int
    ca: Path
    cert: Path
    key: Path

    def _context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 10.0
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self._context(), timeout=timeout
        )
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """JSON in, JSON out; raises KubeAPIError on any non-2xx status."""
        status, payload = self.request(method, path, body)
        if not 200 <= status < 300:
            raise KubeAPIError(method, path, status, payload.decode(errors="replace"))
        return json.loads(payload) if payload else None

    def ready(self) -> bool:
        try:
            status, _ = self.request("GET", "/readyz", timeout=2.0)
        except (OSError, http.client.HTTPException):
            return False
        return status == 200

    def ensure(self, path: str, body: dict[str, Any]) -> None:
        """Create an object; an existing one (409) is fine."""
        status, payload = self.request("POST", path, body)
        if status not in (200, 201, 409):
            raise KubeAPIError("POST", path, status, payload.decode(errors="replace"))
