"""The fleet at a glance: installations x projects, the declared ref or version in each cell,
optionally what each installation last reported for it, and who lags behind.

Pure: `build` takes the model, the time each ref was last declared (from git history) and
the reports read from GitHub; the renderers return text. The newest declared ref of a
project is the one declared most recently; an installation lags when it declares an older
ref of a project, or (with reports) has not reported its declared ref healthy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.gates import Report
from reconciler.model import Environments

# A PR comment holds at most 65,536 characters; leave room for what CI adds around it.
MARKDOWN_BUDGET = 60_000
NAMES_PER_GROUP = 12
MARKS = {
    "healthy": "ok",
    "failed": "FAILED",
    "in-progress": "in progress",
    "missing": "not reported",
}


@dataclass(frozen=True)
class Cell:
    declared: tuple[str, ...]  # refs (40 hex) or versions, one per release of the project
    behind: bool = False
    reported: str | None = None  # a gates verdict for the declared ref; None without reports

    def shown(self) -> str:
        return ", ".join(value[:12] for value in self.declared)


@dataclass(frozen=True)
class Row:
    installation: str
    cells: Mapping[str, Cell]

    @property
    def lagging(self) -> bool:
        return any(c.behind or c.reported not in (None, "healthy") for c in self.cells.values())


@dataclass(frozen=True)
class Fleet:
    projects: tuple[str, ...]
    newest: Mapping[str, str]  # project -> newest declared ref (absent: unknown or pinned only)
    rows: tuple[Row, ...]
    reported: frozenset[str] = field(default_factory=frozenset)  # projects with reports


def build(
    env: Environments,
    declared_at: Mapping[str, float],
    reports: Mapping[str, Mapping[str, Mapping[str, Report]]] | None = None,
) -> Fleet:
    """`declared_at`: ref -> when it was last declared (any unit that orders);
    `reports`: project -> ref -> installation -> its newest report for that ref."""

    reports = reports or {}
    declared: dict[str, dict[str, tuple[str, ...]]] = {}
    for name, installation in env.installations.items():
        for release in installation.releases:
            value = release.ref or release.version or ""
            cell = declared.setdefault(name, {})
            cell[release.project] = (*cell.get(release.project, ()), value)
    projects = tuple(sorted({p for cells in declared.values() for p in cells}))
    newest = _newest(env, declared_at)
    rows = []
    for name in sorted(env.installations):
        cells = {}
        for project, values in declared.get(name, {}).items():
            refs = [v for v in values if _is_ref(v)]
            behind = project in newest and any(ref != newest[project] for ref in refs)
            cells[project] = Cell(values, behind, _verdict(reports.get(project), refs, name))
        rows.append(Row(name, cells))
    return Fleet(projects, newest, tuple(rows), frozenset(reports))


def _newest(env: Environments, declared_at: Mapping[str, float]) -> dict[str, str]:
    """Per project, the ref declared last; none where refs tie (a shallow history)."""

    times: dict[str, dict[str, float]] = {}
    for installation in env.installations.values():
        for release in installation.releases:
            if release.ref and release.ref in declared_at:
                times.setdefault(release.project, {})[release.ref] = declared_at[release.ref]
    newest = {}
    for project, by_ref in times.items():
        latest = max(by_ref.values())
        at_latest = [ref for ref, when in by_ref.items() if when == latest]
        if len(at_latest) == 1:
            newest[project] = at_latest[0]
    return newest


def _verdict(
    by_ref: Mapping[str, Mapping[str, Report]] | None, refs: Sequence[str], installation: str
) -> str | None:
    if by_ref is None or not refs:
        return None
    verdicts = [
        by_ref[ref][installation].verdict if installation in by_ref.get(ref, {}) else "missing"
        for ref in refs
    ]
    for worst in ("failed", "in-progress", "missing"):
        if worst in verdicts:
            return worst
    return "healthy"


def _is_ref(value: str) -> bool:
    return len(value) == 40 and all(c in "0123456789abcdef" for c in value)


# ----- rendering --------------------------------------------------------------------------


def as_json(fleet: Fleet) -> dict[str, Any]:
    return {
        "projects": {p: {"newest": fleet.newest.get(p)} for p in fleet.projects},
        "installations": [
            {
                "name": row.installation,
                "lagging": row.lagging,
                "cells": {
                    project: {
                        "declared": list(cell.declared),
                        "behind": cell.behind,
                        "reported": cell.reported,
                    }
                    for project, cell in sorted(row.cells.items())
                },
            }
            for row in fleet.rows
        ],
    }


def as_text(fleet: Fleet) -> str:
    header = ["INSTALLATION", *fleet.projects, ""]
    table = [header]
    for row in fleet.rows:
        cells = [_text_cell(row.cells.get(p)) for p in fleet.projects]
        table.append([row.installation, *cells, "LAGGING" if row.lagging else ""])
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = [
        "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in table
    ]
    return "\n".join([*lines, "", _legend(fleet), _summary(fleet)])


def _text_cell(cell: Cell | None) -> str:
    if cell is None:
        return "-"
    text = cell.shown() + ("*" if cell.behind else "")
    if cell.reported is not None:
        text += f" ({MARKS[cell.reported]})"
    return text


def _legend(fleet: Fleet) -> str:
    newest = ", ".join(f"{p} {ref[:12]}" for p, ref in sorted(fleet.newest.items()))
    return f"* behind the newest declared ref ({newest or 'unknown without git history'})"


def _summary(fleet: Fleet) -> str:
    lagging = sum(1 for row in fleet.rows if row.lagging)
    return (
        f"{len(fleet.rows)} installations x {len(fleet.projects)} projects;"
        f" {lagging} lagging behind the newest declared ref"
    )


def as_markdown(fleet: Fleet, budget: int = MARKDOWN_BUDGET) -> str:
    """A PR comment or job summary: installations with identical rows grouped, lagging groups
    first, cut to `budget` characters. Repo text is shown only inside code spans."""

    out = [f"### Fleet: {_summary(fleet)}", ""]
    out += ["| project | newest declared ref |", "| --- | --- |"]
    out += [
        f"| {code(p)} | {code(fleet.newest[p][:12]) if p in fleet.newest else '-'} |"
        for p in fleet.projects
    ]
    out += ["", "| installations | " + " | ".join(code(p) for p in fleet.projects) + " |"]
    out.append("| --- |" + " --- |" * len(fleet.projects))
    groups: dict[tuple[str, ...], list[Row]] = {}
    for row in fleet.rows:
        key = tuple(_markdown_cell(row.cells.get(p)) for p in fleet.projects)
        groups.setdefault(key, []).append(row)
    ordered = sorted(
        groups.items(), key=lambda item: (not item[1][0].lagging, item[1][0].installation)
    )
    used = sum(len(line) + 1 for line in out)
    for shown, (cells, rows) in enumerate(ordered):
        names = ", ".join(code(r.installation) for r in rows[:NAMES_PER_GROUP])
        if len(rows) > NAMES_PER_GROUP:
            names += f" and {len(rows) - NAMES_PER_GROUP} more"
        lagging = " **lagging**" if rows[0].lagging else ""
        line = f"| {names} ({len(rows)}){lagging} | " + " | ".join(cells) + " |"
        if used + len(line) + 200 > budget:
            out.append(
                f"\n{len(ordered) - shown} more groups left out to fit; see `reconciler fleet -o json`"
            )
            break
        out.append(line)
        used += len(line) + 1
    out += ["", "_behind: declares an older ref than the newest declared one._"]
    return "\n".join(out) + "\n"


def _markdown_cell(cell: Cell | None) -> str:
    if cell is None:
        return "-"
    text = code(cell.shown())
    if cell.behind:
        text += " behind"
    if cell.reported is not None:
        text += f" {MARKS[cell.reported]}"
    return text


def code(text: str) -> str:
    """Untrusted text as a Markdown code span inside a table: nothing in it renders as a
    link, mention, image or HTML; backticks and line breaks cannot end it, pipes cannot
    end the cell."""

    cleaned = "".join(c if c.isprintable() else "?" for c in text).replace("`", "'")
    return "`" + cleaned.replace("|", "\\|") + "`"
