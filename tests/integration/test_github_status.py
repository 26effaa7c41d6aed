"""Deployment statuses and the GitHub client, against a local server that follows GitHub's API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reconciler import trailers
from reconciler.github import GitHubConfig, post_deployment_status, report_deployment
from reconciler.githubapi import Client, GitHubError, RateLimited
from tests.support.fakegithub import FakeGitHub

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub().start()
    yield fake
    fake.stop()


def _message(deployment_id: int | None, repository: str | None = "acme/api") -> str:
    promotion = trailers.Promotion("api", SHA, ("prod-eu",), deployment_id, repository)
    return trailers.commit_message(promotion, ["installations/prod-eu/releases/api.yaml"])


def test_report_posts_the_status_with_a_bearer_token(github: FakeGitHub) -> None:
    deployment = github.add_deployment("acme/api", SHA, "prod-eu")
    config = GitHubConfig(github.token, github.url)

    posted = report_deployment(
        _message(deployment["id"]), "success", "converged api", config,
        installation="prod-eu", environment_url="https://prod-eu.example",
    )  # fmt: skip

    assert posted
    (request,) = github.requests
    assert request.method == "POST"
    assert request.path == f"/repos/acme/api/deployments/{deployment['id']}/statuses"
    assert request.headers["authorization"] == f"Bearer {github.token}"
    assert request.headers["accept"] == "application/vnd.github+json"
    assert request.headers["x-github-api-version"] == "2022-11-28"
    assert request.headers["user-agent"].startswith("reconciler/")
    assert request.body == {
        "state": "success",
        "description": "converged api",
        "environment_url": "https://prod-eu.example",
    }
    assert github.statuses[deployment["id"]][0]["state"] == "success"


def test_in_progress_and_failure_and_long_descriptions(github: FakeGitHub) -> None:
    deployment = github.add_deployment("acme/api", SHA, "prod-eu")
    config = GitHubConfig(github.token, github.url)

    assert report_deployment(_message(deployment["id"]), "in_progress", "upgrading", config)
    assert report_deployment(_message(deployment["id"]), "failure", "x" * 500, config)

    states = [s["state"] for s in github.statuses[deployment["id"]]]
    assert states == ["in_progress", "failure"]
    assert len(github.statuses[deployment["id"]][1]["description"]) == 140


def test_nothing_is_sent_without_a_token_or_a_deployment(github: FakeGitHub) -> None:
    config = GitHubConfig(github.token, github.url)

    assert not report_deployment(_message(7), "success", "ok", None)
    assert not report_deployment(_message(None), "success", "ok", config)
    assert not report_deployment("fix typo", "success", "ok", config)
    assert not report_deployment(_message(7), "success", "ok", config, installation="prod-us")
    assert github.requests == []


def test_repository_from_the_config_when_the_commit_names_none(github: FakeGitHub) -> None:
    deployment = github.add_deployment("acme/api-service", SHA, "prod-eu")
    config = GitHubConfig(github.token, github.url, repositories={"api": "acme/api-service"})

    assert report_deployment(_message(deployment["id"], None), "success", "ok", config)
    assert github.requests[0].path.startswith("/repos/acme/api-service/deployments/")


def test_failures_are_logged_not_raised_by_report(github: FakeGitHub) -> None:
    config = GitHubConfig(github.token, github.url)

    assert not report_deployment(_message(999_999), "success", "ok", config)


def test_errors_are_mapped_and_never_show_the_token(github: FakeGitHub) -> None:
    deployment = github.add_deployment("acme/api", SHA, "prod-eu")

    with pytest.raises(GitHubError) as unknown:
        post_deployment_status(
            GitHubConfig(github.token, github.url), "acme/api", 5, "success", "x"
        )
    assert unknown.value.status == 404
    assert "not found" in str(unknown.value)

    with pytest.raises(GitHubError) as denied:
        post_deployment_status(
            GitHubConfig("wrong-token", github.url), "acme/api", deployment["id"], "success", "x"
        )
    assert denied.value.status == 401
    assert "bad credentials" in str(denied.value)
    assert "wrong-token" not in str(denied.value)

    with pytest.raises(ValueError, match="state must be one of"):
        post_deployment_status(GitHubConfig(github.token, github.url), "acme/api", 1, "done", "x")  # type: ignore[arg-type]


def test_config_from_the_environment(tmp_path: pytest.TempPathFactory, github: FakeGitHub) -> None:
    token_file = tmp_path / "token"  # type: ignore[operator]
    token_file.write_text(github.token + "\n")

    config = GitHubConfig.from_env(
        {"RECONCILER_GITHUB_TOKEN_FILE": str(token_file), "RECONCILER_GITHUB_API_URL": github.url}
    )

    assert config == GitHubConfig(github.token, github.url)
    assert GitHubConfig.from_env({}) is None


class FakeTime:
    """A clock the client sleeps on; sleeping refills the server's budget as time would."""

    def __init__(self, github: FakeGitHub) -> None:
        self.github = github
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.github.refill()


def test_client_waits_for_the_rate_limit_reset(github: FakeGitHub) -> None:
    github.add_deployment("acme/api", SHA, "prod-eu")
    github.remaining, github.reset_in = 1, 30
    fake_time = FakeTime(github)
    client = Client(github.url, github.token, sleep=fake_time.sleep, max_wait=120)

    first = client.get("/repos/acme/api/deployments")  # spends the last request
    second = client.get("/repos/acme/api/deployments")  # must wait for the reset first

    assert first.status == second.status == 200
    assert len(fake_time.slept) == 1
    assert 29 <= fake_time.slept[0] <= 32
    assert [r.status for r in github.requests] == [200, 200]


def test_client_honours_a_403_rate_limit_and_retry_after(github: FakeGitHub) -> None:
    github.add_deployment("acme/api", SHA, "prod-eu")
    fake_time = FakeTime(github)
    client = Client(github.url, github.token, sleep=fake_time.sleep, max_wait=120)

    github.remaining, github.reset_in = 0, 10
    assert client.get("/repos/acme/api/deployments").status == 200
    github.retry_after_once = 7
    assert client.get("/repos/acme/api/deployments").status == 200

    assert [r.status for r in github.requests] == [403, 200, 429, 200]
    assert 9 <= fake_time.slept[0] <= 12
    assert fake_time.slept[1] == 7


def test_client_gives_up_on_waits_beyond_its_bound(github: FakeGitHub) -> None:
    github.remaining, github.reset_in = 0, 3600
    client = Client(github.url, github.token, sleep=lambda s: None, max_wait=60)

    with pytest.raises(RateLimited) as caught:
        client.get("/repos/acme/api/deployments")
    assert caught.value.wait > 3000


def test_client_never_follows_links_to_another_origin(github: FakeGitHub) -> None:
    client = Client(github.url, github.token)

    with pytest.raises(GitHubError, match="refusing to follow"):
        client.get("https://evil.example/repos/acme/api/deployments?page=2")
