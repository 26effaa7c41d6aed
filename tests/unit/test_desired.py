"""Values layering, chart resolution and Secret provenance of `reconciler.desired`."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest

from reconciler.desired import (
    SECRET_MASK,
    ClusterValues,
    ValuesSource,
    cluster_values_from_data,
    desired_state,
    is_secret,
    mask_secrets,
    merge_values,
    secret_paths,
)
from reconciler.errors import ReconcilerError
from reconciler.model import (
    ChartRef,
    ChartSource,
    Environments,
    Installation,
    Policy,
    Project,
    Release,
)

SHA = "0123456789abcdef0123456789abcdef01234567"
LAYERS = [
    "project",
    "installation",
    "release",
    "configmap",
    "configmap-release",
    "secret",
    "secret-release",
]


def make_env(
    layer_values: dict[str, dict[str, Any]] | None = None,
    *,
    release: Release | None = None,
    installation: dict[str, Any] | None = None,
) -> tuple[Environments, ClusterValues]:
    """One project `api`, one installation `prod` with one release `api`; values per layer name."""

    given = layer_values or {}
    project = Project(
        name="api",
        chart=ChartSource(repository="oci://registry.example/charts", name="api-chart"),
        namespace="api-ns",
        values=given.get("project", {}),
    )
    rel = release or Release(name="api", project="api", ref=SHA, values=given.get("release", {}))
    inst = Installation(
        name="prod",
        values=given.get("installation", {}),
        releases=(rel,),
        **(installation or {}),
    )
    env = Environments(projects={"api": project}, installations={"prod": inst}, revision="c0ffee")
    cluster = ClusterValues(
        config_map=ValuesSource(
            shared=given.get("configmap", {}),
            per_release={"api": given.get("configmap-release", {})},
        ),
        secret=ValuesSource(
            shared=given.get("secret", {}),
            per_release={"api": given.get("secret-release", {})},
        ),
    )
    return env, cluster


def effective(layer_values: dict[str, dict[str, Any]]) -> dict[str, Any]:
    env, cluster = make_env(layer_values)
    return desired_state(env, "prod", cluster).releases[0].values


@pytest.mark.parametrize(
    ("lower", "higher"), [(LAYERS[i], LAYERS[j]) for i in range(7) for j in range(i + 1, 7)]
)
def test_each_later_layer_wins(lower: str, higher: str) -> None:
    values = effective({lower: {"key": lower, "only_" + lower: 1}, higher: {"key": higher}})
    assert values == {"key": higher, "only_" + lower: 1}


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        pytest.param(
            [{"image": {"repo": "r", "tag": "1"}}, {"image": {"tag": "2"}}],
            {"image": {"repo": "r", "tag": "2"}},
            id="mappings-merge-key-by-key",
        ),
        pytest.param(
            [{"args": ["a", "b"]}, {"args": ["c"]}],
            {"args": ["c"]},
            id="lists-replace",
        ),
        pytest.param(
            [{"env": [{"name": "A"}]}, {"env": []}],
            {"env": []},
            id="empty-list-replaces",
        ),
        pytest.param(
            [{"resources": {"limits": {"cpu": 1}}}, {"resources": None}],
            {"resources": None},
            id="null-removes-lower-layers-and-stays-for-helm",
        ),
        pytest.param(
            [{"a": {"b": 1, "c": 2}}, {"a": {"b": None}}],
            {"a": {"b": None, "c": 2}},
            id="nested-null",
        ),
        pytest.param(
            [{"a": None}, {"a": {"b": 1}}],
            {"a": {"b": 1}},
            id="mapping-over-null",
        ),
        pytest.param(
            [{"a": 5}, {"a": {"b": 1}}],
            {"a": {"b": 1}},
            id="mapping-replaces-scalar",
        ),
        pytest.param(
            [{"a": {"b": 1}}, {"a": "flat"}],
            {"a": "flat"},
            id="scalar-replaces-mapping",
        ),
        pytest.param([{"a": {"b": 1}}, {"a": {}}], {"a": {"b": 1}}, id="empty-mapping-merges"),
        pytest.param([], {}, id="no-layers"),
    ],
)
def test_merge_values(layers: list[dict[str, Any]], expected: dict[str, Any]) -> None:
    assert merge_values(layers) == expected


def test_merge_leaves_inputs_untouched() -> None:
    low = {"a": {"b": [1, 2]}}
    high = {"a": {"c": {"d": 1}}}
    merged = merge_values([low, high])
    merged["a"]["b"].append(3)
    merged["a"]["c"]["d"] = 2
    assert low == {"a": {"b": [1, 2]}}
    assert high == {"a": {"c": {"d": 1}}}


def test_full_stack_of_layers() -> None:
    values = effective(
        {
            "project": {"image": {"repository": "api", "tag": "latest"}, "replicas": 1},
            "installation": {"replicas": 3, "region": "eu"},
            "release": {"image": {"tag": "v2"}},
            "configmap": {"proxy": "http://proxy"},
            "configmap-release": {"replicas": 5},
            "secret": {"db": {"password": "hunter2"}},
            "secret-release": {"db": {"user": "api"}},
        }
    )
    assert values == {
        "image": {"repository": "api", "tag": "v2"},
        "replicas": 5,
        "region": "eu",
        "proxy": "http://proxy",
        "db": {"password": "hunter2", "user": "api"},
    }


def test_per_release_in_cluster_values_only_reach_their_release() -> None:
    env, _ = make_env()
    other = Release(name="worker", project="api", ref=SHA)
    inst = env.installations["prod"]
    env = Environments(
        projects=env.projects,
        installations={"prod": Installation(name="prod", releases=(*inst.releases, other))},
    )
    cluster = ClusterValues(config_map=ValuesSource(per_release={"worker": {"only": "worker"}}))
    by_name = {r.name: r.values for r in desired_state(env, "prod", cluster).releases}
    assert by_name == {"api": {}, "worker": {"only": "worker"}}


def test_chart_from_ref_and_project_source() -> None:
    env, cluster = make_env()
    state = desired_state(env, "prod", cluster)
    (release,) = state.releases
    assert release.chart == ChartRef("oci://registry.example/charts", "api-chart", f"1.0.0-g{SHA}")
    assert release.namespace == "api-ns"
    assert release.ref == SHA
    assert state.revision == "c0ffee"
    assert state.installation == "prod"


def test_pinned_version_namespace_and_installation_repository_override() -> None:
    pinned = Release(name="api", project="api", version="2.3.4", namespace="custom")
    env, cluster = make_env(
        release=pinned,
        installation={
            "chart_repository": "oci://mirror.local/c",
            "policy": Policy(prune=True),
        },
    )
    state = desired_state(env, "prod", cluster)
    (release,) = state.releases
    assert release.chart == ChartRef("oci://mirror.local/c", "api-chart", "2.3.4")
    assert release.namespace == "custom"
    assert state.policy.prune is True


def test_short_ref_template() -> None:
    env, _ = make_env()
    project = env.projects["api"]
    chart = ChartSource(project.chart.repository, project.chart.name, "0.1.0-g{ref:7}")
    env = Environments(
        projects={"api": Project("api", chart, "api-ns")}, installations=env.installations
    )
    assert desired_state(env, "prod").releases[0].chart.version == "0.1.0-g0123456"


def test_depends_on_maps_projects_to_releases_of_this_installation() -> None:
    chart = ChartSource("oci://r/c", "c")
    projects = {
        "db": Project("db", chart, "ns"),
        "cache": Project("cache", chart, "ns"),
        "api": Project("api", chart, "ns", depends_on=("db", "cache", "queue")),
    }
    releases = (
        Release("api", "api", ref=SHA),
        Release("postgres", "db", ref=SHA),
        Release("postgres-replica", "db", ref=SHA),
    )
    env = Environments(projects=projects, installations={"i": Installation("i", releases=releases)})
    by_name = {r.name: r.depends_on for r in desired_state(env, "i").releases}
    # `cache` and `queue` do not run here: dropped, not an error.
    assert by_name == {
        "api": ("postgres", "postgres-replica"),
        "postgres": (),
        "postgres-replica": (),
    }


def test_unknown_installation_lists_known_ones() -> None:
    env, _ = make_env()
    with pytest.raises(ReconcilerError, match=r"unknown installation 'nope'; known: prod"):
        desired_state(env, "nope")


def test_release_without_ref_or_version_is_an_error() -> None:
    env, _ = make_env(release=Release(name="api", project="api"))
    with pytest.raises(ReconcilerError, match="neither `ref` nor `version`"):
        desired_state(env, "prod")


def test_release_of_unknown_project_is_an_error() -> None:
    env, _ = make_env(release=Release(name="api", project="ghost", ref=SHA))
    with pytest.raises(ReconcilerError, match="unknown project 'ghost'"):
        desired_state(env, "prod")


def test_secret_paths_record_where_secret_values_landed() -> None:
    cluster = ClusterValues(
        config_map=ValuesSource(shared={"db": {"host": "db.local"}}),
        secret=ValuesSource(
            shared={"db": {"password": "s3cr3t"}},
            per_release={"api": {"token": "t0k3n", "tls": {"keys": ["k1"]}}},
        ),
    )
    assert secret_paths(cluster, "api") == {("db", "password"), ("token",), ("tls", "keys")}
    assert secret_paths(cluster, "worker") == {("db", "password")}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (("db", "password"), True),
        (("db",), True),  # the mapping holding a secret would print it
        (("db", "password", "deeper"), True),
        (("db", "host"), False),
        (("dbx",), False),
    ],
)
def test_is_secret(path: tuple[str, ...], expected: bool) -> None:
    assert is_secret(path, frozenset({("db", "password")})) is expected


def test_mask_secrets_hides_only_secret_leaves() -> None:
    env, cluster = make_env(
        {
            "release": {"db": {"host": "db.local", "password": "from-git"}},
            "secret-release": {"db": {"password": "hunter2"}, "apiKey": {"k": "v"}},
        }
    )
    (release,) = desired_state(env, "prod", cluster).releases
    masked = mask_secrets(release.values, secret_paths(cluster, "api"))
    assert masked == {
        "db": {"host": "db.local", "password": SECRET_MASK},
        "apiKey": {"k": SECRET_MASK},
    }
    assert "hunter2" not in repr(masked)
    assert release.values["db"]["password"] == "hunter2"  # the original is untouched


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_cluster_values_from_data() -> None:
    cluster = cluster_values_from_data(
        {"values.yaml": "proxy: http://p\n", "api.yaml": "replicas: 2\n", "README": "ignored"},
        {"values.yaml": b64("token: abc\n"), "api.yaml": b64("")},
    )
    assert cluster == ClusterValues(
        config_map=ValuesSource(shared={"proxy": "http://p"}, per_release={"api": {"replicas": 2}}),
        secret=ValuesSource(shared={"token": "abc"}, per_release={"api": {}}),
    )
    assert cluster_values_from_data(None, None) == ClusterValues()


def test_invalid_secret_yaml_does_not_leak_its_content() -> None:
    cluster = cluster_values_from_data(None, {"api.yaml": b64("password: [hunter2\n")}, "", "ns/s")
    problem = cluster.problem_for("api")
    assert problem is not None
    assert "Secret ns/s key 'api.yaml'" in problem
    assert "hunter2" not in problem
    assert cluster.problem_for("web") is None  # only the release that uses the key


def test_a_secret_value_helm_refuses_is_not_shown() -> None:
    cluster = cluster_values_from_data(None, {"values.yaml": b64("pin: .inf\n")})
    problem = cluster.problem_for("any")
    assert problem is not None
    assert ".inf" not in problem
    assert "NaN or an infinity" in problem


def test_invalid_configmap_yaml_names_the_key_and_line() -> None:
    cluster = cluster_values_from_data({"values.yaml": "a: 1\nb: [\n"}, None, "ns/cm")
    assert re.match(
        r"ConfigMap ns/cm key 'values.yaml': line \d+: invalid YAML", cluster.problem_for("x") or ""
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"values.yaml": "- a\n- b\n"}, "must be a mapping (key: value), not a list"),
        ({"values.yaml": "tcp:\n  8080: a\n  on: b\n"}, 'the key on is read by helm as "true"'),
        ({"values.yaml": "a: 1\na: 2\n"}, 'duplicate key "a"'),
        ({"values.yaml": "1: a\n'1': b\n"}, 'duplicate key "1"'),
        ({"values.yaml": "~: a\n"}, "null is not a key helm accepts"),
        ({"values.yaml": "18446744073709551615: a\n"}, "beyond 64-bit integers"),
        ({"values.yaml": "a: .nan\n"}, "not a number helm accepts"),
        ({"values.yaml": "a: !custom x\n"}, "tag !custom is not supported"),
        ({"values.yaml": "a: {k: why?}\n"}, "ends a plain value at ? inside [ ] or { }"),
        ({"values.yaml": 'a: "x\\/y"\n'}, "no escape \\/ in double quotes"),
        ({"values.yaml": "a: 1\n---\nb: 2\n"}, "several YAML documents"),
    ],
)
def test_rejected_configmap_values(data: dict[str, str], message: str) -> None:
    problem = cluster_values_from_data(data, None).problem_for("api")
    assert problem is not None
    assert message in problem


def test_configmap_values_read_as_helm_reads_them() -> None:
    text = (
        "tcp:\n  8080: default/web:80\nconfirm: 'y'\nbare: y\nat: 12:30\nnum: 1e3\nd: 2024-01-01\n"
    )
    cluster = cluster_values_from_data({"values.yaml": text, "api.yaml": "~"}, None)
    assert cluster.config_map.shared == {
        "tcp": {"8080": "default/web:80"},
        "confirm": "y",
        "bare": True,
        "at": "12:30",
        "num": 1000.0,
        "d": "2024-01-01",
    }
    assert cluster.config_map.per_release == {"api": {}}


def test_secret_that_is_not_base64() -> None:
    problem = cluster_values_from_data(None, {"values.yaml": "!!not base64!!"}).problem_for("a")
    assert problem is not None
    assert "not base64-encoded UTF-8" in problem
