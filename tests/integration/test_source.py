"""The git source against the testbed's smart-HTTP server: tokens, scrubbing, cheap polls."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from envrepo import EnvRepo, git

from reconciler.errors import GitError
from reconciler.source import Credentials, GitSource


@pytest.fixture
def private_repo(
    git_server: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> tuple[str, EnvRepo]:
    name = f"private-{request.node.name[:30]}".replace("[", "-").replace("]", "")
    git_server.create_git_repo(name, private=True)
    writer = EnvRepo(
        git_server.git_url(name, private=True, with_token=True), tmp_path / "writer", "oci://x/c"
    )
    writer.write("projects/.keep", "")
    writer.commit("first")
    return git_server.git_url(name, private=True), writer


def test_a_token_opens_a_private_repo_and_never_shows_up(
    private_repo: tuple[str, EnvRepo], git_server: Any, tmp_path: Path
) -> None:
    url, writer = private_repo
    token = git_server.git_token
    source = GitSource(url, workdir=tmp_path / "clone", credentials=Credentials(token=token))
    head = source.head()
    revision, root = source.sync()
    assert revision == head == git(writer.root, "rev-parse", "HEAD")
    assert (root / "projects" / ".keep").exists()
    config = (root / ".git" / "config").read_text()
    assert token not in config, "the token is not stored in the clone"

    wrong = GitSource(
        url, workdir=tmp_path / "other", credentials=Credentials(token="wrong-" + token)
    )
    with pytest.raises(GitError) as refused:
        wrong.head()
    assert "wrong-" not in str(refused.value)
    assert token not in str(refused.value)
    embedded = GitSource(
        git_server.git_url(url.rsplit("/", 1)[1], private=True, with_token=True).replace(
            token, "secret-in-url"
        )
    )
    with pytest.raises(GitError) as failed:
        embedded.head()
    assert "secret-in-url" not in str(failed.value)


def test_polls_fetch_only_when_the_head_moved(
    private_repo: tuple[str, EnvRepo], git_server: Any, tmp_path: Path
) -> None:
    url, writer = private_repo
    source = GitSource(
        url, workdir=tmp_path / "clone", credentials=Credentials(token=git_server.git_token)
    )
    first, _ = source.sync()
    assert source.fetches == 1
    for _ in range(3):
        assert source.head() == first
    assert source.fetches == 1, "a head check transfers no objects"
    writer.write("projects/.keep", "moved\n")
    moved = writer.commit("second")
    assert source.head() == moved
    revision, root = source.sync()
    assert revision == moved
    assert (root / "projects" / ".keep").read_text() == "moved\n"
    depth = subprocess.run(
        ["git", "rev-list", "--count", "HEAD"], cwd=root, capture_output=True, text=True, check=True
    )
    assert depth.stdout.strip() == "1", "the clone stays shallow"
