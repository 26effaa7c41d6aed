"""The deploy chart grants the reconciler exactly the verbs it sends.

Every request the reconciler sends while it installs, upgrades, fails and rolls back,
prunes, plans, reports and holds its Lease is recorded client-side (RECONCILER_API_LOG),
then matched against the RBAC rules `helm template deploy/chart` renders: nothing sent may
lack a rule, and no verb of the reconciler's own rules may go unused.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml
from engine_world import World, daemon, wait_for

CHART = Path(__file__).resolve().parents[2] / "deploy" / "chart"
PATH = re.compile(
    r"^/(?:api/v1|apis/(?P<group>[^/]+)/v\d\w*)(?:/namespaces/(?P<ns>[^/]+))?/(?P<res>[^/]+)(?:/(?P<name>[^/]+))?$"
)
# API discovery (a group version's resource list, read by live drift checks): granted to
# every authenticated user by the built-in system:discovery role, so no rule of the chart.
DISCOVERY = re.compile(r"^/(?:api/v1|apis/[^/]+/[^/]+)$")
# The chart's own rules: every verb they grant must be one the reconciler sends.
OWN_ROLES = {"rc-reconciler", "rc-reconciler-values", "reconciler-rc-reconciler-history"}


def requests(log: Path) -> set[tuple[str, str, str, str, str]]:
    """(verb, group, resource, namespace, name) of every request; name only for named verbs."""

    found = set()
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        if DISCOVERY.match(entry["path"]):
            continue
        match = PATH.match(entry["path"])
        assert match, entry
        namespace, resource, name = match["ns"] or "", match["res"], match["name"] or ""
        if resource == "namespaces" and name and not namespace:
            namespace, name = "", name  # a namespace object itself is cluster-scoped
        found.add((entry["verb"], match["group"] or "", resource, namespace, name))
    return found


def rendered_rules(world: World, own_namespace: str, values_from: dict[str, str]) -> list[Any]:
    """(role name, namespace or "" for cluster-wide, rule) for every rule bound to the chart's
    ServiceAccount, as helm renders the chart for this installation."""

    values = {
        "installation": world.installation,
        "git": {"repo": world.repo.url},
        "valuesFrom": values_from,
    }
    values_file = world.workdir / "chart-values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    out = subprocess.run(
        [str(world.testbed.helm_binaries["helm4"]), "template", "rc", str(CHART),
         "--namespace", own_namespace, "-f", str(values_file)],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    documents = [d for d in yaml.safe_load_all(out) if d]
    roles = {(d["kind"], d["metadata"]["name"]): d for d in documents if d["kind"].endswith("Role")}
    rules = []
    for binding in (d for d in documents if d["kind"].endswith("RoleBinding")):
        ref = binding["roleRef"]
        role = roles[(ref["kind"], ref["name"])]
        scope = binding["metadata"].get("namespace", "") if binding["kind"] == "RoleBinding" else ""
        rules.extend((ref["name"], scope, rule) for rule in role["rules"])
    return rules


def allows(rule: dict[str, Any], scope: str, request: tuple[str, str, str, str, str]) -> bool:
    verb, group, resource, namespace, name = request
    return (
        verb in rule["verbs"]
        and group in rule["apiGroups"]
        and resource in rule["resources"]
        and (not scope or scope == namespace)
        and (not rule.get("resourceNames") or name in rule["resourceNames"])
    )


def test_chart_grants_exactly_the_verbs_the_reconciler_sends(
    world: World, testbed: Any, namespace: str
) -> None:
    own = testbed.create_namespace(f"{namespace[:45]}-rc")
    fresh = f"{namespace[:45]}-new"
    log = world.workdir / "api.log"
    env = {"RECONCILER_API_LOG": str(log), "RECONCILER_NAMESPACE": own}
    values_from = {"namespace": own, "configMap": "site-values", "secret": "site-secrets"}
    for kind, data in (("configmaps", {"values.yaml": "region: eu\n"}), ("secrets", {})):
        name = values_from["configMap" if kind == "configmaps" else "secret"]
        body = {"apiVersion": "v1", "kind": "ConfigMap" if kind == "configmaps" else "Secret",
                "metadata": {"name": name, "namespace": own}, "data": data}  # fmt: skip
        testbed.admin.call("POST", f"/api/v1/namespaces/{own}/{kind}", body)

    repo = world.repo
    for name, where in (("alpha", world.namespace), ("beta", world.namespace), ("gamma", fresh)):
        repo.project(name, where, values={"message": name})
        repo.release(world.installation, name, version="0.1.0")
    policy = {"retries": 0, "timeoutSeconds": 30, "prune": True, "maxPruneShare": 1}
    repo.installation(world.installation, policy=policy, values_from=values_from)
    repo.commit("three releases, one in a namespace to create")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            world.cli_argv(*args), env={**world.env(), **env}, cwd=world.workdir,
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    assert cli("apply").returncode == 0
    repo.release(world.installation, "alpha", version="0.1.0", values={"broken": True})
    repo.remove(f"installations/{world.installation}/releases/beta.yaml")
    repo.commit("alpha breaks (rolled back), beta is pruned")
    assert cli("apply").returncode == 1
    assert cli("plan").returncode in (0, 2)
    assert cli("status").returncode in (0, 1)
    repo.release(world.installation, "alpha", version="0.2.0")
    repo.commit("alpha fixed")
    with daemon(world, "--leader-elect", "--lease-duration", "3", name="rbac", extra_env=env):
        wait_for(lambda: world.latest("alpha")["chart"] == "app-0.2.0", timeout=120)
        wait_for(lambda: any('"update"' in line and "/leases/" in line
                             for line in log.read_text().splitlines()), timeout=30)  # fmt: skip

    sent = requests(log)
    rules = rendered_rules(world, own, values_from)
    missing = sorted(r for r in sent if not any(allows(rule, s, r) for _, s, rule in rules))
    assert missing == [], f"sent without a granting rule: {missing}"
    unused = sorted(
        (name, verb, resource)
        for name, scope, rule in rules
        if name in OWN_ROLES
        for verb in rule["verbs"]
        for resource in rule["resources"]
        if not any(
            allows({**rule, "verbs": [verb], "resources": [resource]}, scope, r) for r in sent
        )
    )
    assert unused == [], f"granted to the reconciler but never sent: {unused}"
    managed_namespaces = {
        verb
        for name, _, rule in rules
        if name.endswith("-managed") and "namespaces" in rule["resources"]
        for verb in rule["verbs"]
    }
    assert managed_namespaces == {v for v, _, res, _, _ in sent if res == "namespaces"}, (
        "namespaces: only what the reconciler sends (helm never creates one)"
    )
    testbed.delete_namespace(fresh)
    testbed.delete_namespace(own)
