"""`reconciler promote` against a real git smart-HTTP server, run as the CLI that CI runs."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler import trailers
from reconciler.errors import GitError
from reconciler.gitclone import Clone, PushResult, Remote
from reconciler.promote import Promoter, Request, RetryPolicy
from testbed.sshserver import write_keys
from tests.support.envrepo import (
    GitServer,
    Seed,
    commits,
    declared_ref,
    git,
    push_seed,
    read_remote,
    release_file,
    sha,
)

RECONCILER = str(Path(sys.executable).with_name("reconciler"))
CONCURRENT_PROJECTS = 20
CONCURRENT_REFS = 10


@pytest.fixture(scope="module")
def git_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    server = GitServer.start(tmp_path_factory.mktemp("git-http"))
    yield server
    server.stop()


def _seed() -> Seed:
    projects = ("api", "web", "worker", "x" * 60)
    return Seed(
        projects=projects,
        installations={
            "prod-eu": {"stage": "production", "provider": "aws"},
            "prod-us": {"stage": "production", "provider": "gcp"},
            "test-1": {"stage": "testing"},
            "test-2": {"stage": "testing"},
        },
        releases={
            "prod-eu": {"api": release_file("api", "api", sha(1), "api in prod-eu: team-a")},
            "prod-us": {"api": release_file("api", "api", sha(1))},
            "test-1": {"api": release_file("api", "api", sha(1))},
        },
    )


@pytest.fixture
def env_url(git_http: GitServer, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    url = git_http.create_repo(request.node.name.replace("[", "-").replace("]", ""))
    push_seed(url, tmp_path, _seed())
    return url


def promote(
    url: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RECONCILER, "promote", "--repo", url, *args],
        capture_output=True,
        text=True,
        env=os.environ | (env or {}),
        timeout=120,
        check=False,
    )


def test_promote_edits_in_place_commits_with_trailers_and_pushes(
    env_url: str, tmp_path: Path
) -> None:
    done = promote(
        env_url, "--project", "api", "--ref", sha(2), "-i", "prod-eu", "-i", "prod-us",
        "--deployment-id", "42", "--author", "CI Bot <ci@example.com>",
        env={"GITHUB_REPOSITORY": "acme/api"},
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert f"promoted api to {sha(2)[:12]} in prod-eu, prod-us" in done.stdout
    checkout = read_remote(env_url, tmp_path)
    _, message = commits(checkout)[-1]
    assert trailers.promotion_of(message) == trailers.Promotion(
        "api", sha(2), ("prod-eu", "prod-us"), 42, "acme/api"
    )
    assert git("log", "-1", "--format=%an <%ae>", cwd=checkout).strip() == "CI Bot <ci@example.com>"
    text = (checkout / "installations/prod-eu/releases/api.yaml").read_text()
    # Only the ref changed: the comments and values are as they were.
    assert text == release_file("api", "api", sha(2), "api in prod-eu: team-a")
    assert declared_ref(checkout, "test-1", "api") == sha(1)


def test_a_ref_already_declared_makes_no_commit(env_url: str, tmp_path: Path) -> None:
    before = commits(read_remote(env_url, tmp_path))

    done = promote(env_url, "--project", "api", "--ref", sha(1), "-i", "prod-eu", "-o", "json")

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "unchanged"
    assert commits(read_remote(env_url, tmp_path)) == before


def test_selector_reaches_matching_installations_and_creates_missing_releases(
    env_url: str, tmp_path: Path
) -> None:
    done = promote(
        env_url, "--project", "api", "--ref", sha(3), "--selector", "stage=testing", "-o", "json"
    )

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["installations"] == ["test-1", "test-2"]
    assert [(c["installation"], c["action"]) for c in result["changes"]] == [
        ("test-1", "updated"),
        ("test-2", "created"),
    ]
    checkout = read_remote(env_url, tmp_path)
    assert declared_ref(checkout, "test-2", "api") == sha(3)
    assert declared_ref(checkout, "prod-eu", "api") == sha(1)


def test_several_labels_must_all_match(env_url: str, tmp_path: Path) -> None:
    done = promote(env_url, "-p", "api", "-r", sha(4), "-l", "stage=production,provider=gcp")

    assert done.returncode == 0, done.stderr
    checkout = read_remote(env_url, tmp_path)
    assert declared_ref(checkout, "prod-us", "api") == sha(4)
    assert declared_ref(checkout, "prod-eu", "api") == sha(1)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["-p", "nope", "-i", "prod-eu"], "unknown project 'nope'"),
        (["-p", "api", "-i", "prod-eu", "-i", "mars"], "unknown installation(s): mars"),
        (["-p", "api", "-l", "stage=nothing"], "selector stage=nothing matches no installation"),
        (
            ["-p", "web", "-i", "prod-eu", "--no-create"],
            "installation prod-eu has no release of project web",
        ),
    ],
    ids=["unknown-project", "unknown-installation", "empty-selector", "no-create"],
)
def test_what_does_not_exist_is_exit_1_and_commits_nothing(
    env_url: str, tmp_path: Path, args: list[str], error: str
) -> None:
    before = commits(read_remote(env_url, tmp_path))

    done = promote(env_url, *args, "--ref", sha(5))

    assert done.returncode == 1
    assert error in done.stderr
    assert commits(read_remote(env_url, tmp_path)) == before


def test_an_invalid_result_is_never_pushed(env_url: str, tmp_path: Path) -> None:
    before = commits(read_remote(env_url, tmp_path))

    # A release named after this 60-character project breaks Helm's 53-character limit.
    done = promote(env_url, "-p", "x" * 60, "-r", sha(6), "-i", "prod-eu")

    assert done.returncode == 1
    assert "invalid environments repo" in done.stderr
    assert "installations/prod-eu/releases/" in done.stderr
    assert commits(read_remote(env_url, tmp_path)) == before


def test_usage_errors_are_exit_2(env_url: str) -> None:
    assert promote(env_url, "-p", "api", "-r", sha(1)).returncode == 2  # no target
    assert promote(env_url, "-p", "api", "-r", sha(1), "-i", "a", "-l", "x=y").returncode == 2


def test_a_private_repo_with_a_token_file_and_no_token_in_errors(
    git_http: GitServer, tmp_path: Path
) -> None:
    url = git_http.create_repo("private/envs")
    authed = url.replace("http://", f"http://x:{git_http.token}@")
    push_seed(authed, tmp_path, _seed())
    token_file = tmp_path / "token"
    token_file.write_text(git_http.token + "\n")

    done = promote(url, "-p", "api", "-r", sha(7), "-i", "prod-eu", "--token-file", str(token_file))
    assert done.returncode == 0, done.stderr

    token_file.write_text("wrong-token-123\n")
    denied = promote(
        url, "-p", "api", "-r", sha(8), "-i", "prod-eu", "--token-file", str(token_file)
    )
    assert denied.returncode == 1
    assert "git clone" in denied.stderr
    assert "wrong-token-123" not in denied.stderr + denied.stdout


def _run_concurrently(
    commands: list[list[str]],
) -> tuple[list[subprocess.CompletedProcess[str]], float]:
    start = time.monotonic()
    children = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for argv in commands
    ]
    results = []
    for argv, child in zip(commands, children, strict=True):
        out, err = child.communicate(timeout=180)
        results.append(subprocess.CompletedProcess(argv, child.returncode, out, err))
    return results, time.monotonic() - start


def test_concurrent_promoters_of_different_projects_all_land(
    git_http: GitServer, tmp_path: Path
) -> None:
    projects = tuple(f"svc-{i:02d}" for i in range(CONCURRENT_PROJECTS))
    url = git_http.create_repo("race-projects")
    seed = Seed(
        projects=projects,
        installations={"shared": {"stage": "production"}},
        releases={"shared": {p: release_file(p, p, sha(1)) for p in projects}},
    )
    push_seed(url, tmp_path, seed)
    base = len(commits(read_remote(url, tmp_path)))

    results, seconds = _run_concurrently(
        [
            [
                RECONCILER,
                "promote",
                "--repo",
                url,
                "-p",
                p,
                "-r",
                sha(100 + i),
                "-i",
                "shared",
                "-o",
                "json",
            ]
            for i, p in enumerate(projects)
        ]
    )

    assert [r.returncode for r in results] == [0] * CONCURRENT_PROJECTS, [r.stderr for r in results]
    outputs = [json.loads(r.stdout) for r in results]
    assert {o["status"] for o in outputs} == {"pushed"}
    checkout = read_remote(url, tmp_path)
    history = commits(checkout)
    landed = [trailers.promotion_of(m) for _, m in history[base:]]
    assert sorted(p.project for p in landed if p) == sorted(projects)
    assert len(history) == base + CONCURRENT_PROJECTS
    for i, project in enumerate(projects):
        assert declared_ref(checkout, "shared", project) == sha(100 + i)
    retried = sum(1 for o in outputs if o["attempts"] > 1)
    print(f"\n{CONCURRENT_PROJECTS} concurrent promoters: {seconds:.1f}s, {retried} needed retries")


def test_concurrent_promotions_of_one_project_keep_every_commit_in_push_order(
    git_http: GitServer, tmp_path: Path
) -> None:
    url = git_http.create_repo("race-refs")
    seed = Seed(
        projects=("api",),
        installations={"shared": {}},
        releases={"shared": {"api": release_file("api", "api", sha(1))}},
    )
    push_seed(url, tmp_path, seed)
    base = len(commits(read_remote(url, tmp_path)))
    refs = [sha(200 + i) for i in range(CONCURRENT_REFS)]

    results, seconds = _run_concurrently(
        [
            [RECONCILER, "promote", "--repo", url, "-p", "api", "-r", ref, "-i", "shared"]
            for ref in refs
        ]
    )

    assert [r.returncode for r in results] == [0] * CONCURRENT_REFS, [r.stderr for r in results]
    checkout = read_remote(url, tmp_path)
    history = commits(checkout)[base:]
    pushed = [trailers.promotion_of(m) for _, m in history]
    assert sorted(p.ref for p in pushed if p) == sorted(refs)
    # Linear history: each commit's parent is the one pushed before it, and each
    # commit's tree declares its own ref, so the log is the push order.
    previous = commits(checkout)[base - 1][0]
    for (commit, _), promotion in zip(history, pushed, strict=True):
        assert promotion
        assert git("rev-parse", f"{commit}^@", cwd=checkout).split() == [previous]
        shown = git("show", f"{commit}:installations/shared/releases/api.yaml", cwd=checkout)
        assert f"ref: {promotion.ref}" in shown
        previous = commit
    last = pushed[-1]
    assert last
    assert declared_ref(checkout, "shared", "api") == last.ref
    print(f"\n{CONCURRENT_REFS} concurrent promotions of one project: {seconds:.1f}s")


def test_a_push_refused_by_the_server_fails_at_once_with_its_reason(
    git_http: GitServer, env_url: str, tmp_path: Path
) -> None:
    bare = git_http.root / f"{env_url.rsplit('/', 1)[1]}"
    hook = bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'protected branch: use a pull request' >&2\nexit 1\n")
    hook.chmod(0o755)

    done = promote(env_url, "-p", "api", "-r", sha(9), "-i", "prod-eu")

    assert done.returncode == 1
    assert "git push" in done.stderr
    assert "pre-receive hook declined" in done.stderr


class AlwaysLosing(Clone):
    """A clone whose every push loses the race, as if other jobs always pushed first."""

    def push(self) -> tuple[PushResult, str]:
        return "rejected", "! HEAD:refs/heads/main [rejected] (fetch first)"


def test_lost_races_are_retried_with_backoff_then_reported(env_url: str, tmp_path: Path) -> None:
    slept: list[float] = []
    clone = AlwaysLosing(Remote(env_url), tmp_path / "clone")
    promoter = Promoter(clone, retry=RetryPolicy(attempts=4), sleep=slept.append, rng=lambda: 1.0)

    with pytest.raises(GitError, match="gave up after 4 attempts") as caught:
        promoter.promote(Request("api", sha(10), installations=("prod-eu",)))

    assert "nothing was force-pushed" in str(caught.value)
    assert len(slept) == 3
    policy = RetryPolicy()
    for attempt, waited in enumerate(slept, start=1):  # exponential, capped
        assert min(policy.cap_seconds, policy.base_seconds * 2 ** (attempt - 1)) <= waited
        assert waited <= policy.cap_seconds


def test_promote_pushes_over_ssh_with_a_deploy_key(
    git_server: Any, git_repo: str, tmp_path: Path
) -> None:
    # Seeded over the testbed's HTTP server, promoted over its SSH server: the same repo.
    push_seed(git_repo, tmp_path, _seed())
    ssh_url = git_server.git_ssh_url(git_repo.rsplit("/", 1)[1])
    key = git_server.ssh_key
    done = promote(
        ssh_url, "--project", "api", "--ref", sha(2), "-i", "prod-eu",
        "--ssh-key", str(key), "--known-hosts", str(git_server.known_hosts),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert declared_ref(read_remote(git_repo, tmp_path), "prod-eu", "api") == sha(2)
    assert key.read_text().splitlines()[1] not in done.stdout + done.stderr

    other = write_keys(tmp_path / "other").client_key
    refused = promote(
        ssh_url, "--project", "api", "--ref", sha(3), "-i", "prod-eu",
        "--ssh-key", str(other), "--known-hosts", str(git_server.known_hosts),
    )  # fmt: skip
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1, refused.stderr
    assert "Permission denied (publickey)" in refused.stderr
    assert other.read_text().splitlines()[1] not in refused.stdout + refused.stderr


def test_a_pinned_release_stays_while_the_others_move(git_http: GitServer, tmp_path: Path) -> None:
    url = git_http.create_repo("pinned-release")
    seed = _seed()
    pinned = release_file("api", "api", sha(1)) + "pinned: true  # until the fix lands\n"
    push_seed(
        url,
        tmp_path,
        dataclasses.replace(seed, releases={**seed.releases, "prod-us": {"api": pinned}}),
    )

    done = promote(
        url, "--project", "api", "--ref", sha(6), "--selector", "stage=production", "-o", "json"
    )

    assert done.returncode == 0, done.stderr
    changes = {c["installation"]: c["action"] for c in json.loads(done.stdout)["changes"]}
    assert changes == {"prod-eu": "updated", "prod-us": "pinned"}
    checkout = read_remote(url, tmp_path)
    assert declared_ref(checkout, "prod-eu", "api") == sha(6)
    assert declared_ref(checkout, "prod-us", "api") == sha(1)

    text = promote(url, "--project", "api", "--ref", sha(7), "-i", "prod-us")
    assert text.returncode == 0, text.stderr
    assert "nothing to commit" in text.stdout
    assert "pinned    prod-us" in text.stdout


def test_a_symlinked_release_file_is_refused_clearly(env_url: str, tmp_path: Path) -> None:
    checkout = read_remote(env_url, tmp_path / "linker")
    shared = checkout / "shared" / "api.yaml"
    shared.parent.mkdir()
    release = checkout / "installations/prod-eu/releases/api.yaml"
    shared.write_text(release.read_text())
    release.unlink()
    release.symlink_to("../../../shared/api.yaml")
    git("add", "-A", cwd=checkout)
    git("commit", "-qm", "share the release file", cwd=checkout)
    git("push", "-q", "origin", "HEAD:main", cwd=checkout)
    before = commits(read_remote(env_url, tmp_path / "before"))

    done = promote(env_url, "--project", "api", "--ref", sha(8), "-i", "prod-eu")

    assert done.returncode == 1
    assert "installations/prod-eu/releases/api.yaml" in done.stderr
    assert "symbolic link" in done.stderr
    assert commits(read_remote(env_url, tmp_path / "after")) == before
