"""The live objects of a release, found through API discovery on the real cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reconciler.kube import Kube
from reconciler.liveobjects import Discovery, read_live
from reconciler.manifest import ManifestObject, parse_record
from reconciler.observe import read_index, read_record

pytestmark = pytest.mark.testbed


@pytest.mark.helm3
def test_every_object_of_an_installed_release_is_found_and_a_deleted_one_is_missing(
    helm: Any, charts_dir: Path, namespace: str, kube: Any
) -> None:
    helm("install", "web", str(charts_dir / "workload"), "-n", namespace)
    client = Kube(kube)
    state = read_index(client, [namespace]).releases[(namespace, "web")]
    record = read_record(client, namespace, state.latest.secret)
    assert record is not None
    objects = parse_record(record)
    assert {(o.kind, o.name) for o in objects} == {
        ("Deployment", "web"),
        ("Service", "web"),
        ("Service", "web-db"),
        ("StatefulSet", "web-db"),
    }
    discovery = Discovery(client)
    found = read_live(client, objects, discovery)
    assert all(f.live is not None and not f.error for f in found)
    assert [f.live["metadata"]["name"] for f in found if f.live] == [o.name for o in objects]

    client.request("DELETE", f"/api/v1/namespaces/{namespace}/services/web-db")
    before = client.calls
    again = {f.obj.name + "/" + f.obj.kind: f for f in read_live(client, objects, discovery)}
    assert again["web-db/Service"].missing
    assert not again["web/Service"].missing
    assert client.calls - before == len(objects), "discovery is cached: one GET per object"


def test_a_kind_the_cluster_does_not_serve_is_an_error_not_missing(
    namespace: str, kube: Any
) -> None:
    body = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    obj = ManifestObject("example.com/v1", "Widget", namespace, "w", body)
    [found] = read_live(Kube(kube), [obj])
    assert not found.missing
    assert "does not serve Widget" in found.error
