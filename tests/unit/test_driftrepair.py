"""Which lists a drift correction sets back before helm re-applies the release."""

from __future__ import annotations

from reconciler.driftrepair import list_patch

SERVICE = {"spec": {"ports": [{"name": "http", "port": 80}], "selector": {"app": "web"}}}
DEPLOYMENT = {
    "spec": {
        "replicas": 2,
        "template": {"spec": {"containers": [{"name": "app", "ports": [{"containerPort": 8080}]}]}},
    }
}


def test_a_path_inside_a_list_sets_back_the_outermost_list() -> None:
    assert list_patch(SERVICE, ["/spec/ports/0/port"]) == [
        {"op": "add", "path": "/spec/ports", "value": [{"name": "http", "port": 80}]}
    ]
    [op] = list_patch(DEPLOYMENT, ["/spec/template/spec/containers/0/ports/0/containerPort"])
    assert op["path"] == "/spec/template/spec/containers"


def test_a_list_of_another_length_is_set_back_whole() -> None:
    [op] = list_patch(SERVICE, ["/spec/ports"])
    assert (op["path"], op["value"]) == ("/spec/ports", SERVICE["spec"]["ports"])


def test_paths_outside_lists_and_unknown_paths_need_no_patch() -> None:
    assert list_patch(DEPLOYMENT, ["/spec/replicas", "/spec/selector/app", "/nope/0"]) == []
    assert list_patch(SERVICE, ["/spec/selector/app"]) == []


def test_one_operation_per_list() -> None:
    ops = list_patch(SERVICE, ["/spec/ports/0/port", "/spec/ports/0/name", "/spec/ports"])
    assert [op["path"] for op in ops] == ["/spec/ports"]


def test_escaped_keys_are_followed() -> None:
    body = {"metadata": {"annotations": {"a/b": "x"}}, "data": {"k~x": ["1"]}}
    assert list_patch(body, ["/metadata/annotations/a~1b"]) == []
    [op] = list_patch(body, ["/data/k~0x/0"])
    assert op["path"] == "/data/k~0x"


def test_a_list_holding_an_ignored_path_is_not_set_back() -> None:
    body = {"spec": {"containers": [{"name": "a", "image": "x"}], "ports": [{"port": 80}]}}
    drifted = ["/spec/containers/0/image", "/spec/ports/0/port"]
    ignored = ["/spec/containers/0/image"]
    assert list_patch(body, drifted, ignored) == [
        {"op": "add", "path": "/spec/ports", "value": [{"port": 80}]}
    ]
