"""The planner: desired x observed x policy -> ordered actions, each with a reason.

A pure function: no I/O, no clock (the caller passes `now`). Every release
ends in exactly one bucket: an action, a hold (deliberately left alone, with
the reason), or in sync.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from reconciler.errors import ReconcilerError
from reconciler.model import DesiredRelease, DesiredState, Policy
from reconciler.observe import PENDING, ReleaseState, Revision
from reconciler.repo import helmyaml

ActionKind = Literal["install", "upgrade", "unlock", "uninstall"]
Key = tuple[str, str]
MAX_BACKOFF = timedelta(hours=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Action:
    """One helm operation on one release.

    `unlock` clears a stale pending-* revision: a rollback to `revision`, or an
    uninstall when no earlier revision can be rolled back to. For `install` and
    `upgrade`, `revision` is the latest one before the action: remediation rolls
    back to it only if helm recorded a newer one.
    """

    kind: ActionKind
    release: str
    namespace: str
    reason: str
    desired: DesiredRelease | None = None
    revision: int | None = None
    depends_on: tuple[str, ...] = ()

    @property
    def key(self) -> Key:
        return (self.namespace, self.release)


@dataclass(frozen=True)
class Hold:
    """A release left alone this pass, and why; `gave_up` when the reconciler will not act on
    it again by itself (its retries are spent, or its namespace is out of its reach)."""

    release: str
    namespace: str
    reason: str
    gave_up: bool = False


@dataclass(frozen=True)
class Failure:
    """What the reconciler remembers of failed attempts at one desired digest;
    `message` is the last attempt's error, already masked and bounded."""

    digest: str
    attempts: int
    last_at: datetime
    message: str = ""


@dataclass(frozen=True)
class Options:
    """Per-pass switches from the command line.

    `namespaces` confines the reconciler to those namespaces (namespaced mode);
    empty means the whole cluster.
    """

    force_retry: bool = False
    force_prune: bool = False
    namespaces: frozenset[str] = frozenset()

    def in_scope(self, namespace: str) -> bool:
        return not self.namespaces or namespace in self.namespaces


@dataclass(frozen=True)
class Plan:
    installation: str
    revision: str
    actions: tuple[Action, ...]
    held: tuple[Hold, ...] = ()
    in_sync: tuple[Key, ...] = ()

    @property
    def changes_pending(self) -> bool:
        return bool(self.actions)


def plan(
    desired: DesiredState,
    observed: Mapping[Key, ReleaseState],
    now: datetime,
    failures: Mapping[Key, Failure] | None = None,
    options: Options = Options(),
    unreadable: Mapping[str, str] | None = None,
) -> Plan:
    """`unreadable` maps each namespace whose release history could not be read to why."""

    failures = failures or {}
    unreadable = unreadable or {}
    actions: list[Action] = []
    held: list[Hold] = []
    in_sync: list[Key] = []
    # Held releases by name -> whether they gave up: a release waiting on one that gave up
    # will not move by itself either.
    blocked: dict[str, bool] = {}
    for release in topological(desired.releases):
        key = (release.namespace, release.name)
        out_of_reach = _out_of_reach(release, options, unreadable) or _bad_values(release)
        if out_of_reach:
            blocked[release.name] = out_of_reach.gave_up
            held.append(out_of_reach)
            continue
        waiting_on = [dep for dep in release.depends_on if dep in blocked]
        if waiting_on:
            gave_up = any(blocked[dep] for dep in waiting_on)
            blocked[release.name] = gave_up
            held.append(Hold(release.name, release.namespace, _waiting(waiting_on), gave_up))
            continue
        step = _plan_release(
            release, observed.get(key), desired.policy, now, failures.get(key), options
        )
        if isinstance(step, Hold):
            blocked[release.name] = step.gave_up
            held.append(step)
        elif step:
            acting = {a.release for a in actions}
            actions.extend(_with_dependencies(step, release, acting))
        else:
            in_sync.append(key)
    prune_actions, prune_holds = _prune(desired, observed, options)
    return Plan(
        installation=desired.installation,
        revision=desired.revision,
        actions=(*actions, *prune_actions),
        held=(*held, *prune_holds),
        in_sync=tuple(in_sync),
    )


def _out_of_reach(
    release: DesiredRelease, options: Options, unreadable: Mapping[str, str]
) -> Hold | None:
    """A release in a namespace the reconciler may not touch, or whose history it cannot
    see (acting blind, it could install over a release that is already there)."""

    namespace = release.namespace
    if not options.in_scope(namespace):
        reason = (
            f"namespace {namespace} is not in --namespaces (RECONCILER_NAMESPACES); "
            "add it there and to the deploy chart's rbac.namespaces"
        )
        # Only a change of the reconciler's own configuration lifts it: final for GitHub.
        return Hold(release.name, namespace, reason, gave_up=True)
    if namespace in unreadable:
        reason = (
            f"cannot read the Helm release history of namespace {namespace} "
            f"({unreadable[namespace]}): it does not exist or the reconciler has no Role there; "
            "create it and add it to the deploy chart's rbac.namespaces"
        )
        return Hold(release.name, namespace, reason)
    return None


def _bad_values(release: DesiredRelease) -> Hold | None:
    """Values helm would read differently are never installed; a fix of the layer lifts it."""

    if release.values_problem is None:
        return None
    return Hold(release.name, release.namespace, release.values_problem, gave_up=True)


def _plan_release(
    release: DesiredRelease,
    state: ReleaseState | None,
    policy: Policy,
    now: datetime,
    failure: Failure | None,
    options: Options,
) -> list[Action] | Hold | None:
    if state is None or state.latest.status == "uninstalled":
        why = "not installed" if state is None else f"uninstalled at revision {state.latest.number}"
        return _unless_given_up(release, state, policy, now, failure, options, "install", why)
    latest = state.latest
    if latest.status in PENDING:
        return _stale_pending(release, state, policy, now, failure, options)
    if latest.status == "deployed" and latest.digest == release.digest:
        drift = _drift(release, state)
        if not drift:
            return None
        return [_action("upgrade", release, f"drifted in the cluster: {drift}", latest.number)]
    return _unless_given_up(
        release, state, policy, now, failure, options, "upgrade", _why(release, state)
    )


def _unless_given_up(
    release: DesiredRelease,
    state: ReleaseState | None,
    policy: Policy,
    now: datetime,
    failure: Failure | None,
    options: Options,
    kind: ActionKind,
    why: str,
) -> list[Action] | Hold:
    attempts, last_at = _attempts(release, state, failure)
    if attempts and not options.force_retry:
        # A hold keeps the last error: the operator must see why, not only how often.
        last_error = (
            f"; last error: {failure.message}"
            if failure and failure.digest == release.digest and failure.message
            else ""
        )
        if attempts > policy.retries:
            return Hold(
                release.name,
                release.namespace,
                f"{kind} of {release.chart.version} failed {attempts} time(s); "
                f"waiting for a change to this release or --force-retry{last_error}",
                gave_up=True,
            )
        ready_at = last_at + backoff(policy, attempts)
        if now < ready_at:
            wait = int((ready_at - now).total_seconds()) + 1
            return Hold(
                release.name,
                release.namespace,
                f"{kind} failed {attempts} time(s); retry {attempts}/{policy.retries} "
                f"in {wait}s{last_error}",
            )
        why = f"{why} (retry {attempts}/{policy.retries})"
    return [_action(kind, release, why, state.latest.number if state else None)]


def _stale_pending(
    release: DesiredRelease,
    state: ReleaseState,
    policy: Policy,
    now: datetime,
    failure: Failure | None,
    options: Options,
) -> list[Action] | Hold:
    latest = state.latest
    age = now - latest.created if latest.created else timedelta(0)
    since = _duration(age)
    if age < timedelta(seconds=policy.pending_timeout_seconds):
        return Hold(
            release.name,
            release.namespace,
            f"{latest.status} for {since} at revision {latest.number}; another operation may be running",
        )
    earlier = [r for r in state.revisions[:-1] if r.status in ("deployed", "failed")]
    unlock = Action(
        "unlock",
        release.name,
        release.namespace,
        f"{latest.status} for {since} at revision {latest.number}",
        release,
        revision=earlier[-1].number if earlier else None,
    )
    rest = _unless_given_up(
        release, None, policy, now, failure, options, "upgrade", "re-apply after unlock"
    )
    return [unlock, *rest] if isinstance(rest, list) else [unlock]


def _attempts(
    release: DesiredRelease, state: ReleaseState | None, failure: Failure | None
) -> tuple[int, datetime]:
    """Failed attempts at this exact digest: helm's history, or our own record when helm's is gone."""

    failed: list[Revision] = []
    if state is not None:
        failed = [r for r in state.revisions if r.status == "failed" and r.digest == release.digest]
    attempts = len(failed)
    last_at = max((r.created for r in failed if r.created), default=EPOCH)
    if failure and failure.digest == release.digest and failure.attempts >= attempts:
        return failure.attempts, failure.last_at
    return attempts, last_at


def backoff(policy: Policy, attempts: int) -> timedelta:
    seconds = policy.retry_backoff_seconds * (2 ** max(attempts - 1, 0))
    return min(timedelta(seconds=seconds), MAX_BACKOFF)


def _why(release: DesiredRelease, state: ReleaseState) -> str:
    latest = state.latest
    if latest.status == "failed":
        return f"release failed at revision {latest.number}"
    if latest.status != "deployed":
        return f"release is {latest.status} at revision {latest.number}"
    if not state.managed_by_us:
        return "adopt a release installed outside reconciler"
    detail = state.detail
    if detail is None:
        return "desired chart or values changed"
    reasons = []
    if detail.chart_name != release.chart.name:
        reasons.append(f"chart {detail.chart_name} -> {release.chart.name}")
    if detail.chart_version != release.chart.version:
        reasons.append(f"chart {detail.chart_version} -> {release.chart.version}")
    changed = changed_paths(detail.values, release.values)
    if changed:
        reasons.append("values changed: " + _listing(changed))
    return "; ".join(reasons) or "desired state changed (chart source or labels)"


def _drift(release: DesiredRelease, state: ReleaseState) -> str:
    """What a human changed behind our back; only known when the record was decoded."""

    detail = state.detail
    if detail is None:
        return ""
    if detail.chart_version != release.chart.version or detail.chart_name != release.chart.name:
        return f"chart is {detail.chart_name} {detail.chart_version}"
    changed = changed_paths(detail.values, release.values)
    return "values differ: " + _listing(changed) if changed else ""


def changed_paths(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths whose values differ between two values documents."""

    if isinstance(old, dict) and isinstance(new, dict):
        paths: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            child = f"{prefix}.{key}" if prefix else str(key)
            if key not in old or key not in new:
                paths.append(child)
            else:
                paths.extend(changed_paths(old[key], new[key], child))
        return paths
    # Canonical values (see observe and desired), compared strictly: True is not 1.
    return [] if helmyaml.same(old, new) else [prefix or "(root)"]


def _prune(
    desired: DesiredState, observed: Mapping[Key, ReleaseState], options: Options
) -> tuple[list[Action], list[Hold]]:
    wanted = {(r.namespace, r.name) for r in desired.releases}
    ours = [
        s
        for s in observed.values()
        if s.managed_by_us
        and s.installation == desired.installation
        and s.latest.status != "uninstalled"
        # Namespaced mode never removes what lies outside its namespaces.
        and options.in_scope(s.namespace)
    ]
    leaving = sorted((s for s in ours if s.key not in wanted), key=lambda s: s.key)
    if not leaving:
        return [], []
    policy = desired.policy
    if not policy.prune:
        reason = "no longer declared; left in place because policy.prune is off"
        return [], [Hold(s.name, s.namespace, reason) for s in leaving]
    share = len(leaving) / len(ours)
    if share > policy.max_prune_share and not options.force_prune:
        reason = (
            f"prune refused: would remove {len(leaving)} of {len(ours)} managed releases "
            f"({share:.0%} > policy.maxPruneShare {policy.max_prune_share:.0%}); use --force-prune"
        )
        return [], [Hold(s.name, s.namespace, reason) for s in leaving]
    reason = "no longer declared in the environments repo"
    return [Action("uninstall", s.name, s.namespace, reason) for s in leaving], []


def topological(releases: Sequence[DesiredRelease]) -> list[DesiredRelease]:
    """Dependencies first; ties keep declaration order so plans are stable."""

    by_name = {r.name: r for r in releases}
    ordered: list[DesiredRelease] = []
    state: dict[str, str] = {}

    def visit(release: DesiredRelease, trail: tuple[str, ...]) -> None:
        mark = state.get(release.name)
        if mark == "done":
            return
        if mark == "visiting":
            cycle = " -> ".join((*trail, release.name))
            raise ReconcilerError(f"dependsOn cycle: {cycle}")
        state[release.name] = "visiting"
        for dep in release.depends_on:
            if dep in by_name:
                visit(by_name[dep], (*trail, release.name))
        state[release.name] = "done"
        ordered.append(release)

    for release in releases:
        visit(release, ())
    return ordered


def _action(
    kind: ActionKind, release: DesiredRelease, reason: str, revision: int | None = None
) -> Action:
    return Action(kind, release.name, release.namespace, reason, release, revision)


def _with_dependencies(
    steps: list[Action], release: DesiredRelease, acting: set[str]
) -> list[Action]:
    """Only dependencies that act in this pass are worth waiting for."""

    deps = tuple(d for d in release.depends_on if d in acting)
    return [dataclasses.replace(step, depends_on=deps) for step in steps]


def _waiting(deps: Sequence[str]) -> str:
    return "waiting for " + ", ".join(deps) + " (held this pass)"


def _listing(paths: Sequence[str], limit: int = 6) -> str:
    shown = ", ".join(paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60}m"
    if seconds >= 60:
        return f"{seconds // 60}m"
    return f"{seconds}s"
