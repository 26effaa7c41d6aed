"""Parsing a release's rendered manifest into objects."""

from __future__ import annotations

import pytest

from reconciler.manifest import ManifestError, parse, parse_record

MANIFEST = """---
# Source: web/templates/configmap.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-values
data:
  when: 2024-01-01
  flag: yes
---
# Source: web/templates/role.yaml
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: web-reader
  namespace: ignored
---
# Source: web/templates/other.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: elsewhere
---
# an empty document, and one that is not an object
---
- just a list
"""


def test_objects_in_order_with_the_release_namespace_for_namespaced_kinds() -> None:
    objects = parse(MANIFEST, "team")
    assert [(o.kind, o.namespace, o.name) for o in objects] == [
        ("ConfigMap", "team", "web-values"),
        ("ClusterRole", "", "web-reader"),
        ("Deployment", "elsewhere", "web"),
    ]
    assert objects[1].group == "rbac.authorization.k8s.io"
    assert objects[0].group == ""
    assert objects[0].ref == "ConfigMap team/web-values"
    assert objects[1].ref == "ClusterRole web-reader"


def test_timestamps_stay_strings_as_json_keeps_them() -> None:
    data = parse(MANIFEST, "team")[0].body["data"]
    assert data["when"] == "2024-01-01"
    assert data["flag"] is True  # YAML 1.1 as helm's parser reads it


def test_a_list_is_expanded_and_objects_without_a_name_are_skipped() -> None:
    text = (
        "apiVersion: v1\nkind: List\nitems:\n"
        "- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n"
        "- {apiVersion: v1, kind: ConfigMap, metadata: {}}\n"
    )
    assert [o.name for o in parse(text, "ns")] == ["a"]


def test_not_yaml_is_an_error_without_the_content() -> None:
    with pytest.raises(ManifestError) as raised:
        parse("a: [secret-value\n", "ns")
    assert "secret-value" not in str(raised.value)


def test_a_record_without_a_manifest_has_no_objects() -> None:
    assert parse_record({"namespace": "ns"}) == ()
    assert [o.name for o in parse_record({"namespace": "ns", "manifest": MANIFEST})] == [
        "web-values",
        "web-reader",
        "web",
    ]
