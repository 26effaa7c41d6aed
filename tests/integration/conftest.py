"""Fixtures for the engine and daemon tests: the test chart, and one world per test."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from engine_world import World, helm_spy
from envrepo import EnvRepo


@pytest.fixture(scope="session")
def app_chart(publish_chart: Any) -> str:
    """The repository holding the test chart `app` at the versions tests move between."""

    for version in ("0.1.0", "0.2.0"):
        ref = publish_chart("app", version)
    return str(ref).rsplit("/", 1)[0]


@pytest.fixture
def world(
    testbed: Any, namespace: str, git_repo: str, app_chart: str, helm_binary: str, tmp_path: Path
) -> World:
    spy, log = helm_spy(testbed.helm_binaries[helm_binary], tmp_path)
    repo = EnvRepo(git_repo, tmp_path / "repo", app_chart)
    # Installations are told apart by a release label; one per test keeps tests apart.
    installation = f"inst-{secrets.token_hex(4)}"
    return World(testbed, namespace, repo, spy, log, helm_binary, tmp_path, installation)
