"""Small environments repos on disk for validation tests: a valid one to break on purpose,
committed to a real git repository, and a way to run the real CLI on it."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "example-environments"
SHA = "3f786850e387550fdab836ed7e6dc881de23001b"

PROJECTS = {
    "postgres": """\
apiVersion: reconciler/v1
kind: Project
name: postgres
namespace: data
chart:
  repository: oci://registry.example.com/charts
  name: datastore
values:
  port: 5432
""",
    "api": """\
apiVersion: reconciler/v1
kind: Project
name: api
namespace: shop
chart:
  repository: oci://registry.example.com/charts
  name: web-service
  versionTemplate: "1.0.0-g{ref}"
dependsOn:
  - postgres
values:
  port: 8080
""",
}
INSTALLATION = """\
apiVersion: reconciler/v1
kind: Installation
name: prod-eu
labels:
  provider: aws
  stage: production
policy:
  prune: true
  remediation: rollback
"""
RELEASES = {
    "api": f"""\
apiVersion: reconciler/v1
kind: Release
name: api
project: api
ref: {SHA}
values:
  replicas: 2
""",
    "postgres": """\
apiVersion: reconciler/v1
kind: Release
name: postgres
project: postgres
version: 2.3.1
""",
}
GIT_ENV = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(cwd: Path, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **GIT_ENV},
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@dataclass
class EnvTree:
    """A valid environments repo in a real git repository; tests break it and commit."""

    root: Path

    @classmethod
    def create(cls, root: Path) -> EnvTree:
        root.mkdir(parents=True, exist_ok=True)
        tree = cls(root)
        for name, text in PROJECTS.items():
            tree.write(f"projects/{name}.yaml", text)
        tree.write("installations/prod-eu/installation.yaml", INSTALLATION)
        for name, text in RELEASES.items():
            tree.write(f"installations/prod-eu/releases/{name}.yaml", text)
        git(root, "init", "--quiet", "--initial-branch=main")
        tree.commit("a valid environments repo")
        return tree

    def write(self, relative: str, content: str | bytes) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    def commit(self, message: str) -> str:
        git(self.root, "add", "--all")
        git(self.root, "commit", "--quiet", "--allow-empty", "--no-gpg-sign", "-m", message)
        return git(self.root, "rev-parse", "HEAD")


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 60) -> Run:
    """The real `reconciler` command line in a fresh interpreter."""

    done = subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Run(done.returncode, done.stdout, done.stderr)
