"""A fleet-sized environments repo (1,000 installations x 25 releases by default), written
straight into a git repository with `git fast-import`: no working tree of 26,000 files.

Used by the sparse-fetch tests and the fleet benchmark. Installations are `site-0000`...,
labelled `stage: testing` (the first `testing` of them) or `stage: production`, and
`wave: "<n>"` in tens; projects are `project-00`... on an OCI repository that is never
pulled (these installations exist to be carried, not converged).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.envrepo import dump, installation_document, project_document, release_document

CHARTS = "oci://registry.example.com/charts"


def sha(*parts: object) -> str:
    return hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()


def site(index: int) -> str:
    return f"site-{index:04d}"


def fleet_files(
    installations: int = 1000, releases: int = 25, projects: int = 20, testing: int = 10
) -> Iterator[tuple[str, str]]:
    """(repo-relative path, text) of every file of the fleet."""

    for p in range(projects):
        name = f"project-{p:02d}"
        yield f"projects/{name}.yaml", dump(project_document(name, f"ns-{p % 5}", CHARTS, name))
    for i in range(installations):
        labels = {"stage": "testing" if i < testing else "production", "wave": str(i // 10)}
        folder = f"installations/{site(i)}"
        yield f"{folder}/installation.yaml", dump(installation_document(site(i), labels=labels))
        for r in range(releases):
            name = f"rel-{r:02d}"
            doc = release_document(
                name, f"project-{r % projects:02d}", ref=sha(i, r), values={"replicas": 2}
            )
            yield f"{folder}/releases/{name}.yaml", dump(doc)


def import_commit(
    git_dir: Path,
    files: Iterator[tuple[str, str]],
    message: str,
    branch: str = "main",
    symlinks: dict[str, str] | None = None,
) -> str:
    """One commit on `branch` of the repository at `git_dir` (bare or `.git`) holding exactly
    `files` and `symlinks` (path -> target); its parent is the branch head when there is
    one. Returns the commit SHA."""

    ref = f"refs/heads/{branch}"
    parent = subprocess.run(
        ["git", "--git-dir", str(git_dir), "rev-parse", "--verify", "--quiet", ref],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    body = message.encode()
    chunks = [
        f"commit {ref}\ncommitter fleet <fleet@example.invalid> 1700000000 +0000\n".encode(),
        f"data {len(body)}\n".encode() + body + b"\n",
    ]
    if parent:
        chunks.append(f"from {parent}\n".encode())
    chunks.append(b"deleteall\n")
    for path, text in files:
        data = text.encode()
        chunks.append(f"M 100644 inline {path}\ndata {len(data)}\n".encode() + data + b"\n")
    for path, target in (symlinks or {}).items():
        data = target.encode()
        chunks.append(f"M 120000 inline {path}\ndata {len(data)}\n".encode() + data + b"\n")
    subprocess.run(
        ["git", "--git-dir", str(git_dir), "fast-import", "--quiet", "--force"],
        input=b"".join(chunks),
        check=True,
        env=os.environ | {"GIT_CONFIG_NOSYSTEM": "1"},
    )
    return subprocess.run(
        ["git", "--git-dir", str(git_dir), "rev-parse", ref],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
