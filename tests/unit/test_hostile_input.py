"""Hostile JSON that others can write (chart crds/, the release record, live status, the
status ConfigMap): each reader holds only what it touches and never raises."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path
from typing import Any, cast

import pytest

from reconciler import crds, drift, health, manifest, masking, observe, status
from reconciler.errors import HelmError
from reconciler.execute import execute
from reconciler.health import ObjectRef, ObjectResult, ReleaseHealth
from reconciler.helm import Helm
from reconciler.jsonshape import MAX_DEPTH
from reconciler.liveobjects import LiveObject
from reconciler.loop import Loop, LoopSettings
from reconciler.manifest import ManifestObject
from reconciler.model import ChartRef, DesiredRelease, Policy
from reconciler.plan import Action, Plan
from reconciler.reconcile import Engine

NOT_MAPPINGS: list[Any] = [5, "x", [1], True, None, 1.5]
NOT_LISTS: list[Any] = [5, "x", {"a": 1}, True, 1.5]


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


def spec(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"kind": "Widget", "plural": "widgets"},
        "versions": [{"name": "v1", "served": True, "storage": True}],
    }
    return {"apiVersion": crds.API_VERSION, "metadata": {"name": "w"}, "spec": base | fields}


@pytest.mark.parametrize("bad", NOT_MAPPINGS)
def test_crd_comparison_takes_any_shape_of_names_and_versions(bad: Any) -> None:
    good = spec()
    for hostile in (spec(names=bad), spec(versions=[bad]), spec(versions=bad)):
        assert isinstance(crds._compare(hostile, good), str)
        assert isinstance(crds._compare(good, hostile), str)
    assert isinstance(crds._compare({"spec": bad}, {"spec": bad}), str)


def test_a_crd_whose_names_are_not_a_mapping_differs() -> None:
    assert "names" in crds._compare(spec(names="Widget"), spec())


def test_a_crd_nested_too_deeply_is_not_compared_but_named() -> None:
    deep = spec(versions=[{"name": "v1", "schema": nested(1200)}])
    assert "nested" in crds._compare(deep, spec())


@pytest.mark.parametrize("bad", NOT_LISTS)
def test_health_takes_conditions_of_any_shape(bad: Any) -> None:
    for obj in (
        {"apiVersion": "example.com/v1", "kind": "Widget", "status": {"conditions": bad}},
        {"apiVersion": "example.com/v1", "kind": "Widget", "status": {"conditions": [bad]}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "status": {"conditions": bad}},
        {"apiVersion": "batch/v1", "kind": "Job", "status": bad},
        {"apiVersion": "v1", "kind": "Pod", "status": {"phase": "Running", "conditions": bad}},
        {"apiVersion": "v1", "kind": "Pod", "status": {"phase": "Pending", "containerStatuses": bad}},
        {"apiVersion": "v1", "kind": "Pod", "status": {"phase": "Pending", "containerStatuses": [bad]}},
        {"kind": "Pod", "status": {"phase": "Pending", "containerStatuses": [{"state": bad}]}},
        {"kind": "Pod", "status": {"phase": "Pending", "containerStatuses": [{"state": {"waiting": bad}}]}},
        {"apiVersion": bad, "kind": bad, "metadata": bad, "status": bad},
    ):  # fmt: skip
        verdict, message = health.object_status(obj)
        assert verdict in ("Current", "InProgress", "Failed", "NotFound")
        assert isinstance(message, str)
        health.pod_status(obj)


@pytest.mark.parametrize("bad", NOT_LISTS)
def test_a_selector_of_any_shape_selects_or_gives_none(bad: Any) -> None:
    for selector in ({"matchLabels": bad}, {"matchExpressions": bad}, {"matchExpressions": [bad]}):
        found = health.pod_selector({"spec": {"selector": selector}})
        assert found is None or isinstance(found, str)


@pytest.mark.parametrize("bad", [*NOT_LISTS, [5], [{"status": 5}]])
def test_a_status_row_of_any_shape_reads_as_a_verdict_or_none(bad: Any) -> None:
    document = {
        "releases": [{"namespace": "a", "release": "b", "health": "Degraded", "unhealthy": bad}]
    }
    found = status.health_from(document)
    assert list(found) == [("a", "b")]
    assert found["a", "b"].health == "Degraded"
    assert status.health_from({"releases": bad}) == {} or isinstance(bad, list)
    assert health.health_of(cast(Any, bad)) is None


def secret(body: dict[str, Any], kind: str = "Secret") -> ManifestObject:
    full = {"apiVersion": "v1", "kind": kind, "metadata": {"name": "s"}, **body}
    return ManifestObject("v1", kind, "team", "s", full)


@pytest.mark.parametrize("bad", NOT_MAPPINGS)
def test_secret_and_configmap_data_of_any_shape_is_compared_not_fatal(bad: Any) -> None:
    live = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "dg=="}}
    for obj in (
        secret({"data": bad}),
        secret({"stringData": bad}),
        secret({"binaryData": bad}, "ConfigMap"),
        secret({"data": bad, "stringData": bad}),
    ):
        found = drift.release_drift([LiveObject(obj, live)])
        assert isinstance(found.summary(), str)


def test_an_object_nested_too_deeply_is_unreadable_not_drift() -> None:
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c"},
        "data": nested(1200),
    }
    obj = ManifestObject("v1", "ConfigMap", "team", "c", body)
    for live in (body, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}):
        found = drift.release_drift([LiveObject(obj, live)])
        assert not found.drifted
        assert found.unreadable == (
            f"ConfigMap team/c: nested more than {MAX_DEPTH} levels, not compared",
        )
    assert drift.diff_paths(nested(1200), nested(1200)) == ["/a" * MAX_DEPTH]


@pytest.mark.parametrize("bad", NOT_MAPPINGS)
def test_autoscalers_of_any_shape_are_skipped(bad: Any) -> None:
    assert (
        drift.hpa_targets([{"metadata": bad, "spec": bad}, {"spec": {"scaleTargetRef": bad}}])
        == set()
    )


def test_a_deep_manifest_parses_and_its_objects_keep_their_identity() -> None:
    text = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: "
        + "{a: " * 900
        + "1"
        + "}" * 900
    )
    (obj,) = manifest.parse(text, "team")
    assert obj.ref == "ConfigMap team/c"


def record(document: Any) -> str:
    raw = gzip.compress(json.dumps(document).encode())
    return base64.b64encode(base64.b64encode(raw)).decode()


def test_a_release_record_nested_too_deeply_is_a_value_error() -> None:
    deep = "[" * 5000 + "]" * 5000
    raw = base64.b64encode(base64.b64encode(gzip.compress(deep.encode()))).decode()
    with pytest.raises(ValueError, match="nested"):
        observe.decode_release(raw)


@pytest.mark.parametrize("bad", NOT_MAPPINGS)
def test_a_release_record_of_any_shape_gives_a_detail(bad: Any) -> None:
    detail = observe.detail_of({"chart": bad, "info": bad, "config": bad, "manifest": bad})
    assert detail.chart_version == ""
    detail = observe.detail_of({"chart": {"metadata": bad}})
    assert detail.chart_name == ""


def test_masking_scalars_walks_any_depth() -> None:
    deep: Any = "s3cr3t-value"
    for _ in range(5000):
        deep = [deep]
    assert list(masking.scalars(deep)) == ["s3cr3t-value"]


def test_the_status_row_of_a_release_caps_its_unhealthy_objects_and_their_text() -> None:
    ref = ObjectRef("v1", "Widget", "team", "w" * 500)
    many = tuple(
        ObjectResult(ObjectRef("v1", "Widget", "team", f"w{i}"), "Failed", "x" * 5000)
        for i in range(1000)
    )
    row = ReleaseHealth("Degraded", (ObjectResult(ref, "Failed", "y" * 5000), *many)).as_json()
    assert len(row["unhealthy"]) == 5
    assert row["more_unhealthy"] == 996
    assert len(json.dumps(row)) < 3000
    again = health.health_of(row)
    assert again is not None
    assert again.health == "Degraded"
    assert len(again.unhealthy) == 5


def test_a_status_drift_row_is_bounded() -> None:
    objects = tuple(
        drift.ObjectDrift(f"ConfigMap team/{'c' * 300}{i}", paths=("/data/" + "k" * 300,) * 50)
        for i in range(1000)
    )
    text = drift.LiveDrift(objects).summary(10)
    assert len(text) < 4000


class _Helm:
    """Stands in for helm: every run succeeds."""

    def __init__(self) -> None:
        import threading

        self.cancel = threading.Event()

    def upgrade_install(self, *args: Any, **kwargs: Any) -> None:
        return None

    def rollback(self, *args: Any, **kwargs: Any) -> None:
        return None

    def uninstall(self, *args: Any, **kwargs: Any) -> None:
        return None


def release(name: str) -> Action:
    desired = DesiredRelease(name, "team", name, ChartRef("oci://r/c", name, "1.0.0"), {})
    return Action("upgrade", name, "team", "values changed", desired, revision=1)


def test_an_unexpected_error_fails_its_release_only_with_a_one_line_masked_message() -> None:
    def verify(action: Action) -> None:
        if action.release == "bad":
            raise TypeError("'int' object is not iterable: s3cr3t-value\nline two")
        if action.release == "helm":
            raise HelmError("helm says no")

    the_plan = Plan("prod", "0" * 40, (release("bad"), release("good"), release("helm")))
    outcomes = execute(
        the_plan,
        cast(Helm, _Helm()),
        Policy(remediation="none"),
        mask=lambda text: text.replace("s3cr3t-value", "***"),
        verify=verify,
        check=lambda action, chart: (
            (_ for _ in ()).throw(KeyError("k")) if action.release == "good" else ""
        ),
    )
    results = {o.release: (o.result, o.message) for o in outcomes}
    assert results["bad"][0] == "failed"
    assert results["bad"][1].startswith(
        "team/bad: unexpected TypeError at unit/test_hostile_input.py:"
    )
    assert "s3cr3t-value" not in results["bad"][1]
    assert "\n" not in results["bad"][1]
    assert results["good"][0] == "succeeded", "a broken check is a warning, helm's step worked"
    assert "checks could not run: unexpected KeyError" in results["good"][1]
    assert results["helm"] == ("failed", "helm says no")


def test_drift_is_masked_in_names_and_paths_whatever_escaping_the_pointer_did() -> None:
    mask = masking.SecretMask(["pa/ss~word-1234"])
    found = drift.LiveDrift(
        (
            drift.ObjectDrift("ConfigMap team/pa/ss~word-1234", missing=True),
            drift.ObjectDrift("ConfigMap team/c", paths=("/data/pa~1ss~0word-1234", "/data/plain")),
        ),
        ("Widget team/pa/ss~word-1234: forbidden",),
    )
    shown = drift.masked(found, mask)
    text = repr(shown) + shown.summary()
    for form in ("pa/ss~word-1234", "pa~1ss~0word-1234", "ss~word", "word-1234"):
        assert form not in text
    assert shown.objects[1].paths == ("/data/***", "/data/plain")


def test_the_status_document_of_an_outage_across_a_thousand_releases_fits_a_config_map() -> None:
    many = tuple(
        ObjectResult(ObjectRef("apps/v1", "Deployment", "team-a", f"web-{i}"), "Failed", "m" * 300)
        for i in range(50)
    )
    row = ReleaseHealth("Degraded", many).as_json()
    rows = [
        {"namespace": "team-a", "release": f"r{i}", "state": "failed", "message": "e" * 4000, **row}
        for i in range(1000)
    ]
    failures = [
        {"namespace": "team-a", "release": f"r{i}", "message": "e" * 4000} for i in range(1000)
    ]
    document = {"installation": "prod", "releases": rows, "failures": failures}
    text = status.serialise(document)
    assert len(text.encode()) <= status.STATUS_BYTES
    back = json.loads(text)
    assert back["releases"][0]["more_unhealthy"] == 50
    assert back["releases"][0]["health"] == "Degraded"
    small = {"installation": "prod", "releases": rows[:3], "failures": []}
    assert json.loads(status.serialise(small)) == small, "a small document is kept whole"


class _BrokenSource:
    """A source whose head raises what no module raises on purpose."""

    path = Path(".")

    def head(self) -> str:
        raise TypeError("'int' object is not iterable: s3cr3t-value")


def test_the_daemon_loop_survives_an_unexpected_exception_in_a_pass() -> None:
    loop = Loop(cast(Engine, object()), cast(Any, _BrokenSource()), LoopSettings())
    assert loop.once() is False
    assert loop.once() is False, "and the next pass runs too"


@pytest.mark.parametrize("bad", NOT_MAPPINGS)
def test_a_release_record_of_any_shape_compares_as_content(bad: Any) -> None:
    assert observe._content({"chart": bad}) == (None, None, None, None)
    assert observe._content({"chart": {"metadata": bad}})[0] is None


def test_the_cli_reports_an_unexpected_exception_in_one_line_without_its_text(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from reconciler import main as entry
    from reconciler.commands import status as status_command

    def broken(args: Any) -> int:
        raise TypeError("'int' object is not iterable: s3cr3t-value")

    monkeypatch.setattr(status_command, "run", broken)
    assert entry.main(["status", "-i", "prod"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unexpected TypeError at unit/test_hostile_input.py:")
    assert "s3cr3t-value" not in err
    assert len(err.splitlines()) == 1


def test_a_status_document_of_the_wrong_shape_gives_no_crd_findings() -> None:
    from reconciler.status import crds_from

    assert crds_from({"releases": 5}) == {}
    assert crds_from({"releases": [5, {"namespace": "a", "release": "b", "crds": 7}]}) == {}
