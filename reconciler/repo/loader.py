"""Loads an environments repo: every file, every problem, then the frozen model.

Three passes: read the tree (tree), parse and schema-check each file on its own
(fast paths first, see fastyaml and fastschema), then the rules across files
(semantics). Problems of all passes are reported together, sorted by file and line.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import Node

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
# A file broken everywhere (a values list of 10,000 wrong entries) gets a readable report.
MAX_PROBLEMS_PER_FILE = 20


def analyze(
    root: Path, *, revision: str = "", model: bool = True, installation: str | None = None
) -> Analysis:
    """Checks the repo at `root`: every problem, and the model when there is none
    (unless `model` is False: `validate` only needs the problems).

    With `installation`, only what that installation reads is checked and modelled:
    projects/ and installations/<installation>/ (see tree.scan).
    """

    if not root.is_dir():
        what = "not a folder" if root.exists() else "no such folder"
        raise UsageError(f"{root}: {what}; pass the path of an environments repo")
    tree = scan(root, installation)
    documents: list[semantics.Document] = []
    problems = list(tree.problems)
    for source in tree.files:
        document, found = parse_file(source)
        problems.extend(found)
        if document is not None:
            documents.append(semantics.Document(source, document))
    project_files = [s.stem for s in tree.files if s.kind == "Project"]
    problems.extend(semantics.check(documents, _Locator(), project_files))
    kinds = [s.kind for s in tree.files]
    environments = None if problems or not model else build.environments(documents, revision)
    return Analysis(
        problems=_capped(sorted(problems, key=_order)),
        files=len(tree.files),
        projects=kinds.count("Project"),
        installations=len(tree.installations),
        releases=kinds.count("Release"),
        environments=environments,
    )


def check(root: Path) -> list[Problem]:
    """Every problem of the repo at `root`; empty when it is valid."""

    return analyze(root).problems


def load_environments(
    root: Path, *, revision: str = "", installation: str | None = None
) -> Environments:
    """The model of the repo at `root` (of one installation's part of it, with
    `installation`); raises ValidationError carrying every problem."""

    analysis = analyze(root, revision=revision, installation=installation)
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
            return None, [_problem(source, p.line, p.message) for p in yaml_problems]
    if schemas.is_valid(source.kind, document):
        return document, []
    locate = _Locator()
    # Lines for the first problems only: the rest are cut from the report anyway.
    return None, [
        _problem(source, locate(source, path) if n < MAX_PROBLEMS_PER_FILE else None, message)
        for n, (path, message) in enumerate(schemas.errors(source.kind, document))
    ]


def _order(problem: Problem) -> tuple[str, bool, int, str]:
    return (problem.path, problem.line is None, problem.line or 0, problem.message)


def _capped(problems: list[Problem]) -> list[Problem]:
    kept: list[Problem] = []
    for path, group in itertools.groupby(problems, key=lambda p: p.path):
        found = list(group)
        kept.extend(found[:MAX_PROBLEMS_PER_FILE])
        if len(found) > MAX_PROBLEMS_PER_FILE:
            more = len(found) - MAX_PROBLEMS_PER_FILE
            kept.append(Problem(path, None, f"... and {more} more problems in this file"))
    return kept


def _problem(source: SourceFile, line: int | None, message: str) -> Problem:
    return Problem(shown(source.path), line, shown(message))


class _Locator:
    """Lines of fields, composing each file at most once however many problems it has."""

    def __init__(self) -> None:
        self._trees: dict[str, Node | None] = {}

    def __call__(self, source: SourceFile, path: Sequence[str | int]) -> int | None:
        if source.path not in self._trees:
            self._trees[source.path] = _tree(source)
        return yamldoc.line_in(self._trees[source.path], path)


def _tree(source: SourceFile) -> Node | None:
    text, _ = yamldoc.decode(source.data)
    if text is None:
        return None
    try:
        return yamldoc.compose(text)
    except yaml.YAMLError:
        return None
