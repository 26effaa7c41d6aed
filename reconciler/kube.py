"""The one seam to the Kubernetes API: raw JSON requests over the client's transport.

Responses are parsed as plain JSON instead of the client's model objects: a
release Secret holds a large blob, and the model layer would copy it twice.
Every failure becomes a `KubeError` that names the verb and resource.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from urllib3 import HTTPHeaderDict

from reconciler.errors import KubeError

SERVICEACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
JsonObject = dict[str, Any]


@dataclass(frozen=True)
class Resource:
    """A REST path for one kind, e.g. core v1 secrets."""

    group_version: str
    plural: str

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = "/api/v1" if self.group_version == "v1" else f"/apis/{self.group_version}"
        ns = f"/namespaces/{quote(namespace, safe='')}" if namespace else ""
        tail = f"/{quote(name, safe='')}" if name else ""
        return f"{base}{ns}/{self.plural}{tail}"


SECRETS = Resource("v1", "secrets")
CONFIGMAPS = Resource("v1", "configmaps")
EVENTS = Resource("v1", "events")
NAMESPACES = Resource("v1", "namespaces")
LEASES = Resource("coordination.k8s.io/v1", "leases")


def service_account_identity(namespace: str, name: str) -> tuple[str, tuple[str, ...]]:
    """The user name and groups the API server gives ServiceAccount `namespace/name`: what
    the reconciler impersonates to act as it (helm --kube-as-user/--kube-as-group, or
    `Kube.impersonating`)."""

    groups = ("system:serviceaccounts", f"system:serviceaccounts:{namespace}")
    return f"system:serviceaccount:{namespace}:{name}", groups


def as_release_account(kube: Kube, namespace: str, service_account: str | None) -> Kube:
    """`kube` acting as ServiceAccount `namespace/service_account` when one is named (a
    release's identity, as helm runs for it), else `kube` itself."""

    if not service_account:
        return kube
    return kube.impersonating(*service_account_identity(namespace, service_account))


VERBS = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


class Kube:
    """A thin client: JSON in, JSON out, counted, with errors a user can act on."""

    def __init__(
        self,
        api_client: client.ApiClient,
        reload: Callable[[], client.ApiClient] | None = None,
    ) -> None:
        self._api = api_client
        self._reload = reload
        # Shared with every `impersonating` twin: one lock and one count of API calls per
        # connection, so reads made as a release's account are in the figures too.
        self._lock = threading.Lock()
        self._count = [0]
        self._impersonate: tuple[str, tuple[str, ...]] | None = None
        # RECONCILER_API_LOG names a file that gets one line per request: the verb and the
        # path (and `as`, the impersonated user), nothing of the body. The RBAC test compares them with the deploy chart's rules.
        self.request_log = os.environ.get("RECONCILER_API_LOG", "")

    @classmethod
    def connect(cls, kubeconfig: str | None = None, context: str | None = None) -> Kube:
        """From a kubeconfig file (see `in_cluster_kubeconfig` for the Pod's service account)."""

        def load() -> client.ApiClient:
            configuration = client.Configuration()
            try:
                config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=kubeconfig, context=context, client_configuration=configuration
                )
            except (ConfigException, OSError) as error:
                where = kubeconfig or "~/.kube/config"
                raise KubeError(
                    f"cannot load Kubernetes credentials from {where}: {error}; "
                    "pass --kubeconfig FILE (or set KUBECONFIG), or run inside a Pod"
                ) from error
            return client.ApiClient(configuration)

        return cls(load(), load)

    @property
    def calls(self) -> int:
        """API requests sent so far on this connection, impersonated ones included."""

        return self._count[0]

    @property
    def _acting_as(self) -> str:
        """Whose rights a refusal is about, for its hint."""

        if self._impersonate is None:
            return "the reconciler's service account"
        return f"{self._impersonate[0]} (impersonated)"

    def impersonating(self, user: str, groups: Sequence[str]) -> Kube:
        """A client on the same connection whose requests act as `user` in `groups`
        (Impersonate-User and Impersonate-Group headers): e.g. to read a release's live
        objects with the rights of its ServiceAccount (see `service_account_identity`).
        The reconciler's own identity needs `impersonate` on that user and those groups."""

        twin = Kube(self._api, self._reload)
        twin._lock = self._lock
        twin._count = self._count
        twin.request_log = self.request_log
        twin._impersonate = (user, tuple(groups))
        return twin

    def request(
        self,
        method: str,
        path: str,
        query: Mapping[str, str | int] | None = None,
        body: Any = None,
        accept: str = "application/json",
        content_type: str = "application/json",
        verb: str = "",
    ) -> JsonObject:
        verb = verb or VERBS.get(method, method.lower())
        with self._lock:
            self._count[0] += 1
            if self.request_log:
                entry = {"verb": verb, "path": path}
                if self._impersonate is not None:
                    entry["as"] = self._impersonate[0]  # not the reconciler's own right
                with open(self.request_log, "a", encoding="utf-8") as log:
                    log.write(json.dumps(entry) + "\n")
        try:
            return self._send(method, path, query, body, accept, content_type, verb)
        except KubeError as error:
            # A service account token is rotated on disk; reload once and try again.
            if error.status != 401 or self._reload is None:
                raise
            self._api = self._reload()
            return self._send(method, path, query, body, accept, content_type, verb)

    def _send(
        self,
        method: str,
        path: str,
        query: Mapping[str, str | int] | None,
        body: Any,
        accept: str,
        content_type: str,
        verb: str,
    ) -> JsonObject:
        url, headers = self._prepare(method, path, query, accept, content_type)
        try:
            response = self._api.call_api(
                method, url, header_params=headers, body=body, _request_timeout=(10, 60)
            )
            response.read()  # type: ignore[no-untyped-call]
        except ApiException as error:
            raise _explain(verb, method, path, error, self._acting_as) from error
        except Exception as error:  # urllib3 connection failures and the like
            raise KubeError(
                f"cannot reach the Kubernetes API for {method} {path}: {error}"
            ) from error
        if response.status >= 400:
            raise _explain(verb, method, path, ApiException(http_resp=response), self._acting_as)
        try:
            parsed: JsonObject = json.loads(response.data or b"{}")
        except RecursionError:
            # An object nested past Python's stack (a custom resource may hold any JSON).
            raise KubeError(f"{method} {path}: the response is nested too deeply to read") from None
        return parsed

    def get(self, path: str) -> JsonObject | None:
        """GET an object, or None when it does not exist."""

        try:
            return self.request("GET", path)
        except KubeError as error:
            if error.status == 404:
                return None
            raise

    def list_items(
        self,
        path: str,
        label_selector: str = "",
        metadata_only: bool = False,
        page_size: int = 500,
    ) -> Iterator[JsonObject]:
        """Every item of a list, following `continue` tokens page by page."""

        token = ""
        accept = METADATA_ONLY if metadata_only else "application/json"
        while True:
            query: dict[str, str | int] = {"limit": page_size}
            if label_selector:
                query["labelSelector"] = label_selector
            if token:
                query["continue"] = token
            page = self.request("GET", path, query, accept=accept, verb="list")
            yield from page.get("items") or []
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                return

    def _prepare(
        self,
        method: str,
        path: str,
        query: Mapping[str, str | int] | None,
        accept: str,
        content_type: str,
    ) -> tuple[str, Mapping[str, str]]:
        headers = {"Accept": accept, "Content-Type": content_type}
        _, url, headers, _, _ = self._api.param_serialize(
            method=method,
            resource_path=path,
            query_params=list((query or {}).items()),
            header_params=headers,
            auth_settings=["BearerToken"],
        )
        if self._impersonate is None:
            return url, headers
        # A plain dict holds one value a name; the API server reads each group from its own
        # Impersonate-Group header line.
        user, groups = self._impersonate
        multi = HTTPHeaderDict(headers)
        multi["Impersonate-User"] = user
        for group in groups:
            multi.add("Impersonate-Group", group)
        return url, multi


def ensure_namespace(kube: Kube, name: str) -> None:
    """Create the namespace unless it exists (an existing one needs no create right)."""

    if kube.get(NAMESPACES.path(name=name)) is not None:
        return
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    try:
        kube.request("POST", NAMESPACES.path(), body=body)
    except KubeError as error:
        if error.status != 409:  # created by someone else in between
            raise


def in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def in_cluster_kubeconfig(folder: Path) -> str:
    """A kubeconfig for the Pod's service account, shared by this process and helm.

    It names the token *file*, which the kubelet rotates, so both re-read it.
    """

    account = Path(os.environ.get("RECONCILER_SERVICEACCOUNT_DIR", SERVICEACCOUNT_DIR))
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    if not (account / "token").is_file():
        raise KubeError(
            f"no service account token at {account}/token; pass --kubeconfig outside a Pod"
        )
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "in-cluster",
                "cluster": {"server": server, "certificate-authority": str(account / "ca.crt")},
            }
        ],
        "users": [{"name": "service-account", "user": {"tokenFile": str(account / "token")}}],
        "contexts": [
            {"name": "in-cluster", "context": {"cluster": "in-cluster", "user": "service-account"}}
        ],
        "current-context": "in-cluster",
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "kubeconfig"
    path.write_text(json.dumps(document))
    path.chmod(0o600)
    return str(path)


def _explain(verb: str, method: str, path: str, error: ApiException, acting_as: str) -> KubeError:
    status = int(error.status or 0)
    message = ""
    try:
        message = json.loads(error.body or "{}").get("message", "")
    except (ValueError, AttributeError):
        message = str(error.body or error.reason or "")
    if status == 403:
        hint = f"grant the '{verb}' verb on this resource to {acting_as}"
        return KubeError(f"forbidden: {message or method + ' ' + path}; {hint}", status)
    if status == 401:
        return KubeError(
            f"unauthorized for {method} {path}: credentials rejected or expired", status
        )
    return KubeError(f"{method} {path} failed ({status}): {message or error.reason}", status)
