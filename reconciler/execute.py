"""Runs a plan's actions through helm: dependencies first, independent releases in parallel.

A release's steps run in order in one job; a job starts once every job it
depends on has succeeded, and is skipped (with the reason) when one failed.
A failure stays with its release and its dependents.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from reconciler import log
from reconciler.charts import SharedCharts
from reconciler.errors import NotWorking, ReconcilerError, unexpected
from reconciler.excerpt import bounded
from reconciler.helm import Helm
from reconciler.model import Policy
from reconciler.plan import Action, Key, Plan

Result = Literal["succeeded", "failed", "skipped"]


@dataclass(frozen=True)
class Outcome:
    """What happened to one release's job."""

    release: str
    namespace: str
    kind: str
    result: Result
    message: str
    seconds: float = 0.0
    digest: str | None = None
    error: str = ""  # a failure's cause alone (masked, bounded), without what remediation did
    warning: str = ""  # what a successful step left wrong (masked): CRDs helm did not update
    # The revision helm deployed that then failed `verify` (helm calls it deployed, with
    # the desired digest): the planner must not take it for in sync.
    unverified_revision: int | None = None

    @property
    def key(self) -> Key:
        return (self.namespace, self.release)


@dataclass(frozen=True)
class Job:
    key: Key
    steps: tuple[Action, ...]
    depends_on: frozenset[str]

    @property
    def release(self) -> str:
        return self.key[1]


Masker = Callable[[str], str]


def jobs_of(actions: Sequence[Action]) -> list[Job]:
    """Group each release's steps (e.g. unlock then upgrade) into one job, plan order kept."""

    steps: dict[Key, list[Action]] = {}
    for action in actions:
        steps.setdefault(action.key, []).append(action)
    return [
        Job(key, tuple(group), frozenset(d for a in group for d in a.depends_on))
        for key, group in steps.items()
    ]


@dataclass(frozen=True)
class Proof:
    """How revisions are signed: `labels(namespace, release, revision, digest, account)` gives
    the proof labels of an install or upgrade written as ServiceAccount `account` (None: the
    reconciler), `after_rollback(namespace, release)` signs the
    revision a rollback just wrote (see reconciler.trust)."""

    labels: Callable[[str, str, int, str, str | None], Mapping[str, str]] = (
        lambda ns, name, rev, digest, account: {}
    )
    after_rollback: Callable[[str, str, int], None] = lambda ns, name, target: None


def execute(
    plan: Plan,
    helm: Helm,
    policy: Policy,
    mask: Masker = lambda text: text,
    on_outcome: Callable[[Outcome], None] = lambda outcome: None,
    proceed: Callable[[], str] = lambda: "",
    latest_revision: Callable[[str, str], int | None] | None = None,
    ensure_namespace: Callable[[str], None] = lambda name: None,
    proof: Proof = Proof(),
    verify: Callable[[Action], None] = lambda action: None,
    prepare: Callable[[Action, Path | None], str] = lambda action, chart: "",
    check: Callable[[Action, Path | None], str] = lambda action, chart: "",
) -> list[Outcome]:
    """Run every job; `proceed` returns a reason to start no further job (shutdown, lost lease).

    `verify(action)` runs after each install or upgrade that helm reported done and raises a
    `ReconcilerError` when the release does not work (unhealthy workloads, a failed test):
    the attempt then counts as failed and remediation applies as for a failed helm run.
    `prepare(action, chart archive or None)` runs before helm (raising fails the attempt) and
    returns what it did; `check(action, chart archive or None)` runs last and returns what
    the step left wrong without failing it (the outcome's `warning`). Both texts join the
    outcome's message.
    """

    jobs = jobs_of(plan.actions)
    charts = SharedCharts(helm, plan.actions, policy.timeout_seconds)
    runner = _Runner(
        helm, policy, plan, mask, latest_revision, _once_each(ensure_namespace), charts, proof
    )
    runner.verify, runner.prepare, runner.check = verify, prepare, check
    outcomes: dict[Key, Outcome] = {}
    pending = {job.key: job for job in jobs}
    running: dict[Future[Outcome], Job] = {}
    with charts, ThreadPoolExecutor(max_workers=max(policy.concurrency, 1)) as pool:
        while pending or running:
            for job in _ready(pending, outcomes, jobs):
                del pending[job.key]
                blocker = _failed_dependency(job, outcomes)
                stopping = proceed()
                if blocker or stopping:
                    why = f"dependency {blocker} did not converge" if blocker else stopping
                    outcomes[job.key] = _skipped(job, why)
                    on_outcome(outcomes[job.key])
                else:
                    running[pool.submit(runner.run, job)] = job
            if not running:
                continue
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                outcome = future.result()
                outcomes[running.pop(future).key] = outcome
                on_outcome(outcome)
    return [outcomes[job.key] for job in jobs]


def _ready(pending: dict[Key, Job], outcomes: dict[Key, Outcome], jobs: Iterable[Job]) -> list[Job]:
    finished = {key[1] for key in outcomes}
    acting = {job.release for job in jobs}
    return [
        job
        for job in list(pending.values())
        if all(dep in finished or dep not in acting for dep in job.depends_on)
    ]


def _once_each(call: Callable[[str], None]) -> Callable[[str], None]:
    """`call` at most once per argument (per pass), however many threads ask."""

    done: set[str] = set()
    lock = threading.Lock()

    def once(name: str) -> None:
        with lock:
            if name in done:
                return
            call(name)
            done.add(name)

    return once


def _failed_dependency(job: Job, outcomes: dict[Key, Outcome]) -> str:
    by_release = {key[1]: outcome for key, outcome in outcomes.items()}
    failed = sorted(
        d for d in job.depends_on if d in by_release and by_release[d].result != "succeeded"
    )
    return ", ".join(failed)


def count_results(outcomes: Iterable[Outcome]) -> str:
    """`2 succeeded, 1 failed, 1 skipped`: a release skipped for a failed dependency or a
    shutdown did not fail itself (skipped shows only when there are some)."""

    counts = Counter(o.result for o in outcomes)
    text = f"{counts['succeeded']} succeeded, {counts['failed']} failed"
    return text + (f", {counts['skipped']} skipped" if counts["skipped"] else "")


def done_message(action: Action) -> str:
    """What a step that succeeded did (its plan reason says why it was needed, not what
    happened: "not installed" next to "succeeded" would read as a contradiction)."""

    chart = f"{action.desired.chart.name} {action.desired.chart.version}" if action.desired else ""
    if action.kind == "install":
        return f"installed {chart}"
    if action.kind == "upgrade":
        return f"upgraded to {chart} ({action.reason})"
    if action.kind == "unlock":
        return f"unlocked ({action.reason})"
    return f"uninstalled ({action.reason})"


def _skipped(job: Job, why: str) -> Outcome:
    last = job.steps[-1]
    return Outcome(last.release, last.namespace, last.kind, "skipped", why)


class _Runner:
    def __init__(
        self,
        helm: Helm,
        policy: Policy,
        plan: Plan,
        mask: Masker,
        latest_revision: Callable[[str, str], int | None] | None,
        ensure_namespace: Callable[[str], None],
        charts: SharedCharts,
        proof: Proof,
    ) -> None:
        self.charts = charts
        self.proof = proof
        self.helm = helm
        self.policy = policy
        self.plan = plan
        self.mask = mask
        self.latest_revision = latest_revision
        self.ensure_namespace = ensure_namespace
        self.verify: Callable[[Action], None] = lambda action: None
        self.prepare: Callable[[Action, Path | None], str] = lambda action, chart: ""
        self.check: Callable[[Action, Path | None], str] = lambda action, chart: ""

    def run(self, job: Job) -> Outcome:
        started = time.monotonic()
        last = job.steps[-1]
        digest = last.desired.digest if last.desired else None
        notes: list[str] = []
        warnings: list[str] = []
        try:
            for step in job.steps:
                self._step(step, notes, warnings)
        except ReconcilerError as error:
            message = self.mask(str(error))
            remedy = self._remediate(last, message)
            unverified = error.revision if isinstance(error, NotWorking) else None
            return Outcome(
                last.release, last.namespace, last.kind, "failed",
                bounded(message + remedy), time.monotonic() - started, digest, bounded(message),
                unverified_revision=unverified,
            )  # fmt: skip
        except Exception as error:  # a bug or hostile input fails this release, not the pass
            message = self._unexpected(last, error)
            return Outcome(
                last.release, last.namespace, last.kind, "failed",
                message, time.monotonic() - started, digest, message,
            )  # fmt: skip
        # Notes and warnings quote chart files and the API server: masked like errors.
        extra = self.mask("; ".join(filter(None, [*notes, *warnings])))
        message = f"{done_message(last)}; {extra}" if extra else done_message(last)
        return Outcome(
            last.release, last.namespace, last.kind, "succeeded",
            bounded(message), time.monotonic() - started, digest,
            warning=bounded(self.mask("; ".join(filter(None, warnings)))),
        )  # fmt: skip

    def _checked(self, action: Action, archive: Path | None) -> str:
        """`check`'s warning; helm's step succeeded, so a check that breaks (a bug, a chart
        file of a shape no reader expected) is a warning too, never a failed step."""

        try:
            return self.check(action, archive)
        except Exception as error:  # a failed step would be retried and remediated for it
            log.error("check failed", release=f"{action.namespace}/{action.release}",
                      error=unexpected(error))  # fmt: skip
            return f"the step's checks could not run: {unexpected(error)}"

    def _unexpected(self, action: Action, error: Exception) -> str:
        """One line naming the release and the exception's type; its text (which may quote
        a value from a chart or a live object) goes to the log only, masked and bounded."""

        where = f"{action.namespace}/{action.release}"
        detail = bounded(" ".join(self.mask(str(error)).split()), 500)
        log.error("unexpected error", release=where, kind=type(error).__name__, error=detail)
        return (
            f"{where}: {unexpected(error)} in the reconciler during the {action.kind}; "
            "counted as a failed attempt, not remediated (details in the log)"
        )

    def _step(self, action: Action, notes: list[str], warnings: list[str]) -> None:
        if action.kind == "install":
            self.ensure_namespace(action.namespace)
        if action.kind in ("install", "upgrade"):
            assert action.desired is not None
            description = f"reconciler {self.plan.revision[:12]}: {action.reason}"
            fresh = action.kind == "install" and action.revision is None
            number = self._next_revision(action)
            proof = self.proof.labels(
                action.namespace,
                action.release,
                number,
                action.desired.digest,
                action.desired.service_account,
            )
            archive = self.charts.archive(action.desired.chart)
            notes.append(self.prepare(action, archive))
            self.helm.upgrade_install(
                action.desired, self.plan.installation, self.policy, description, fresh,
                chart_file=archive, proof=proof,
                server_side=action.server_side,
            )  # fmt: skip
            try:
                self.verify(action)
            except ReconcilerError as error:
                known = error.revision if isinstance(error, NotWorking) else None
                raise NotWorking(str(error), known or number) from error
            warnings.append(self._checked(action, archive))
        elif action.kind in ("unlock", "rollback") and action.revision:
            self._rollback(action, action.revision)
        else:
            self._uninstall(action)

    def _rollback(self, action: Action, target: int) -> None:
        self.helm.rollback(
            action.release, action.namespace, target, self.policy,
            service_account=action.service_account,
        )  # fmt: skip
        # helm copied the target's labels: sign the new revision as the reconciler's own.
        self.proof.after_rollback(action.namespace, action.release, target)

    def _uninstall(self, action: Action) -> None:
        self.helm.uninstall(
            action.release, action.namespace, self.policy, service_account=action.service_account
        )

    def _next_revision(self, action: Action) -> int:
        """The number helm will give the revision it writes: the latest one plus one."""

        if self.latest_revision is not None:
            try:
                return (self.latest_revision(action.namespace, action.release) or 0) + 1
            except ReconcilerError:
                pass  # the plan's view is the next best guess
        return (action.revision or 0) + 1

    def _remediate(self, action: Action, message: str) -> str:
        """Apply the installation's remediation policy after a failed install or upgrade."""

        if action.kind not in ("install", "upgrade") or self.policy.remediation == "none":
            return ""
        if self.helm.cancel.is_set():
            # Shutting down: the release is already failed (not pending); the next
            # leader decides with the whole policy, so leave it for that pass.
            return "; interrupted by shutdown, remediation left to the next pass"
        if not self._recorded_a_revision(action):
            # Failed before helm stored anything (chart not found, template error):
            # the release is as it was, and rolling back would move it further.
            return "; helm recorded no new revision, nothing to remediate"
        try:
            if action.correction:
                return self._after_failed_correction(action)
            if self.policy.remediation == "rollback" and action.rollback_to:
                # The last revision the reconciler deployed: never a failed one, whose
                # labels (digest included) helm would copy and call the release in sync.
                self._rollback(action, action.rollback_to)
                return f"; rolled back to revision {action.rollback_to}, the last one deployed"
            if action.foreign_deployed:
                return "; not remediated: the deployed revision was not written by the reconciler"
            self._uninstall(action)
            return "; uninstalled (remediation)"
        except ReconcilerError as error:
            return f"; remediation failed too: {self.mask(str(error))}"

    def _after_failed_correction(self, action: Action) -> str:
        """A drift correction that failed: back to the revision that was deployed before it
        (whatever `remediation` says, never an uninstall of a release that worked)."""

        if not action.rollback_to:
            return "; not remediated: no deployed revision to roll back to"
        self._rollback(action, action.rollback_to)
        return f"; rolled back to revision {action.rollback_to}, deployed before the correction"

    def _recorded_a_revision(self, action: Action) -> bool:
        if self.latest_revision is None:
            return True
        try:
            latest = self.latest_revision(action.namespace, action.release)
        except ReconcilerError:
            return True  # cannot tell: remediate as the policy says
        return latest is not None and latest > (action.revision or 0)
