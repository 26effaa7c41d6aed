"""Reading a chart's crds/ (archive and release record) and comparing CRDs: pure logic.
Applying and reporting them on a real cluster: tests/integration/test_crd_policy.py."""

from __future__ import annotations

import base64
import io
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler import crds
from reconciler.crds import CrdError, archive_files, definitions, record_files


def crd(versions: list[str], size_type: str = "integer") -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"kind": "Widget", "plural": "widgets"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": v,
                    "served": True,
                    "storage": v == versions[0],
                    "schema": {"openAPIV3Schema": {"type": "object", "x": {"type": size_type}}},
                }
                for v in versions
            ],
        },
    }


def as_served(document: dict[str, Any]) -> dict[str, Any]:
    """The CRD as the API server returns it: metadata, status and defaulted fields added."""

    live = yaml.safe_load(yaml.safe_dump(document))
    live["metadata"].update(uid="u", resourceVersion="7", generation=1, managedFields=[])
    live["spec"]["conversion"] = {"strategy": "None"}
    live["spec"]["names"].update(singular="widget", listKind="WidgetList")
    live["status"] = {"storedVersions": ["v1"], "acceptedNames": live["spec"]["names"]}
    return live


def archive(tmp_path: Path, members: dict[str, bytes]) -> Path:
    path = tmp_path / "chart.tgz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_archive_files_are_the_crds_of_the_chart_and_its_unpacked_subcharts(
    tmp_path: Path,
) -> None:
    path = archive(
        tmp_path,
        {
            "app/Chart.yaml": b"name: app",
            "app/templates/crds/not-this.yaml": b"x: 1",
            "app/crds/widgets.yaml": b"a: 1",
            "app/crds/nested/gadgets.json": b"{}",
            "app/crds/README.md": b"docs",
            "app/charts/sub/crds/parts.yml": b"b: 2",
        },
    )
    assert sorted(name for name, _ in archive_files(path)) == [
        "app/charts/sub/crds/parts.yml",
        "app/crds/nested/gadgets.json",
        "app/crds/widgets.yaml",
    ]


def test_an_oversized_crd_file_is_refused(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(crds, "MAX_FILE_BYTES", 10)
    path = archive(tmp_path, {"app/crds/big.yaml": b"x" * 11})
    with pytest.raises(CrdError, match=r"app/crds/big\.yaml is over 10 bytes"):
        archive_files(path)


def test_an_archive_too_large_to_read_is_refused(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(crds, "MAX_TOTAL_BYTES", 100)
    path = archive(tmp_path, {"app/templates/big.yaml": b"x" * 101})
    with pytest.raises(CrdError, match="too large"):
        archive_files(path)


def test_record_files_are_the_crds_helm_kept_in_the_chart() -> None:
    text = yaml.safe_dump(crd(["v1"])).encode()
    record = {
        "chart": {
            "files": [
                {"name": "crds/widgets.yaml", "data": base64.b64encode(text).decode()},
                {"name": "README.md", "data": base64.b64encode(b"docs").decode()},
                {"name": "crds/bad.yaml", "data": "not base64!"},
                "garbage",
            ]
        }
    }
    assert record_files(record) == [("crds/widgets.yaml", text)]
    assert record_files({"chart": None}) == []


def test_definitions_reads_every_document_and_names_the_file_of_a_bad_one() -> None:
    text = "---\n" + yaml.safe_dump(crd(["v1"])) + "---\n# only a comment\n"
    assert [d["metadata"]["name"] for d in definitions([("crds/a.yaml", text.encode())])] == [
        "widgets.example.com"
    ]
    with pytest.raises(CrdError, match=r"crds/b\.yaml \(document 1\) is not an apiextensions"):
        definitions([("crds/b.yaml", b"apiVersion: v1\nkind: ConfigMap\n")])
    with pytest.raises(CrdError, match=r"crds/c\.yaml is not YAML"):
        definitions([("crds/c.yaml", b"a: [")])


def test_yaml_aliases_are_refused_so_no_alias_bomb_expands() -> None:
    bomb = b"a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n"
    with pytest.raises(CrdError, match="aliases are not accepted"):
        definitions([("crds/bomb.yaml", bomb)])


def test_fields_the_api_server_adds_are_no_difference() -> None:
    assert crds._compare(crd(["v1"]), as_served(crd(["v1"]))) == ""


@pytest.mark.parametrize(
    ("chart", "live", "expected"),
    [
        (crd(["v1", "v2"]), crd(["v1"]), "version(s) v2 not in the cluster"),
        (crd(["v1"], "string"), crd(["v1"]), "version v1: schema differ"),
        (
            {**crd(["v1"]), "spec": {**crd(["v1"])["spec"], "scope": "Cluster"}},
            crd(["v1"]),
            "scope differs",
        ),
    ],
)
def test_what_changes_the_api_is_a_difference(
    chart: dict[str, Any], live: dict[str, Any], expected: str
) -> None:
    assert crds._compare(chart, as_served(live)) == expected


def test_a_version_only_the_cluster_serves_is_no_difference() -> None:
    # helm's and Flux's createReplace never remove one either; dropping it is the chart's call.
    assert crds._compare(crd(["v1"]), as_served(crd(["v1", "v0"]))) == ""


def test_only_name_labels_annotations_and_spec_of_a_chart_crd_are_sent() -> None:
    document = crd(["v1"])
    document["metadata"].update(
        labels={"a": "b"}, uid="x", finalizers=["evil"], ownerReferences=[{"name": "o"}]
    )
    document["status"] = {"storedVersions": ["v9"]}
    body = crds._body(document)
    assert body["metadata"] == {"name": "widgets.example.com", "labels": {"a": "b"}}
    assert set(body) == {"apiVersion", "kind", "metadata", "spec"}
