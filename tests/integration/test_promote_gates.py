"""Promotion gates: `reconciler promote --after / --wave-size` against a real git server and
the local GitHub-shaped server, with statuses posted by the reconciler's own reporter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler import trailers
from reconciler.deployments import DeploymentReporter
from reconciler.github import GitHubConfig
from reconciler.health import ReleaseHealth
from reconciler.loader import load_environments
from reconciler.plan import Hold, Plan
from reconciler.reconcile import PassResult
from tests.support.envrepo import (
    GitServer,
    Seed,
    declared_ref,
    push_seed,
    read_remote,
    release_file,
    sha,
)
from tests.support.fakegithub import FakeGitHub

RECONCILER = str(Path(sys.executable).with_name("reconciler"))
REPO = "acme/api"
REF = sha(7)
TESTING = ("test-1", "test-2")
PRODUCTION = ("prod-1", "prod-2", "prod-3", "prod-4", "prod-5")
EXIT_WAITING, EXIT_FAILED = 3, 4
HEALTHY = ReleaseHealth("Healthy")


@pytest.fixture(scope="module")
def git_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    server = GitServer.start(tmp_path_factory.mktemp("git-http"))
    yield server
    server.stop()


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub().start()
    yield fake
    fake.stop()


@pytest.fixture
def env_url(git_http: GitServer, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    installations = {name: {"stage": "testing"} for name in TESTING}
    installations |= {name: {"stage": "production"} for name in PRODUCTION}
    releases = {name: {"api": release_file("api", "api", sha(1))} for name in installations}
    url = git_http.create_repo(request.node.name.replace("[", "-").replace("]", ""))
    push_seed(url, tmp_path, Seed(("api",), installations, releases))
    return url


class Fleet:
    """The reconcilers of the seed's installations, as far as GitHub sees them: each posts
    through the real DeploymentReporter, on the Deployment its promotion commit names."""

    def __init__(self, github: FakeGitHub, url: str, workdir: Path) -> None:
        self.github = github
        self.url = url
        self.workdir = workdir
        self.config = GitHubConfig(github.token, api_url=github.url)
        self.deployment = github.add_deployment(REPO, REF, "testing")["id"]

    def report(self, installation: str, state: str, health: ReleaseHealth | None = HEALTHY) -> None:
        promotion = trailers.Promotion("api", REF, (installation,), self.deployment, REPO)
        message = trailers.commit_message(promotion, [])
        reporter = DeploymentReporter(installation, self.config)
        reporter.track([message])  # posts in_progress
        if state == "in_progress":
            return
        env = load_environments(read_remote(self.url, self.workdir, f"env-{installation}"))
        key = ("api", "api")
        held = (Hold("api", "api", "retries spent", gave_up=True),) if state == "failure" else ()
        in_sync = (key,) if state == "success" else ()
        the_plan = Plan(installation, REF, (), held=held, in_sync=in_sync)
        readings = {key: health} if health else {}
        reporter.settle(env, PassResult(the_plan, (), readings))


@pytest.fixture
def fleet(github: FakeGitHub, env_url: str, tmp_path: Path) -> Fleet:
    return Fleet(github, env_url, tmp_path)


def gated(fleet: Fleet, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    token_file = fleet.workdir / "gh-token"
    token_file.write_text(token or fleet.github.token)
    return subprocess.run(
        [
            RECONCILER, "promote", "--repo", fleet.url, "--project", "api", "--ref", REF,
            "--github-repo", REPO, "--github-token-file", str(token_file),
            "--github-api-url", fleet.github.url, *args,
        ],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "GITHUB_"))},
        timeout=120,
        check=False,
    )  # fmt: skip


def declared(fleet: Fleet, names: tuple[str, ...]) -> list[str]:
    checkout = read_remote(fleet.url, fleet.workdir)
    return [name for name in names if declared_ref(checkout, name, "api") == REF]


def test_all_after_installations_healthy_promotes(fleet: Fleet) -> None:
    for name in TESTING:
        fleet.report(name, "success")
    done = gated(fleet, "--selector", "stage=production", "--after", "stage=testing")
    assert done.returncode == 0, done.stderr
    assert declared(fleet, PRODUCTION) == list(PRODUCTION)


@pytest.mark.parametrize(
    ("states", "code", "listed"),
    [
        ({"test-1": "success", "test-2": "failure"}, EXIT_FAILED, "failed       test-2"),
        ({"test-1": "success", "test-2": "in_progress"}, EXIT_WAITING, "in progress  test-2"),
        ({"test-2": "success"}, EXIT_WAITING, "missing      test-1"),
        ({"test-1": "failure", "test-2": "in_progress"}, EXIT_FAILED, "in progress  test-2"),
    ],
    ids=["one-failed", "one-in-progress", "one-silent", "failed-and-in-progress"],
)
def test_an_after_installation_not_healthy_refuses_with_the_list(
    fleet: Fleet, states: dict[str, str], code: int, listed: str
) -> None:
    for name, state in states.items():
        fleet.report(name, state)
    done = gated(fleet, "--selector", "stage=production", "--after", "stage=testing")
    assert done.returncode == code, done.stderr
    assert listed in done.stderr
    assert "--after has not reported api" in done.stderr
    assert declared(fleet, PRODUCTION) == [], "nothing was promoted"


def test_the_refusal_in_json_names_every_installation(fleet: Fleet) -> None:
    fleet.report("test-1", "failure")
    done = gated(fleet, "-l", "stage=production", "--after", "stage=testing", "-o", "json")
    assert done.returncode == EXIT_FAILED
    document = json.loads(done.stdout)
    assert document["status"] == "failed"
    assert document["installations"] == {
        "healthy": [], "failed": ["test-1"], "in_progress": [], "missing": ["test-2"]
    }  # fmt: skip


def test_in_sync_without_a_health_reading_stays_in_progress(fleet: Fleet) -> None:
    """A release whose record could not be read, or whose last action was a rollback or an
    unlock, has no health reading: in sync is not yet converged."""

    fleet.report("test-1", "success", health=None)
    fleet.report("test-2", "success", health=ReleaseHealth("Progressing"))
    statuses = fleet.github.statuses[fleet.deployment]
    assert [s["state"] for s in statuses] == ["in_progress", "in_progress"]
    fleet.report("test-1", "success")
    assert fleet.github.statuses[fleet.deployment][-1]["state"] == "success"


def test_a_newer_status_replaces_an_older_one(fleet: Fleet) -> None:
    fleet.report("test-1", "failure")
    fleet.report("test-1", "success")  # a retry that converged
    fleet.report("test-2", "success")
    done = gated(fleet, "-l", "stage=production", "--after", "stage=testing")
    assert done.returncode == 0, done.stderr


def test_a_selector_matching_nothing_is_no_open_gate(fleet: Fleet) -> None:
    done = gated(fleet, "-l", "stage=production", "--after", "stage=tesitng")
    assert done.returncode == 1
    assert "--after stage=tesitng matches no installation" in done.stderr
    assert declared(fleet, PRODUCTION) == []


def test_a_bad_token_is_an_error_without_the_token(fleet: Fleet) -> None:
    done = gated(fleet, "-l", "stage=production", "--after", "stage=testing", token="ghp_wrong")
    assert done.returncode == 1
    assert "bad credentials" in done.stderr
    assert "ghp_wrong" not in done.stderr + done.stdout


def test_waves_advance_only_on_health(fleet: Fleet) -> None:
    for name in TESTING:
        fleet.report(name, "success")
    args = ("-l", "stage=production", "--after", "stage=testing", "--wave-size", "2")

    first = gated(fleet, *args)
    assert first.returncode == 0, first.stderr
    assert "wave 1 of 3" in first.stdout
    assert declared(fleet, PRODUCTION) == ["prod-1", "prod-2"]

    waiting = gated(fleet, *args)
    assert waiting.returncode == EXIT_WAITING
    assert "missing      prod-1, prod-2" in waiting.stderr
    fleet.report("prod-1", "success")
    fleet.report("prod-2", "in_progress")
    still = gated(fleet, *args)
    assert still.returncode == EXIT_WAITING
    assert "in progress  prod-2" in still.stderr
    assert declared(fleet, PRODUCTION) == ["prod-1", "prod-2"]

    fleet.report("prod-2", "success")
    second = gated(fleet, *args)
    assert second.returncode == 0, second.stderr
    assert declared(fleet, PRODUCTION) == ["prod-1", "prod-2", "prod-3", "prod-4"]

    fleet.report("prod-3", "success")
    fleet.report("prod-4", "failure")
    refused = gated(fleet, *args)
    assert refused.returncode == EXIT_FAILED
    assert "failed       prod-4" in refused.stderr
    assert declared(fleet, PRODUCTION) == ["prod-1", "prod-2", "prod-3", "prod-4"]

    fleet.report("prod-4", "success")
    last = gated(fleet, *args)
    assert last.returncode == 0, last.stderr
    assert declared(fleet, PRODUCTION) == list(PRODUCTION)
    done = gated(fleet, *args)
    assert done.returncode == 0
    assert "every wave is declared" in done.stdout
