"""The git source against the testbed's git servers: tokens over smart HTTP, keys over SSH,
scrubbing, cheap polls, and the CLI's credential flags."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from engine_world import World
from envrepo import EnvRepo, git

from reconciler.errors import GitError
from reconciler.source import Credentials, GitSource
from testbed.sshserver import known_hosts_line, write_keys


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


# ----- SSH: the testbed's SSH git server serves the same repositories as its HTTP one --------


@pytest.fixture
def ssh_repo(git_server: Any, git_repo: str, tmp_path: Path) -> tuple[str, EnvRepo]:
    """The ssh:// URL of a repo, and a writer that pushes to it over HTTP."""
    writer = EnvRepo(git_repo, tmp_path / "writer", "oci://x/c")
    writer.write("projects/.keep", "")
    writer.commit("first")
    return git_server.git_ssh_url(git_repo.rsplit("/", 1)[1]), writer


def ssh_credentials(
    git_server: Any, key: Path | None = None, known_hosts: Path | None = None
) -> Credentials:
    return Credentials(
        ssh_key=str(key or git_server.ssh_key),
        known_hosts=str(known_hosts or git_server.known_hosts),
    )


def assert_key_not_in(text: str, key: Path) -> None:
    assert "PRIVATE KEY" not in text
    for line in key.read_text().splitlines():
        if "PRIVATE KEY" not in line:
            assert line not in text


def assert_one_clean_line(message: str, key: Path) -> None:
    """A message fit for a log line: one line, and nothing of the private key in it."""
    assert len(message.splitlines()) == 1, message
    assert_key_not_in(message, key)


def test_an_ssh_key_clones_and_fetches_a_repo_pushed_over_http(
    ssh_repo: tuple[str, EnvRepo], git_server: Any, tmp_path: Path
) -> None:
    url, writer = ssh_repo
    source = GitSource(url, workdir=tmp_path / "clone", credentials=ssh_credentials(git_server))
    first = git(writer.root, "rev-parse", "HEAD")
    assert source.head() == first
    revision, root = source.sync()
    assert revision == first
    assert (root / "projects" / ".keep").exists()

    writer.write("projects/.keep", "moved\n")
    moved = writer.commit("second")
    assert source.head() == moved
    revision, root = source.sync()
    assert (revision, source.fetches) == (moved, 2)
    assert (root / "projects" / ".keep").read_text() == "moved\n"
    assert source.messages_since(first, moved) == ["second"], "deepening works over SSH too"
    assert str(git_server.ssh_key) not in (root / ".git" / "config").read_text()


def test_a_wrong_ssh_key_is_refused_in_one_line_that_does_not_show_the_key(
    ssh_repo: tuple[str, EnvRepo], git_server: Any, tmp_path: Path
) -> None:
    url, _ = ssh_repo
    wrong = write_keys(tmp_path / "wrong").client_key
    source = GitSource(
        url, workdir=tmp_path / "clone", credentials=ssh_credentials(git_server, key=wrong)
    )
    for attempt in (source.head, source.sync):
        with pytest.raises(GitError) as refused:
            attempt()
        message = str(refused.value)
        assert "Permission denied (publickey)" in message
        assert_one_clean_line(message, wrong)


@pytest.mark.parametrize("known", ["empty", "another host's key"])
def test_an_unknown_host_key_is_refused_not_learned(
    ssh_repo: tuple[str, EnvRepo], git_server: Any, tmp_path: Path, known: str
) -> None:
    url, _ = ssh_repo
    known_hosts = tmp_path / "known_hosts"
    impostor = write_keys(tmp_path / "impostor").host_public_key
    known_hosts.write_text(
        "" if known == "empty" else known_hosts_line(impostor, git_server.ssh_port)
    )
    before = known_hosts.read_text()
    source = GitSource(
        url, workdir=tmp_path / "clone", credentials=ssh_credentials(git_server, None, known_hosts)
    )
    with pytest.raises(GitError) as refused:
        source.head()
    message = str(refused.value)
    assert "Host key verification failed" in message
    assert_one_clean_line(message, git_server.ssh_key)
    assert known_hosts.read_text() == before, "strict checking adds nothing to known_hosts"


def test_key_and_known_hosts_paths_may_hold_spaces_and_quotes(
    ssh_repo: tuple[str, EnvRepo], git_server: Any, tmp_path: Path
) -> None:
    # git runs GIT_SSH_COMMAND through a shell: the paths must reach ssh as one word each.
    folder = tmp_path / "Application Support" / '100% "it\'s" here'
    folder.mkdir(parents=True)
    key, known_hosts = folder / "deploy key", folder / "known hosts"
    shutil.copy(git_server.ssh_key, key)
    shutil.copy(git_server.known_hosts, known_hosts)
    url, writer = ssh_repo
    source = GitSource(
        url, workdir=tmp_path / "clone", credentials=ssh_credentials(git_server, key, known_hosts)
    )
    assert source.sync()[0] == git(writer.root, "rev-parse", "HEAD")


def test_ssh_never_prompts_for_a_passphrase(
    ssh_repo: tuple[str, EnvRepo],
    git_server: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The accepted key, but locked with a passphrase that an askpass helper would give.
    locked = tmp_path / "locked_key"
    shutil.copy(git_server.ssh_key, locked)
    subprocess.run(
        ["ssh-keygen", "-q", "-p", "-P", "", "-N", "open", "-f", str(locked)],
        check=True,
        capture_output=True,
    )
    asked = tmp_path / "asked"
    askpass = tmp_path / "askpass"
    askpass.write_text(f"#!/bin/sh\ntouch '{asked}'\necho open\n")
    askpass.chmod(0o755)
    # As a terminal would: ssh asks whenever it can, here even without one.
    monkeypatch.setenv("SSH_ASKPASS", str(askpass))
    monkeypatch.setenv("SSH_ASKPASS_REQUIRE", "force")
    url, _ = ssh_repo
    source = GitSource(url, credentials=ssh_credentials(git_server, key=locked))
    with pytest.raises(GitError) as refused:
        source.head()
    assert not asked.exists(), "ssh asked for the passphrase: a daemon would hang there"
    assert "Permission denied (publickey)" in str(refused.value)


def test_relative_key_and_known_hosts_paths_hold_for_the_fetch_in_the_checkout(
    ssh_repo: tuple[str, EnvRepo],
    git_server: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # git runs ssh in the checkout for a fetch, and in our working directory for a clone.
    shutil.copy(git_server.ssh_key, tmp_path / "deploy_key")
    shutil.copy(git_server.known_hosts, tmp_path / "known_hosts")
    monkeypatch.chdir(tmp_path)
    url, writer = ssh_repo
    credentials = Credentials(ssh_key="deploy_key", known_hosts="known_hosts")
    source = GitSource(url, workdir=tmp_path / "clone", credentials=credentials)
    source.sync()
    moved = writer.commit("second")
    assert source.sync()[0] == moved


# ----- the CLI with an SSH key ----------------------------------------------------------


def ssh_cli(world: World, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        world.cli_argv(*args),
        env=world.env() | env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=world.workdir,
        check=False,
    )


def one_release(world: World) -> None:
    world.repo.project("alpha", world.namespace)
    world.repo.release(world.installation, "alpha", version="0.1.0")
    world.repo.installation(world.installation)
    world.repo.commit("one release")


def test_plan_and_apply_read_the_repo_over_ssh_from_env_or_flags(
    world: World, git_server: Any
) -> None:
    one_release(world)
    url = git_server.git_ssh_url(world.repo.url.rsplit("/", 1)[1])
    key, known_hosts = str(git_server.ssh_key), str(git_server.known_hosts)

    planned = ssh_cli(
        world, "plan", "-o", "json",
        RECONCILER_REPO=url, RECONCILER_GIT_SSH_KEY=key, RECONCILER_GIT_KNOWN_HOSTS=known_hosts,
    )  # fmt: skip
    assert planned.returncode == 2, planned.stderr
    actions = json.loads(planned.stdout)["actions"]
    assert [(a["release"], a["action"]) for a in actions] == [("alpha", "install")]

    applied = ssh_cli(
        world, "apply", "-o", "json", "--repo", url, "--ssh-key", key, "--known-hosts", known_hosts
    )
    assert applied.returncode == 0, applied.stderr
    assert world.releases() == {"alpha": "deployed"}
    for done in (planned, applied):
        assert_key_not_in(done.stdout + done.stderr, git_server.ssh_key)


@pytest.mark.parametrize(
    ("case", "exit_code", "says"),
    [
        ("another key", 1, "Permission denied (publickey)"),
        ("an empty known_hosts", 1, "Host key verification failed"),
        ("no key file", 2, "--ssh-key"),
        ("no known_hosts file", 2, "--known-hosts"),
        ("the key itself instead of its file", 2, "--ssh-key"),
    ],
)
def test_the_cli_refuses_bad_ssh_credentials_in_one_line_without_the_key(
    world: World, git_server: Any, case: str, exit_code: int, says: str
) -> None:
    one_release(world)
    key, known_hosts = git_server.ssh_key, git_server.known_hosts
    if case == "another key":
        key = write_keys(world.workdir / "other").client_key
    elif case == "an empty known_hosts":
        known_hosts = world.workdir / "empty_known_hosts"
        known_hosts.write_text("")
    elif case == "no key file":
        key = world.workdir / "missing_key"
    elif case == "no known_hosts file":
        known_hosts = world.workdir / "missing_known_hosts"
    env = {
        "RECONCILER_REPO": git_server.git_ssh_url(world.repo.url.rsplit("/", 1)[1]),
        "RECONCILER_GIT_SSH_KEY": str(key),
        "RECONCILER_GIT_KNOWN_HOSTS": str(known_hosts),
    }
    if case == "the key itself instead of its file":
        env["RECONCILER_GIT_SSH_KEY"] = key.read_text()
    done = ssh_cli(world, "plan", **env)
    assert done.returncode == exit_code, done.stderr
    assert "Traceback" not in done.stderr
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("error: ")
    assert says in error
    assert_key_not_in(done.stdout + done.stderr, key if key.exists() else git_server.ssh_key)


def test_credentials_in_the_repo_url_stay_out_of_every_command_line(
    private_repo: tuple[str, EnvRepo],
    git_server: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """user:password@ in the URL reaches git through its environment, never its argv."""

    import os
    import sys

    from reconciler.gitclone import Clone, Remote

    url, writer = private_repo
    token = git_server.git_token
    with_secret = git_server.git_url(url.rsplit("/", 1)[1], private=True, with_token=True)
    assert token in with_secret
    spy_dir = tmp_path / "spy"
    spy_dir.mkdir()
    calls = tmp_path / "git-argv.log"
    real_git = shutil.which("git")
    (spy_dir / "git").write_text(f'#!/bin/sh\necho "$*" >> "{calls}"\nexec "{real_git}" "$@"\n')
    (spy_dir / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{spy_dir}{os.pathsep}{os.environ['PATH']}")

    source = GitSource(with_secret, workdir=tmp_path / "clone")
    revision, _ = source.sync()
    assert revision == source.head() == git(writer.root, "rev-parse", "HEAD")
    clone = Clone(Remote(with_secret), tmp_path / "push-clone", depth=None)
    assert clone.sync() == revision
    logged = calls.read_text()
    assert "clone" in logged
    assert "ls-remote" in logged
    assert token not in logged, "git's command line shows the password"

    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "promote", "--repo", with_secret,
         "-p", "api", "-r", "a" * 40, "-i", "prod"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--token-file" in done.stderr
    assert token not in done.stderr
