"""Loads an environments repo: every file, every problem, then the frozen model.

Three passes: read the tree (tree), parse and schema-check each file on its own
(fast paths first, see fastyaml and fastschema), then the rules across files
(semantics). Problems of all passes are reported together, sorted by file and line.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.errors import Problem, UsageError, ValidationError
from reconciler.model import Environments
from reconciler.repo import build, fastyaml, schemas, semantics, yamldoc
from reconciler.repo.tree import SourceFile, scan, shown


@dataclass(frozen=True)
class Analysis:
    """The outcome of checking a repo; `environments` is set only when there is no problem."""

    problems: list[Problem]
    files: int = 0
    projects: int = 0
    installations: int = 0
    releases: int = 0
    environments: Environments | None = field(default=None, repr=False)


Parsed = tuple[dict[str, Any] | None, list[Problem]]


def analyze(root: Path, *, revision: str = "") -> Analysis:
    """Checks the repo at `root`: every problem, and the model when there is none."""

    if not root.is_dir():
        raise UsageError(f"{root}: no such folder; pass the path of an environments repo")
    tree = scan(root)
    documents: list[semantics.Document] = []
    problems = list(tree.problems)
    for source in tree.files:
        document, found = parse_file(source)
        problems.extend(found)
        if document is not None:
            documents.append(semantics.Document(source, document))
    project_files = [s.stem for s in tree.files if s.kind == "Project"]
    problems.extend(semantics.check(documents, _locate, project_files))
    kinds = [s.kind for s in tree.files]
    environments = None if problems else build.environments(documents, revision)
    return Analysis(
        problems=sorted(problems, key=lambda p: (p.path, p.line or 0, p.message)),
        files=len(tree.files),
        projects=kinds.count("Project"),
        installations=len(tree.installations),
        releases=kinds.count("Release"),
        environments=environments,
    )


def check(root: Path) -> list[Problem]:
    """Every problem of the repo at `root`; empty when it is valid."""

    return analyze(root).problems


def load_environments(root: Path, *, revision: str = "") -> Environments:
    """The model of the repo at `root`; raises ValidationError carrying every problem."""

    analysis = analyze(root, revision=revision)
    if analysis.environments is None:
        raise ValidationError(analysis.problems)
    return analysis.environments


def parse_file(source: SourceFile) -> Parsed:
    """One file on its own: YAML, then its kind's schema."""

    document = None
    with contextlib.suppress(UnicodeDecodeError):  # yamldoc reports where
        document = fastyaml.load(source.data.decode("utf-8"))
    if document is None:
        document, yaml_problems = yamldoc.parse(source.data)
        if document is None:
            path = shown(source.path)
            return None, [Problem(path, p.line, p.message) for p in yaml_problems]
    if schemas.is_valid(source.kind, document):
        return document, []
    return None, [
        Problem(shown(source.path), _locate(source, path), message)
        for path, message in schemas.errors(source.kind, document)
    ]


def _locate(source: SourceFile, path: Sequence[str | int]) -> int | None:
    text, _ = yamldoc.decode(source.data)
    return None if text is None else yamldoc.locate(text, path)
