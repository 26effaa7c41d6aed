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

from reconciler.drift import LiveDrift
from reconciler.errors import ReconcilerError
from reconciler.model import (
    LABEL_SERVICE_ACCOUNT,
    SERVICE_ACCOUNT_NAME,
    DesiredRelease,
    DesiredState,
    DriftIgnore,
    Policy,
)
from reconciler.observe import PENDING, ReleaseState, Revision
from reconciler.repo import helmyaml

ActionKind = Literal["install", "upgrade", "unlock", "rollback", "uninstall"]
Key = tuple[str, str]
MAX_BACKOFF = timedelta(hours=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Action:
    """One helm operation on one release.

    `unlock` clears a stale pending-* revision: a rollback to `revision`, or an
    uninstall when no earlier revision can be rolled back to. `rollback` remediates a
    failed latest revision: a rollback to `revision`. For `install` and `upgrade`,
    `revision` is the latest one before the action (helm recorded a new one if the
    latest is higher afterwards), and `rollback_to` the last revision the reconciler
    deployed, which remediation rolls back to (None: none, so remediation uninstalls).
    Rollback targets are always revisions the reconciler proved it wrote, never failed.
    """

    kind: ActionKind
    release: str
    namespace: str
    reason: str
    desired: DesiredRelease | None = None
    revision: int | None = None
    depends_on: tuple[str, ...] = ()
    rollback_to: int | None = None
    # A deployed revision exists that is not the reconciler's: never uninstall over it.
    foreign_deployed: bool = False
    # The ServiceAccount of `namespace` that helm runs as for this step (None: the
    # reconciler's own identity): the desired release's, or for a prune the recorded one.
    service_account: str | None = None
    # helm 4 applied the latest revision server-side (its record says "ssa").
    server_side: bool = False
    # Re-applies a deployed, in-sync release whose live objects drifted: a failure is never
    # remediated by uninstalling it (it worked before the correction).
    correction: bool = False

    @property
    def key(self) -> Key:
        return (self.namespace, self.release)


@dataclass(frozen=True)
class Hold:
    """A release left alone this pass, and why; `gave_up` when the reconciler will not act on
    it again by itself (its retries are spent, or its namespace is out of its reach);
    `last_error`, the error of the failed attempt that led to it (also in `reason`)."""

    release: str
    namespace: str
    reason: str
    gave_up: bool = False
    last_error: str = ""


@dataclass(frozen=True)
class Failure:
    """What the reconciler remembers of failed attempts at one desired digest;
    `message` is the last attempt's error, already masked and bounded. `revision`: the
    last attempt's revision when helm deployed it but it did not work (unhealthy
    workloads, a failed test), so its `deployed` status and digest do not mean in sync."""

    digest: str
    attempts: int
    last_at: datetime
    message: str = ""
    revision: int | None = None


@dataclass(frozen=True)
class Options:
    """Per-pass switches from the command line.

    `namespaces` confines the reconciler to those namespaces (namespaced mode);
    empty means the whole cluster.
    """

    force_retry: bool = False
    force_prune: bool = False
    namespaces: frozenset[str] = frozenset()
    # Release names (or namespace/name) to take over although they are not ours; `*`
    # takes over every declared release (once, e.g. releases from before signing).
    adopt: frozenset[str] = frozenset()
    # Every release must run as a ServiceAccount of its namespace (--lockdown; the deploy
    # chart's lockdown mode sets it), whatever the installation's policy.lockdown says.
    lockdown: bool = False

    def adopts(self, release: DesiredRelease) -> bool:
        named = {release.name, f"{release.namespace}/{release.name}", "*"}
        return release.adopt or bool(named & self.adopt)

    def in_scope(self, namespace: str) -> bool:
        return not self.namespaces or namespace in self.namespaces


@dataclass(frozen=True)
class Drifted:
    """A release whose live objects differ from its manifest (found on a full resync), and
    what the installation's `drift` policy makes of it: `correct` (an upgrade in the
    plan re-applies it) or `warn` (reported only)."""

    release: str
    namespace: str
    policy: str
    drift: LiveDrift

    @property
    def key(self) -> Key:
        return (self.namespace, self.release)


@dataclass(frozen=True)
class Plan:
    installation: str
    revision: str
    actions: tuple[Action, ...]
    held: tuple[Hold, ...] = ()
    in_sync: tuple[Key, ...] = ()
    drifted: tuple[Drifted, ...] = ()

    @property
    def changes_pending(self) -> bool:
        return bool(self.actions or self.drifted)


def plan(
    desired: DesiredState,
    observed: Mapping[Key, ReleaseState],
    now: datetime,
    failures: Mapping[Key, Failure] | None = None,
    options: Options = Options(),
    unreadable: Mapping[str, str] | None = None,
    live_drift: Mapping[Key, LiveDrift] | None = None,
) -> Plan:
    """`unreadable` maps each namespace whose release history could not be read to why;
    `live_drift` the live drift of releases a full resync checked (reconciler.driftcheck)."""

    failures = failures or {}
    unreadable = unreadable or {}
    live_drift = live_drift or {}
    drifted: list[Drifted] = []
    actions: list[Action] = []
    held: list[Hold] = []
    in_sync: list[Key] = []
    # Held releases by name -> whether they gave up: a release waiting on one that gave up
    # will not move by itself either.
    blocked: dict[str, bool] = {}
    for release in topological(desired.releases):
        key = (release.namespace, release.name)
        out_of_reach = (
            _out_of_reach(release, options, unreadable)
            or _no_identity(release, desired, options)
            or _bad_values(release)
        )
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
            release,
            observed.get(key),
            desired.policy,
            now,
            failures.get(key),
            options,
            desired.installation,
        )
        live = live_drift.get(key)
        if step is None and live and live.drifted and desired.policy.drift != "off":
            drifted.append(Drifted(release.name, release.namespace, desired.policy.drift, live))
            if desired.policy.drift == "correct":
                step = _correction(
                    release, observed[key], desired.policy, now, failures, options, live
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
        drifted=tuple(drifted),
    )


def _correction(
    release: DesiredRelease,
    state: ReleaseState,
    policy: Policy,
    now: datetime,
    failures: Mapping[Key, Failure],
    options: Options,
    live: LiveDrift,
) -> list[Action] | Hold:
    """Re-apply an in-sync release whose live objects drifted: the same chart and values,
    so helm recreates what is missing and restores what was changed. Its failures count
    and back off like any attempt at this desired state."""

    why = f"live drift: {live.summary()}"
    if live.autoscaled:
        # helm applies the chart's replicas with the rest; the autoscaler scales back.
        why += f" (resets replicas an autoscaler owns: {', '.join(live.autoscaled)})"
    if kept := _ignored_fields(release.drift_ignore):
        # helm re-applies the whole chart, ignored fields included; the executor reads
        # them before helm and sets them back after (reconciler.driftrepair.keep_steps).
        why += f" (driftIgnore'd fields helm resets are set back after it: {kept})"
    failure = failures.get((release.namespace, release.name))
    steps = _unless_given_up(release, state, policy, now, failure, options, "upgrade", why)
    if isinstance(steps, Hold):
        return steps
    return [dataclasses.replace(step, correction=True) for step in steps]


def _ignored_fields(rules: Sequence[DriftIgnore], limit: int = 6) -> str:
    """`Deployment /spec/replicas, */metadata/labels/x` for a correction's reason."""

    fields = [
        f"{rule.kind}{'/' + rule.name if rule.name else ''} {path}"[:120]
        for rule in rules
        for path in rule.paths
    ]
    more = f" and {len(fields) - limit} more" if len(fields) > limit else ""
    return ", ".join(fields[:limit]) + more


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


def _no_identity(release: DesiredRelease, desired: DesiredState, options: Options) -> Hold | None:
    """In lockdown no chart runs with the reconciler's own rights: a release with no
    ServiceAccount to run as waits for one to be declared."""

    if release.service_account or not (desired.policy.lockdown or options.lockdown):
        return None
    reason = (
        f"lockdown: no ServiceAccount to run helm as in namespace {release.namespace}; set "
        f"serviceAccount in the project {release.project} or in the installation "
        f"{desired.installation}"
    )
    return Hold(release.name, release.namespace, reason, gave_up=True)


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
    installation: str,
) -> list[Action] | Hold | None:
    if state is None or state.latest.status == "uninstalled":
        why = "not installed" if state is None else f"uninstalled at revision {state.latest.number}"
        return _unless_given_up(release, state, policy, now, failure, options, "install", why)
    latest = state.latest
    adopting = options.adopts(release) and not latest.signed
    if not latest.signed and not adopting:
        return _not_ours(release, state, installation)
    if latest.status in PENDING:
        return _stale_pending(release, state, policy, now, failure, options)
    if latest.status == "deployed" and latest.digest == release.digest and not adopting:
        if failure and failure.digest == release.digest and failure.revision == latest.number:
            # helm deployed it, but it never worked (and was not rolled back): a failed
            # attempt like any other, retried with backoff until the retries are spent.
            why = f"revision {latest.number} was deployed but did not work"
            return _unless_given_up(release, state, policy, now, failure, options, "upgrade", why)
        drift = _drift(release, state)
        if not drift:
            return None
        return [_action("upgrade", release, f"drifted in the cluster: {drift}", state)]
    why = _adoption(release, state) if adopting else _why(release, state)
    steps = _unless_given_up(release, state, policy, now, failure, options, "upgrade", why)
    if isinstance(steps, Hold) and steps.gave_up and latest.status == "failed":
        return _remediation(release, state, policy) or steps
    return steps


def _not_ours(release: DesiredRelease, state: ReleaseState, installation: str) -> Hold:
    """A release of this name that this installation cannot prove it wrote is left alone:
    upgrading it would replace another chart's objects (helm deletes what the new chart
    lacks)."""

    latest = state.latest
    chart = (
        f"chart {state.detail.chart_name} {state.detail.chart_version}"
        if state.detail
        else "its chart unknown"
    )
    owner = state.installation
    if not state.managed_by_us:
        whose = "installed outside reconciler"
    elif owner != installation:
        whose = f"managed by installation {owner or '(none)'}"
    else:
        whose = (
            f"labelled for this installation, but revision {latest.number} does not carry "
            "the reconciler's signature (written or altered by someone else)"
        )
    return Hold(
        release.name,
        release.namespace,
        f"release exists and is not ours ({chart}, {whose}); set `adopt: true` on the "
        f"release or pass --adopt {release.namespace}/{release.name} to take it over",
        gave_up=True,  # only a person can lift it
    )


def _adoption(release: DesiredRelease, state: ReleaseState) -> str:
    detail = state.detail
    chart = f"{detail.chart_name} {detail.chart_version}" if detail else "an unknown chart"
    owner = (
        f"installation {state.installation}"
        if state.managed_by_us
        else "installed outside reconciler"
    )
    wanted = f"{release.chart.name} {release.chart.version}"
    return f"adopt: chart {chart} -> {wanted} (was {owner})"


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
    count, last_at = attempts(release, state, failure)
    if count and not options.force_retry:
        # A hold keeps the last error: the operator must see why, not only how often.
        cause = failure.message if failure and failure.digest == release.digest else ""
        last_error = f"; last error: {cause}" if cause else ""
        if count > policy.retries:
            return Hold(
                release.name,
                release.namespace,
                f"{kind} of {release.chart.version} failed {count} time(s); "
                f"waiting for a change to this release or --force-retry{last_error}",
                gave_up=True,
                last_error=cause,
            )
        ready_at = last_at + backoff(policy, count)
        if now < ready_at:
            wait = int((ready_at - now).total_seconds()) + 1
            return Hold(
                release.name,
                release.namespace,
                f"{kind} failed {count} time(s); retry {count}/{policy.retries} "
                f"in {wait}s{last_error}",
                last_error=cause,
            )
        why = f"{why} (retry {count}/{policy.retries})"
    return [_action(kind, release, why, state)]


def _remediation(release: DesiredRelease, state: ReleaseState, policy: Policy) -> list[Action]:
    """The remediation of a failed latest revision whose retries are spent, when it did not
    happen inline (a shutdown mid-attempt, or the rollback itself failed): a rollback to
    the last revision the reconciler deployed, or an uninstall per policy. Never over a
    deployed revision somebody else wrote; then the release is held as it is."""

    latest = state.latest
    target = last_deployed(state)
    if policy.remediation == "none" or not latest.proven or foreign_deployed_only(state):
        return []
    reason = f"retries spent at failed revision {latest.number}"
    if policy.remediation == "rollback" and target is not None:
        why = f"{reason}: roll back to revision {target}, the last one deployed"
        return [Action("rollback", release.name, release.namespace, why, release, target)]
    why = f"{reason}: uninstall (remediation {policy.remediation})"
    return [Action("uninstall", release.name, release.namespace, why, release)]


def last_deployed(state: ReleaseState | None) -> int | None:
    """The newest revision the reconciler proved it wrote whose status is `deployed`:
    the only kind of revision a rollback may target."""

    if state is None:
        return None
    deployed = [r.number for r in state.revisions if r.status == "deployed" and r.proven]
    return max(deployed, default=None)


def foreign_deployed_only(state: ReleaseState | None) -> bool:
    """A deployed revision exists, but none the reconciler proved it wrote: never roll back
    to it, nor uninstall over it."""

    if state is None or last_deployed(state) is not None:
        return False
    return any(r.status == "deployed" for r in state.revisions)


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
    # Never younger than helm's own time limit: its helm may still run (another leader).
    stale_after = timedelta(seconds=max(policy.pending_timeout_seconds, policy.timeout_seconds))
    if age < stale_after:
        return Hold(
            release.name,
            release.namespace,
            f"{latest.status} for {since} at revision {latest.number}; another operation may be running",
        )
    if not latest.proven:
        return Hold(
            release.name,
            release.namespace,
            f"{latest.status} for {since} at revision {latest.number}, which the reconciler "
            "did not write; clear it by hand (helm rollback) after checking who runs it",
            gave_up=True,
        )
    target = last_deployed(state)
    # The latest is pending: any deployed revision is an earlier one.
    if foreign_deployed_only(state):
        return Hold(
            release.name,
            release.namespace,
            f"{latest.status} for {since} at revision {latest.number}; the deployed revision "
            "was not written by the reconciler, so it is not rolled back to; clear it by hand",
            gave_up=True,
        )
    unlock = Action(
        "unlock",
        release.name,
        release.namespace,
        f"{latest.status} for {since} at revision {latest.number}",
        release,
        revision=target,
    )
    rest = _unless_given_up(
        release, None, policy, now, failure, options, "upgrade", "re-apply after unlock"
    )
    if isinstance(rest, list) and target is not None:
        # The unlock's rollback writes one more revision before the upgrade.
        rest = [
            dataclasses.replace(a, revision=latest.number + 1, rollback_to=target) for a in rest
        ]
    return [unlock, *rest] if isinstance(rest, list) else [unlock]


def attempts(
    release: DesiredRelease, state: ReleaseState | None, failure: Failure | None
) -> tuple[int, datetime]:
    """The reconciler's own failed attempts at this exact desired state since it last
    tried another one: helm's history, or our own record when helm's is gone.

    Only revisions the reconciler proved it wrote count (a failed `helm upgrade` by a
    person is not our attempt); its rollbacks are not attempts and do not end the count."""

    failed: list[Revision] = []
    if state is not None:
        for revision in reversed(state.revisions):
            if not revision.proven or revision.rollback_of is not None:
                continue
            if revision.digest != release.digest or revision.status == "deployed":
                break  # another desired state was tried since, or this one worked
            if revision.status == "failed":
                failed.append(revision)
    count = len(failed)
    last_at = max((r.created for r in failed if r.created), default=EPOCH)
    if failure and failure.digest == release.digest and failure.attempts >= count:
        return failure.attempts, failure.last_at
    return count, last_at


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
    # Uninstalling deletes what the latest record lists: only a record we wrote.
    unproven = [s for s in leaving if not s.latest.proven]
    leaving = [s for s in leaving if s.latest.proven]
    holds = [
        Hold(
            s.name,
            s.namespace,
            f"no longer declared, but revision {s.latest.number} does not carry the "
            "reconciler's signature; not pruned (check it, then helm uninstall by hand)",
        )
        for s in unproven
    ]
    if not leaving:
        return [], holds
    policy = desired.policy
    if not policy.prune:
        reason = "no longer declared; left in place because policy.prune is off"
        return [], [*holds, *(Hold(s.name, s.namespace, reason) for s in leaving)]
    share = len(leaving) / len(ours)
    if share > policy.max_prune_share and not options.force_prune:
        reason = (
            f"prune refused: would remove {len(leaving)} of {len(ours)} managed releases "
            f"({share:.0%} > policy.maxPruneShare {policy.max_prune_share:.0%}); use --force-prune"
        )
        return [], [*holds, *(Hold(s.name, s.namespace, reason) for s in leaving)]
    reason = "no longer declared in the environments repo"
    lockdown = policy.lockdown or options.lockdown
    actions = []
    for s in leaving:
        account = recorded_service_account(s) or desired.service_account
        if account is None and lockdown:
            holds.append(Hold(s.name, s.namespace, _no_prune_identity(s, desired.installation)))
        else:
            actions.append(
                Action("uninstall", s.name, s.namespace, reason, service_account=account)
            )
    return actions, holds


def recorded_service_account(state: ReleaseState) -> str | None:
    """The ServiceAccount the latest revision was written as, when it names a valid one.

    Only asked of a proven revision: its MAC covers this label (reconciler.trust), so a
    tenant who removes or rewrites it leaves the record unproven and held, never pruned
    as the reconciler or as another account."""

    name = state.labels.get(LABEL_SERVICE_ACCOUNT, "")
    return name if SERVICE_ACCOUNT_NAME.fullmatch(name) else None


def _no_prune_identity(state: ReleaseState, installation: str) -> str:
    return (
        f"no longer declared; lockdown: revision {state.latest.number} records no ServiceAccount "
        f"and the installation {installation} sets no serviceAccount to uninstall it as; set "
        "one, or helm uninstall it by hand"
    )


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
    kind: ActionKind, release: DesiredRelease, reason: str, state: ReleaseState | None
) -> Action:
    revision = state.latest.number if state else None
    return Action(
        kind,
        release.name,
        release.namespace,
        reason,
        release,
        revision,
        rollback_to=last_deployed(state),
        foreign_deployed=foreign_deployed_only(state),
        server_side=bool(state and state.detail and state.detail.apply_method == "ssa"),
    )


def _with_dependencies(
    steps: list[Action], release: DesiredRelease, acting: set[str]
) -> list[Action]:
    """Only dependencies that act in this pass are worth waiting for."""

    deps = tuple(d for d in release.depends_on if d in acting)
    account = release.service_account
    return [dataclasses.replace(step, depends_on=deps, service_account=account) for step in steps]


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
