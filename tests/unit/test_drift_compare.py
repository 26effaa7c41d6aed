"""Live drift as pure comparison: what the manifest sets against what the API server holds."""

from __future__ import annotations

import base64
from typing import Any

from reconciler.drift import IgnoreRule, diff_paths, hpa_targets, release_drift
from reconciler.liveobjects import LiveObject
from reconciler.manifest import ManifestObject

DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "labels": {"app": "web"}, "annotations": {}},
    "spec": {
        "replicas": 2,
        "template": {
            "metadata": {"creationTimestamp": None, "labels": {"app": "web"}},
            "spec": {
                "hostNetwork": False,
                "containers": [
                    {
                        "name": "app",
                        "image": "pause:3.10",
                        "env": [],
                        "resources": {"limits": {"cpu": 0.5, "memory": "1024Mi"}},
                        "ports": [{"containerPort": 8080}],
                    }
                ],
            },
        },
        "progressDeadlineSeconds": 600,
    },
}
LIVE: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
        "name": "web",
        "namespace": "team",
        "labels": {"app": "web"},
        "annotations": {"meta.helm.sh/release-name": "web"},
        "uid": "1",
    },
    "spec": {
        "replicas": 2,
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "image": "pause:3.10",
                        "imagePullPolicy": "IfNotPresent",
                        "resources": {"limits": {"cpu": "500m", "memory": "1Gi"}},
                        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    }
                ],
                "dnsPolicy": "ClusterFirst",
            },
        },
        "progressDeadlineSeconds": 600,
    },
    "status": {"replicas": 2},
}


def _edited(**changes: Any) -> dict[str, Any]:
    import copy

    live = copy.deepcopy(LIVE)
    for pointer, value in changes.items():
        *parents, leaf = pointer.split("__")
        node = live
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[leaf] = value
    return live


def test_what_the_server_adds_or_reformats_is_not_drift() -> None:
    assert diff_paths(DEPLOYMENT, LIVE) == []


def test_a_changed_field_the_manifest_sets_is_drift_by_its_path() -> None:
    live = _edited(spec__replicas=5)
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "other:1"
    assert diff_paths(DEPLOYMENT, live) == [
        "/spec/replicas",
        "/spec/template/spec/containers/0/image",
    ]


def test_a_removed_label_and_an_added_container_are_drift() -> None:
    live = _edited()
    del live["metadata"]["labels"]["app"]
    live["spec"]["template"]["spec"]["containers"].append({"name": "extra", "image": "x"})
    assert diff_paths(DEPLOYMENT, live) == [
        "/metadata/labels/app",
        "/spec/template/spec/containers",
    ]


def test_a_different_quantity_is_drift_an_equal_one_is_not() -> None:
    live = _edited()
    live["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = "1"
    assert diff_paths(DEPLOYMENT, live) == ["/spec/template/spec/containers/0/resources/limits/cpu"]


def test_numbers_as_strings_and_keys_with_slashes() -> None:
    want = {"a": {"x/y": 80, "b": True}}
    assert diff_paths(want, {"a": {"x/y": "80", "b": "true"}}) == []
    assert diff_paths(want, {"a": {"x/y": "81", "b": False}}) == ["/a/x~1y", "/a/b"]


def test_strings_the_server_keeps_verbatim_are_compared_verbatim() -> None:
    # No built-in field is stored as a reformatted duration; data and env never are.
    assert diff_paths({"data": {"t": "1h"}}, {"data": {"t": "3600s"}}) == ["/data/t"]
    assert diff_paths({"data": {"storage": "1Gi"}}, {"data": {"storage": "1024Mi"}}) == [
        "/data/storage"
    ]
    env = {"env": [{"name": "T", "value": "1m"}]}
    assert diff_paths(env, {"env": [{"name": "T", "value": "1m0s"}]}) == ["/env/0/value"]
    assert diff_paths({"spec": {"interval": "1m"}}, {"spec": {"interval": "60s"}}) == [
        "/spec/interval"
    ]
    # Typed quantity fields are compared as quantities.
    claim = {"spec": {"resources": {"requests": {"storage": "1024Mi"}}}}
    assert diff_paths(claim, {"spec": {"resources": {"requests": {"storage": "1Gi"}}}}) == []
    bounds = {"spec": {"limits": [{"type": "Container", "max": {"cpu": "0.5"}}]}}
    assert (
        diff_paths(bounds, {"spec": {"limits": [{"type": "Container", "max": {"cpu": "500m"}}]}})
        == []
    )
    assert diff_paths({"overhead": {"cpu": "0.25"}}, {"overhead": {"cpu": "250m"}}) == []
    volume = {"emptyDir": {"sizeLimit": "0.5Gi"}}
    assert diff_paths(volume, {"emptyDir": {"sizeLimit": "512Mi"}}) == []


def test_a_removed_zero_valued_pointer_field_is_drift_an_omitted_plain_one_is_not() -> None:
    want = {
        "automountServiceAccountToken": False,
        "hostNetwork": False,
        "securityContext": {"runAsUser": 0, "allowPrivilegeEscalation": False, "procMount": ""},
    }
    assert diff_paths(want, {"automountServiceAccountToken": False, "securityContext": {
        "runAsUser": 0, "allowPrivilegeEscalation": False}}) == []  # fmt: skip
    assert diff_paths(want, {"securityContext": {}}) == [
        "/automountServiceAccountToken",
        "/securityContext/runAsUser",
        "/securityContext/allowPrivilegeEscalation",
    ]


def test_fields_a_controller_owns_are_never_drift() -> None:
    role: dict[str, Any] = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "agg"},
        "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"a": "1"}}]},
        "rules": [],
    }
    filled = {**role, "rules": [{"verbs": ["get"], "resources": ["pods"], "apiGroups": [""]}]}
    found = [LiveObject(_obj("ClusterRole", role, "agg"), filled)]
    assert not release_drift(found).drifted
    plain = {k: v for k, v in role.items() if k != "aggregationRule"}
    assert release_drift([LiveObject(_obj("ClusterRole", plain, "agg"), filled)]).drifted
    hook: dict[str, Any] = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "h", "annotations": {"cert-manager.io/inject-ca-from": "ns/c"}},
        "webhooks": [{"name": "a.example.com", "clientConfig": {"caBundle": "Cg=="}}],
    }
    injected = {
        **hook,
        "webhooks": [{"name": "a.example.com", "clientConfig": {"caBundle": "AA=="}}],
    }
    assert not release_drift([LiveObject(_obj(hook["kind"], hook, "h"), injected)]).drifted


def _obj(kind: str, body: dict[str, Any], name: str = "web") -> ManifestObject:
    return ManifestObject(body.get("apiVersion", "v1"), kind, "team", name, body)


def test_a_secret_compares_decoded_and_no_message_holds_a_value() -> None:
    manifest = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "stringData": {"password": "hunter2"},
        "data": {"token": base64.b64encode(b"abc").decode()},
    }
    live = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "data": {"password": base64.b64encode(b"hunter2").decode(), "token": "YWJj"},
        "type": "Opaque",
    }
    found = [LiveObject(_obj("Secret", manifest, "s"), live)]
    assert not release_drift(found).drifted
    live["data"]["password"] = base64.b64encode(b"changed-by-hand").decode()
    drift = release_drift(found)
    assert drift.summary() == "Secret team/s /data/password"
    assert "hunter2" not in repr(drift)
    assert "changed-by-hand" not in repr(drift)


def test_missing_unreadable_ignored_and_autoscaled() -> None:
    scaled = _edited(spec__replicas=7)
    found = [
        LiveObject(_obj("Deployment", DEPLOYMENT), scaled),
        LiveObject(_obj("ConfigMap", {"metadata": {"name": "cfg"}}, "cfg"), None),
        LiveObject(_obj("Widget", {"metadata": {"name": "w"}}, "w"), None, "not served"),
    ]
    drift = release_drift(found)
    assert drift.summary() == "Deployment team/web /spec/replicas; ConfigMap team/cfg missing"
    assert drift.unreadable == ("Widget team/w: not served",)
    rule = IgnoreRule("Deployment", ("/spec/replicas",))
    assert release_drift(found, [rule]).summary() == "ConfigMap team/cfg missing"
    assert (
        release_drift(found, [IgnoreRule("Deployment", ("/spec",), name="other")]).objects[0].paths
    )
    hpa = {
        "metadata": {"namespace": "team"},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}},
    }
    autoscaled = release_drift(found, autoscaled=hpa_targets([hpa]))
    assert autoscaled.summary() == "ConfigMap team/cfg missing"
    assert autoscaled.autoscaled == ("Deployment team/web",)
