"""Text (terminal) and Markdown (pull-request comment) views of a `DiffReport`.

Everything shown comes from the environments repo, which a pull request's author
controls: text output escapes control characters, Markdown output escapes HTML and
table syntax. Secret-sourced values arrive already masked.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable
from typing import Any

from reconciler.diffing import ABSENT, DiffReport, InstallationDiff, ReleaseDiff, ValueChange
from reconciler.model import DesiredRelease
from reconciler.revisions import Revision
from reconciler.terminal import for_terminal

VALUE_WIDTH = 80
SHORT_SHA = 7
# GitHub rejects comments over 65,536 characters; stop well before.
MARKDOWN_LIMIT = 60_000
# Longer tables and name lists are folded into <details>.
FOLD_AFTER = 10
INLINE_NAMES = 5
MAX_PROBLEMS_SHOWN = 100


def summary_line(report: DiffReport) -> str:
    s = report.summary
    insts, rels = s.get("installations", 0), s.get("releases", 0)
    line = f"{insts} installation{_s(insts)}, {rels} release{_s(rels)} change"
    if rels:
        line += f" ({s.get('added', 0)} added, {s.get('removed', 0)} removed, "
        line += f"{s.get('changed', 0)} changed)"
    return line


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def revision_text(rev: Revision) -> str:
    return f"{rev.label} ({rev.commit[:SHORT_SHA]})" if rev.commit else rev.label


def value_text(value: Any) -> str:
    """A value as compact JSON, cut to VALUE_WIDTH characters."""

    if value is ABSENT:
        return "(unset)"
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return text if len(text) <= VALUE_WIDTH else text[: VALUE_WIDTH - 1] + "…"


def printable(text: str) -> str:
    # A value could carry terminal escape sequences; show them, do not obey them.
    return for_terminal(text)


def short_ref(ref: str | None) -> str:
    return ref[:SHORT_SHA] if ref else "none"


def chart_text(release: DesiredRelease) -> str:
    return f"{release.chart.name} {release.chart.version}"


def field_changes(diff: ReleaseDiff) -> list[tuple[str, str, str]]:
    """(field, before, after) for what changed in a release besides its values."""

    a, b = diff.before, diff.after
    if a is None or b is None:
        return []
    shown = {
        "project": (a.project, b.project),
        "chart.repository": (a.chart.repository, b.chart.repository),
        "chart.name": (a.chart.name, b.chart.name),
        "chart.version": (a.chart.version, b.chart.version),
        "ref": (short_ref(a.ref), short_ref(b.ref)),
    }
    return [
        (name.removeprefix("chart."), *shown[name]) for name in diff.changed_fields if name in shown
    ]


def release_summary(diff: ReleaseDiff) -> str:
    if diff.after is not None and diff.before is None:
        ref = f" (ref {short_ref(diff.after.ref)})" if diff.after.ref else ""
        return f"added: {chart_text(diff.after)}{ref}"
    if diff.before is not None and diff.after is None:
        return f"removed (was {chart_text(diff.before)})"
    parts = [f"{name} {old} -> {new}" for name, old, new in field_changes(diff)]
    return "; ".join(parts) or "values"


# --- text ------------------------------------------------------------------------

_MARK = {"added": "+", "removed": "-", "changed": "~"}


def render_text(report: DiffReport) -> str:
    lines = [f"diff {revision_text(report.base)} -> {revision_text(report.head)}", ""]
    for inst in report.installations:
        lines.extend(_installation_text(inst))
        lines.append("")
    lines.append(summary_line(report) if report.has_changes else "no changes")
    return "\n".join(printable(line) for line in lines) + "\n"


def _installation_text(inst: InstallationDiff) -> list[str]:
    suffix = f" (installation {inst.change})" if inst.change != "changed" else ""
    lines = [f"{inst.name}{suffix}"]
    for diff in inst.releases:
        mark = _MARK[diff.change]
        lines.append(f"  {mark} {diff.name} [{diff.namespace}]  {release_summary(diff)}")
        lines.extend(f"      {_value_line(change)}" for change in diff.values)
    return lines


def _value_line(change: ValueChange) -> str:
    mark = _MARK[change.change]
    if change.change == "added":
        return f"{mark} {change.key}: {value_text(change.after)}"
    if change.change == "removed":
        return f"{mark} {change.key}: {value_text(change.before)}"
    return f"{mark} {change.key}: {value_text(change.before)} -> {value_text(change.after)}"


def render_invalid_text(rev: Revision, role: str) -> str:
    lines = [f"{role} {revision_text(rev)} is invalid ({len(rev.problems)} problems):"]
    lines.extend(f"  {p.render()}" for p in rev.problems)
    return "\n".join(printable(line) for line in lines) + "\n"


# --- Markdown --------------------------------------------------------------------


def code(text: str) -> str:
    """A Markdown code span that survives tables and in which nothing is parsed.

    Markdown between inline HTML tags (`<code>...</code>`) is still Markdown: a
    value could become a live link, an image or an @-mention in the bot's comment.
    A code span shows its content literally: no links, images, mentions, emphasis or
    HTML. Its fence is longer than any run of backticks inside; pipes are escaped
    for tables; control characters are shown as escapes, never as line breaks.
    """

    text = printable(text).replace("|", "\\|")
    fence = "`" * (max((len(run) for run in _BACKTICKS.findall(text)), default=0) + 1)
    # A space on each side keeps a leading or trailing backtick off the fence (and is
    # stripped again by the renderer).
    pad = " " if not text or text[0] in "` " or text[-1] in "` " else ""
    return f"{fence}{pad}{text}{pad}{fence}"


_BACKTICKS = re.compile("`+")


def cell(text: str) -> str:
    return html.escape(text).replace("|", "&#124;")


def render_markdown(report: DiffReport) -> str:
    head = [
        "## reconciler diff",
        "",
        f"**{summary_line(report) if report.has_changes else 'No changes'}** · "
        f"{code(revision_text(report.base))} → {code(revision_text(report.head))}",
        "",
    ]
    if not report.base.valid:
        head += [_invalid_base_note(report.base), ""]
    body: list[str] = []
    for names, section in _grouped_sections(report.installations):
        body += [*_heading(names), "", *section, ""]
    return _limit("\n".join(head), "\n".join(body))


def _invalid_base_note(rev: Revision) -> str:
    return (
        f"> **Warning:** the base {code(revision_text(rev))} is invalid "
        f"({len(rev.problems)} problems), so everything is compared against an empty repo."
    )


def _grouped_sections(
    installations: Iterable[InstallationDiff],
) -> list[tuple[list[str], list[str]]]:
    # A change to a project's defaults touches many installations the same way:
    # one section names them all instead of repeating it.
    groups: dict[str, tuple[list[str], list[str]]] = {}
    for inst in installations:
        section = _installation_markdown(inst)
        names, _ = groups.setdefault("\n".join(section), ([], section))
        names.append(inst.name)
    return list(groups.values())


def _heading(names: list[str]) -> list[str]:
    if len(names) <= INLINE_NAMES:
        return ["### " + ", ".join(code(n) for n in names)]
    shown = ", ".join(code(n) for n in names[:INLINE_NAMES])
    return [
        f"### {shown} and {len(names) - INLINE_NAMES} more installations",
        "",
        _details(f"all {len(names)} installations", [", ".join(code(n) for n in names)]),
    ]


def _installation_markdown(inst: InstallationDiff) -> list[str]:
    lines = [] if inst.change == "changed" else [f"Installation **{inst.change}**.", ""]
    table = ["| Release | Namespace | Change | Chart | Values |", "|---|---|---|---|---|"]
    table += [_release_row(diff) for diff in inst.releases]
    if len(inst.releases) > FOLD_AFTER:
        lines.append(_details(f"{len(inst.releases)} releases", table))
    else:
        lines += table
    values = [(diff.name, change) for diff in inst.releases for change in diff.values]
    if values:
        lines += [
            "",
            _details(f"{len(values)} value change{_s(len(values))}", _values_table(values)),
        ]
    return lines


def _release_row(diff: ReleaseDiff) -> str:
    keys = ", ".join(code(v.key) for v in diff.values[:FOLD_AFTER])
    if len(diff.values) > FOLD_AFTER:
        keys += f" and {len(diff.values) - FOLD_AFTER} more"
    name, namespace = code(diff.name), code(diff.namespace)
    return f"| {name} | {namespace} | {diff.change} | {_chart_cell(diff)} | {keys} |"


def _chart_cell(diff: ReleaseDiff) -> str:
    if diff.before is None and diff.after is not None:
        ref = f" (ref {code(short_ref(diff.after.ref))})" if diff.after.ref else ""
        return f"{code(diff.after.chart.version)}{ref}"
    if diff.after is None and diff.before is not None:
        return f"was {code(diff.before.chart.version)}"
    changes = [f"{name} {code(old)} → {code(new)}" for name, old, new in field_changes(diff)]
    return "<br>".join(changes)


def _values_table(values: list[tuple[str, ValueChange]]) -> list[str]:
    rows = ["| Release | Key | Before | After |", "|---|---|---|---|"]
    for release, change in values:
        before, after = code(value_text(change.before)), code(value_text(change.after))
        rows.append(f"| {code(release)} | {code(change.key)} | {before} | {after} |")
    return rows


def _details(summary: str, lines: list[str]) -> str:
    return "\n".join(
        ["<details>", f"<summary>{cell(summary)}</summary>", "", *lines, "", "</details>"]
    )


def _limit(head: str, body: str) -> str:
    text = f"{head}\n{body}".rstrip() + "\n"
    if len(text) <= MARKDOWN_LIMIT:
        return text
    cut = body[: MARKDOWN_LIMIT - len(head) - 400]
    # Cut between sections only, so no <details> or table is left open.
    cut = cut[: max(cut.rfind("\n### "), 0)]
    note = "_Output truncated: run `reconciler diff --output json` for everything._"
    return f"{head}\n{cut.rstrip()}\n\n{note}\n"


def render_invalid_markdown(rev: Revision) -> str:
    count = len(rev.problems)
    shown = [printable(p.render()) for p in rev.problems[:MAX_PROBLEMS_SHOWN]]
    if count > MAX_PROBLEMS_SHOWN:
        shown.append(f"... and {count - MAX_PROBLEMS_SHOWN} more: run `reconciler validate`")
    listing = "\n".join(shown)
    # A fenced code block shows its lines literally; its fence outruns any backticks inside.
    fence = "`" * max([3, *(len(run) + 1 for run in _BACKTICKS.findall(listing))])
    return (
        "## reconciler diff\n\n"
        f"**The head revision {code(revision_text(rev))} is invalid** "
        f"({count} problem{_s(count)}); nothing to compare.\n\n"
        f"{fence}text\n{listing}\n{fence}\n"
    )
