"""Untrusted input on the working cluster: a chart's malformed crds/ file and a custom
resource with a malformed status hold only their own release (the pass goes on and says
what is wrong in one line), and live drift never shows a Secret-sourced value."""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from engine_world import World, daemon, kube_json, wait_for

from testbed import KubeAPIError

pytestmark = pytest.mark.testbed

FAST = {"retries": 0, "retryBackoffSeconds": 1, "timeoutSeconds": 20}
CRDS_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def crd(group: str, names: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "names": names,
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    # No status subresource: the chart's object keeps the status it gives.
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


@pytest.fixture
def hostile_chart(
    tmp_path: Path, publish_chart: Any, helm_binary: str, testbed: Any
) -> Iterator[str]:
    """0.1.0: a valid CRD and a Widget whose status.conditions is a number (as a broken
    operator might write it); 0.2.0: the same, its crds/ file giving `names` as a string."""

    token = secrets.token_hex(4)
    chart, group = f"hostile{token}", f"h{token}.example.com"
    widget = {
        "apiVersion": f"{group}/v1",
        "kind": "Widget",
        "metadata": {"name": "{{ .Release.Name }}"},
        "status": {"conditions": 5, "observedGeneration": "x"},
    }
    for version, names in (
        ("0.1.0", {"kind": "Widget", "plural": "widgets"}),
        ("0.2.0", "kind plural"),
    ):
        root = tmp_path / version / chart
        (root / "crds").mkdir(parents=True)
        (root / "templates").mkdir()
        (root / "Chart.yaml").write_text(
            yaml.safe_dump({"apiVersion": "v2", "name": chart, "version": version})
        )
        (root / "crds" / "widgets.yaml").write_text(yaml.safe_dump(crd(group, names)))
        (root / "templates" / "widget.yaml").write_text(yaml.safe_dump(widget))
        publish_chart(root, version, helm=helm_binary)
    try:
        yield chart
    finally:
        with contextlib.suppress(KubeAPIError):
            testbed.admin.call("DELETE", f"{CRDS_PATH}/widgets.{group}")


def declare(world: World, chart: str, version: str, message: str) -> None:
    repo = world.repo
    repo.project("widgets", world.namespace, chart=chart)
    repo.release(world.installation, "widgets", version=version)
    repo.project("other", world.namespace, values={"message": message})
    repo.release(world.installation, "other")
    repo.installation(world.installation, policy=FAST)
    repo.commit(f"widgets {version}, other says {message}")


def outcomes(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {o["release"]: o for o in result["outcomes"]}


def one_line(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert all(len(line) < 600 for line in stderr.splitlines()), stderr


@pytest.mark.helm3
def test_a_malformed_crd_file_and_status_hold_only_their_release(
    world: World, hostile_chart: str
) -> None:
    declare(world, hostile_chart, "0.1.0", "first")
    code, result, stderr = world.apply()
    one_line(stderr)
    assert code == 0, stderr
    assert {r: o["result"] for r, o in outcomes(result).items()} == {
        "widgets": "succeeded",
        "other": "succeeded",
    }

    # The upgrade to 0.2.0 is checked against a crds/ file whose names are no mapping.
    declare(world, hostile_chart, "0.2.0", "second")
    code, result, stderr = world.apply()
    one_line(stderr)
    assert code == 0, stderr
    found = outcomes(result)
    assert found["other"]["result"] == "succeeded"
    assert world.values("other")["message"] == "second", "the other release converged"
    assert found["widgets"]["result"] == "succeeded", "helm's upgrade itself worked"
    assert "names is not a mapping" in found["widgets"]["warning"]

    # A full resync reads every release's health and the deployed charts' CRDs.
    code, result, stderr = world.apply("--full")
    one_line(stderr)
    assert code == 0, stderr
    status = world.cli("status", "-o", "json")
    assert status.returncode == 0, status.stderr
    rows = {r["release"]: r for r in json.loads(status.stdout)["releases"]}
    assert rows["other"]["state"] == "in-sync"
    assert rows["widgets"]["state"] == "in-sync"
    code, planned = world.plan("--full")
    assert code == 2, "the cluster does not serve the CRD as the chart's file says"
    [differ] = planned["crds"]
    assert "names is not a mapping" in " ".join(differ["differences"])


SECRET_KEY = "drift-key-s3cr3t-4242"


def secret_forms() -> list[str]:
    return [
        SECRET_KEY,
        base64.b64encode(SECRET_KEY.encode()).decode(),
        base64.b64encode(SECRET_KEY.encode()).decode().rstrip("="),
        json.dumps(SECRET_KEY),
    ]


def assert_no_secret(where: str, text: str) -> None:
    found = [form for form in secret_forms() if form in text]
    assert not found, f"{where} shows the Secret-sourced key: {found}\n{text[:2000]}"


@pytest.mark.helm3
def test_drift_of_a_key_named_by_a_secret_value_never_shows_it(
    world: World, publish_chart: Any
) -> None:
    publish_chart("drifty", "0.1.0")
    ns = world.namespace
    repo = world.repo
    repo.project("web", ns, chart="drifty")
    repo.release(world.installation, "web", version="0.1.0")
    values_from = {"namespace": ns, "secret": "drift-secrets"}
    repo.installation(world.installation, policy={**FAST, "drift": "warn"}, values_from=values_from)
    world.testbed.admin.call(
        "POST",
        f"/api/v1/namespaces/{ns}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "drift-secrets", "namespace": ns},
            "stringData": {"values.yaml": json.dumps({"extraKey": SECRET_KEY})},
        },
    )
    repo.commit("web with a key named by a Secret value")
    code, _, stderr = world.apply()
    assert code == 0, stderr
    config = kube_json(world.testbed, "GET", f"/api/v1/namespaces/{ns}/configmaps/web-config")
    assert SECRET_KEY in config["data"], "the chart made the Secret value a key"
    patch = json.dumps([{"op": "remove", "path": f"/data/{SECRET_KEY}"}])
    world.testbed.kubectl(
        "patch", "configmap", "web-config", "-n", ns, "--type", "json", "-p", patch
    )

    code, planned = world.plan("--full")
    assert code == 2
    [drifted] = planned["drifted"]
    assert drifted["objects"][0]["paths"] == ["/data/***"]
    assert_no_secret("plan -o json", json.dumps(planned))
    text = world.cli("plan", "--full")
    assert_no_secret("plan", text.stdout + text.stderr)

    with daemon(world, "--resync-interval", "1", name="d"):

        def event() -> str:
            found = kube_json(world.testbed, "GET", f"/api/v1/namespaces/{ns}/events")
            texts = [e["message"] for e in found["items"] if e["reason"] == "Drifted"]
            return json.dumps(texts) if texts else ""

        assert_no_secret("Events", wait_for(event, timeout=60))
    status = world.cli("status", "-o", "json")
    assert "drifted" in status.stdout
    assert_no_secret("status", status.stdout)
    name = f"reconciler-status-{world.installation}"
    config_map = kube_json(world.testbed, "GET", f"/api/v1/namespaces/{ns}/configmaps/{name}")
    assert_no_secret("status ConfigMap", json.dumps(config_map))

    repo.installation(world.installation, policy=FAST, values_from=values_from)  # correct
    repo.commit("drift: correct")
    code, result, stderr = world.apply("--full")
    assert code == 0, stderr
    assert_no_secret("apply", json.dumps(result) + stderr)
    description = world.latest("web")["description"]
    assert "live drift" in description
    assert_no_secret("helm's description", description)
    config = kube_json(world.testbed, "GET", f"/api/v1/namespaces/{ns}/configmaps/web-config")
    assert SECRET_KEY in config["data"], "restored"
