"""A pinned chart version means exactly that version, in an OCI registry and in a classic
HTTP chart repository (where helm reads `--version` as a range), and status says what
helm deployed."""

from __future__ import annotations

import functools
import http.server
import json
import secrets
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from engine_world import World

from reconciler.desired import desired_state
from reconciler.repo import load_environments
from tests.conftest import CHARTS_DIR

FAST = {"retries": 0, "retryBackoffSeconds": 1, "timeoutSeconds": 120}


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_repo(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A classic helm chart repository (index.yaml + archives) served over HTTP."""

    folder = tmp_path / "http-repo"
    folder.mkdir()
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder
    finally:
        server.shutdown()
        server.server_close()


def own_chart(tmp_path: Path) -> tuple[str, Path]:
    """The test chart under a name of its own, so no other test sees its versions."""

    name = f"pin{secrets.token_hex(3)}"
    folder = tmp_path / name
    shutil.copytree(CHARTS_DIR / "app", folder)
    chart_yaml = folder / "Chart.yaml"
    lines = [
        f"name: {name}" if line.startswith("name:") else line
        for line in chart_yaml.read_text().splitlines()
    ]
    chart_yaml.write_text("\n".join(lines) + "\n")
    return name, folder


def publish_http(world: World, chart: Path, folder: Path, url: str, *versions: str) -> None:
    for version in versions:
        world.testbed.helm(
            "package", str(chart), "--version", version, "--destination", str(folder)
        )
    world.testbed.helm("repo", "index", str(folder), "--url", url)


def pinned(world: World, repository: str, chart: str, version: str) -> None:
    repo = world.repo
    repo.installation(world.installation, policy=FAST)
    repo.write(
        f"projects/{chart}.yaml",
        "apiVersion: reconciler/v1\nkind: Project\n"
        f"name: {chart}\nnamespace: {world.namespace}\n"
        f"chart: {{repository: '{repository}', name: {chart}}}\n",
    )
    repo.release(world.installation, "web", project=chart, version=version)
    repo.commit(f"web at {version}")


def deployed_chart(world: World) -> str | None:
    releases = world.releases()
    if "web" not in releases:
        return None
    chart: str = world.latest("web")["chart"]
    return chart


@pytest.mark.helm3
def test_http_repository_without_the_exact_version_installs_nothing(
    world: World, http_repo: tuple[str, Path], tmp_path: Path
) -> None:
    url, folder = http_repo
    chart, chart_dir = own_chart(tmp_path)
    publish_http(world, chart_dir, folder, url, "1.2.3+build.5")
    pinned(world, url, chart, "1.2.3")

    code, result, stderr = world.apply()
    assert code == 1, stderr
    [outcome] = result["outcomes"]
    assert outcome["result"] == "failed"
    assert "1.2.3+build.5" in outcome["message"]
    assert "1.2.3" in outcome["message"]
    assert deployed_chart(world) in (None, f"{chart}-1.2.3")

    publish_http(world, chart_dir, folder, url, "1.2.3+build.5", "1.2.3")
    world.repo.commit("1.2.3 published")
    code, result, stderr = world.apply("--force-retry")
    assert code == 0, stderr + str(result)
    assert deployed_chart(world) == f"{chart}-1.2.3"
    status = world.cli("status", "-o", "json")
    assert '"deployed": "1.2.3"' in status.stdout.replace("\n", "").replace("  ", " ")

    world.reset_calls()
    code, result, _ = world.apply("--full")
    assert (code, result["actions"]) == (0, [])


@pytest.mark.helm3
def test_oci_repository_without_the_exact_version_installs_nothing(
    world: World, publish_chart: Any, tmp_path: Path
) -> None:
    chart, chart_dir = own_chart(tmp_path)
    repository = publish_chart(chart_dir, "1.2.3+build.5").rsplit("/", 1)[0]
    pinned(world, repository, chart, "1.2.3")

    code, result, stderr = world.apply()
    assert code == 1, stderr
    assert deployed_chart(world) in (None, f"{chart}-1.2.3")
    [outcome] = result["outcomes"]
    assert outcome["result"] == "failed"

    publish_chart(chart_dir, "1.2.3")
    world.repo.commit("1.2.3 published")
    code, result, stderr = world.apply("--force-retry")
    assert code == 0, stderr + str(result)
    assert deployed_chart(world) == f"{chart}-1.2.3"


def test_a_near_version_installed_earlier_shows_in_status_and_is_not_kept(
    world: World, http_repo: tuple[str, Path], tmp_path: Path
) -> None:
    url, folder = http_repo
    chart, chart_dir = own_chart(tmp_path)
    publish_http(world, chart_dir, folder, url, "1.2.3+build.5")
    pinned(world, url, chart, "1.2.3")
    # What the reconciler did before: helm took 1.2.3 as a range, and the release was
    # labelled with the digest of 1.2.3, so every later pass took it for in sync.
    env = load_environments(world.repo.root)
    [release] = desired_state(env, world.installation).releases
    labels = f"managed-by=reconciler,reconciler-installation={world.installation}"
    world.helm(
        "install", "web", chart, "--repo", url, "--version", "1.2.3",
        "--labels", f"{labels},reconciler-digest={release.digest}",
    )  # fmt: skip
    assert deployed_chart(world) == f"{chart}-1.2.3+build.5"

    # Records written before releases were signed are taken over explicitly (docs/trust.md).
    code, result, stderr = world.apply("--full", "--adopt", f"{world.namespace}/web")
    assert code == 1, stderr
    [action] = result["actions"]
    assert "1.2.3+build.5" in action["reason"]
    status = json.loads(world.cli("status", "-o", "json").stdout)
    [row] = [r for r in status["releases"] if r["release"] == "web"]
    assert row["deployed"] == "1.2.3+build.5"
    assert row["desired"] == "1.2.3"
    assert deployed_chart(world) == f"{chart}-1.2.3+build.5", "nothing else was installed"
