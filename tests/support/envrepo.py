"""A real git smart-HTTP server (testbed/gitserver.py) without the rest of the testbed,
and a small valid environments repo pushed to it.

The promote and mirror tests need git over a network transport but no Kubernetes,
so they start only the git server, as its own process, like the testbed does.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.envrepo import dump, installation_document, project_document

REPO_ROOT = Path(__file__).resolve().parents[2]
GIT_ENV = {
    "GIT_AUTHOR_NAME": "seed",
    "GIT_AUTHOR_EMAIL": "seed@example.invalid",
    "GIT_COMMITTER_NAME": "seed",
    "GIT_COMMITTER_EMAIL": "seed@example.invalid",
    "GIT_TERMINAL_PROMPT": "0",
}


def git(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=os.environ | GIT_ENV,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {done.stderr}")
    return done.stdout


@dataclass
class GitServer:
    root: Path
    port: int
    process: subprocess.Popen[bytes]
    token: str

    @classmethod
    def start(cls, workdir: Path) -> GitServer:
        root = workdir / "repos"
        (root / "private").mkdir(parents=True)
        port_file = workdir / "git.port"
        log = (workdir / "git-server.log").open("wb")
        token = secrets.token_hex(16)
        argv = ["--root", str(root), "--port-file", str(port_file), "--token", token]
        process = subprocess.Popen(
            [sys.executable, "-m", "testbed.gitserver", *argv],
            cwd=REPO_ROOT,
            stdout=log,
            stderr=log,
        )
        deadline = time.monotonic() + 20
        while not port_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"git server did not start; see {workdir / 'git-server.log'}")
            time.sleep(0.02)
        return cls(root, int(port_file.read_text()), process, token)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)

    def create_repo(self, name: str) -> str:
        """A bare repository; under `private/` it needs the token as basic-auth password."""

        git("init", "--quiet", "--bare", "--initial-branch=main", str(self.root / f"{name}.git"))
        return f"http://127.0.0.1:{self.port}/{name}.git"


def sha(n: int) -> str:
    """A distinct, valid 40-hex commit SHA for test number n."""

    return f"{n:040x}".replace("0", "a", 1) if n else "a" * 40


@dataclass(frozen=True)
class Seed:
    projects: tuple[str, ...]
    installations: Mapping[str, Mapping[str, str]]  # name -> labels
    releases: Mapping[str, Mapping[str, str]]  # installation -> {release file name: file text}


def project_file(name: str) -> str:
    return dump(
        project_document(
            name, namespace=name, chart_repository="oci://registry.example/charts", chart=name
        )
    )


def installation_file(name: str, labels: Mapping[str, str]) -> str:
    return dump(installation_document(name, labels=dict(labels)))


def release_file(name: str, project: str, ref: str, comment: str = "") -> str:
    """Written out as text, not dumped: the comments in it are what promote must preserve."""

    head = f"# {comment}\n" if comment else ""
    return (
        f"{head}apiVersion: reconciler/v1\nkind: Release\nname: {name}\nproject: {project}\n"
        f"ref: {ref}  # the build\nvalues:\n  replicas: 2  # keep two\n"
    )


def write_tree(root: Path, seed: Seed) -> None:
    for project in seed.projects:
        _write(root / "projects" / f"{project}.yaml", project_file(project))
    for name, labels in seed.installations.items():
        _write(root / "installations" / name / "installation.yaml", installation_file(name, labels))
        for release, text in seed.releases.get(name, {}).items():
            _write(root / "installations" / name / "releases" / f"{release}.yaml", text)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def push_seed(url: str, workdir: Path, seed: Seed) -> None:
    checkout = workdir / "seed-checkout"
    git("clone", "--quiet", url, str(checkout))
    git("checkout", "--quiet", "-B", "main", cwd=checkout)
    write_tree(checkout, seed)
    git("add", "-A", cwd=checkout)
    git("commit", "--quiet", "-m", "seed environments", cwd=checkout)
    git("push", "--quiet", "origin", "main", cwd=checkout)


def read_remote(url: str, workdir: Path, name: str = "inspect") -> Path:
    """A fresh full clone of the remote, to look at what landed."""

    checkout = workdir / name
    if checkout.exists():
        git("fetch", "--quiet", "origin", "main", cwd=checkout)
        git("reset", "--quiet", "--hard", "FETCH_HEAD", cwd=checkout)
    else:
        git("clone", "--quiet", "--branch", "main", url, str(checkout))
    return checkout


def commits(checkout: Path) -> list[tuple[str, str]]:
    """(sha, full message) of every commit on HEAD, oldest first."""

    out = git("log", "--reverse", "--format=%H%x00%B%x1e", cwd=checkout)
    pairs = []
    for record in out.split("\x1e"):
        head, _, message = record.strip("\n").partition("\x00")
        if head:
            pairs.append((head, message))
    return pairs


def declared_ref(checkout: Path, installation: str, release: str) -> str | None:
    path = checkout / "installations" / installation / "releases" / f"{release}.yaml"
    if not path.exists():
        return None
    document = yaml.safe_load(path.read_text())
    return document.get("ref")


def names(prefix: str, count: int) -> Iterable[str]:
    return (f"{prefix}{i:02d}" for i in range(count))
