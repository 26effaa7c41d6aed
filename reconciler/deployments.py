"""GitHub Deployment statuses from the reconcile loop.

Each new environments revision may bring promotion commits that answer a
GitHub Deployment (a `Deployment-Id` trailer). The reporter posts
`in_progress` when it first sees one for this installation, then `success`
once every release of the promoted project is in sync and read Healthy (an install or
upgrade succeeds only once its workloads are ready; a release with no reading waits for
the next one, e.g. the next full resync), or `failure` once the
planner gave up on one of them (a release never healthy within its timeout fails
its attempts like a failed helm run). A failed attempt with retries left is not final:
a retry that succeeds (say, once a chart published late is there) posts `success`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from reconciler import trailers
from reconciler.desired import desired_state
from reconciler.github import GitHubConfig, State, report_deployment
from reconciler.model import Environments
from reconciler.reconcile import PassResult


@dataclass
class DeploymentReporter:
    installation: str
    config: GitHubConfig | None
    pending: list[tuple[str, trailers.Promotion]] = field(default_factory=list)

    def track(self, messages: Iterable[str]) -> None:
        """Commit messages new in this revision; promotions to this installation start `in_progress`."""

        if self.config is None:
            return
        for message in messages:
            promotion = trailers.promotion_of(message)
            if promotion is None or promotion.deployment_id is None:
                continue
            if promotion.installations and self.installation not in promotion.installations:
                continue
            # A newer promotion of the same project supersedes an older one still pending.
            self.pending = [(m, p) for m, p in self.pending if p.project != promotion.project]
            self.pending.append((message, promotion))
            self._post(
                message, "in_progress", f"reconciling {promotion.project} in {self.installation}"
            )

    def settle(self, env: Environments, result: PassResult) -> None:
        """After a pass: post the final status of every promotion whose releases are decided."""

        if not self.pending:
            return
        states = result.states()
        gave_up = {(hold.namespace, hold.release) for hold in result.plan.held if hold.gave_up}
        causes = {
            (hold.namespace, hold.release): hold.last_error or hold.reason
            for hold in result.plan.held
        }
        releases = desired_state(env, self.installation).releases
        still: list[tuple[str, trailers.Promotion]] = []
        for message, promotion in self.pending:
            keys = [(r.namespace, r.name) for r in releases if r.project == promotion.project]
            verdict = _verdict(
                [states.get(key, "") for key in keys],
                any(k in gave_up for k in keys),
                all(_healthy(result, key) for key in keys),
            )
            if verdict is None:
                still.append((message, promotion))
                continue
            state, text = verdict
            why = _why_failed([causes[key] for key in keys if key in causes])
            description = f"{promotion.project} {text} in {self.installation}{why}"
            self._post(message, state, description)
        self.pending = still

    def _post(self, message: str, state: State, description: str) -> None:
        report_deployment(message, state, description, self.config, installation=self.installation)


def _why_failed(causes: list[str]) -> str:
    """The first held release's cause: its last error, else the hold's reason (GitHub shows
    140 characters)."""

    if not causes:
        return ""
    # The command and helm's "INSTALLATION FAILED:" take room the cause needs.
    return f": {_HELM_PREFIX.sub('', causes[0])}"


_HELM_PREFIX = re.compile(r"^`helm [^`]*` exited -?\d+: (?:[A-Z ]+ FAILED: )?")


def _healthy(result: PassResult, key: tuple[str, str]) -> bool:
    """Converged means read Healthy: a release in sync whose last reading is not Healthy (a
    full resync found it Degraded), or that has none (its record could not be read, its
    last action was a rollback or an unlock), is not converged until one is read."""

    health = result.health.get(key)
    return health is not None and health.healthy


def _verdict(states: list[str], gave_up: bool, healthy: bool) -> tuple[State, str] | None:
    if not states:
        return None
    if gave_up:
        return "failure", "failed"
    if healthy and all(s in ("in-sync", "succeeded") for s in states):
        return "success", "converged"
    return None
