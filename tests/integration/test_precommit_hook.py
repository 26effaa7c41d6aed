"""The reconciler-validate hook through the real pre-commit tool, in a real git repo.

pre-commit builds the hook's environment by pip-installing a clone of this repository
(from PyPI for the dependencies), exactly as it would for an environments repo.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.envfiles import GIT_ENV, RELEASES, REPO_ROOT, SHA, EnvTree, git

API = "installations/prod-eu/releases/api.yaml"


@pytest.fixture(scope="module")
def hook_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A clone of this repository at its committed HEAD, as users would reference it."""

    clone = tmp_path_factory.mktemp("hook") / "reconciler"
    git(REPO_ROOT.parent, "clone", "--quiet", "--no-hardlinks", str(REPO_ROOT), str(clone))
    return clone, git(clone, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def pre_commit_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pre-commit-home")


@pytest.fixture
def env_repo(tmp_path: Path, hook_repo: tuple[Path, str]) -> EnvTree:
    tree = EnvTree.create(tmp_path / "env")
    path, rev = hook_repo
    tree.write(
        ".pre-commit-config.yaml",
        f"repos:\n  - repo: {path}\n    rev: {rev}\n    hooks:\n      - id: reconciler-validate\n",
    )
    tree.commit("use the reconciler-validate hook")
    return tree


def pre_commit(cwd: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", *args],
        cwd=cwd,
        env={**os.environ, **GIT_ENV, "PRE_COMMIT_HOME": str(home)},
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )


def test_a_valid_repo_passes(env_repo: EnvTree, pre_commit_home: Path) -> None:
    done = pre_commit(env_repo.root, pre_commit_home, "run", "--all-files")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "reconciler validate" in done.stdout
    assert "Passed" in done.stdout


def test_a_bad_file_makes_the_commit_fail(env_repo: EnvTree, pre_commit_home: Path) -> None:
    installed = pre_commit(env_repo.root, pre_commit_home, "install")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    before = git(env_repo.root, "rev-parse", "HEAD")
    env_repo.write(API, RELEASES["api"].replace(f"ref: {SHA}", "ref: abc"))
    git(env_repo.root, "add", API)
    done = subprocess.run(
        ["git", "commit", "-m", "promote api to abc"],
        cwd=env_repo.root,
        env={**os.environ, **GIT_ENV, "PRE_COMMIT_HOME": str(pre_commit_home)},
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "Failed" in output
    assert f'{API}:5: ref: "abc" is not a 40-character commit SHA' in output
    assert git(env_repo.root, "rev-parse", "HEAD") == before


def test_files_outside_the_environment_do_not_trigger_it(
    env_repo: EnvTree, pre_commit_home: Path
) -> None:
    env_repo.write("README.md", "# environments\n")
    git(env_repo.root, "add", "README.md")
    done = pre_commit(env_repo.root, pre_commit_home, "run")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "(no files to check)Skipped" in done.stdout
