"""One GitHub Deployment in, one promotion out: the part the webhook and the poller share."""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from reconciler import log
from reconciler.errors import ReconcilerError, ValidationError
from reconciler.mirror.mapping import DeploymentMapping
from reconciler.promote import PromoteError, Promoter, Request, Result
from reconciler.releasefile import ReleaseFileError

Status = Literal["promoted", "unchanged", "duplicate", "ignored", "rejected"]
_SHA = re.compile(r"[0-9a-f]{40}")


class DeploymentError(ReconcilerError):
    """A deployment object without the fields a mirror needs."""


@dataclass(frozen=True)
class Deployment:
    """The fields of a GitHub Deployment the mirror uses (webhook payload or REST API)."""

    id: int
    repository: str
    environment: str
    sha: str
    task: str = "deploy"
    created_at: str = ""

    @classmethod
    def from_api(cls, item: Any, repository: str) -> Deployment:
        """One element of GET /repos/{owner}/{repo}/deployments."""

        if not isinstance(item, Mapping):
            raise DeploymentError("deployment: expected an object")
        try:
            return cls(
                id=int(item["id"]),
                repository=repository,
                environment=str(item["environment"]),
                sha=str(item["sha"]),
                task=str(item.get("task") or "deploy"),
                created_at=str(item.get("created_at") or ""),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise DeploymentError(f"deployment: missing or invalid field {error}") from None

    @classmethod
    def from_event(cls, payload: Any) -> Deployment:
        """The `deployment` webhook event: {action, deployment: {...}, repository: {full_name}}."""

        if not isinstance(payload, Mapping):
            raise DeploymentError("payload: expected a JSON object")
        repository = payload.get("repository")
        full_name = repository.get("full_name") if isinstance(repository, Mapping) else None
        if not isinstance(full_name, str) or "/" not in full_name:
            raise DeploymentError("payload: repository.full_name is missing")
        return cls.from_api(payload.get("deployment"), full_name)


@dataclass(frozen=True)
class Outcome:
    status: Status
    message: str
    result: Result | None = None

    @property
    def commit(self) -> str | None:
        return self.result.commit if self.result else None


class Mirror:
    """Maps deployments to promotions; one promotion at a time (they share one clone)."""

    def __init__(self, mapping: DeploymentMapping, promoter: Promoter) -> None:
        self.mapping = mapping
        self.promoter = promoter
        self._lock = threading.Lock()

    def handle(self, deployment: Deployment) -> Outcome:
        """Promote the deployment's SHA; GitError propagates (worth retrying later)."""

        request = self.request_for(deployment)
        if isinstance(request, Outcome):
            return request
        try:
            with self._lock:
                result = self.promoter.promote(request)
        except ValidationError as error:
            problems = "; ".join(p.render() for p in error.problems[:5])
            return self._rejected(deployment, f"the environments repo would be invalid: {problems}")
        except (PromoteError, ReleaseFileError) as error:
            return self._rejected(deployment, str(error))
        status: Status = "promoted" if result.status == "pushed" else result.status
        where = ", ".join(result.installations)
        pinned = [c.installation for c in result.changes if c.action == "pinned"]
        held = f" (pinned, left as it is: {', '.join(pinned)})" if pinned else ""
        message = {
            "promoted": f"promoted {request.project} to {deployment.sha[:12]} in {where}{held}",
            "unchanged": f"{request.project} is already at {deployment.sha[:12]} in {where}{held}",
            "duplicate": f"already mirrored by commit {result.commit}",
        }[status]
        log.info(
            f"mirror: {message}",
            deployment=deployment.id,
            repository=deployment.repository,
            commit=result.commit,
        )
        return Outcome(status, message, result)

    def request_for(self, deployment: Deployment) -> Request | Outcome:
        mapped = self.mapping.for_repository(deployment.repository)
        if mapped is None:
            return self._rejected(
                deployment, f"repository {deployment.repository} is not in the mapping"
            )
        if deployment.task not in mapped.tasks:
            return Outcome(
                "ignored", f"task {deployment.task!r} is not mirrored ({', '.join(mapped.tasks)})"
            )
        if mapped.ignores(deployment.environment):
            return Outcome(
                "ignored",
                f"environment {deployment.environment!r} of {deployment.repository} is ignored"
                " (ignoreEnvironments / unlistedEnvironments: ignore)",
            )
        target = mapped.target(deployment.environment)
        if target is None:
            return self._rejected(
                deployment,
                f"environment {deployment.environment!r} is not in the mapping for"
                f" {deployment.repository} (unlistedEnvironments: reject)",
            )
        if not _SHA.fullmatch(deployment.sha):
            return self._rejected(deployment, f"sha {deployment.sha!r} is not a 40-hex commit SHA")
        return Request(
            project=mapped.project,
            ref=deployment.sha,
            installations=target.installations,
            selector=target.selector,
            deployment_id=deployment.id,
            deployment_repository=deployment.repository,
        )

    def _rejected(self, deployment: Deployment, reason: str) -> Outcome:
        message = (
            f"deployment {deployment.id} of {deployment.repository} to environment"
            f" {deployment.environment!r}: {reason}"
        )
        log.error(f"mirror: {message}", deployment=deployment.id)
        return Outcome("rejected", message)
