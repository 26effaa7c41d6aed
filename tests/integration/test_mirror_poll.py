"""`reconciler mirror poll` against a local server that follows GitHub's Deployments API,
pushing to a real git smart-HTTP server."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from reconciler import trailers
from reconciler.gitclone import Clone, Remote
from reconciler.githubapi import Client
from reconciler.mirror.core import Mirror
from reconciler.mirror.ledger import Ledger
from reconciler.mirror.mapping import parse_mapping
from reconciler.mirror.poller import Poller
from reconciler.promote import Promoter
from tests.support.envrepo import (
    GitServer,
    Seed,
    commits,
    declared_ref,
    push_seed,
    read_remote,
    release_file,
    sha,
)
from tests.support.fakegithub import FakeGitHub

RECONCILER = str(Path(sys.executable).with_name("reconciler"))
LONG_AGO = "2000-01-01T00:00:00Z"
MAPPING = """\
apiVersion: reconciler/v1
kind: DeploymentMapping
repositories:
  acme/api:
    project: api
    environments:
      production: prod-eu
  acme/web:
    project: web
    unlistedEnvironments: reject
    environments:
      production: prod-eu
"""


@pytest.fixture(scope="module")
def git_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    server = GitServer.start(tmp_path_factory.mktemp("git-http"))
    yield server
    server.stop()


@pytest.fixture
def env_url(git_http: GitServer, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    url = git_http.create_repo(f"poll-{request.node.name}")
    seed = Seed(
        projects=("api", "web"),
        installations={"prod-eu": {"stage": "production"}},
        releases={"prod-eu": {"api": release_file("api", "api", sha(1))}},
    )
    push_seed(url, tmp_path, seed)
    return url


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub().start()
    fake.deployments["acme/web"] = []
    yield fake
    fake.stop()


@pytest.fixture
def files(tmp_path: Path, github: FakeGitHub) -> Path:
    (tmp_path / "mapping.yaml").write_text(MAPPING)
    (tmp_path / "github-token").write_text(github.token)
    return tmp_path


def poll(
    env_url: str, github: FakeGitHub, files: Path, *extra: str, state: str = "state.json"
) -> subprocess.CompletedProcess[str]:
    argv = [
        RECONCILER, "mirror", "poll", "--once", "--repo", env_url, "--api-url", github.url,
        "--github-token-file", str(files / "github-token"), "--mapping", str(files / "mapping.yaml"),
        "--state-file", str(files / state), "--log-format", "json", *extra,
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def mirrored_ids(env_url: str, tmp_path: Path) -> list[int]:
    found = []
    for _, message in commits(read_remote(env_url, tmp_path)):
        promotion = trailers.promotion_of(message)
        if promotion and promotion.deployment_id is not None:
            found.append(promotion.deployment_id)
    return found


def test_pages_are_followed_and_deployments_mirrored_oldest_first(
    env_url: str, github: FakeGitHub, files: Path, tmp_path: Path
) -> None:
    created = [github.add_deployment("acme/api", sha(10 + i), "production") for i in range(5)]

    done = poll(env_url, github, files, "--since", LONG_AGO, "--per-page", "2")

    assert done.returncode == 0, done.stderr
    listed = [r for r in github.requests if r.path == "/repos/acme/api/deployments"]
    assert [r.query.get("page", ["1"])[0] for r in listed] == ["1", "2", "3"]
    assert all(r.headers["authorization"] == f"Bearer {github.token}" for r in listed)
    assert mirrored_ids(env_url, tmp_path) == [d["id"] for d in created]
    assert declared_ref(read_remote(env_url, tmp_path), "prod-eu", "api") == sha(14)


def test_an_unchanged_list_is_a_free_304_and_a_restart_mirrors_nothing_twice(
    env_url: str, github: FakeGitHub, files: Path, tmp_path: Path
) -> None:
    github.add_deployment("acme/api", sha(20), "production")
    assert poll(env_url, github, files, "--since", LONG_AGO).returncode == 0
    history = commits(read_remote(env_url, tmp_path))
    counted = github.counted()

    again = poll(env_url, github, files)  # a new process: everything it knows is in the state file

    assert again.returncode == 0, again.stderr
    last = github.requests[-2:]
    assert [r.status for r in last] == [304, 304]  # acme/api and acme/web
    assert all(r.headers.get("if-none-match") for r in last)
    assert github.counted() == counted  # 304s cost no rate limit
    assert commits(read_remote(env_url, tmp_path)) == history


def test_only_new_deployments_are_mirrored_and_paging_stops_at_known_ones(
    env_url: str, github: FakeGitHub, files: Path, tmp_path: Path
) -> None:
    first = [github.add_deployment("acme/api", sha(30 + i), "production") for i in range(4)]
    assert poll(env_url, github, files, "--since", LONG_AGO, "--per-page", "2").returncode == 0
    newer = github.add_deployment("acme/api", sha(40), "production")
    github.requests.clear()

    done = poll(env_url, github, files, "--per-page", "2")

    assert done.returncode == 0, done.stderr
    listed = [r for r in github.requests if r.path == "/repos/acme/api/deployments"]
    assert len(listed) == 1  # page 1 already reaches a deployment handled before
    assert mirrored_ids(env_url, tmp_path) == [d["id"] for d in first] + [newer["id"]]


def test_without_state_only_deployments_from_the_first_run_on_are_mirrored(
    env_url: str, github: FakeGitHub, files: Path, tmp_path: Path
) -> None:
    github.add_deployment("acme/api", sha(50), "production", age=3600)

    done = poll(env_url, github, files)

    assert done.returncode == 0, done.stderr
    assert mirrored_ids(env_url, tmp_path) == []
    assert json.loads((files / "state.json").read_text())["repositories"]["acme/api"]["since"]
    fresh = github.add_deployment("acme/api", sha(51), "production", age=-5)
    assert poll(env_url, github, files).returncode == 0
    assert mirrored_ids(env_url, tmp_path) == [fresh["id"]]


def test_a_deployment_that_cannot_be_mapped_is_skipped_not_retried(
    env_url: str, github: FakeGitHub, files: Path, tmp_path: Path
) -> None:
    bad = github.add_deployment("acme/web", sha(60), "staging")
    good = github.add_deployment("acme/api", sha(61), "production")

    done = poll(env_url, github, files, "--since", LONG_AGO)

    assert done.returncode == 0, done.stderr
    assert "environment 'staging' is not in the mapping for acme/web" in done.stderr
    assert mirrored_ids(env_url, tmp_path) == [good["id"]]
    assert (
        bad["id"]
        in json.loads((files / "state.json").read_text())["repositories"]["acme/web"]["mirrored"]
    )


def test_bad_credentials_fail_the_poll_with_a_clear_message(
    env_url: str, github: FakeGitHub, files: Path
) -> None:
    (files / "github-token").write_text("not-the-token")

    done = poll(env_url, github, files)

    assert done.returncode == 1
    assert "401 bad credentials" in done.stderr
    assert "not-the-token" not in done.stderr


def test_the_poller_waits_for_the_rate_limit_reset_between_pages(
    env_url: str, github: FakeGitHub, tmp_path: Path
) -> None:
    created = [github.add_deployment("acme/api", sha(70 + i), "production") for i in range(3)]
    github.remaining, github.reset_in = 1, 20
    slept: list[float] = []

    def sleep(seconds: float) -> None:  # time passes: the budget is back after the reset
        slept.append(seconds)
        github.refill()

    client = Client(github.url, github.token, sleep=sleep)
    clone = Clone(Remote(env_url), tmp_path / "clone", depth=None)
    mirror = Mirror(parse_mapping(yaml.safe_load(MAPPING)), Promoter(clone))
    ledger = Ledger(None)

    report = Poller(client, mirror, ledger, per_page=2, since=LONG_AGO).poll_once()

    assert report.failed == []
    assert len(slept) == 1
    assert 19 <= slept[0] <= 22
    assert report.mirrored == [d["id"] for d in created]
    assert mirrored_ids(env_url, tmp_path) == [d["id"] for d in created]


def test_the_poll_loop_keeps_polling_until_stopped(
    env_url: str, github: FakeGitHub, tmp_path: Path
) -> None:
    deployment = github.add_deployment("acme/api", sha(80), "production")
    client = Client(github.url, github.token)
    clone = Clone(Remote(env_url), tmp_path / "clone", depth=None)
    mirror = Mirror(parse_mapping(yaml.safe_load(MAPPING)), Promoter(clone))
    poller = Poller(client, mirror, Ledger(None), since=LONG_AGO)
    stop = threading.Event()
    loop = threading.Thread(target=poller.run, args=(0.05, stop))

    loop.start()
    deadline = time.monotonic() + 30
    while not any(r.status == 304 for r in github.requests) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    loop.join(timeout=10)

    assert not loop.is_alive()
    assert any(r.status == 304 for r in github.requests)
    assert mirrored_ids(env_url, tmp_path) == [deployment["id"]]


def test_since_without_a_time_zone_is_refused_at_the_flag(
    env_url: str, github: FakeGitHub, files: Path
) -> None:
    done = poll(env_url, github, files, "--since", "2024-05-01")

    assert done.returncode == 2
    assert "--since '2024-05-01': give a time zone, e.g. 2024-05-01T00:00:00Z" in done.stderr
    assert not (files / "state.json").exists(), "nothing bad is saved for the next start"


def test_a_state_file_holding_a_time_without_zone_still_polls(
    env_url: str, github: FakeGitHub, files: Path, tmp_path: Path
) -> None:
    state = {"version": 1, "deliveries": [], "repositories": {"acme/api": {"since": "2024-05-01"}}}
    (files / "state.json").write_text(json.dumps(state))
    fresh = github.add_deployment("acme/api", sha(61), "production")

    done = poll(env_url, github, files)

    assert done.returncode == 0, done.stderr
    assert mirrored_ids(env_url, tmp_path) == [fresh["id"]]
