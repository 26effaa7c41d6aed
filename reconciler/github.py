"""GitHub Deployment statuses: tell GitHub how a mirrored or promoted deployment went.

Optional: without a configured token nothing is sent. The reporting step calls
`report_deployment` with the message of the environments commit it converged
(its trailers say which Deployment it answers) and the outcome.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from reconciler import log, trailers
from reconciler.errors import UsageError
from reconciler.excerpt import bounded
from reconciler.githubapi import DEFAULT_API_URL, Client, GitHubError

State = Literal["in_progress", "success", "failure"]
STATES: tuple[State, ...] = ("in_progress", "success", "failure")
MAX_DESCRIPTION = 140  # GitHub rejects longer descriptions


@dataclass(frozen=True)
class GitHubConfig:
    """Where and how to post statuses.

    `repositories` maps a project to its GitHub `owner/repo`, for commits that
    carry a Deployment-Id but no Deployment-Repository trailer.
    """

    token: str
    api_url: str = DEFAULT_API_URL
    repositories: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 10.0

    def client(self) -> Client:
        # A reporter must not stall a reconcile pass for an hour on a rate limit.
        return Client(self.api_url, self.token, timeout=self.timeout, max_wait=30.0)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> GitHubConfig | None:
        """From RECONCILER_GITHUB_TOKEN_FILE and RECONCILER_GITHUB_API_URL; None without a token."""

        path = environ.get("RECONCILER_GITHUB_TOKEN_FILE")
        if not path:
            return None
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise UsageError(f"RECONCILER_GITHUB_TOKEN_FILE {path}: {error.strerror}") from None
        if not token:
            return None
        return cls(token, environ.get("RECONCILER_GITHUB_API_URL") or DEFAULT_API_URL)


def post_deployment_status(
    config: GitHubConfig,
    repo: str,
    deployment_id: int,
    state: State,
    description: str,
    environment_url: str | None = None,
) -> None:
    """POST /repos/{owner}/{repo}/deployments/{id}/statuses; raises GitHubError on failure."""

    if state not in STATES:
        raise ValueError(f"state must be one of {', '.join(STATES)}, not {state!r}")
    owner, _, name = repo.partition("/")
    if not owner or not name or "/" in name:
        raise ValueError(f"repository must be owner/repo, not {repo!r}")
    body: dict[str, str] = {"state": state, "description": _shorten(description)}
    if environment_url:
        body["environment_url"] = environment_url
    config.client().post(f"/repos/{owner}/{name}/deployments/{deployment_id}/statuses", body)


def report_deployment(
    commit_message: str,
    result: State,
    description: str,
    config: GitHubConfig | None,
    *,
    installation: str | None = None,
    environment_url: str | None = None,
) -> bool:
    """Post a status for the Deployment a commit answers; True if one was posted.

    Does nothing without a config, for a commit without a Deployment-Id trailer,
    or when `installation` is given and the commit did not promote to it. A
    failure to post is logged, never raised: GitHub being down must not fail a pass.
    """

    promotion = trailers.promotion_of(commit_message)
    if config is None or promotion is None or promotion.deployment_id is None:
        return False
    if installation and promotion.installations and installation not in promotion.installations:
        return False
    repo = promotion.deployment_repository or config.repositories.get(promotion.project)
    if not repo:
        log.warning(
            "github: deployment has no repository to report to",
            deployment=promotion.deployment_id,
            project=promotion.project,
        )
        return False
    try:
        post_deployment_status(
            config, repo, promotion.deployment_id, result, description, environment_url
        )
    except (GitHubError, ValueError) as error:
        log.warning(
            "github: cannot post deployment status",
            deployment=promotion.deployment_id,
            repository=repo,
            error=str(error),
        )
        return False
    return True


def _shorten(text: str) -> str:
    # Head (what failed) and tail (helm's details) of a long error both stay.
    return bounded(" ".join(text.split()), MAX_DESCRIPTION)
