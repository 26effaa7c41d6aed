"""Live drift field by field on the working cluster: what a Kubernetes controller owns by
design (an aggregated ClusterRole's `rules`) is never drift, and a hand edit the API server
does not normalise (a zero-valued pointer field removed, a duration-like string in data)
always is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from engine_world import World, kube_json, wait_for, written_release

pytestmark = pytest.mark.testbed

POLICY = {"timeoutSeconds": 20, "retries": 0, "retryBackoffSeconds": 1}

AGGREGATED = """\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {{ .Release.Namespace }}-view
  labels: {agg.example.com/{{ .Release.Namespace }}: "true"}
rules:
  - {apiGroups: [""], resources: [configmaps], verbs: [get]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {{ .Release.Namespace }}-aggregate
aggregationRule:
  clusterRoleSelectors:
    - matchLabels: {agg.example.com/{{ .Release.Namespace }}: "true"}
rules: []
"""

ZERO_AND_DURATION = """\
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ .Release.Name }}-sa
automountServiceAccountToken: false
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-cfg
data:
  timeout: 1h
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
spec:
  replicas: 1
  selector:
    matchLabels: {app: {{ .Release.Name }}}
  template:
    metadata:
      labels: {app: {{ .Release.Name }}}
    spec:
      serviceAccountName: {{ .Release.Name }}-sa
      hostNetwork: false
      containers:
        - name: app
          image: registry.k8s.io/pause:3.10
          env: [{name: TIMEOUT, value: 1m}]
          securityContext:
            allowPrivilegeEscalation: false
            capabilities: {drop: [ALL]}
"""


def install(world: World, publish_chart: Any, tmp_path: Path, name: str, template: str) -> None:
    root = tmp_path / name
    (root / "templates").mkdir(parents=True)
    (root / "Chart.yaml").write_text(f"apiVersion: v2\nname: {name}\nversion: 0.1.0\n")
    (root / "templates" / "all.yaml").write_text(template)
    publish_chart(root, "0.1.0", helm=world.helm_name)
    world.repo.project("web", world.namespace, chart=name)
    world.repo.release(world.installation, "web", version="0.1.0")
    world.repo.installation(world.installation, policy=POLICY)
    world.repo.commit("web")
    code, _, stderr = world.apply()
    assert code == 0, stderr


def test_an_aggregated_cluster_role_is_never_drift_nor_reapplied(
    world: World, publish_chart: Any, tmp_path: Path
) -> None:
    install(world, publish_chart, tmp_path, "aggregated", AGGREGATED)
    path = f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{world.namespace}-aggregate"
    # The aggregation controller fills `rules` from the labelled ClusterRole.
    wait_for(lambda: kube_json(world.testbed, "GET", path).get("rules"), timeout=30)
    world.reset_calls()
    for _ in range(2):
        code, result, stderr = world.apply("--full")
        assert code == 0, stderr
        assert result["drifted"] == []
    assert [n for c in world.helm_calls() if (n := written_release(c))] == []
    code, document = world.plan("--full")
    assert (code, document["drifted"]) == (0, [])


def test_removed_zero_valued_pointer_fields_and_rewritten_data_are_drift(
    world: World, publish_chart: Any, tmp_path: Path
) -> None:
    install(world, publish_chart, tmp_path, "zeroes", ZERO_AND_DURATION)
    code, document = world.plan("--full")
    assert (code, document["drifted"]) == (0, []), "a fresh install is no drift"
    k, ns = world.testbed.kubectl, world.namespace
    container = "/spec/template/spec/containers/0"
    k("patch", "deployment", "web", "-n", ns, "--type=json", "-p", json.dumps([
        {"op": "remove", "path": f"{container}/securityContext/allowPrivilegeEscalation"},
        {"op": "replace", "path": f"{container}/env/0/value", "value": "60s"},
    ]))  # fmt: skip
    k("patch", "serviceaccount", "web-sa", "-n", ns, "--type=json", "-p",
      json.dumps([{"op": "remove", "path": "/automountServiceAccountToken"}]))  # fmt: skip
    k("patch", "configmap", "web-cfg", "-n", ns, "-p", json.dumps({"data": {"timeout": "3600s"}}))
    code, document = world.plan("--full")
    found = {o["object"]: o["paths"] for d in document["drifted"] for o in d["objects"]}
    assert code == 2
    assert found == {
        f"Deployment {ns}/web": [
            f"{container}/env/0/value",
            f"{container}/securityContext/allowPrivilegeEscalation",
        ],
        f"ServiceAccount {ns}/web-sa": ["/automountServiceAccountToken"],
        f"ConfigMap {ns}/web-cfg": ["/data/timeout"],
    }
