"""Builds environments repos in tests: real files, real commits, pushed to the testbed's git
server or kept in a local repository.

The one place that knows what a project, installation and release document holds: `EnvRepo`
writes them, and tests/support/envrepo.py dumps the same documents for the text files it seeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.support.envfiles import git

API = "reconciler/v1"


def dump(document: dict[str, Any]) -> str:
    """A document as the YAML text of its file, keys in the order they were set."""

    return yaml.safe_dump(document, sort_keys=False)


def project_document(
    name: str,
    namespace: str,
    chart_repository: str,
    chart: str,
    depends_on: tuple[str, ...] = (),
    values: dict[str, Any] | None = None,
    version_template: str | None = None,
) -> dict[str, Any]:
    source: dict[str, Any] = {"repository": chart_repository, "name": chart}
    if version_template:
        source["versionTemplate"] = version_template
    doc: dict[str, Any] = {
        "apiVersion": API,
        "kind": "Project",
        "name": name,
        "namespace": namespace,
        "chart": source,
    }
    if depends_on:
        doc["dependsOn"] = list(depends_on)
    if values:
        doc["values"] = values
    return doc


def installation_document(
    name: str,
    labels: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    values_from: dict[str, Any] | None = None,
    policy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    doc: dict[str, Any] = {"apiVersion": API, "kind": "Installation", "name": name}
    for key, value in (
        ("labels", labels),
        ("values", values),
        ("valuesFrom", values_from),
        ("policy", policy),
    ):
        if value:
            doc[key] = value
    return doc


def release_document(
    name: str,
    project: str,
    *,
    ref: str | None = None,
    version: str | None = None,
    values: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A release declares `ref` when one is given, else `version`."""

    doc: dict[str, Any] = {"apiVersion": API, "kind": "Release", "name": name, "project": project}
    if ref:
        doc["ref"] = ref
    elif version:
        doc["version"] = version
    else:
        raise ValueError(f"release {name}: give a ref or a version")
    if values:
        doc["values"] = values
    return doc


class EnvRepo:
    """A git working tree holding an environments repo, written file by file.

    `EnvRepo(url, workdir, chart_repository)` has `url` as its remote: `commit()` pushes there.
    `EnvRepo.local(path, chart_repository)` has no remote, like a developer's checkout, and
    `subdir` puts the environments in a folder of the repository (a monorepo). `top` is the
    repository's top level, `root` the environments folder: the same unless there is a subdir.
    """

    def __init__(
        self, url: str | None, workdir: Path, chart_repository: str, subdir: str = ""
    ) -> None:
        self.url = url
        self.top = workdir
        self.root = workdir / subdir if subdir else workdir
        self.chart_repository = chart_repository
        self.root.mkdir(parents=True, exist_ok=True)
        self.git("init", "--quiet", "--initial-branch=main")
        if url is not None:
            self.git("remote", "add", "origin", url)

    @classmethod
    def local(cls, path: Path, chart_repository: str, subdir: str = "") -> EnvRepo:
        """A repository with no remote; `commit()` only commits."""

        return cls(None, path, chart_repository, subdir)

    def git(self, *args: str, stdin: str | None = None) -> str:
        """git at the repository's top level; its output, stripped."""

        return git(self.top, *args, stdin=stdin)

    def write(self, relative: str, document: dict[str, Any] | str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        text = document if isinstance(document, str) else dump(document)
        path.write_text(text, encoding="utf-8")
        return path

    def project(
        self,
        name: str,
        namespace: str,
        chart: str = "app",
        depends_on: tuple[str, ...] = (),
        values: dict[str, Any] | None = None,
        version_template: str | None = None,
        service_account: str | None = None,
    ) -> None:
        doc = project_document(
            name, namespace, self.chart_repository, chart, depends_on, values, version_template
        )
        if service_account:
            doc["serviceAccount"] = service_account
        self.write(f"projects/{name}.yaml", doc)

    def installation(
        self,
        name: str,
        policy: dict[str, Any] | None = None,
        values: dict[str, Any] | None = None,
        values_from: dict[str, Any] | None = None,
        labels: dict[str, str] | None = None,
        service_account: str | None = None,
    ) -> None:
        doc = installation_document(name, labels, values, values_from, policy)
        if service_account:
            doc["serviceAccount"] = service_account
        self.write(f"installations/{name}/installation.yaml", doc)

    def release(
        self,
        installation: str,
        name: str,
        project: str | None = None,
        version: str | None = None,
        ref: str | None = None,
        values: dict[str, Any] | None = None,
    ) -> None:
        doc = release_document(
            name, project or name, ref=ref, version=version or "0.1.0", values=values
        )
        self.write(f"installations/{installation}/releases/{name}.yaml", doc)

    def remove(self, relative: str) -> None:
        (self.root / relative).unlink()

    def commit(self, message: str = "change") -> str:
        self.git("add", "-A")
        self.git("commit", "--quiet", "--allow-empty", "-m", message)
        if self.url is not None:
            self.git("push", "--quiet", "origin", "HEAD:main")
        return self.git("rev-parse", "HEAD")
