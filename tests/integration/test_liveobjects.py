"""The live objects of a release, found through API discovery on the real cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reconciler.drift import release_drift
from reconciler.kube import Kube
from reconciler.liveobjects import LIST_FROM, Discovery, read_live
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


CHARTS = ["workload", "drifty", "app", "smoke"]
EXAMPLE_CHARTS = sorted(
    p.name for p in (Path(__file__).parents[2] / "example-environments/charts").iterdir()
)


@pytest.mark.helm3
def test_a_freshly_installed_release_shows_no_drift(
    helm: Any, charts_dir: Path, namespace: str, kube: Any
) -> None:
    """Every test and example chart: what the API server defaults or rewrites (quantities,
    a Secret's stringData, empty maps, ports' protocols) is not drift."""

    examples = Path(__file__).parents[2] / "example-environments/charts"
    charts = [charts_dir / name for name in CHARTS] + [examples / n for n in EXAMPLE_CHARTS]
    client = Kube(kube)
    for index, chart in enumerate(charts):
        name = f"r{index}-{chart.name}"[:30]
        helm("install", name, str(chart), "-n", namespace)
    discovery = Discovery(client)
    index_ = read_index(client, [namespace]).releases
    checked = 0
    for (_, name), state in sorted(index_.items()):
        record = read_record(client, namespace, state.latest.secret)
        assert record is not None
        objects = parse_record(record)
        drift = release_drift(read_live(client, objects, discovery))
        assert drift.objects == (), f"{name}: {drift.summary()}"
        assert drift.unreadable == ()
        checked += len(objects)
    assert len(index_) == len(charts)
    assert checked >= 10


def test_many_objects_of_one_resource_in_a_namespace_are_read_with_one_list(
    namespace: str, kube: Any
) -> None:
    client = Kube(kube)
    wanted = []
    for i in range(LIST_FROM + 1):
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}"}}
        if i:  # c0 stays missing
            client.request("POST", f"/api/v1/namespaces/{namespace}/configmaps", body=body)
        wanted.append(ManifestObject("v1", "ConfigMap", namespace, f"c{i}", body))
    discovery = Discovery(client)
    discovery.resolve("v1", "ConfigMap")
    before = client.calls
    found = read_live(client, wanted, discovery, workers=4)
    assert client.calls - before == 2, "one LIST, and a GET that confirms the missing one"
    assert [f.missing for f in found] == [True] + [False] * LIST_FROM
    assert release_drift(found[1:]).objects == (), "listed items compare like fetched ones"
    before = client.calls
    few = read_live(client, wanted[: LIST_FROM - 1], discovery, workers=4)
    assert client.calls - before == LIST_FROM - 1
    assert [f.missing for f in few] == [True] + [False] * (LIST_FROM - 2)


def test_reads_made_as_a_release_account_are_counted_on_the_connection(
    namespace: str, kube: Any
) -> None:
    """Benchmarks and RECONCILER_API_LOG count every request, impersonated ones too."""

    client = Kube(kube)
    acting = client.impersonating(
        f"system:serviceaccount:{namespace}:default", ["system:serviceaccounts"]
    )
    before = client.calls
    acting.request("GET", "/version")  # public: readable by any account
    acting.request("GET", "/version")
    assert client.calls - before == 2
