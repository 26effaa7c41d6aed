"""The poller: GitHub Deployments into promotions, for setups that cannot receive webhooks.

Per repository in the mapping, one conditional request per poll: GitHub lists
deployments newest first, so an unchanged first page (304, free against the rate
limit) means nothing new. Otherwise it reads pages (`Link: rel="next"`) until it
reaches deployments it has handled, or older than the moment it first polled
that repository,
and mirrors the new ones oldest first. The ETag is stored only once every new
deployment was handled, so a failed promotion is retried at the next poll.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime

from reconciler import log
from reconciler.errors import ReconcilerError
from reconciler.githubapi import Client, GitHubError, RateLimited
from reconciler.mirror.core import Deployment, DeploymentError, Mirror
from reconciler.mirror.ledger import Ledger

MAX_PAGES = 50  # a bound on one catch-up; the rest follows at the next poll


@dataclass
class PollReport:
    requests: int = 0
    not_modified: int = 0
    mirrored: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    wait: float = 0.0


@dataclass
class Poller:
    client: Client
    mirror: Mirror
    ledger: Ledger
    per_page: int = 100
    since: str | None = None  # for repositories polled the first time; default: now

    def poll_once(self) -> PollReport:
        report = PollReport()
        for repository in self.mirror.mapping.repositories:
            try:
                self._poll_repository(repository, report)
            except RateLimited as limited:
                report.failed.append(f"{repository}: {limited}")
                report.wait = max(report.wait, limited.wait)
            except ReconcilerError as error:
                log.error("poll: repository failed", repository=repository, error=str(error))
                report.failed.append(f"{repository}: {error}")
        return report

    def run(self, interval: float, stop: threading.Event) -> None:
        while not stop.is_set():
            report = self.poll_once()
            log.info(
                "poll: done",
                requests=report.requests,
                not_modified=report.not_modified,
                mirrored=len(report.mirrored),
                failed=len(report.failed),
            )
            stop.wait(max(interval, report.wait))

    def _poll_repository(self, repository: str, report: PollReport) -> None:
        fresh = self._fresh_deployments(repository, report)
        if fresh is None:
            return
        deployments, etag = fresh
        for deployment in sorted(deployments, key=lambda d: d.id):
            outcome = self.mirror.handle(deployment)  # a GitError stops here: retried next poll
            self.ledger.record_deployment(repository, deployment.id)
            target = (
                report.skipped if outcome.status in ("rejected", "ignored") else report.mirrored
            )
            target.append(deployment.id)
        self.ledger.set_etag(repository, etag)

    def _fresh_deployments(
        self, repository: str, report: PollReport
    ) -> tuple[list[Deployment], str | None] | None:
        """New deployments and the first page's ETag; None when nothing changed (304)."""

        path = f"/repos/{repository}/deployments"
        response = self.client.get(
            path, params={"per_page": str(self.per_page)}, etag=self.ledger.etag(repository)
        )
        report.requests += 1
        if response.status == 304:
            report.not_modified += 1
            return None
        etag = response.etag
        since = self.ledger.since(repository, self.since or _now())
        last_id = self.ledger.last_id(repository)
        fresh: list[Deployment] = []
        for _ in range(MAX_PAGES):
            done = self._collect(response.body, repository, since, last_id, fresh)
            next_url = response.links.get("next")
            if done or not next_url:
                break
            response = self.client.get(next_url)
            report.requests += 1
        return fresh, etag

    def _collect(
        self, items: object, repository: str, since: str, last_id: int, into: list[Deployment]
    ) -> bool:
        """Add this page's new deployments; True once older ones are reached."""

        if not isinstance(items, list):
            raise GitHubError(f"/repos/{repository}/deployments: expected a JSON list")
        for item in items:
            try:
                deployment = Deployment.from_api(item, repository)
            except DeploymentError as error:
                log.warning("poll: unreadable deployment", repository=repository, error=str(error))
                continue
            if deployment.id <= last_id or _before(deployment.created_at, since):
                return True
            if not self.ledger.mirrored(repository, deployment.id):
                into.append(deployment)
        return False


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _before(created_at: str, since: str) -> bool:
    if not created_at:
        return False
    try:
        return _utc(created_at) < _utc(since)
    except ValueError:
        return False


def _utc(text: str) -> datetime:
    # A state file written before `--since` required a zone may hold a time without
    # one: read it as UTC rather than fail every poll comparing it with GitHub's times.
    when = datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=UTC)
