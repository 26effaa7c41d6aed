"""Builds environments repos in tests: real files, real commits, pushed to the testbed's git server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.support.envfiles import git

API = "reconciler/v1"


class EnvRepo:
    """A working clone of an environments repo; `commit()` pushes to the server."""

    def __init__(self, url: str, workdir: Path, chart_repository: str) -> None:
        self.url = url
        self.root = workdir
        self.chart_repository = chart_repository
        workdir.mkdir(parents=True, exist_ok=True)
        git(workdir, "init", "--quiet", "--initial-branch=main")
        git(workdir, "remote", "add", "origin", url)

    def write(self, relative: str, document: dict[str, Any] | str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        text = document if isinstance(document, str) else yaml.safe_dump(document, sort_keys=False)
        path.write_text(text)
        return path

    def project(
        self,
        name: str,
        namespace: str,
        chart: str = "app",
        depends_on: tuple[str, ...] = (),
        values: dict[str, Any] | None = None,
        version_template: str | None = None,
    ) -> None:
        source: dict[str, Any] = {"repository": self.chart_repository, "name": chart}
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
        self.write(f"projects/{name}.yaml", doc)

    def installation(
        self,
        name: str,
        policy: dict[str, Any] | None = None,
        values: dict[str, Any] | None = None,
        values_from: dict[str, Any] | None = None,
        labels: dict[str, str] | None = None,
    ) -> None:
        doc: dict[str, Any] = {"apiVersion": API, "kind": "Installation", "name": name}
        for key, value in (
            ("labels", labels),
            ("values", values),
            ("valuesFrom", values_from),
            ("policy", policy),
        ):
            if value:
                doc[key] = value
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
        doc: dict[str, Any] = {
            "apiVersion": API,
            "kind": "Release",
            "name": name,
            "project": project or name,
        }
        if ref:
            doc["ref"] = ref
        else:
            doc["version"] = version or "0.1.0"
        if values:
            doc["values"] = values
        self.write(f"installations/{installation}/releases/{name}.yaml", doc)

    def remove(self, relative: str) -> None:
        (self.root / relative).unlink()

    def commit(self, message: str = "change") -> str:
        git(self.root, "add", "-A")
        git(self.root, "commit", "--quiet", "--allow-empty", "-m", message)
        git(self.root, "push", "--quiet", "origin", "HEAD:main")
        return git(self.root, "rev-parse", "HEAD")
