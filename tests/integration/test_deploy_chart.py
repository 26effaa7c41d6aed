"""deploy/chart: what it renders with helm 3 and 4, and what its RBAC allows on the testbed."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from testbed import Testbed, find_binaries
from tests.support.chartrights import wait_for_chart_rights

CHART = Path(__file__).resolve().parents[2] / "deploy" / "chart"
INSTALLATION = "prod-eu"
REQUIRED = {"installation": INSTALLATION, "git": {"repo": "https://git.example.com/env.git"}}
Objects = dict[tuple[str, str], dict[str, Any]]


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _helm(
    helm: Path, *args: str, values: dict[str, Any], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    argv = [str(helm), *args, str(CHART), "--namespace", "reconciler", "-f", str(values_file)]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)


@pytest.fixture(params=["helm4", "helm3"])
def helm_exe(request: pytest.FixtureRequest) -> Path:
    path: Path = find_binaries().helm[request.param]
    return path


@pytest.fixture
def render_documents(helm_exe: Path, tmp_path: Path) -> Callable[..., list[dict[str, Any]]]:
    """render_documents(**values) -> every object `helm template` renders, in order."""

    def template(**values: Any) -> list[dict[str, Any]]:
        result = _helm(
            helm_exe, "template", "rc", values=_merge(REQUIRED, values), tmp_path=tmp_path
        )
        assert result.returncode == 0, result.stderr
        return [d for d in yaml.safe_load_all(result.stdout) if d]

    return template


@pytest.fixture
def render(render_documents: Callable[..., list[dict[str, Any]]]) -> Callable[..., Objects]:
    """render(**values) -> {(kind, name): object} of `helm template` with the required values."""

    def template(**values: Any) -> Objects:
        return {(d["kind"], d["metadata"]["name"]): d for d in render_documents(**values)}

    return template


def _container(objects: Objects) -> dict[str, Any]:
    spec = objects["Deployment", "rc-reconciler"]["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    return dict(container)


def _rules(objects: Objects, kind: str, name: str) -> list[dict[str, Any]]:
    return list(objects[kind, name]["rules"])


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


# ----- rendering -------------------------------------------------------------------------


def test_lint_passes(helm_exe: Path, tmp_path: Path) -> None:
    result = _helm(helm_exe, "lint", "--strict", values=REQUIRED, tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_installation_and_repo_are_required(helm_exe: Path, tmp_path: Path) -> None:
    result = _helm(helm_exe, "template", "rc", values={}, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "installation: set the installation this cluster runs" in result.stderr


def test_schema_rejects_an_unknown_rbac_mode(helm_exe: Path, tmp_path: Path) -> None:
    values = _merge(REQUIRED, {"rbac": {"managedResources": {"mode": "admin"}}})
    result = _helm(helm_exe, "template", "rc", values=values, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "cluster-admin" in result.stderr


def test_deployment_runs_two_leader_elected_replicas_with_probes(
    render: Callable[..., Objects],
) -> None:
    objects = render()
    assert objects["Deployment", "rc-reconciler"]["spec"]["replicas"] == 2
    container = _container(objects)
    assert container["args"][0] == "run"
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    env = _env(container)
    assert env["RECONCILER_LEADER_ELECT"] == "true"
    assert env["RECONCILER_LISTEN"] == ":8080"
    assert env["RECONCILER_INSTALLATION"] == INSTALLATION
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["RECONCILER_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert container["resources"]["limits"]["memory"] == "512Mi"
    assert container["resources"]["requests"]["memory"] == "256Mi"


def test_pod_is_locked_down_with_writable_scratch_only(render: Callable[..., Objects]) -> None:
    objects = render()
    pod = objects["Deployment", "rc-reconciler"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = _container(objects)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"]: m["name"] for m in _container(objects)["volumeMounts"]}
    assert mounts == {"/tmp": "tmp", "/var/lib/reconciler": "workdir"}
    assert all("emptyDir" in v for v in pod["volumes"])
    assert "--workdir=/var/lib/reconciler" in _container(objects)["args"]


def test_disruption_budget_service_and_no_service_monitor_by_default(
    render: Callable[..., Objects],
) -> None:
    objects = render()
    assert objects["PodDisruptionBudget", "rc-reconciler"]["spec"]["minAvailable"] == 1
    assert objects["Service", "rc-reconciler"]["spec"]["ports"][0]["name"] == "http"
    assert not [key for key in objects if key[0] == "ServiceMonitor"]
    monitored = render(serviceMonitor={"enabled": True})
    endpoint = monitored["ServiceMonitor", "rc-reconciler"]["spec"]["endpoints"][0]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] == "http"


def test_default_rbac_has_no_wildcards_and_no_cluster_admin(render: Callable[..., Objects]) -> None:
    objects = render()
    for (kind, _), obj in objects.items():
        if kind in ("Role", "ClusterRole"):
            for rule in obj["rules"]:
                for key in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule[key], (kind, rule)
        if kind.endswith("Binding"):
            assert obj["roleRef"]["name"] != "cluster-admin"


def test_reconciler_reads_release_history_cluster_wide_and_nothing_more(
    render: Callable[..., Objects],
) -> None:
    objects = render()
    assert _rules(objects, "ClusterRole", "reconciler-rc-reconciler-history") == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}
    ]
    binding = objects["ClusterRoleBinding", "reconciler-rc-reconciler-history"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "rc-reconciler", "namespace": "reconciler"}
    ]


def test_own_role_names_its_lease_and_status_configmap(render: Callable[..., Objects]) -> None:
    rules = _rules(render(), "Role", "rc-reconciler")
    named = {
        (r["resources"][0], tuple(r["resourceNames"])): r["verbs"]
        for r in rules
        if "resourceNames" in r
    }
    assert named == {
        ("leases", (f"reconciler-{INSTALLATION}",)): ["get", "update"],
        ("configmaps", (f"reconciler-status-{INSTALLATION}",)): ["get", "update"],
        ("secrets", (f"reconciler-key-{INSTALLATION}",)): ["get"],
    }
    unnamed = {r["resources"][0]: r["verbs"] for r in rules if "resourceNames" not in r}
    assert unnamed == {
        "leases": ["create"],
        "configmaps": ["create"],
        "secrets": ["create"],
        "events": ["create"],
    }


def test_values_objects_are_readable_by_name_only(render: Callable[..., Objects]) -> None:
    objects = render(valuesFrom={"namespace": "config", "configMap": "values", "secret": "secrets"})
    role = objects["Role", "rc-reconciler-values"]
    assert role["metadata"]["namespace"] == "config"
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["values"],
            "verbs": ["get"],
        },
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["secrets"],
            "verbs": ["get"],
        },
    ]
    assert ("Role", "rc-reconciler-values") not in render()


def test_managed_resources_modes(render: Callable[..., Objects]) -> None:
    custom = render()
    managed = _rules(custom, "ClusterRole", "reconciler-rc-reconciler-managed")
    kinds = {resource for rule in managed for resource in rule["resources"]}
    assert {
        "secrets",
        "namespaces",
        "configmaps",
        "services",
        "serviceaccounts",
        "deployments",
    } <= kinds
    assert all("escalate" not in r["verbs"] and "bind" not in r["verbs"] for r in managed)

    admin = render(rbac={"managedResources": {"mode": "cluster-admin"}})
    assert (
        admin["ClusterRoleBinding", "reconciler-rc-reconciler-managed"]["roleRef"]["name"]
        == "cluster-admin"
    )
    assert ("ClusterRole", "reconciler-rc-reconciler-managed") not in admin

    rule = {"apiGroups": ["batch"], "resources": ["cronjobs"], "verbs": ["get", "create"]}
    own = render(rbac={"managedResources": {"rules": [rule]}})
    assert _rules(own, "ClusterRole", "reconciler-rc-reconciler-managed") == [rule]


NAMESPACED = {"namespaces": ["apps", "team-b"]}
SUBJECTS = [{"kind": "ServiceAccount", "name": "rc-reconciler", "namespace": "reconciler"}]


def _in_namespaces(documents: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """{namespace: object} of every `kind` called `name`."""
    return {
        d["metadata"]["namespace"]: d
        for d in documents
        if d["kind"] == kind and d["metadata"]["name"] == name
    }


def test_namespaced_mode_has_no_cluster_scoped_rbac_and_one_role_set_per_namespace(
    render_documents: Callable[..., list[dict[str, Any]]],
) -> None:
    documents = render_documents(rbac=NAMESPACED)
    kinds = {d["kind"] for d in documents}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}

    history = _in_namespaces(documents, "Role", "reconciler-rc-reconciler-history")
    assert set(history) == {"apps", "team-b"}
    for role in history.values():
        assert role["rules"] == [
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}
        ]
    managed = _in_namespaces(documents, "Role", "reconciler-rc-reconciler-managed")
    assert set(managed) == {"apps", "team-b"}
    for role in managed.values():
        kinds_granted = {r for rule in role["rules"] for r in rule["resources"]}
        assert "namespaces" not in kinds_granted, "a Role would grant patching the namespace"
        assert {"secrets", "configmaps", "deployments"} <= kinds_granted
    for name in ("history", "managed"):
        bindings = _in_namespaces(documents, "RoleBinding", f"reconciler-rc-reconciler-{name}")
        assert set(bindings) == {"apps", "team-b"}
        for binding in bindings.values():
            assert binding["roleRef"] == {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": f"reconciler-rc-reconciler-{name}",
            }
            assert binding["subjects"] == SUBJECTS

    own = _in_namespaces(documents, "Role", "rc-reconciler")
    assert set(own) == {"reconciler"}, "the reconciler's own Role stays where it was"
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert _env(container)["RECONCILER_NAMESPACES"] == "apps,team-b"


def test_namespaced_cluster_admin_mode_binds_admin_inside_each_namespace_only(
    render_documents: Callable[..., list[dict[str, Any]]],
) -> None:
    """cluster-admin through a RoleBinding would let a chart patch the Namespace object."""
    rbac = {**NAMESPACED, "managedResources": {"mode": "cluster-admin"}}
    documents = render_documents(rbac=rbac)
    assert not {d["kind"] for d in documents} & {"ClusterRole", "ClusterRoleBinding"}
    assert not _in_namespaces(documents, "Role", "reconciler-rc-reconciler-managed")
    bindings = _in_namespaces(documents, "RoleBinding", "reconciler-rc-reconciler-managed")
    assert set(bindings) == {"apps", "team-b"}
    for binding in bindings.values():
        assert binding["roleRef"]["kind"] == "ClusterRole"
        assert binding["roleRef"]["name"] == "admin"


@pytest.mark.parametrize(
    "rule",
    [
        {"apiGroups": [""], "resources": ["*"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["namespaces/finalize"], "verbs": ["update"]},
        {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["bind"]},
        {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["*"]},
        {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]},
    ],
)
def test_namespaced_custom_rules_that_reach_beyond_a_namespace_are_refused(
    helm_exe: Path, tmp_path: Path, rule: dict[str, Any]
) -> None:
    rbac = {**NAMESPACED, "managedResources": {"mode": "custom", "rules": [rule]}}
    result = _helm(
        helm_exe, "template", "rc", values=_merge(REQUIRED, {"rbac": rbac}), tmp_path=tmp_path
    )
    assert result.returncode != 0
    assert "cannot be confined to rbac.namespaces" in result.stderr


def test_namespaced_mode_refuses_the_reconcilers_own_and_the_clusters_namespaces(
    helm_exe: Path, tmp_path: Path
) -> None:
    own = _merge(REQUIRED, {"rbac": {"namespaces": ["apps", "reconciler"]}})
    result = _helm(helm_exe, "template", "rc", values=own, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "reconciler is the reconciler's own namespace" in result.stderr
    system = _merge(REQUIRED, {"rbac": {"namespaces": ["kube-system"]}})
    result = _helm(helm_exe, "template", "rc", values=system, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "/rbac/namespaces/0" in result.stderr


def test_namespaced_custom_rules_leave_out_what_a_role_cannot_confine(
    render_documents: Callable[..., list[dict[str, Any]]],
) -> None:
    rules = [
        {"apiGroups": [""], "resources": ["namespaces", "configmaps"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["patch"]},
        {"nonResourceURLs": ["/metrics"], "verbs": ["get"]},
    ]
    rbac = {**NAMESPACED, "managedResources": {"mode": "custom", "rules": rules}}
    documents = render_documents(rbac=rbac)
    for role in _in_namespaces(documents, "Role", "reconciler-rc-reconciler-managed").values():
        assert role["rules"] == [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]


LOCKDOWN = {
    "lockdown": {
        "enabled": True,
        "serviceAccounts": [
            {"namespace": "team-a", "name": "deployer"},
            {"namespace": "team-a", "name": "jobs"},
            {"namespace": "team-b", "name": "deployer"},
        ],
    }
}


def test_lockdown_grants_impersonation_of_the_listed_accounts_and_no_chart_rights(
    render_documents: Callable[..., list[dict[str, Any]]],
) -> None:
    documents = render_documents(rbac=LOCKDOWN)
    names = {(d["kind"], d["metadata"]["name"]) for d in documents}
    assert not any(name.endswith("-managed") for _, name in names), "no managedResources"
    roles = _in_namespaces(documents, "Role", "reconciler-rc-reconciler-impersonate")
    assert {ns: role["rules"] for ns, role in roles.items()} == {
        "team-a": [{"apiGroups": [""], "resources": ["serviceaccounts"],
                    "resourceNames": ["deployer", "jobs"], "verbs": ["impersonate"]}],
        "team-b": [{"apiGroups": [""], "resources": ["serviceaccounts"],
                    "resourceNames": ["deployer"], "verbs": ["impersonate"]}],
    }  # fmt: skip
    bindings = _in_namespaces(documents, "RoleBinding", "reconciler-rc-reconciler-impersonate")
    assert set(bindings) == {"team-a", "team-b"}
    assert all(b["subjects"] == SUBJECTS for b in bindings.values())
    (groups,) = [d for d in documents if d["metadata"]["name"].endswith("-impersonate-groups")
                 and d["kind"] == "ClusterRole"]  # fmt: skip
    assert groups["rules"] == [
        {"apiGroups": [""], "resources": ["groups"], "verbs": ["impersonate"],
         "resourceNames": ["system:serviceaccounts", "system:serviceaccounts:team-a",
                           "system:serviceaccounts:team-b"]}
    ]  # fmt: skip
    # Whatever the reconciler may do with Secrets cluster-wide is read-only history.
    for document in documents:
        if document["kind"] in ("ClusterRole", "Role"):
            for rule in document["rules"]:
                if "secrets" in rule["resources"] and document["metadata"].get("namespace") not in (
                    "reconciler",
                ):
                    assert set(rule["verbs"]) <= {"get", "list"}, document["metadata"]
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert _env(container)["RECONCILER_LOCKDOWN"] == "true"


def test_namespaced_lockdown_may_impersonate_any_account_of_those_namespaces_only(
    render_documents: Callable[..., list[dict[str, Any]]],
) -> None:
    rbac = {**NAMESPACED, "lockdown": {"enabled": True}}
    documents = render_documents(rbac=rbac)
    roles = _in_namespaces(documents, "Role", "reconciler-rc-reconciler-impersonate")
    assert set(roles) == {"apps", "team-b"}
    for role in roles.values():
        assert role["rules"] == [
            {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]}
        ]
    cluster_wide = [d for d in documents if d["kind"] == "ClusterRole"]
    assert [rule["resources"] for d in cluster_wide for rule in d["rules"]] == [["groups"]]
    assert not any(d["metadata"]["name"].endswith("-managed") for d in documents)


def test_listed_accounts_without_lockdown_add_impersonation_to_the_managed_rights(
    render_documents: Callable[..., list[dict[str, Any]]],
) -> None:
    accounts = LOCKDOWN["lockdown"]["serviceAccounts"]
    documents = render_documents(rbac={"lockdown": {"enabled": False, "serviceAccounts": accounts}})
    names = {d["metadata"]["name"] for d in documents}
    assert "reconciler-rc-reconciler-managed" in names
    roles = _in_namespaces(documents, "Role", "reconciler-rc-reconciler-impersonate")
    assert set(roles) == {"team-a", "team-b"}
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "RECONCILER_LOCKDOWN" not in _env(container)
    assert not any(d["metadata"]["name"].endswith("-impersonate")
                   for d in render_documents())  # fmt: skip


@pytest.mark.parametrize(
    ("rbac", "values", "error"),
    [
        ({"lockdown": {"enabled": True}}, {}, "rbac.lockdown.serviceAccounts: list the"),
        (
            {"lockdown": {"enabled": True,
                          "serviceAccounts": [{"namespace": "reconciler", "name": "x"}]}},
            {},
            "reconciler is the reconciler's own namespace",
        ),
        (
            {"namespaces": ["apps"], "lockdown": {"enabled": True,
                                                  "serviceAccounts": [{"namespace": "team-b",
                                                                       "name": "x"}]}},
            {},
            "namespace team-b is not in rbac.namespaces",
        ),
        (
            LOCKDOWN,
            {"valuesFrom": {"namespace": "team-a", "secret": "values"}},
            "valuesFrom.namespace: team-a is a tenant's namespace",
        ),
        (
            {"lockdown": {"enabled": True,
                          "serviceAccounts": [{"namespace": "kube-system", "name": "x"}]}},
            {},
            "/rbac/lockdown/serviceAccounts/0/namespace",
        ),
    ],
)  # fmt: skip
def test_lockdown_refuses_what_would_let_a_tenant_reach_the_reconcilers_secrets(
    helm_exe: Path, tmp_path: Path, rbac: dict[str, Any], values: dict[str, Any], error: str
) -> None:
    settings = _merge(REQUIRED, {"rbac": rbac, **values})
    result = _helm(helm_exe, "template", "rc", values=settings, tmp_path=tmp_path)
    assert result.returncode != 0
    assert error in result.stderr, result.stderr


def test_cluster_wide_mode_sets_no_namespace_list(render: Callable[..., Objects]) -> None:
    assert "RECONCILER_NAMESPACES" not in _env(_container(render()))


def test_schema_rejects_a_namespace_that_is_no_dns_label(helm_exe: Path, tmp_path: Path) -> None:
    values = _merge(REQUIRED, {"rbac": {"namespaces": ["apps", "Team_B"]}})
    result = _helm(helm_exe, "template", "rc", values=values, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "Team_B" in result.stderr


def test_git_token_is_mounted_as_a_file(render: Callable[..., Objects]) -> None:
    objects = render(git={"credentials": {"secretName": "git", "type": "token"}})
    container = _container(objects)
    assert _env(container)["RECONCILER_GIT_TOKEN_FILE"] == "/etc/reconciler/git/token"
    assert {
        "name": "git-credentials",
        "mountPath": "/etc/reconciler/git",
        "readOnly": True,
    } in container["volumeMounts"]


def test_git_ssh_key_and_known_hosts_are_mounted(render: Callable[..., Objects]) -> None:
    objects = render(git={"credentials": {"secretName": "git", "type": "ssh"}})
    env = _env(_container(objects))
    assert env["RECONCILER_GIT_SSH_KEY"] == "/etc/reconciler/git/ssh-privatekey"
    assert env["RECONCILER_GIT_KNOWN_HOSTS"] == "/etc/reconciler/git/known_hosts"
    assert "RECONCILER_GIT_TOKEN_FILE" not in env
    pod = objects["Deployment", "rc-reconciler"]["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "git-credentials"]
    assert volume["secret"]["secretName"] == "git"


# ----- on the testbed --------------------------------------------------------------------


def _can(
    api: client.ApiClient, verb: str, resource: str, group: str = "", **attributes: str
) -> bool:
    review = client.AuthorizationV1Api(api).create_self_subject_access_review(
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {
                "resourceAttributes": {
                    "verb": verb,
                    "resource": resource,
                    "group": group,
                    **attributes,
                }
            },
        }
    )
    return bool(review.status.allowed)


def _granted(api: client.ApiClient, *args: str, **attributes: str) -> bool:
    """`_can`, waiting out the authorizer's cache for a binding that was just created."""
    deadline = time.monotonic() + 30
    while not _can(api, *args, **attributes):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def installed(
    testbed: Testbed, namespace: str, helm: Any, tmp_path: Path
) -> Iterator[Callable[..., Path]]:
    """install(**values) -> kubeconfig of the chart's ServiceAccount; uninstalled afterwards."""

    release = "rc"

    def install(**values: Any) -> Path:
        values_file = tmp_path / "values.yaml"
        values_file.write_text(yaml.safe_dump(_merge(REQUIRED, values)))
        helm("upgrade", "--install", release, str(CHART), "-n", namespace, "-f", str(values_file))
        kubeconfig = testbed.mint_serviceaccount_kubeconfig(namespace, "rc-reconciler")
        targets = values.get("rbac", {}).get("namespaces", ())
        wait_for_chart_rights(testbed, namespace, "rc-reconciler", targets)
        return kubeconfig

    yield install
    helm("uninstall", release, "-n", namespace, check=False)


@pytest.mark.helm3
def test_chart_installs_and_grants_exactly_the_reconcilers_rights(
    installed: Callable[..., Path],
    namespace: str,
    kube: Any,
    make_kube_client: Callable[[Path], Any],
) -> None:
    kubeconfig = installed(valuesFrom={"configMap": "values", "secret": "values"})

    apps, core = client.AppsV1Api(kube), client.CoreV1Api(kube)
    assert apps.read_namespaced_deployment("rc-reconciler", namespace).spec.replicas == 2
    assert core.read_namespaced_service_account("rc-reconciler", namespace)
    assert core.read_namespaced_service("rc-reconciler", namespace)
    assert client.PolicyV1Api(kube).read_namespaced_pod_disruption_budget(
        "rc-reconciler", namespace
    )
    rbac = client.RbacAuthorizationV1Api(kube)
    assert rbac.read_namespaced_role("rc-reconciler", namespace)
    assert rbac.read_cluster_role(f"{namespace}-rc-reconciler-history")

    sa = make_kube_client(kubeconfig)
    lease, status = f"reconciler-{INSTALLATION}", f"reconciler-status-{INSTALLATION}"
    coordination = "coordination.k8s.io"
    try:
        # What the reconciler does itself.
        assert _granted(sa, "list", "secrets")  # release history, all namespaces
        assert _granted(sa, "create", "leases", coordination, namespace=namespace)
        assert _granted(sa, "update", "leases", coordination, namespace=namespace, name=lease)
        assert _granted(sa, "update", "configmaps", namespace=namespace, name=status)
        assert _granted(sa, "create", "events", namespace=namespace)
        assert _granted(sa, "get", "configmaps", namespace=namespace, name="values")
        # What helm does for the default (custom) managed rules.
        assert _granted(sa, "create", "namespaces")
        assert _granted(sa, "create", "deployments", "apps", namespace="anywhere")
        # And not more.
        assert not _can(sa, "update", "leases", coordination, namespace=namespace, name="other")
        assert not _can(sa, "delete", "nodes")
        assert not _can(sa, "create", "clusterroles", "rbac.authorization.k8s.io")
        assert not _can(sa, "create", "clusterrolebindings", "rbac.authorization.k8s.io")
        assert not _can(sa, "create", "daemonsets", "apps", namespace="anywhere")
        assert not _can(sa, "impersonate", "serviceaccounts")
    finally:
        sa.close()


@pytest.mark.helm3
def test_helm_as_the_service_account_installs_allowed_kinds_only(
    installed: Callable[..., Path],
    testbed: Testbed,
    namespace: str,
    helm: Any,
    charts_dir: Path,
    tmp_path: Path,
    make_kube_client: Callable[[Path], Any],
) -> None:
    kubeconfig = installed()
    target = f"{namespace}-apps"
    try:
        # As the reconciler does it: the namespace created by a POST, never helm's
        # --create-namespace (which patches namespaces, a right the chart does not grant).
        sa = make_kube_client(kubeconfig)
        try:
            body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": target}}
            client.CoreV1Api(sa).create_namespace(body)
        finally:
            sa.close()
        for message in ("first", "second"):  # an install, then an upgrade
            helm(
                *("upgrade", "--install", "smoke", str(charts_dir / "smoke")),
                *("-n", target, "--set", f"message={message}"),
                kubeconfig=kubeconfig,
            )
        chart = tmp_path / "daemon"
        (chart / "templates").mkdir(parents=True)
        (chart / "Chart.yaml").write_text("apiVersion: v2\nname: daemon\nversion: 0.1.0\n")
        (chart / "templates" / "ds.yaml").write_text(DAEMONSET)
        denied = helm(
            "install", "daemon", str(chart), "-n", target, kubeconfig=kubeconfig, check=False
        )
        assert denied.returncode != 0
        assert "forbidden" in denied.stderr
        assert "daemonsets" in denied.stderr
    finally:
        testbed.delete_namespace(target)


def test_cluster_admin_mode_grants_everything(
    installed: Callable[..., Path], make_kube_client: Callable[[Path], Any]
) -> None:
    sa = make_kube_client(installed(rbac={"managedResources": {"mode": "cluster-admin"}}))
    try:
        assert _granted(sa, "delete", "nodes")
        assert _granted(sa, "create", "daemonsets", "apps", namespace="anywhere")
    finally:
        sa.close()


@pytest.mark.parametrize("mode", ["custom", "cluster-admin"])
def test_namespaced_mode_grants_rights_in_the_listed_namespaces_only(
    installed: Callable[..., Path],
    testbed: Testbed,
    namespace: str,
    kube: Any,
    make_kube_client: Callable[[Path], Any],
    mode: str,
) -> None:
    listed = [testbed.create_namespace(f"{namespace}-{tag}") for tag in ("a", "b")]
    other = testbed.create_namespace(f"{namespace}-c")
    testbed.aggregate_cluster_roles()  # `admin`, which mode cluster-admin binds here
    sa = None
    try:
        rbac = {"namespaces": listed, "managedResources": {"mode": mode}}
        sa = make_kube_client(installed(rbac=rbac))
        with pytest.raises(client.ApiException) as missing:
            client.RbacAuthorizationV1Api(kube).read_cluster_role(
                f"{namespace}-rc-reconciler-history"
            )
        assert missing.value.status == 404
        lease = f"reconciler-{INSTALLATION}"
        coordination = "coordination.k8s.io"
        assert _granted(sa, "update", "leases", coordination, namespace=namespace, name=lease)
        for target in listed:
            assert _granted(sa, "list", "secrets", namespace=target)
            assert _granted(sa, "create", "deployments", "apps", namespace=target)
        assert not _can(sa, "list", "secrets"), "no cluster-wide Secret list"
        assert not _can(sa, "list", "secrets", namespace=other)
        assert not _can(sa, "create", "deployments", "apps", namespace=other)
        assert not _can(sa, "create", "namespaces")
        assert not _can(sa, "delete", "nodes")
        # Patching the Namespace object would let a chart relabel its Pod Security level.
        name = listed[0]
        assert not _can(sa, "patch", "namespaces", namespace=name, name=name)
    finally:
        if sa is not None:
            sa.close()
        for target in (*listed, other):
            testbed.delete_namespace(target)


DAEMONSET = """\
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: {{ .Release.Name }}
spec:
  selector:
    matchLabels: {app: daemon}
  template:
    metadata:
      labels: {app: daemon}
    spec:
      containers:
        - name: pause
          image: registry.k8s.io/pause:3.10
"""
