"""Rules across files, checked on documents that passed their schema."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.errors import Problem
from reconciler.model import Policy
from reconciler.repo.tree import SourceFile, shown
from reconciler.repo.versions import template_problems

DEFAULT_VERSION_TEMPLATE = "1.0.0-g{ref}"

Locate = Callable[[SourceFile, Sequence[str | int]], int | None]


@dataclass(frozen=True)
class Document:
    source: SourceFile
    data: dict[str, Any]


def check(
    documents: Sequence[Document], locate: Locate, project_files: Collection[str] = ()
) -> list[Problem]:
    """Problems across files. `project_files` names every projects/*.yaml, valid or not, so a
    project whose own file has problems is not also reported as unknown where it is used."""

    rules = _Rules(locate, frozenset(project_files))
    projects = {d.data["name"]: d for d in documents if d.source.kind == "Project"}
    for document in documents:
        rules.name_matches_file(document)
        if document.source.kind == "Installation":
            rules.pending_timeout(document)
    for project in projects.values():
        rules.version_template(project)
    rules.dependencies(projects)
    rules.releases([d for d in documents if d.source.kind == "Release"], projects)
    return rules.problems


class _Rules:
    def __init__(self, locate: Locate, project_files: frozenset[str]) -> None:
        self.locate = locate
        self.project_files = project_files
        self.problems: list[Problem] = []

    def report(self, document: Document, path: Sequence[str | int], message: str) -> None:
        line = self.locate(document.source, path)
        self.problems.append(Problem(shown(document.source.path), line, shown(message)))

    def name_matches_file(self, document: Document) -> None:
        declared = document.data["name"]
        expected = document.source.stem
        if declared == expected:
            return
        where = "its folder" if document.source.kind == "Installation" else "the file name"
        self.report(
            document,
            ["name"],
            f'name: "{declared}" does not match {where} "{shown(expected)}";'
            f" rename one so they agree (e.g. name: {shown(expected)})",
        )

    def pending_timeout(self, installation: Document) -> None:
        policy = installation.data.get("policy") or {}
        if "pendingTimeoutSeconds" not in policy:
            return  # unset, it defaults above the helm timeout
        timeout = policy.get("timeoutSeconds", Policy.timeout_seconds)
        pending = policy["pendingTimeoutSeconds"]
        if pending > timeout:
            return
        self.report(
            installation,
            ["policy", "pendingTimeoutSeconds"],
            f"policy.pendingTimeoutSeconds: {pending:g} is not greater than "
            f"policy.timeoutSeconds {timeout:g}; a release still pending while its helm runs "
            f"would be rolled back under it: set pendingTimeoutSeconds above {timeout:g} "
            f"(e.g. {2 * timeout:g}) or remove it (the default is above timeoutSeconds)",
        )

    def version_template(self, project: Document) -> None:
        template = project.data["chart"].get("versionTemplate", DEFAULT_VERSION_TEMPLATE)
        for message in template_problems(template):
            self.report(project, ["chart", "versionTemplate"], f"chart.versionTemplate: {message}")

    def dependencies(self, projects: dict[str, Document]) -> None:
        graph: dict[str, list[str]] = {}
        for name, project in projects.items():
            graph[name] = []
            for index, dependency in enumerate(project.data.get("dependsOn", [])):
                if dependency in projects:
                    graph[name].append(dependency)
                elif dependency not in self.project_files:
                    self.report(
                        project,
                        ["dependsOn", index],
                        f'dependsOn: unknown project "{dependency}"'
                        + _did_you_mean(dependency, projects)
                        + f"; add projects/{dependency}.yaml or remove it",
                    )
        for cycle in _cycles(graph):
            first = projects[cycle[0]]
            index = first.data["dependsOn"].index(cycle[1])
            self.report(
                first,
                ["dependsOn", index],
                "dependsOn: cycle "
                + _path_text(cycle)
                + "; nothing in it could ever be converged first, remove one of these dependencies",
            )

    def releases(self, releases: list[Document], projects: dict[str, Document]) -> None:
        seen: dict[tuple[str, str, str], Document] = {}
        for release in releases:
            data = release.data
            project = projects.get(data["project"])
            if project is None and data["project"] in self.project_files:
                continue  # that project's file is invalid and reported on its own
            if project is None:
                self.report(
                    release,
                    ["project"],
                    f'project: unknown project "{data["project"]}"'
                    + _did_you_mean(data["project"], projects)
                    + f"; add projects/{data['project']}.yaml or fix the name",
                )
                continue
            namespace = data.get("namespace", project.data["namespace"])
            key = (release.source.installation, namespace, data["name"])
            if key in seen:
                self.report(
                    release,
                    ["name"],
                    f'name: release "{data["name"]}" is already declared in namespace'
                    f' "{namespace}" of this installation by {seen[key].source.path};'
                    " Helm release names are unique per namespace, rename one",
                )
            else:
                seen[key] = release


def _path_text(cycle: list[str]) -> str:
    if len(cycle) <= 12:
        return " -> ".join(cycle)
    return (
        " -> ".join(cycle[:5]) + f" -> ... ({len(cycle) - 10} more) -> " + " -> ".join(cycle[-5:])
    )


def _did_you_mean(name: str, known: dict[str, Document]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Each back edge of a depth-first search as a closed path a -> b -> a.

    Iterative: a chain of thousands of projects must not hit Python's recursion limit.
    """

    cycles: list[list[str]] = []
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path = [start]
        on_path = {start}
        pending = [iter(graph[start])]
        while pending:
            nxt = next(pending[-1], None)
            if nxt is None:
                pending.pop()
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
            elif nxt in on_path:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in done:
                path.append(nxt)
                on_path.add(nxt)
                pending.append(iter(graph[nxt]))
    return cycles
