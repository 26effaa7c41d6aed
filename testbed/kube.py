"""etcd + kube-apiserver command lines, kubeconfigs, and a tiny admin REST client.

The flags follow what Kubernetes' own integration tests and controller-runtime's envtest
pass: one etcd member on loopback, the apiserver with only its secure port, RBAC on,
no kubelet, scheduler or controller-manager.
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
    binary: Path, pki: ControlPlanePKI, cert_dir: Path, etcd_port: int, port: int
) -> list[str]:
    url = f"https://127.0.0.1:{port}"
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
        # No controller-manager creates `default` ServiceAccounts, so (as envtest does) do
        # not make every Pod wait for one.
        "--disable-admission-plugins=ServiceAccount",
        # A single-user test server needs no request fairness queues; skipping them
        # saves their bootstrap objects and a start-up hook.
        "--enable-priority-and-fairness=false",
        "--profiling=false",
        "--v=1",
    ]


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
