"""Promotion gates: promote a ref only where the installations that went first report it
deployed and healthy.

The evidence is what reconcilers post (reconciler.deployments): statuses on the GitHub
Deployments of the project's repository whose `sha` is the ref, each description ending in
`in <installation>`. An installation's verdict is its newest such status: `success` is
healthy; `failure`/`error` failed; `in_progress`/`queued`/`pending` in progress; none, or
`inactive` (superseded), missing. Deciding is pure (`evaluate`, `waves`); reading GitHub is
`read_reports`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from reconciler.githubapi import Client, GitHubError

Verdict = Literal["healthy", "failed", "in-progress", "missing"]
VERDICTS: dict[str, Verdict] = {
    "success": "healthy",
    "failure": "failed",
    "error": "failed",
    "in_progress": "in-progress",
    "queued": "in-progress",
    "pending": "in-progress",
}
# The reporter writes "<project> converged in <installation>", "reconciling <project> in
# <installation>" and "<project> failed in <installation>: <cause>": the installation is a
# DNS-1123 label after the reporter's own words, never taken from the cause (helm's text).
_INSTALLATION = re.compile(
    r"^(?:[a-z0-9-]+ (?:converged|failed)|reconciling [a-z0-9-]+) "
    r"in ([a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?)(?=: |$)"
)
MAX_PAGES = 10  # 1,000 deployments or statuses of one ref: far more than a fleet makes


@dataclass(frozen=True)
class Report:
    """The newest status one installation posted for the ref."""

    installation: str
    state: str
    created_at: str = ""
    order: tuple[int, int] = (0, 0)  # (deployment id, status id): ties of created_at

    @property
    def verdict(self) -> Verdict:
        return VERDICTS.get(self.state, "missing")


@dataclass(frozen=True)
class Gate:
    """The verdict on each installation a gate waits for, in the order they were given."""

    verdicts: tuple[tuple[str, Verdict], ...]

    def named(self, verdict: Verdict) -> tuple[str, ...]:
        return tuple(name for name, found in self.verdicts if found == verdict)

    @property
    def open(self) -> bool:
        return bool(self.verdicts) and all(v == "healthy" for _, v in self.verdicts)

    @property
    def failed(self) -> bool:
        return bool(self.named("failed"))

    def as_dict(self) -> dict[str, list[str]]:
        keys: tuple[Verdict, ...] = ("healthy", "failed", "in-progress", "missing")
        return {key.replace("-", "_"): list(self.named(key)) for key in keys}


def evaluate(installations: Sequence[str], reports: Mapping[str, Report]) -> Gate:
    """Each installation's verdict from its newest report (missing without one)."""

    return Gate(
        tuple(
            (name, reports[name].verdict if name in reports else "missing")
            for name in installations
        )
    )


def waves(installations: Sequence[str], size: int | None) -> list[tuple[str, ...]]:
    """Slices of `size` in the given order; one slice of all without a size."""

    if not size:
        return [tuple(installations)]
    return [tuple(installations[i : i + size]) for i in range(0, len(installations), size)]


def installation_of(status: Mapping[str, Any]) -> str | None:
    """Which installation posted a status, from the description the reporter writes."""

    description = status.get("description")
    if not isinstance(description, str):
        return None
    found = _INSTALLATION.match(description.strip())
    return found.group(1) if found else None


def newest_reports(
    deployments: Iterable[tuple[int, Sequence[Mapping[str, Any]]]],
) -> dict[str, Report]:
    """(deployment id, its statuses) -> the newest report per installation."""

    newest: dict[str, Report] = {}
    for deployment_id, statuses in deployments:
        for status in statuses:
            name = installation_of(status)
            if name is None:
                continue
            report = Report(
                name,
                str(status.get("state", "")),
                str(status.get("created_at") or ""),
                (deployment_id, _int(status.get("id"))),
            )
            known = newest.get(name)
            if known is None or (report.created_at, report.order) > (known.created_at, known.order):
                newest[name] = report
    return newest


def read_reports(client: Client, repository: str, ref: str) -> dict[str, Report]:
    """Newest report per installation for `ref` in `repository` (owner/repo).

    One GET of the Deployments whose sha is `ref`, and one of each one's statuses (more
    pages only past 100). Raises GitHubError, with a message saying what to fix.
    """

    owner, _, name = repository.partition("/")
    if not owner or not name or "/" in name:
        raise GitHubError(f"repository must be owner/repo, not {repository!r}")
    base = f"/repos/{owner}/{name}/deployments"
    found = []
    for deployment in _pages(client, base, {"sha": ref, "per_page": "100"}):
        if not isinstance(deployment, Mapping) or "id" not in deployment:
            continue
        deployment_id = _int(deployment["id"])
        statuses = _pages(client, f"{base}/{deployment_id}/statuses", {"per_page": "100"})
        found.append((deployment_id, [s for s in statuses if isinstance(s, Mapping)]))
    return newest_reports(found)


def _pages(client: Client, path: str, params: Mapping[str, str]) -> list[Any]:
    items: list[Any] = []
    response = client.get(path, params=params)
    for page in range(1, MAX_PAGES + 1):
        if not isinstance(response.body, list):
            raise GitHubError(f"GET {path}: expected a list, got {type(response.body).__name__}")
        items.extend(response.body)
        following = response.links.get("next")
        if not following or page == MAX_PAGES:
            break
        response = client.get(following)
    return items


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
