"""`reconciler fleet`: the CLI on a real git repository with history, and the local
GitHub-shaped server holding the statuses reconcilers posted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler import fleetview
from reconciler.model import Environments, Installation, Release
from tests.support.envfiles import git
from tests.support.envrepo import Seed, release_file, sha, write_tree
from tests.support.fakegithub import FakeGitHub
from tests.support.fleetrepo import sha as hashed

RECONCILER = str(Path(sys.executable).with_name("reconciler"))
INSTALLATIONS = ("prod-1", "prod-2", "test-1")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """Every installation at sha(1), then test-1 promoted to sha(2) in a later commit."""

    root = tmp_path / "env"
    labels = {name: {"stage": name.split("-")[0]} for name in INSTALLATIONS}
    releases = {name: {"api": release_file("api", "api", sha(1))} for name in INSTALLATIONS}
    write_tree(root, Seed(("api", "web"), labels, releases))
    (root / "installations/prod-1/releases/web.yaml").write_text(
        "apiVersion: reconciler/v1\nkind: Release\nname: web\nproject: web\nversion: 2.3.1\n"
    )
    git(root, "init", "--quiet", "--initial-branch=main")
    git(root, "add", "-A")
    git(root, "commit", "--quiet", "-m", "seed")
    (root / "installations/test-1/releases/api.yaml").write_text(release_file("api", "api", sha(2)))
    git(root, "commit", "--quiet", "-am", "promote api to test-1")
    return root


def fleet_cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RECONCILER, "fleet", str(root), *args],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")},
        timeout=60,
        check=False,
    )


def test_the_newest_declared_ref_comes_from_history_and_laggards_are_marked(repo: Path) -> None:
    done = fleet_cli(repo, "-o", "json")
    assert done.returncode == 0, done.stderr
    view = json.loads(done.stdout)
    assert view["projects"] == {"api": {"newest": sha(2)}, "web": {"newest": None}}
    rows = {row["name"]: row for row in view["installations"]}
    assert {name: row["lagging"] for name, row in rows.items()} == {
        "prod-1": True, "prod-2": True, "test-1": False
    }  # fmt: skip
    assert rows["prod-1"]["cells"]["api"] == {
        "declared": [sha(1)], "behind": True, "reported": None
    }  # fmt: skip
    assert rows["prod-1"]["cells"]["web"]["declared"] == ["2.3.1"]

    text = fleet_cli(repo).stdout
    assert f"prod-1        {sha(1)[:12]}*  2.3.1  LAGGING" in text
    assert "3 installations x 2 projects; 2 lagging" in text


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub().start()
    yield fake
    fake.stop()


def test_with_a_token_each_cell_says_what_the_installation_reported(
    repo: Path, github: FakeGitHub, tmp_path: Path
) -> None:
    old = github.add_deployment("acme/api", sha(1), "production")["id"]
    new = github.add_deployment("acme/api", sha(2), "testing")["id"]
    github.statuses[old] = [
        {"id": 1, "state": "success", "description": "api converged in prod-1", "created_at": "t1"},
        {"id": 2, "state": "failure", "description": "api failed in prod-2", "created_at": "t1"},
    ]
    github.statuses[new] = [
        {"id": 1, "state": "in_progress", "description": "reconciling api in test-1"},
    ]
    token = tmp_path / "token"
    token.write_text(github.token)
    args = ["--github-repo", "api=acme/api", "--github-token-file", str(token)]
    done = fleet_cli(repo, "-o", "json", *args, "--github-api-url", github.url)
    assert done.returncode == 0, done.stderr
    cells = {row["name"]: row["cells"]["api"] for row in json.loads(done.stdout)["installations"]}
    assert {name: cell["reported"] for name, cell in cells.items()} == {
        "prod-1": "healthy", "prod-2": "failed", "test-1": "in-progress"
    }  # fmt: skip

    markdown = fleet_cli(repo, "-o", "markdown", *args, "--github-api-url", github.url).stdout
    assert "`acme/api`" not in markdown
    assert f"`{sha(1)[:12]}` behind FAILED" in markdown
    assert f"| `test-1` (1) **lagging** | `{sha(2)[:12]}` in progress |" in markdown


def test_markdown_shows_repo_text_only_as_code() -> None:
    hostile = "@everyone ![x](http://e.invalid/x.png) <b>|`</b>\n[link](http://e)"
    span = fleetview.code(hostile)
    assert span.startswith("`")
    assert span.endswith("`")
    inside = span[1:-1]
    assert "`" not in inside
    assert "\n" not in inside
    assert "|" not in inside.replace("\\|", ""), "a pipe would end the table cell"


def test_markdown_of_1000_installations_fits_a_pr_comment() -> None:
    installations = {
        f"site-{i:04d}": Installation(
            f"site-{i:04d}",
            releases=tuple(
                Release(f"rel-{r:02d}", f"project-{r:02d}", ref=hashed(i, r)) for r in range(20)
            ),
        )
        for i in range(1000)
    }
    view = fleetview.build(Environments({}, installations), {hashed(5, 5): 1.0})
    markdown = fleetview.as_markdown(view)
    assert len(markdown) < 65_536
    assert "more groups left out to fit" in markdown


def test_a_ref_declared_by_the_head_commit_is_the_newest(repo: Path) -> None:
    # HEAD touches prod-1's file that declares sha(1): its position is 0, which must not
    # read as "unknown" when prod-2's older declaration of the same ref comes next.
    path = repo / "installations/prod-1/releases/api.yaml"
    path.write_text(release_file("api", "api", sha(1)) + "# re-declared\n")
    git(repo, "commit", "--quiet", "-am", "prod-1 api re-declared")
    done = fleet_cli(repo, "-o", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["projects"]["api"] == {"newest": sha(1)}
