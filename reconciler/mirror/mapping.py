"""The mirror's mapping file: GitHub repository -> project, environment -> installations.

    apiVersion: reconciler/v1
    kind: DeploymentMapping
    repositories:
      acme/api:                        # owner/repo, case-insensitive
        project: api
        tasks: [deploy]                # deployment tasks to mirror (default: [deploy])
        unlistedEnvironments: reject   # or same-name, or ignore (default: reject)
        ignoreEnvironments: [github-pages, "pr-*"]  # answered 2xx "ignored" (globs)
        environments:                  # environment names are case-insensitive
          production: [prod-eu, prod-us]
          staging: staging-1
          testing: {selector: {stage: testing}}

Mapping every environment to the installation of the same name is an explicit
opt-in (`unlistedEnvironments: same-name`): a repository with no environments
listed and no opt-in is an error, not a mapping that takes anything.

Every problem in the file is reported at once, each with where it is.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from reconciler.errors import ReconcilerError
from reconciler.model import API_VERSION

KIND = "DeploymentMapping"
Unlisted = Literal["same-name", "reject", "ignore"]
UNLISTED = ("same-name", "reject", "ignore")
_REPOSITORY = re.compile(r"[A-Za-z0-9-]+/[A-Za-z0-9._-]+")
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


class MappingError(ReconcilerError):
    """The mapping file is missing or invalid; the message lists every problem."""


@dataclass(frozen=True)
class Target:
    """Installations named, or chosen by labels."""

    installations: tuple[str, ...] = ()
    selector: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RepositoryMapping:
    repository: str
    project: str
    environments: Mapping[str, Target] = field(default_factory=dict)
    unlisted: Unlisted = "reject"
    tasks: tuple[str, ...] = ("deploy",)
    ignored: tuple[str, ...] = ()  # lowercase glob patterns

    def ignores(self, environment: str) -> bool:
        """True for environments no installation takes (GitHub Pages, review apps): a
        deployment to one is acknowledged as ignored, not rejected."""

        name = environment.lower()
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in self.ignored):
            return True
        return self.unlisted == "ignore" and name not in self.environments

    def target(self, environment: str) -> Target | None:
        """Where a deployment to `environment` goes; None if this mapping rejects it."""

        listed = self.environments.get(environment.lower())
        if listed is not None:
            return listed
        if self.unlisted == "same-name":
            return Target(installations=(environment.lower(),))
        return None


@dataclass(frozen=True)
class DeploymentMapping:
    repositories: Mapping[str, RepositoryMapping]

    def for_repository(self, full_name: str) -> RepositoryMapping | None:
        return self.repositories.get(full_name.lower())


def load_mapping(path: Path) -> DeploymentMapping:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise MappingError(f"mapping file {path}: {error.strerror}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise MappingError(f"mapping file {path}: not valid YAML: {error}") from None
    return parse_mapping(document, str(path))


def parse_mapping(document: Any, source: str = "mapping") -> DeploymentMapping:
    problems: list[str] = []
    repositories: dict[str, RepositoryMapping] = {}
    if not isinstance(document, dict):
        raise MappingError(f"{source}: expected a mapping with apiVersion, kind and repositories")
    if document.get("apiVersion") != API_VERSION:
        problems.append(f"apiVersion: must be {API_VERSION}")
    if document.get("kind") != KIND:
        problems.append(f"kind: must be {KIND}")
    unknown = sorted(set(document) - {"apiVersion", "kind", "repositories"})
    problems += [f"{key}: unknown field" for key in unknown]
    entries = document.get("repositories")
    if not isinstance(entries, dict) or not entries:
        problems.append("repositories: must map at least one owner/repo to a project")
        entries = {}
    for name, entry in entries.items():
        parsed = _repository(str(name), entry, problems)
        if parsed and parsed.repository in repositories:
            problems.append(f"repositories.{name}: listed twice (names are case-insensitive)")
        elif parsed:
            repositories[parsed.repository] = parsed
    if problems:
        listing = "\n  ".join(problems)
        raise MappingError(f"{source}: {len(problems)} problem(s):\n  {listing}")
    return DeploymentMapping(repositories)


def _repository(name: str, entry: Any, problems: list[str]) -> RepositoryMapping | None:
    where = f"repositories.{name}"
    before = len(problems)
    if not _REPOSITORY.fullmatch(name):
        problems.append(f"{where}: expected owner/repo")
    if not isinstance(entry, dict):
        problems.append(f"{where}: expected a mapping with at least `project`")
        return None
    allowed = {"project", "environments", "unlistedEnvironments", "ignoreEnvironments", "tasks"}
    problems += [f"{where}.{key}: unknown field" for key in sorted(set(entry) - allowed)]
    project = entry.get("project")
    if not isinstance(project, str) or not _NAME.fullmatch(project):
        problems.append(f"{where}.project: required, a project name (lowercase DNS label)")
    unlisted = entry.get("unlistedEnvironments", "reject")
    if unlisted not in UNLISTED:
        problems.append(f"{where}.unlistedEnvironments: must be reject, same-name or ignore")
    if not entry.get("environments") and "unlistedEnvironments" not in entry:
        problems.append(
            f"{where}: lists no environments; list them under `environments`, or opt in to "
            "`unlistedEnvironments: same-name` to send each to the installation of its name"
        )
    ignored = entry.get("ignoreEnvironments", [])
    if not isinstance(ignored, list) or not all(isinstance(p, str) and p for p in ignored):
        problems.append(f"{where}.ignoreEnvironments: must be a list of environment names or globs")
        ignored = []
    tasks = entry.get("tasks", ["deploy"])
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks):
        problems.append(f"{where}.tasks: must be a non-empty list of task names")
    environments = _environments(where, entry.get("environments", {}), problems)
    if len(problems) > before:
        return None
    return RepositoryMapping(
        name.lower(),
        str(project),
        environments,
        unlisted,
        tuple(str(t) for t in tasks),
        tuple(p.lower() for p in ignored),
    )


def _environments(where: str, entries: Any, problems: list[str]) -> dict[str, Target]:
    if not isinstance(entries, dict):
        problems.append(f"{where}.environments: expected environment: installations")
        return {}
    environments: dict[str, Target] = {}
    for environment, value in entries.items():
        target = _target(f"{where}.environments.{environment}", value, problems)
        key = str(environment).lower()
        if key in environments:
            problems.append(f"{where}.environments.{environment}: listed twice (case-insensitive)")
        elif target:
            environments[key] = target
    return environments


def _target(where: str, value: Any, problems: list[str]) -> Target | None:
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        return _installations(where, value, problems)
    if isinstance(value, dict) and set(value) == {"installations"}:
        return _installations(where + ".installations", value["installations"], problems)
    if isinstance(value, dict) and set(value) == {"selector"}:
        selector = value["selector"]
        if (
            not isinstance(selector, dict)
            or not selector
            or not all(isinstance(v, str) for v in selector.values())
        ):
            problems.append(f"{where}.selector: expected labels, e.g. {{stage: testing}}")
            return None
        return Target(selector={str(k): v for k, v in selector.items()})
    problems.append(
        f"{where}: expected an installation, a list of them, {{installations: [...]}} or {{selector: {{...}}}}"
    )
    return None


def _installations(where: str, names: Any, problems: list[str]) -> Target | None:
    if (
        not isinstance(names, list)
        or not names
        or not all(isinstance(n, str) and _NAME.fullmatch(n) for n in names)
    ):
        problems.append(f"{where}: expected installation names (lowercase DNS labels)")
        return None
    return Target(installations=tuple(names))
