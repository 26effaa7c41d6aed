"""Least privilege per project, on the testbed with the deploy chart's own token in lockdown
mode: helm runs each release as the ServiceAccount of its namespace that its project names,
so a chart (or whoever writes its values) has that tenant's rights, never the reconciler's.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from engine_world import World
from envrepo import project_document
from test_crd_policy import published
from test_in_cluster import apps_namespace, chart_env, in_pod

from reconciler.errors import KubeError
from reconciler.kube import CONFIGMAPS, SECRETS, Kube, Resource, service_account_identity

CHART = Path(__file__).resolve().parents[2] / "deploy" / "chart"
RBAC = "/apis/rbac.authorization.k8s.io/v1"
GIT_TOKEN = "git-token-d0e1f2a3b4c5"
OTHER_PASSWORD = "other-team-password-6789"
# What a team's deployer may do in its own namespace: helm's release storage (Secrets) and
# the kinds its charts contain.
TENANT_RULES = [
    {
        "apiGroups": [""],
        "resources": ["secrets", "configmaps"],
        "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
    },
    {
        "apiGroups": ["apps"],
        "resources": ["deployments"],
        "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
    },
]


def reviewed(testbed: Any, user: str, groups: list[str], **attributes: str) -> bool:
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {"user": user, "groups": groups, "resourceAttributes": attributes},
    }
    answer = testbed.admin.call(
        "POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", review
    )
    return bool(answer["status"].get("allowed"))


def account_can(testbed: Any, home: str, account: str, /, **attributes: str) -> bool:
    """Whether ServiceAccount `home/account` may do what `attributes` say."""

    user = f"system:serviceaccount:{home}:{account}"
    groups = ["system:serviceaccounts", f"system:serviceaccounts:{home}"]
    return reviewed(testbed, user, groups, **attributes)


def until(predicate: Any, timeout: float = 30) -> None:
    """RBAC counts a new binding once the authorizer's informer has seen it."""

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the binding never took effect"
        time.sleep(0.05)


def tenant(testbed: Any, namespace: str, name: str, rules: list[dict[str, Any]]) -> None:
    """A team's setup, as docs/deploy.md shows it: a ServiceAccount and a Role bound to it."""

    testbed.admin.ensure(
        f"/api/v1/namespaces/{namespace}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}},
    )
    meta = {"name": name, "namespace": namespace}
    testbed.admin.ensure(
        f"{RBAC}/namespaces/{namespace}/roles",
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta,
         "rules": rules},
    )  # fmt: skip
    testbed.admin.ensure(
        f"{RBAC}/namespaces/{namespace}/rolebindings",
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta,
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]},
    )  # fmt: skip
    until(lambda: account_can(testbed, namespace, name, verb="list", resource="secrets",
                              namespace=namespace))  # fmt: skip


def install_locked_down(
    world: World,
    tmp_path: Path,
    accounts: list[dict[str, str]],
    namespaces: tuple[str, ...] = (),
    **values: Any,
) -> Path:
    """The deploy chart in lockdown mode (namespaced with `namespaces`); a folder laid out
    like the Pod's token mount."""

    rbac: dict[str, Any] = {"lockdown": {"enabled": True, "serviceAccounts": accounts}}
    if namespaces:
        rbac["namespaces"] = list(namespaces)
    settings = {"installation": world.installation, "git": {"repo": world.repo.url},
                "rbac": rbac, **values}  # fmt: skip
    values_file = tmp_path / "chart-values.yaml"
    values_file.write_text(yaml.safe_dump(settings))
    world.helm("upgrade", "--install", "rc", str(CHART), "-f", str(values_file))
    testbed = world.testbed
    kubeconfig = testbed.mint_serviceaccount_kubeconfig(world.namespace, "rc-reconciler")
    for account in accounts:
        until(lambda a=account: account_can(  # type: ignore[misc]
            testbed, world.namespace, "rc-reconciler", verb="impersonate",
            resource="serviceaccounts", namespace=a["namespace"], name=a["name"]))  # fmt: skip
    until(lambda: account_can(testbed, world.namespace, "rc-reconciler", verb="impersonate",
                              resource="groups", name="system:serviceaccounts"))  # fmt: skip
    user = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]
    mount = tmp_path / "serviceaccount"
    mount.mkdir()
    (mount / "token").write_text(user["token"])
    (mount / "ca.crt").write_bytes(testbed.ca_cert.read_bytes())
    (mount / "namespace").write_text(world.namespace)
    return mount


def apply_in_pod(
    world: World, mount: Path, *args: str, api_log: Path | None = None
) -> tuple[int, dict[str, Any], str]:
    """`reconciler apply` as the chart runs it: its token, its RECONCILER_LOCKDOWN (and
    RECONCILER_NAMESPACES in namespaced mode)."""

    scope = {k: v for k, v in chart_env(world).items() if k in ("RECONCILER_LOCKDOWN",
                                                                  "RECONCILER_NAMESPACES")}  # fmt: skip
    assert scope["RECONCILER_LOCKDOWN"] == "true"
    if api_log is not None:
        scope["RECONCILER_API_LOG"] = str(api_log)
    done = in_pod(world, mount, "apply", "-o", "json", *args, extra_env=scope)
    assert done.stdout.strip(), done.stderr
    return done.returncode, json.loads(done.stdout), done.stderr


def outcomes(result: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {o["release"]: (o["result"], o["message"]) for o in result["outcomes"]}


def secret(testbed: Any, namespace: str, name: str, data: dict[str, str]) -> None:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    testbed.admin.ensure(
        f"/api/v1/namespaces/{namespace}/secrets",
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": encoded},
    )


def config_maps_text(testbed: Any, namespace: str) -> str:
    items = testbed.admin.call("GET", f"/api/v1/namespaces/{namespace}/configmaps")["items"]
    return json.dumps([item.get("data") or {} for item in items])


def helm_releases(world: World, namespace: str) -> dict[str, str]:
    show_all = ["--all"] if world.helm_name == "helm3" else []
    out = world.testbed.helm(
        "list", *show_all, "-n", namespace, "-o", "json", helm=world.helm_name
    ).stdout
    return {r["name"]: r["status"] for r in json.loads(out)}


@pytest.mark.helm3
@pytest.mark.parametrize("scope", ["cluster-wide", "namespaced"])
def test_lockdown_charts_cannot_copy_the_reconcilers_or_another_teams_secret(
    world: World, tmp_path: Path, publish_chart: Any, scope: str
) -> None:
    testbed, own = world.testbed, world.namespace
    team = testbed.create_namespace(apps_namespace(world, "team"))
    other = testbed.create_namespace(apps_namespace(world, "other"))
    # Namespaced: the reconciler reads release history in both team namespaces only.
    namespaces = (team, other) if scope == "namespaced" else ()
    try:
        tenant(testbed, team, "deployer", TENANT_RULES)
        secret(testbed, own, "git-credentials", {"token": GIT_TOKEN})
        secret(testbed, other, "db", {"password": OTHER_PASSWORD})
        publish_chart("extras", "0.1.0")
        git = {"repo": world.repo.url, "credentials": {"secretName": "git-credentials"}}
        mount = install_locked_down(
            world, tmp_path, [{"namespace": team, "name": "deployer"}], namespaces, git=git
        )

        def extra(data: str) -> str:
            return (
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-extra\n"
                f"data:\n  copied: {data}\n"
            )

        steal = '{{ (lookup "v1" "Secret" "OWN" "git-credentials").data | toJson | quote }}'
        steal = steal.replace("OWN", own)
        repo = world.repo
        repo.project("extras", team, chart="extras", service_account="deployer")
        attacks = {
            # The same chart, honest values: an extra object rendered through tpl.
            "honest": {"extraDeploy": [extra("{{ .Release.Namespace | quote }}")]},
            # A values writer's tpl reaches for the reconciler's git token.
            "via-tpl": {"extraDeploy": [extra(steal)]},
            # The chart's own lookup, aimed at another team's Secret.
            "via-lookup": {"copySecret": {"namespace": other, "name": "db"}},
        }
        for name, values in attacks.items():
            repo.release(world.installation, name, project="extras", values=values)
        repo.installation(world.installation, policy={"retries": 0, "timeoutSeconds": 30})
        repo.commit("one honest release, two that try to copy a Secret")

        code, result, stderr = apply_in_pod(world, mount)
        assert code == 1, stderr
        done = outcomes(result)
        assert done["honest"][0] == "succeeded", done["honest"]
        for name, where in (("via-tpl", own), ("via-lookup", other)):
            status, message = done[name]
            assert status == "failed"
            assert (
                f"ServiceAccount {team}/deployer may not get secrets in namespace {where}"
                in message
            ), message
        assert helm_releases(world, team) == {"honest": "deployed"}, "nothing else recorded"
        copies = config_maps_text(testbed, team)
        assert team in copies, "the honest release's tpl object exists"
        for value in (GIT_TOKEN, OTHER_PASSWORD):
            for form in (value, base64.b64encode(value.encode()).decode()):
                assert form not in copies
                assert form not in json.dumps(result)
    finally:
        world.helm("uninstall", "rc", check=False)
        for namespace in (team, other):
            testbed.delete_namespace(namespace)


@pytest.mark.helm3
def test_a_refusal_names_the_verb_the_resource_and_the_service_account(
    world: World, tmp_path: Path
) -> None:
    testbed = world.testbed
    team = testbed.create_namespace(apps_namespace(world, "team"))
    try:
        no_deployments = [rule for rule in TENANT_RULES if rule["apiGroups"] == [""]]
        tenant(testbed, team, "weak", no_deployments)
        listed = [{"namespace": team, "name": name} for name in ("weak", "ghost")]
        mount = install_locked_down(world, tmp_path, listed)
        repo = world.repo
        # A Deployment the weak account may not create; a ServiceAccount that does not exist;
        # one the chart does not let the reconciler impersonate; one that names none.
        for name, account in (("weak", "weak"), ("ghost", "ghost"), ("unlisted", "other")):
            repo.project(name, team, values={"hang": True}, service_account=account)
            repo.release(world.installation, name)
        repo.project("loose", team)
        repo.release(world.installation, "loose")
        repo.installation(world.installation, policy={"retries": 0, "timeoutSeconds": 30})
        repo.commit("three accounts that cannot install, one release without an account")

        code, result, stderr = apply_in_pod(world, mount)
        assert code == 1, stderr
        done = outcomes(result)
        weak = done["weak"][1]
        assert done["weak"][0] == "failed"
        # The first verb the API server refused: helm looks the Deployment up before it
        # creates it (helm 3) or applies it server-side (helm 4, a patch).
        assert any(
            weak.startswith(f"ServiceAccount {team}/weak may not {verb} deployments.apps in "
                            f"namespace {team}: grant it in a Role bound to that ServiceAccount")
            for verb in ("get", "create", "patch")
        ), weak  # fmt: skip
        # Impersonating a missing account is allowed; it just holds no right at all.
        ghost = re.match(rf"ServiceAccount {team}/ghost may not (\w+) (\w+) in namespace {team}: "
                         r"grant it in a Role bound to that ServiceAccount \(or create the "
                         r"ServiceAccount if it does not exist\)", done["ghost"][1])  # fmt: skip
        assert ghost, done["ghost"]
        assert ghost[1] in ("get", "list"), ghost[0]
        assert ghost[2] in ("configmaps", "secrets"), ghost[0]
        # helm says no more than "cluster unreachable" when the impersonation is refused.
        assert done["unlisted"][1].startswith(
            f"the reconciler cannot act as ServiceAccount {team}/other: helm found the cluster "
            "unreachable as that account, as when the reconciler may not impersonate it; list "
            "it in the deploy chart's rbac.lockdown.serviceAccounts"
        ), done["unlisted"]
        held = {h["release"]: h["reason"] for h in result["held"]}
        assert held["loose"].startswith(
            f"lockdown: no ServiceAccount to run helm as in namespace {team}; set "
            "serviceAccount in the project loose"
        )
        assert helm_releases(world, team) == {}
        assert "Traceback" not in stderr
    finally:
        world.helm("uninstall", "rc", check=False)
        testbed.delete_namespace(team)


def edit_record_values(testbed: Any, namespace: str, release: str, values: dict[str, Any]) -> None:
    """Change the values helm's latest record holds, as a hand edit of the release would,
    leaving its labels (and so the reconciler's signature) as they are."""

    path = f"/api/v1/namespaces/{namespace}/secrets"
    items = testbed.admin.call("GET", f"{path}?labelSelector=owner%3Dhelm,name%3D{release}")
    latest = max(items["items"], key=lambda s: int(s["metadata"]["labels"]["version"]))
    record = json.loads(gzip.decompress(base64.b64decode(base64.b64decode(
        latest["data"]["release"]))))  # fmt: skip
    record["config"] = {**(record.get("config") or {}), **values}
    packed = base64.b64encode(gzip.compress(json.dumps(record).encode())).decode()
    latest["data"]["release"] = base64.b64encode(packed.encode()).decode()
    testbed.admin.call("PUT", f"{path}/{latest['metadata']['name']}", latest)


@pytest.mark.helm3
def test_rollback_drift_correction_and_prune_run_as_the_tenant(
    world: World, tmp_path: Path
) -> None:
    testbed = world.testbed
    team = testbed.create_namespace(apps_namespace(world, "team"))
    try:
        tenant(testbed, team, "deployer", TENANT_RULES)
        mount = install_locked_down(world, tmp_path, [{"namespace": team, "name": "deployer"}])
        # The reconciler itself may not write there: whatever helm does in `team`, it did as
        # the tenant.
        for verb, resource in (("create", "secrets"), ("patch", "secrets"),
                               ("delete", "configmaps"), ("create", "configmaps")):  # fmt: skip
            assert not account_can(testbed, world.namespace, "rc-reconciler", verb=verb,
                                   resource=resource, namespace=team), (verb, resource)  # fmt: skip
        repo = world.repo
        repo.project("app", team, service_account="deployer")
        repo.release(world.installation, "app", values={"message": "one"})
        policy = {"retries": 0, "timeoutSeconds": 30, "prune": True, "maxPruneShare": 1}
        repo.installation(world.installation, policy=policy)
        repo.commit("app as the team's deployer")
        code, result, stderr = apply_in_pod(world, mount)
        assert code == 0, (stderr, result)

        repo.release(world.installation, "app", values={"message": "two", "broken": True})
        repo.commit("app breaks")
        world.reset_calls()
        api_log = tmp_path / "api.log"
        code, result, _ = apply_in_pod(world, mount, api_log=api_log)
        assert code == 1
        status, message = outcomes(result)["app"]
        assert status == "failed"
        assert "rolled back to revision 1, the last one deployed" in message, message
        assert "remediation failed" not in message
        # The reconciler signs the revision the rollback wrote as the tenant, too (a LIST and
        # a PATCH of the team's release Secrets); everything else it sends is its own.
        entries = [json.loads(line) for line in api_log.read_text().splitlines()]
        impersonated = [e for e in entries if "as" in e]
        assert {e["as"] for e in impersonated} == {f"system:serviceaccount:{team}:deployer"}
        assert {e["verb"] for e in impersonated} == {"list", "patch"}
        assert all(e["path"].startswith(f"/api/v1/namespaces/{team}/secrets") for e in impersonated)
        assert not any(e["verb"] == "patch" for e in entries if "as" not in e)

        repo.release(world.installation, "app", values={"message": "three"})
        repo.commit("app fixed")
        code, result, _ = apply_in_pod(world, mount)
        assert code == 0, result
        assert outcomes(result)["app"][0] == "succeeded"

        edit_record_values(testbed, team, "app", {"message": "by hand"})
        code, result, _ = apply_in_pod(world, mount, "--full")
        assert code == 0, result
        (action,) = result["actions"]
        assert action["reason"].startswith("drifted in the cluster: values differ: message")
        assert action["service_account"] == "deployer"
        assert outcomes(result)["app"][0] == "succeeded"

        repo.remove(f"installations/{world.installation}/releases/app.yaml")
        repo.commit("app retired")
        code, result, _ = apply_in_pod(world, mount)
        assert code == 0, result
        assert outcomes(result)["app"] == (
            "succeeded",
            "uninstalled (no longer declared in the environments repo)",
        )
        assert helm_releases(world, team) == {}

        as_tenant = (
            f"--kube-as-user system:serviceaccount:{team}:deployer "
            f"--kube-as-group system:serviceaccounts --kube-as-group system:serviceaccounts:{team}"
        )
        calls = world.helm_calls()
        for verb in ("upgrade --install app", "rollback app", "uninstall app"):
            made = [call for call in calls if call.startswith(verb)]
            assert made, (verb, calls)
            assert all(as_tenant in call for call in made), made
    finally:
        world.helm("uninstall", "rc", check=False)
        testbed.delete_namespace(team)


def test_kube_impersonating_reads_with_the_accounts_rights_and_both_its_groups(
    world: World, tmp_path: Path
) -> None:
    """What drift and health checks use to read a release's live objects as its tenant."""

    testbed = world.testbed
    team = testbed.create_namespace(apps_namespace(world, "team"))
    try:
        # The account's own Role reads ConfigMaps; Roles bound only to the groups every
        # ServiceAccount (of the namespace) is in read Services and Pods: all must count.
        tenant(testbed, team, "deployer", [TENANT_RULES[0]])
        by_group = {"services": "system:serviceaccounts", "pods": f"system:serviceaccounts:{team}"}
        for resource, group in by_group.items():
            meta = {"name": f"by-group-{resource}", "namespace": team}
            rule = {"apiGroups": [""], "resources": [resource], "verbs": ["list"]}
            testbed.admin.ensure(
                f"{RBAC}/namespaces/{team}/roles",
                {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta,
                 "rules": [rule]},
            )  # fmt: skip
            testbed.admin.ensure(
                f"{RBAC}/namespaces/{team}/rolebindings",
                {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                 "metadata": meta, "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                               "kind": "Role", "name": meta["name"]},
                 "subjects": [{"kind": "Group", "name": group,
                               "apiGroup": "rbac.authorization.k8s.io"}]},
            )  # fmt: skip
            until(lambda r=resource: account_can(  # type: ignore[misc]
                testbed, team, "deployer", verb="list", resource=r, namespace=team))  # fmt: skip
        install_locked_down(world, tmp_path, [{"namespace": team, "name": "deployer"}])
        mint = testbed.mint_serviceaccount_kubeconfig(world.namespace, "rc-reconciler")
        reconciler = Kube.connect(str(mint))
        as_tenant = reconciler.impersonating(*service_account_identity(team, "deployer"))
        assert list(as_tenant.list_items(CONFIGMAPS.path(team))) is not None
        for resource in by_group:
            assert list(as_tenant.list_items(Resource("v1", resource).path(team))) == []
        with pytest.raises(KubeError) as denied:
            list(as_tenant.list_items(SECRETS.path(world.namespace)))
        assert denied.value.status == 403
        assert f"to system:serviceaccount:{team}:deployer (impersonated)" in str(denied.value)
        # The reconciler's own identity is untouched by its impersonating twin.
        with pytest.raises(KubeError) as own:
            list(reconciler.list_items(CONFIGMAPS.path(team)))
        assert "system:serviceaccount:" + world.namespace in str(own.value)
    finally:
        world.helm("uninstall", "rc", check=False)
        testbed.delete_namespace(team)


def test_lockdown_corrects_a_scaled_deployment_and_leaves_an_autoscaled_one(
    world: World, tmp_path: Path, publish_chart: Any
) -> None:
    """The reconciler has no autoscaling rights in lockdown: it lists a tenant's
    HorizontalPodAutoscalers as the tenant, so a manual scale is still found."""

    publish_chart("drifty", "0.1.0")
    testbed = world.testbed
    team = testbed.create_namespace(apps_namespace(world, "team"))
    try:
        rules = [
            *TENANT_RULES,
            {"apiGroups": [""], "resources": ["services", "pods"],
             "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
            {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"],
             "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
        ]  # fmt: skip
        tenant(testbed, team, "deployer", rules)
        mount = install_locked_down(world, tmp_path, [{"namespace": team, "name": "deployer"}])
        assert not account_can(testbed, world.namespace, "rc-reconciler", verb="list",
                               resource="horizontalpodautoscalers", group="autoscaling",
                               namespace=team)  # fmt: skip
        repo = world.repo
        repo.project("web", team, chart="drifty", service_account="deployer")
        repo.project("scaled", team, chart="drifty", service_account="deployer",
                     values={"autoscale": True})  # fmt: skip
        repo.release(world.installation, "web")
        repo.release(world.installation, "scaled")
        repo.installation(world.installation, policy={"retries": 0, "timeoutSeconds": 60})
        repo.commit("web and scaled as the team's deployer")
        code, result, stderr = apply_in_pod(world, mount)
        assert code == 0, (stderr, result)

        path = f"/apis/apps/v1/namespaces/{team}/deployments"
        for name in ("web", "scaled"):
            testbed.kubectl("scale", "deployment", name, "-n", team, "--replicas=3")
        code, result, stderr = apply_in_pod(world, mount, "--full")
        assert code == 0, (stderr, result)
        assert [d["release"] for d in result["drifted"]] == ["web"], result["drifted"]
        assert testbed.admin.call("GET", f"{path}/web")["spec"]["replicas"] == 1
        assert testbed.admin.call("GET", f"{path}/scaled")["spec"]["replicas"] == 3
    finally:
        world.helm("uninstall", "rc", check=False)
        testbed.delete_namespace(team)


def test_the_repos_lockdown_policy_creates_no_namespace_either(world: World) -> None:
    """`policy.lockdown: true` in git means what --lockdown means: a release's namespace
    holds its ServiceAccount, so a missing one is an error, never created by the reconciler."""

    testbed = world.testbed
    team = apps_namespace(world, "absent")
    try:
        repo = world.repo
        repo.project("app", team, service_account="deployer")
        repo.release(world.installation, "app")
        repo.installation(world.installation, policy={"lockdown": True, "retries": 0,
                                                      "timeoutSeconds": 10})  # fmt: skip
        repo.commit("app in a namespace nobody made")
        code, result, _ = world.apply()
        assert code == 1, result
        assert outcomes(result)["app"][0] == "failed"
        status, _ = testbed.admin.request("GET", f"/api/v1/namespaces/{team}")
        assert status == 404
    finally:
        testbed.delete_namespace(team)


def crd_reader(testbed: Any, team: str) -> str:
    """docs/deploy.md's ClusterRole for a team whose charts ship CRDs, bound to its account."""

    name = f"{team}-crds"
    testbed.admin.ensure(
        f"{RBAC}/clusterroles",
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": name},
         "rules": [{"apiGroups": ["apiextensions.k8s.io"],
                    "resources": ["customresourcedefinitions"],
                    "verbs": ["get", "list", "watch", "create", "patch"]}]},
    )  # fmt: skip
    testbed.admin.ensure(
        f"{RBAC}/clusterrolebindings",
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": name},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": team}]},
    )  # fmt: skip
    until(lambda: account_can(testbed, team, "deployer", verb="get", group="apiextensions.k8s.io",
                              resource="customresourcedefinitions"))  # fmt: skip
    return name


def test_lockdown_compares_a_charts_crds_as_the_tenant(
    world: World, tmp_path: Path, publish_chart: Any, helm_binary: str
) -> None:
    """The reconciler has no CRD rights in lockdown: after an upgrade and on `plan --full` it
    reads the chart's CRDs as the tenant, and reports the one the cluster serves differently."""

    testbed = world.testbed
    team = testbed.create_namespace(apps_namespace(world, "team"))
    reader = ""
    try:
        with published(tmp_path, publish_chart, helm_binary, testbed) as charts:
            tenant(testbed, team, "deployer", TENANT_RULES)
            reader = crd_reader(testbed, team)
            mount = install_locked_down(world, tmp_path, [{"namespace": team, "name": "deployer"}])
            document = project_document("widgets", team, world.repo.chart_repository, charts.chart)
            world.repo.write("projects/widgets.yaml", {**document, "serviceAccount": "deployer"})
            world.repo.installation(world.installation, policy={"retries": 0, "timeoutSeconds": 30})
            for version in ("0.1.0", "0.2.0"):
                world.repo.release(world.installation, "widgets", version=version)
                world.repo.commit(f"widgets {version}")
                code, result, stderr = apply_in_pod(world, mount)
                assert code == 0, (stderr, outcomes(result))
            (outcome,) = result["outcomes"]
            assert f"{charts.name}: version(s) v2 not in the cluster" in outcome["warning"]
            assert "could not be compared" not in outcome["warning"]

            scope = {k: v for k, v in chart_env(world).items() if k.startswith("RECONCILER_")}
            planned = in_pod(world, mount, "plan", "--full", "-o", "json", extra_env=scope)
            assert planned.returncode == 2, planned.stderr
            assert json.loads(planned.stdout)["crds"] == [
                {
                    "release": "widgets",
                    "namespace": team,
                    "differences": [f"{charts.name}: version(s) v2 not in the cluster"],
                }
            ]
    finally:
        world.helm("uninstall", "rc", check=False)
        testbed.delete_namespace(team)
        if reader:
            testbed.admin.call("DELETE", f"{RBAC}/clusterrolebindings/{reader}")
            testbed.admin.call("DELETE", f"{RBAC}/clusterroles/{reader}")
