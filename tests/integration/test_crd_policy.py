"""A chart's crds/ per the project's `crds` policy, on the working cluster: a CRD version
added in a new chart version reaches the cluster with `createReplace`, is reported (not
passed silently) with `create`, and `skip` installs no CRD."""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from engine_world import World, daemon, wait_for
from envrepo import project_document

from testbed import KubeAPIError

FAST = {"retries": 0, "retryBackoffSeconds": 1, "timeoutSeconds": 30}
CRDS_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def crd(group: str, versions: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "names": {"kind": "Widget", "plural": "widgets"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": version == versions[0],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"spec": {"type": "object"}},
                        }
                    },
                }
                for version in versions
            ],
        },
    }


class CrdCharts:
    """A chart of its own (name and CRD group unique to the test): 0.1.0 whose crds/ serves
    v1, 0.2.0 that adds v2 (and with `dropping`, 0.3.0 that serves v2 alone)."""

    def __init__(self, folder: Path, publish_chart: Any, helm: str, dropping: bool) -> None:
        token = secrets.token_hex(4)
        self.chart = f"crd{token}"
        self.group = f"g{token}.example.com"
        self.name = f"widgets.{self.group}"
        versions = [("0.1.0", ["v1"]), ("0.2.0", ["v1", "v2"]), ("0.3.0", ["v2"])]
        for version, served in versions[: 3 if dropping else 2]:
            root = folder / version / self.chart
            (root / "crds").mkdir(parents=True)
            (root / "templates").mkdir()
            (root / "Chart.yaml").write_text(
                yaml.safe_dump({"apiVersion": "v2", "name": self.chart, "version": version})
            )
            (root / "crds" / "widgets.yaml").write_text(yaml.safe_dump(crd(self.group, served)))
            (root / "templates" / "configmap.yaml").write_text(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: '{{ .Release.Name }}'}\n"
            )
            publish_chart(root, version, helm=helm)


@contextlib.contextmanager
def published(
    tmp_path: Path, publish_chart: Any, helm: str, testbed: Any, dropping: bool = False
) -> Iterator[CrdCharts]:
    made = CrdCharts(tmp_path / "charts", publish_chart, helm, dropping)
    try:
        yield made
    finally:
        with contextlib.suppress(KubeAPIError):  # never created (crds: skip)
            testbed.admin.call("DELETE", f"{CRDS_PATH}/{made.name}")


@pytest.fixture
def charts(
    tmp_path: Path, publish_chart: Any, helm_binary: str, testbed: Any
) -> Iterator[CrdCharts]:
    with published(tmp_path, publish_chart, helm_binary, testbed) as made:
        yield made


@pytest.fixture
def charts_dropping_v1(
    tmp_path: Path, publish_chart: Any, helm_binary: str, testbed: Any
) -> Iterator[CrdCharts]:
    """Also 0.3.0, whose CRD serves v2 alone although v1 is stored."""

    with published(tmp_path, publish_chart, helm_binary, testbed, dropping=True) as made:
        yield made


def served(world: World, name: str) -> list[str] | None:
    try:
        live = world.testbed.admin.call("GET", f"{CRDS_PATH}/{name}")
    except KubeAPIError as error:
        if error.status == 404:
            return None
        raise
    return [v["name"] for v in live["spec"]["versions"] if v["served"]]


def crd_project(
    world: World, charts: CrdCharts, policy: str | None, version: str, releases: int = 1
) -> None:
    document = project_document(
        "widgets", world.namespace, world.repo.chart_repository, charts.chart
    )
    world.repo.write("projects/widgets.yaml", {**document, **({"crds": policy} if policy else {})})
    for name in ("widgets", "widgets-b")[:releases]:
        world.repo.release(world.installation, name, project="widgets", version=version)
    world.repo.installation(world.installation, policy=FAST)
    world.repo.commit(f"widgets {version}")


@pytest.mark.helm3
def test_create_replace_applies_a_new_crd_version_before_the_upgrade(
    world: World, charts: CrdCharts
) -> None:
    crd_project(world, charts, "createReplace", "0.1.0")
    code, result, stderr = world.apply()
    assert code == 0, stderr
    assert served(world, charts.name) == ["v1"]
    assert f"created {charts.name}" in result["outcomes"][0]["message"]

    # Two releases of the chart in one pass (in parallel): the CRD is replaced once.
    crd_project(world, charts, "createReplace", "0.2.0", releases=2)
    world.reset_calls()
    code, result, stderr = world.apply()
    assert code == 0, stderr
    outcomes = {o["release"]: o for o in result["outcomes"]}
    assert [o["result"] for o in outcomes.values()] == ["succeeded", "succeeded"]
    messages = " ".join(o["message"] for o in outcomes.values())
    assert messages.count(f"replaced {charts.name}") == 1, messages
    assert all(o["warning"] == "" for o in outcomes.values())
    assert served(world, charts.name) == ["v1", "v2"], "the new CRD version reached the cluster"
    writes = [c for c in world.helm_calls() if c.startswith(("upgrade ", "install "))]
    assert len(writes) == 2
    assert all("--skip-crds" in c.split() for c in writes), "applied by the reconciler only"


@pytest.mark.helm3
def test_create_reports_a_crd_that_helm_left_behind(world: World, charts: CrdCharts) -> None:
    crd_project(world, charts, None, "0.1.0")
    code, result, stderr = world.apply()
    assert code == 0, stderr
    assert served(world, charts.name) == ["v1"], "created on install, as helm does"
    assert result["outcomes"][0]["warning"] == ""

    crd_project(world, charts, None, "0.2.0")
    code, result, stderr = world.apply()
    assert code == 0, stderr
    (outcome,) = result["outcomes"]
    assert outcome["result"] == "succeeded", "helm's behaviour: the upgrade itself worked"
    assert f"{charts.name}: version(s) v2 not in the cluster" in outcome["warning"]
    assert outcome["warning"] in outcome["message"]
    assert served(world, charts.name) == ["v1"], "create never changes an existing CRD"
    status = world.cli("status", "-o", "json")
    assert "v2 not in the cluster" in status.stdout, "status says so"

    assert world.plan()[0] == 0, "a cheap plan decodes no record and reads no CRD"
    code, planned = world.plan("--full")
    assert code == 2, "plan --full: the cluster does not serve what the chart declares"
    assert planned["actions"] == []
    assert planned["crds"] == [
        {
            "release": "widgets",
            "namespace": world.namespace,
            "differences": [f"{charts.name}: version(s) v2 not in the cluster"],
        }
    ]
    text = world.cli("plan", "--full")
    assert text.returncode == 2
    assert (
        f"  {world.namespace}/widgets: {charts.name}: version(s) v2 not in the cluster"
        in text.stdout.splitlines()
    ), text.stdout


def test_create_reports_a_differing_crd_as_a_warning_event(world: World, charts: CrdCharts) -> None:
    # Two releases of the chart: it is pulled once and its crds/ read from the archive.
    crd_project(world, charts, "create", "0.1.0", releases=2)
    assert world.apply()[0] == 0
    with daemon(world, name="crds"):
        crd_project(world, charts, "create", "0.2.0", releases=2)

        def warnings() -> list[str]:
            path = f"/api/v1/namespaces/{world.namespace}/events"
            items = world.testbed.admin.call("GET", path)["items"]
            found = [e["message"] for e in items if e["reason"] == "CRDsDiffer"]
            return sorted(found) if len(found) == 2 else []

        messages = wait_for(warnings, timeout=60)
    releases = sorted(message.split(":")[0].split("/")[1] for message in messages)
    assert releases == ["widgets", "widgets-b"]
    for message in messages:
        assert ": CRDs in the chart's crds/ differ from the cluster's" in message
        assert f"{charts.name}: version(s) v2 not in the cluster" in message
    assert served(world, charts.name) == ["v1"]


@pytest.mark.helm3
def test_skip_installs_no_crd(world: World, charts: CrdCharts) -> None:
    crd_project(world, charts, "skip", "0.1.0")
    code, result, stderr = world.apply()
    assert code == 0, stderr
    assert served(world, charts.name) is None
    assert result["outcomes"][0]["warning"] == ""
    (install,) = [c for c in world.helm_calls() if c.startswith("install ")]
    assert "--skip-crds" in install.split()


def test_create_replace_that_the_api_server_refuses_fails_before_helm_runs(
    world: World, charts_dropping_v1: CrdCharts
) -> None:
    charts = charts_dropping_v1
    crd_project(world, charts, "createReplace", "0.2.0")
    assert world.apply()[0] == 0
    assert served(world, charts.name) == ["v1", "v2"]

    crd_project(world, charts, "createReplace", "0.3.0")
    world.reset_calls()
    code, result, _ = world.apply()
    assert code == 1
    (outcome,) = result["outcomes"]
    assert outcome["result"] == "failed"
    message = outcome["message"]
    assert f"CRD {charts.name} from the chart's crds/ not applied" in message, message
    assert "storedVersions" in message, "the API server's reason: v1 is still stored"
    assert "helm recorded no new revision" in message
    assert [c for c in world.helm_calls() if c.startswith("upgrade ")] == []
    assert world.latest("widgets")["chart"] == f"{charts.chart}-0.2.0"
    assert served(world, charts.name) == ["v1", "v2"]


def status_message(world: World, release: str) -> str:
    document = json.loads(world.cli("status", "-o", "json").stdout)
    (row,) = [r for r in document["releases"] if r["release"] == release]
    return str(row["message"])


def test_create_shows_a_differing_crd_in_status_until_a_full_resync_finds_it_gone(
    world: World, charts: CrdCharts
) -> None:
    crd_project(world, charts, "create", "0.1.0")
    assert world.apply()[0] == 0
    crd_project(world, charts, "create", "0.2.0")
    assert world.apply()[0] == 0
    differs = f"{charts.name}: version(s) v2 not in the cluster"
    assert differs in status_message(world, "widgets")
    assert world.apply()[0] == 0
    assert differs in status_message(world, "widgets"), "a quiet pass keeps the finding"

    code, result, stderr = world.apply("--full")
    assert (code, result["actions"]) == (0, []), stderr
    assert differs in status_message(world, "widgets"), "a full resync reads the CRDs again"

    # Fixed by hand: the next full resync finds it gone.
    live = world.testbed.admin.call("GET", f"{CRDS_PATH}/{charts.name}")
    live["spec"]["versions"] = crd(charts.group, ["v1", "v2"])["spec"]["versions"]
    world.testbed.admin.call("PUT", f"{CRDS_PATH}/{charts.name}", live)
    assert world.apply("--full")[0] == 0
    assert status_message(world, "widgets") == ""
