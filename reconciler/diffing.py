"""What a change to an environments repo does, installation by installation.

`diff_environments` compares two loaded revisions (no I/O; `reconciler.revisions`
loads them from git) and `report_json` gives the stable JSON document of
`reconciler diff --output json`:

    {
      "version": 1,
      "base": REVISION, "head": REVISION,
      "summary": {"installations": 2, "releases": 3, "added": 1, "removed": 0, "changed": 2},
      "installations": [
        {"name": "prod", "change": "added" | "removed" | "changed",
         "releases": [
           {"name": "api", "namespace": "api", "change": "added" | "removed" | "changed",
            "changed": ["project", "chart.repository", "chart.name", "chart.version", "ref",
                        "values"],            # only the fields that differ
            "before": RELEASE | null, "after": RELEASE | null,
            "values": [                       # changed releases only, sorted by path
              {"key": "image.tag", "path": ["image", "tag"],
               "change": "added" | "removed" | "changed",
               "before": ..., "after": ...,   # each omitted when the key is absent on that side
               "secret": false}]}]}]
    }
    REVISION = {"ref": "HEAD~1" | "working tree" | ..., "commit": SHA | null,
                "valid": true | false, "problems": [{"path", "line", "message"}]}
    RELEASE  = {"project", "namespace", "ref": SHA | null,
                "chart": {"repository", "name", "version"}}

Installations and releases are sorted by name; a release is identified by
(namespace, name), so moving it to another namespace is a removal and an addition,
which is also what Helm does. Values are the effective values after layering
(`reconciler.desired`) without in-cluster values, which `diff` cannot see.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from reconciler.desired import SECRET_MASK, ValuePath, desired_state, is_secret, leaves
from reconciler.model import DesiredRelease, DesiredState, Environments, Values
from reconciler.revisions import Revision

JSON_VERSION = 1
Change = Literal["added", "removed", "changed"]


class _Absent:
    """The side of a value change where the key does not exist."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()


@dataclass(frozen=True)
class ValueChange:
    path: ValuePath
    before: Any = ABSENT
    after: Any = ABSENT
    secret: bool = False

    @property
    def change(self) -> Change:
        if self.before is ABSENT:
            return "added"
        return "removed" if self.after is ABSENT else "changed"

    @property
    def key(self) -> str:
        return dotted(self.path)


@dataclass(frozen=True)
class ReleaseDiff:
    name: str
    namespace: str
    before: DesiredRelease | None
    after: DesiredRelease | None
    values: tuple[ValueChange, ...] = ()

    @property
    def change(self) -> Change:
        if self.before is None:
            return "added"
        return "removed" if self.after is None else "changed"

    @property
    def changed_fields(self) -> tuple[str, ...]:
        if self.before is None or self.after is None:
            return ()
        fields = [name for name, get in _FIELDS if get(self.before) != get(self.after)]
        return (*fields, "values") if self.values else tuple(fields)


_FIELDS: tuple[tuple[str, Callable[[DesiredRelease], object]], ...] = (
    ("project", lambda r: r.project),
    ("chart.repository", lambda r: r.chart.repository),
    ("chart.name", lambda r: r.chart.name),
    ("chart.version", lambda r: r.chart.version),
    ("ref", lambda r: r.ref),
)


@dataclass(frozen=True)
class InstallationDiff:
    name: str
    change: Change
    releases: tuple[ReleaseDiff, ...]


@dataclass(frozen=True)
class DiffReport:
    base: Revision
    head: Revision
    installations: tuple[InstallationDiff, ...] = ()
    summary: Mapping[str, int] = field(default_factory=dict)

    @property
    def has_changes(self) -> bool:
        return bool(self.installations)


# --- comparing -------------------------------------------------------------------


def diff_environments(base: Environments, head: Environments) -> tuple[InstallationDiff, ...]:
    """Every installation whose releases differ, plus installations added or removed."""

    diffs = []
    for name in sorted(set(base.installations) | set(head.installations)):
        before = desired_state(base, name) if name in base.installations else None
        after = desired_state(head, name) if name in head.installations else None
        diff = diff_installation(name, before, after)
        if diff is not None:
            diffs.append(diff)
    return tuple(diffs)


def diff_installation(
    name: str, before: DesiredState | None, after: DesiredState | None
) -> InstallationDiff | None:
    releases = diff_releases(before.releases if before else (), after.releases if after else ())
    if before is None:
        return InstallationDiff(name, "added", releases)
    if after is None:
        return InstallationDiff(name, "removed", releases)
    return InstallationDiff(name, "changed", releases) if releases else None


def diff_releases(
    before: Iterable[DesiredRelease],
    after: Iterable[DesiredRelease],
    secrets: Mapping[str, frozenset[ValuePath]] | None = None,
) -> tuple[ReleaseDiff, ...]:
    """Releases added, removed or changed; `secrets` maps a release name to its Secret paths."""

    old = {(r.namespace, r.name): r for r in before}
    new = {(r.namespace, r.name): r for r in after}
    diffs = []
    for key in sorted(set(old) | set(new), key=lambda k: (k[1], k[0])):
        a, b = old.get(key), new.get(key)
        hidden = (secrets or {}).get(key[1], frozenset())
        values = diff_values(a.values, b.values, hidden) if a and b else ()
        diff = ReleaseDiff(name=key[1], namespace=key[0], before=a, after=b, values=values)
        if diff.change != "changed" or diff.changed_fields:
            diffs.append(diff)
    return tuple(diffs)


def diff_values(
    before: Values, after: Values, secrets: frozenset[ValuePath] = frozenset()
) -> tuple[ValueChange, ...]:
    """Leaf-by-leaf changes (lists count as one leaf); Secret-sourced sides are masked."""

    if _canonical(before) == _canonical(after):
        return ()
    old, new = dict(leaves(before)), dict(leaves(after))
    changes = []
    for path in sorted(set(old) | set(new)):
        a, b = old.get(path, ABSENT), new.get(path, ABSENT)
        if _canonical(a) == _canonical(b):
            continue
        if is_secret(path, secrets):
            a, b = _mask(a), _mask(b)
            changes.append(ValueChange(path, a, b, secret=True))
        else:
            changes.append(ValueChange(path, a, b))
    return tuple(changes)


def _canonical(value: Any) -> str:
    # Compared as JSON so that `1`, `1.0` and `true` (equal in Python) stay distinct.
    if value is ABSENT:
        return "\0absent"
    return json.dumps(value, sort_keys=True, default=str)


def _mask(value: Any) -> Any:
    return value if value is ABSENT else SECRET_MASK


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


def dotted(path: ValuePath) -> str:
    """`image.tag`; keys that are not plain words are quoted: `annotations["a.b/c"]`."""

    out = ""
    for key in path:
        if _PLAIN_KEY.fullmatch(key):
            out += f".{key}" if out else key
        else:
            out += f"[{json.dumps(key, ensure_ascii=False)}]"
    return out


def summarize(installations: Iterable[InstallationDiff]) -> dict[str, int]:
    diffs = list(installations)
    releases = [r for i in diffs for r in i.releases]
    counts = {kind: sum(r.change == kind for r in releases) for kind in ("added", "removed")}
    return {
        "installations": len(diffs),
        "releases": len(releases),
        **counts,
        "changed": len(releases) - counts["added"] - counts["removed"],
    }


def build_report(
    base: Revision, head: Revision, base_env: Environments, head_env: Environments
) -> DiffReport:
    installations = diff_environments(base_env, head_env)
    return DiffReport(base, head, installations, summarize(installations))


# --- JSON ------------------------------------------------------------------------


def report_json(report: DiffReport) -> dict[str, Any]:
    return {
        "version": JSON_VERSION,
        "base": _revision_json(report.base),
        "head": _revision_json(report.head),
        "summary": dict(report.summary or summarize(report.installations)),
        "installations": [
            {
                "name": inst.name,
                "change": inst.change,
                "releases": [_release_json(r) for r in inst.releases],
            }
            for inst in report.installations
        ],
    }


def _revision_json(rev: Revision) -> dict[str, Any]:
    return {
        "ref": rev.label,
        "commit": rev.commit,
        "valid": rev.valid,
        "problems": [p.as_dict() for p in rev.problems],
    }


def _release_json(diff: ReleaseDiff) -> dict[str, Any]:
    return {
        "name": diff.name,
        "namespace": diff.namespace,
        "change": diff.change,
        "changed": list(diff.changed_fields),
        "before": _side_json(diff.before),
        "after": _side_json(diff.after),
        "values": [_value_json(v) for v in diff.values],
    }


def _side_json(release: DesiredRelease | None) -> dict[str, Any] | None:
    if release is None:
        return None
    chart = release.chart
    return {
        "project": release.project,
        "namespace": release.namespace,
        "ref": release.ref,
        "chart": {"repository": chart.repository, "name": chart.name, "version": chart.version},
    }


def _value_json(change: ValueChange) -> dict[str, Any]:
    out: dict[str, Any] = {"key": change.key, "path": list(change.path), "change": change.change}
    if change.before is not ABSENT:
        out["before"] = change.before
    if change.after is not ABSENT:
        out["after"] = change.after
    out["secret"] = change.secret
    return out
