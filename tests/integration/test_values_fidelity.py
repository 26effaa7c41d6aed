"""Values reach the chart exactly as `helm install -f` of the same text gives them.

The chart `app` renders `.Values | toJson` into the ConfigMap `<release>-values`; a
release installed by the reconciler from a git layer, the values ConfigMap or the values
Secret must render the same bytes as helm's own reading of the same text.
"""

from __future__ import annotations

import base64
import json
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from engine_world import World, daemon, daemon_log, wait_for

from tests.support import scalars

FAST = {"retries": 0, "retryBackoffSeconds": 1, "timeoutSeconds": 120}
# Optional: most tests create only one of the two objects (a missing one is an error otherwise).
SOURCES = {
    "namespace": "",
    "configMap": {"name": "site-values", "optional": True},
    "secret": {"name": "site-secrets", "optional": True},
}


def rendered(world: World, release: str) -> str:
    """The `.Values | toJson` that the chart rendered for `release`."""

    path = f"/api/v1/namespaces/{world.namespace}/configmaps/{release}-values"
    encoded: str = world.testbed.admin.call("GET", path)["data"]["values.json"]
    return base64.b64decode(encoded).decode("utf-8")


def release_text(name: str, values_text: str) -> str:
    head = f"apiVersion: reconciler/v1\nkind: Release\nname: {name}\nproject: app\n"
    if not values_text:
        return head + "version: 0.1.0\n"
    return head + "version: 0.1.0\nvalues:\n" + textwrap.indent(values_text, "  ")


def put(world: World, kind: str, data: dict[str, str]) -> None:
    """Create the values ConfigMap or Secret (`data` as text; Secrets are encoded here)."""

    name = SOURCES["configMap" if kind == "ConfigMap" else "secret"]["name"]
    plural = "configmaps" if kind == "ConfigMap" else "secrets"
    if kind == "Secret":
        data = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    body = {
        "apiVersion": "v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": world.namespace},
        "data": data,
    }
    world.testbed.admin.call("POST", f"/api/v1/namespaces/{world.namespace}/{plural}", body)


def setup_sources(world: World, releases: dict[str, str]) -> None:
    """The project `app`, the installation reading the values objects, and `releases`
    (name -> release file text)."""

    repo = world.repo
    repo.project("app", world.namespace)
    repo.installation(
        world.installation, policy=FAST, values_from={**SOURCES, "namespace": world.namespace}
    )
    for name, text in releases.items():
        repo.write(f"installations/{world.installation}/releases/{name}.yaml", text)


def helm_reference(world: World, tmp_path: Path, text: str, name: str = "reference") -> str:
    """What `helm install -f` of `text` renders (the same chart, the same helm)."""

    values = tmp_path / f"{name}.yaml"
    values.write_text(text, encoding="utf-8")
    chart = f"{world.repo.chart_repository}/app"
    world.helm("install", name, chart, "--version", "0.1.0", "--plain-http", "-f", str(values))
    return rendered(world, name)


@pytest.mark.helm3
def test_every_spelling_reaches_the_chart_as_helm_reads_it(world: World, tmp_path: Path) -> None:
    text = scalars.corpus_text()
    assert scalars.count() >= 200
    setup_sources(
        world,
        {
            "fromgit": release_text("fromgit", text),
            "fromcm": release_text("fromcm", ""),
            "fromsecret": release_text("fromsecret", ""),
        },
    )
    put(world, "ConfigMap", {"fromcm.yaml": text})
    put(world, "Secret", {"fromsecret.yaml": text})
    world.repo.commit("the corpus in a git layer, the ConfigMap and the Secret")

    code, result, stderr = world.apply()
    assert code == 0, stderr + json.dumps(result)[:2000]
    expected = helm_reference(world, tmp_path, text)
    parsed = json.loads(expected)
    assert parsed["values"]["v000"] is True
    assert parsed["keys"]["8080"] == "k00"
    for release in ("fromgit", "fromcm", "fromsecret"):
        assert _differences(rendered(world, release), expected) == [], release

    code, planned = world.plan("--full")
    assert (code, planned["actions"]) == (0, []), "a full resync after the install finds drift"
    assert len(planned["in_sync"]) == 3


def _differences(got: str, expected: str) -> list[str]:
    """The first keys whose rendering differs; the whole text when the shape differs."""

    if got == expected:
        return []
    a, b = json.loads(got), json.loads(expected)
    out = [
        f"{section}.{key}: {a[section].get(key)!r} != {b[section].get(key)!r}"
        for section in ("values", "keys")
        for key in sorted(set(a.get(section, {})) | set(b.get(section, {})))
        if json.dumps(a.get(section, {}).get(key)) != json.dumps(b.get(section, {}).get(key))
    ]
    rest: dict[str, Any] = {k: v for k, v in a.items() if k not in ("values", "keys")}
    if json.dumps(rest, sort_keys=True) != json.dumps(
        {k: v for k, v in b.items() if k not in ("values", "keys")}, sort_keys=True
    ):
        out.append(f"other keys: {rest} != {b}")
    return out[:20] or [f"{got} != {expected}"]


# The issue's own examples, from real charts' trackers: each reached the chart as another
# type or value, or made every full resync upgrade again.
EXAMPLES = textwrap.dedent(
    """\
    confirm: "y"
    answer: 'n'
    image: {tag: "7e10"}
    build: "01443e5"
    mask: "0X1F"
    at: 12:30
    replicas: 1e3
    big: 12345678901234567890
    since: 2024-01-01
    """
)


@pytest.mark.helm3
def test_quoted_strings_stay_strings_and_a_resync_finds_nothing(
    world: World, tmp_path: Path
) -> None:
    setup_sources(
        world,
        {"fromgit": release_text("fromgit", EXAMPLES), "fromcm": release_text("fromcm", "")},
    )
    put(world, "ConfigMap", {"fromcm.yaml": EXAMPLES})
    world.repo.commit("the examples")
    code, result, stderr = world.apply()
    assert code == 0, stderr + json.dumps(result)[:2000]
    expected = helm_reference(world, tmp_path, EXAMPLES)
    assert json.loads(expected)["confirm"] == "y"
    assert json.loads(expected)["at"] == "12:30"
    assert rendered(world, "fromgit") == expected
    assert rendered(world, "fromcm") == expected

    world.reset_calls()
    code, result, stderr = world.apply("--full")
    assert (code, result["actions"]) == (0, []), stderr
    assert world.helm_calls() == []


def test_an_edit_of_a_time_shows_as_the_time(world: World) -> None:
    setup_sources(world, {"fromgit": release_text("fromgit", "at: 12:30\n")})
    world.repo.commit("at 12:30")
    assert world.apply()[0] == 0
    world.repo.write(
        f"installations/{world.installation}/releases/fromgit.yaml",
        release_text("fromgit", "at: 12:45\n"),
    )
    world.repo.commit("at 12:45")
    code, planned = world.plan()
    assert code == 2
    assert [a["reason"] for a in planned["actions"]] == ["values changed: at"]
    shown = world.cli("diff", "--base", "HEAD~1", "--head", "HEAD", str(world.repo.root))
    assert "12:30" in shown.stdout, shown.stdout + shown.stderr
    assert "12:45" in shown.stdout
    assert "750" not in shown.stdout


def test_a_configmap_key_helm_would_change_holds_only_its_release(world: World) -> None:
    # ingress-nginx's tcp map: integer keys beside string keys are what helm reads as
    # strings; `on:` is a key helm turns into "true", so that release is held.
    tcp = 'tcp:\n  8080: "default/web:8080"\n  "9000": "default/api:9000"\n'
    setup_sources(
        world,
        {
            "ingress": release_text("ingress", ""),
            "switches": release_text("switches", ""),
        },
    )
    put(world, "ConfigMap", {"ingress.yaml": tcp, "switches.yaml": "modes:\n  on: 1\n  off: 0\n"})
    world.repo.commit("two releases")

    code, planned = world.plan()
    assert code == 2
    assert [a["release"] for a in planned["actions"]] == ["ingress"]
    [held] = planned["held"]
    assert held["release"] == "switches"
    assert "switches.yaml" in held["reason"]
    assert 'the key on is read by helm as "true"' in held["reason"]
    assert "\n" not in held["reason"]

    code, result, stderr = world.apply()
    assert "Traceback" not in stderr
    assert [o["release"] for o in result["outcomes"]] == ["ingress"]
    assert json.loads(rendered(world, "ingress"))["tcp"] == {
        "8080": "default/web:8080",
        "9000": "default/api:9000",
    }
    assert "switches" not in world.releases()
    status = world.cli("status")
    assert "switches" in status.stdout
    assert "held" in status.stdout, status.stdout


def test_representation_alone_is_no_drift_on_a_full_resync(world: World) -> None:
    same_to_helm = "big: 12345678901234567890\nsince: 2024-01-01\nratio: 1.50\nsize: 1_000\n"
    setup_sources(world, {"web": release_text("web", "replicas: 2.0\n")})
    put(world, "ConfigMap", {"values.yaml": same_to_helm})
    world.repo.commit("one release")
    code, result, stderr = world.apply()
    assert code == 0, stderr + json.dumps(result)
    for _ in range(2):
        world.reset_calls()
        code, result, stderr = world.apply("--full")
        assert (code, result["actions"]) == (0, []), stderr
        assert world.helm_calls() == []


def test_the_daemon_survives_a_bad_configmap_and_converges_once_it_is_fixed(world: World) -> None:
    setup_sources(
        world,
        {"ingress": release_text("ingress", ""), "switches": release_text("switches", "")},
    )
    tcp = 'tcp:\n  8080: "default/web:8080"\n  "9000": "default/api:9000"\n'
    put(world, "ConfigMap", {"ingress.yaml": tcp, "switches.yaml": "modes:\n  on: 1\n"})
    world.repo.commit("two releases")
    with daemon(world, "--resync-interval", "2", name="v") as process:
        wait_for(lambda: world.releases().get("ingress") == "deployed", timeout=120)
        time.sleep(3)  # several polls and a full resync over the bad key
        assert process.poll() is None, daemon_log(world, "v").read_text()[-2000:]
        assert "switches" not in world.releases()

        path = f"/api/v1/namespaces/{world.namespace}/configmaps/{SOURCES['configMap']['name']}"
        fixed = world.testbed.admin.call("GET", path)
        fixed["data"]["switches.yaml"] = 'modes:\n  "on": 1\n'
        world.testbed.admin.call("PUT", path, fixed)
        wait_for(lambda: world.releases().get("switches") == "deployed", timeout=120)
        assert json.loads(rendered(world, "switches"))["modes"] == {"on": 1}
        assert process.poll() is None
    assert "Traceback" not in daemon_log(world, "v").read_text()
