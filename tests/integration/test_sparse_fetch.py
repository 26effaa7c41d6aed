"""Sparse fetch on the testbed: a reconciler of one installation in a repo of 1,000 clones
and fetches only projects/ and its own folder, converges from that, is not held by another
installation's broken files, and receives a promotion by fetch. Servers that cannot filter
(`uploadpack.allowFilter` off) get an ordinary shallow clone with the same sparse checkout."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from engine_world import World
from envrepo import EnvRepo, dump, installation_document, project_document, release_document

from reconciler.reconcile import load_revision
from reconciler.source import Credentials, GitSource, sparse_paths
from tests.support.fleetrepo import fleet_files, import_commit, sha, site

FLEET = 1000


@pytest.fixture(scope="module")
def fleet() -> dict[str, str]:
    return dict(fleet_files(FLEET))


def own_files(world: World, *, ref: str | None = None) -> dict[str, str]:
    folder = f"installations/{world.installation}"
    project = project_document("alpha", world.namespace, world.repo.chart_repository, "app")
    release = release_document("alpha", "alpha", ref=ref, version="0.1.0")
    return {
        "projects/alpha.yaml": dump(project),
        f"{folder}/installation.yaml": dump(installation_document(world.installation)),
        f"{folder}/releases/alpha.yaml": dump(release),
    }


def push(repo: EnvRepo, files: dict[str, str], message: str) -> str:
    commit = import_commit(repo.top / ".git", iter(sorted(files.items())), message)
    repo.git("push", "--quiet", "origin", "main")
    return commit


def git_in(checkout: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=checkout, capture_output=True, text=True, check=True
    ).stdout


def local_blobs(checkout: Path) -> int:
    """Blobs in the clone's object store (listing them fetches nothing)."""

    listing = git_in(checkout, "cat-file", "--batch-all-objects", "--batch-check=%(objecttype)")
    return listing.split().count("blob")


def test_a_sparse_clone_of_1000_installations_holds_only_its_paths_and_converges(
    world: World, fleet: dict[str, str]
) -> None:
    push(world.repo, fleet | own_files(world), "fleet")
    workdir = world.workdir / "clone"
    code, _, stderr = world.apply("--workdir", str(workdir))
    assert code == 0, stderr
    assert world.releases() == {"alpha": "deployed"}

    checkout = workdir / "checkout"
    assert sorted(p.name for p in (checkout / "installations").iterdir()) == [world.installation]
    assert len(list((checkout / "projects").iterdir())) == 21
    needed = 21 + 2  # the projects, its installation.yaml and one release
    assert local_blobs(checkout) <= needed, "only the blobs of its own paths were fetched"
    assert git_in(checkout, "config", "remote.origin.promisor").strip() == "true"


def test_broken_files_of_other_installations_do_not_hold_it(
    world: World, fleet: dict[str, str]
) -> None:
    broken = {
        f"installations/{site(7)}/releases/rel-03.yaml": "ref: [unclosed\n",
        f"installations/{site(8)}/installation.yaml": "kind: Installation\nname: wrong\n",
        f"installations/{site(9)}/relases/rel-00.yaml": "x: 1\n",
        "installations/notes.yml": "stray\n",
    }
    push(world.repo, fleet | own_files(world) | broken, "fleet with broken installations")
    code, _, stderr = world.apply("--workdir", str(world.workdir / "clone"))
    assert code == 0, stderr
    assert world.releases() == {"alpha": "deployed"}

    # A fault in its own folder still stops it, with the file named.
    own_broken = {f"installations/{world.installation}/releases/alpha.yaml": "ref: [unclosed\n"}
    push(world.repo, fleet | own_files(world) | own_broken, "its own release broken")
    code, _, stderr = world.apply("--workdir", str(world.workdir / "clone"))
    assert code == 1
    assert f"installations/{world.installation}/releases/alpha.yaml" in stderr


def test_a_promotion_to_it_arrives_by_fetch(
    world: World, fleet: dict[str, str], publish_chart: Any
) -> None:
    push(world.repo, fleet | own_files(world), "fleet")
    workdir = world.workdir / "clone"
    assert world.apply("--workdir", str(workdir))[0] == 0
    checkout = workdir / "checkout"
    marker = checkout / ".git" / "kept-across-fetches"
    marker.write_text("")

    ref = sha("promoted", world.installation)
    publish_chart("app", f"1.0.0-g{ref}")
    url = world.repo.url
    assert url is not None
    promoted = world.cli(
        "promote", "--repo", url, "--project", "alpha", "--ref", ref, "-i", world.installation
    )
    assert promoted.returncode == 0, promoted.stderr

    code, _, stderr = world.apply("--workdir", str(workdir))
    assert code == 0, stderr
    assert world.latest("alpha")["chart"] == f"app-1.0.0-g{ref}"
    assert marker.exists(), "the clone was fetched into, not cloned again"
    assert local_blobs(checkout) <= 21 + 2 + 1, "the fetch brought only its own new blob"


# ----- the source alone: HTTP and SSH, servers with and without filtering ----------------


@pytest.mark.parametrize("transport", ["http", "ssh"])
@pytest.mark.parametrize("allow_filter", [True, False], ids=["filtering", "not-filtering"])
def test_sparse_source_on_servers_with_and_without_filtering(
    git_server: Any, tmp_path: Path, transport: str, allow_filter: bool
) -> None:
    name = f"sparse-{transport}-{allow_filter}-{tmp_path.name}"[:60].lower()
    url = git_server.create_git_repo(name, allow_filter=allow_filter)
    writer = EnvRepo(url, tmp_path / "writer", "oci://x/c")
    files = dict(fleet_files(30, releases=3, projects=3))
    first = push(writer, files, "thirty installations")
    credentials = Credentials()
    if transport == "ssh":
        url = git_server.git_ssh_url(name)
        credentials = Credentials(
            ssh_key=str(git_server.ssh_key), known_hosts=str(git_server.known_hosts)
        )
    source = GitSource(
        url, workdir=tmp_path / "clone", credentials=credentials, sparse=sparse_paths(site(4))
    )
    env = load_revision(source, site(4))
    assert env.revision == first
    assert source.mode == ("partial" if allow_filter else "full")
    checkout = source.checkout
    assert sorted(p.name for p in (checkout / "installations").iterdir()) == [site(4)]
    all_blobs = len(set(files.values()))
    assert local_blobs(checkout) == (3 + 1 + 3 if allow_filter else all_blobs)

    files[f"installations/{site(4)}/releases/rel-01.yaml"] = files[
        f"installations/{site(4)}/releases/rel-01.yaml"
    ].replace(sha(4, 1), sha("moved"))
    files[f"installations/{site(5)}/releases/rel-01.yaml"] = "broken: [\n"
    moved = push(writer, files, "move site-0004, break site-0005")
    assert source.head() == moved
    env = load_revision(source, site(4))
    assert (env.revision, source.fetches) == (moved, 2)
    (release,) = [r for r in env.installations[site(4)].releases if r.name == "rel-01"]
    assert release.ref == sha("moved")
    assert source.messages_since(first, moved) == ["move site-0004, break site-0005"]


def test_a_kept_clone_follows_the_installation_it_is_used_for(
    git_server: Any, tmp_path: Path
) -> None:
    url = git_server.create_git_repo(f"kept-{tmp_path.name}"[:60].lower())
    writer = EnvRepo(url, tmp_path / "writer", "oci://x/c")
    push(writer, dict(fleet_files(5, releases=2, projects=2)), "five installations")
    workdir = tmp_path / "clone"
    GitSource(url, workdir=workdir).sync()  # a full clone, as before sparse fetch
    for name in (site(1), site(2)):
        source = GitSource(url, workdir=workdir, sparse=sparse_paths(name))
        env = load_revision(source, name)
        assert list(env.installations) == [name]
        assert sorted(p.name for p in (workdir / "checkout/installations").iterdir()) == [name]


def test_symlinks_to_files_outside_its_folders_are_followed(
    git_server: Any, tmp_path: Path
) -> None:
    """The format allows a symlink to any regular file in the repo: its target is fetched."""

    url = git_server.create_git_repo(f"links-{tmp_path.name}"[:60].lower())
    writer = EnvRepo(url, tmp_path / "writer", "oci://x/c")
    files = dict(fleet_files(5, releases=2, projects=2))
    mine = f"installations/{site(1)}/releases/rel-01.yaml"
    files["shared/releases/rel-01.yaml"] = files.pop(mine).replace(sha(1, 1), sha("shared"))
    files["shared/projects/project-00.yaml"] = files.pop("projects/project-00.yaml")
    links = {
        mine: "../../../shared/releases/rel-01.yaml",
        "projects/project-00.yaml": "../shared/projects/project-00.yaml",
    }
    commit = import_commit(
        writer.top / ".git", iter(sorted(files.items())), "linked", symlinks=links
    )
    writer.git("push", "--quiet", "origin", "main")
    source = GitSource(url, workdir=tmp_path / "clone", sparse=sparse_paths(site(1)))
    env = load_revision(source, site(1))
    assert env.revision == commit
    (release,) = [r for r in env.installations[site(1)].releases if r.name == "rel-01"]
    assert release.ref == sha("shared")
    assert "project-00" in env.projects
