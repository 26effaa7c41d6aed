"""One reconcile pass: observe the cluster, plan against the desired state, execute.

This module wires the adapters together; the decisions live in `plan`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

from reconciler.crds import crd_steps, deployed_differences, report
from reconciler.desired import ClusterValues, cluster_values_from_data, desired_state
from reconciler.drift import LiveDrift
from reconciler.drift import masked as masked_drift
from reconciler.driftcheck import check_drift
from reconciler.driftrepair import keep_steps, kept_of, repair_step, repairs_of
from reconciler.errors import ReconcilerError
from reconciler.execute import Outcome, Proof, execute
from reconciler.health import ReleaseHealth, masked
from reconciler.helm import Helm
from reconciler.helmtest import test_gate
from reconciler.kube import (
    CONFIGMAPS,
    SECRETS,
    JsonObject,
    Kube,
    as_release_account,
    ensure_namespace,
)
from reconciler.livestate import LiveState, read_live_state
from reconciler.masking import SecretMask, scalars
from reconciler.model import DesiredState, Environments, ValuesFrom
from reconciler.observe import (
    ReleaseState,
    latest_revision,
    read_index,
    with_detail,
    with_proven_copy,
)
from reconciler.plan import Action, Drifted, Failure, Key, Options, Plan, attempts, plan
from reconciler.repo import load_environments
from reconciler.source import GitSource, LocalSource
from reconciler.status import (
    StatusStore,
    crds_from,
    failures_from,
    health_from,
    status_document,
)
from reconciler.trust import Signer, load_key, sign_rollback
from reconciler.workloads import HealthVerifier, judge_live


@dataclass(frozen=True)
class Observation:
    desired: DesiredState
    observed: Mapping[Key, ReleaseState]
    secret_values: frozenset[str]
    unreadable: Mapping[str, str] = field(default_factory=dict)
    signer: Signer | None = None
    # Live drift of the in-sync releases; read on a full resync only (else empty).
    drift: Mapping[Key, LiveDrift] = field(default_factory=dict)
    # The deployed releases' live objects, read once on a full resync for drift and health.
    live: LiveState = field(default_factory=LiveState)

    @cached_property
    def _mask(self) -> SecretMask:
        return SecretMask(self.secret_values)

    def mask(self, text: str) -> str:
        """Hide every Secret-sourced value that shows up in a message, in every encoding
        helm or the API server prints values in (see `reconciler.masking`)."""

        return self._mask(text)


@dataclass
class Memory:
    """Failed attempts remembered between passes (helm's history is gone after an uninstall)."""

    failures: dict[Key, Failure] = field(default_factory=dict)

    def record(self, outcome: Outcome, now: datetime) -> None:
        # Only installs and upgrades are attempts; a rollback that worked ends none.
        if outcome.kind not in ("install", "upgrade"):
            return
        if outcome.result == "succeeded":
            self.failures.pop(outcome.key, None)
        if outcome.result != "failed" or not outcome.digest:
            return
        known = self.failures.get(outcome.key)
        attempts = known.attempts + 1 if known and known.digest == outcome.digest else 1
        cause = outcome.error or outcome.message
        self.failures[outcome.key] = Failure(
            outcome.digest, attempts, now, cause, outcome.unverified_revision
        )

    def sync(self, desired: DesiredState, observed: Mapping[Key, ReleaseState]) -> None:
        """Failures count per desired state: once a release's desired state differs from the
        one that failed, its count starts anew (even if it later returns to that one). What
        helm's history counts is kept too, so an uninstall (remediation) loses no count."""

        digests = {(r.namespace, r.name): r.digest for r in desired.releases}
        for key, failure in list(self.failures.items()):
            if key in digests and digests[key] != failure.digest:
                del self.failures[key]
        for release in desired.releases:
            key = (release.namespace, release.name)
            count, last_at = attempts(release, observed.get(key), self.failures.get(key))
            if count:
                known = self.failures.get(key)
                same = known is not None and known.digest == release.digest
                message = known.message if known and same else ""
                revision = known.revision if known and same else None
                self.failures[key] = Failure(release.digest, count, last_at, message, revision)


def load_revision(source: GitSource | LocalSource, installation: str | None = None) -> Environments:
    """Sync the source and load it; an invalid revision raises ValidationError and is not acted on.

    With `installation`, only its part of the repo is loaded and validated (projects/ and
    installations/<installation>/): other installations' files never block it.
    """

    revision, root = source.sync()
    return load_environments(root, revision=revision, installation=installation)


def read_cluster_values(kube: Kube, source: ValuesFrom) -> ClusterValues:
    """The installation's in-cluster values. A named object that does not exist is an error
    (every release of the installation may take values from it, so none is converged)
    unless the installation marks it `optional: true`; a key helm could not read holds
    only the releases that use it."""

    config_map = (
        kube.get(CONFIGMAPS.path(source.namespace, source.config_map))
        if source.config_map
        else None
    )
    secret = kube.get(SECRETS.path(source.namespace, source.secret)) if source.secret else None
    missing = [
        f"{kind} {source.namespace}/{name}"
        for kind, name, found, optional in (
            ("ConfigMap", source.config_map, config_map, source.config_map_optional),
            ("Secret", source.secret, secret, source.secret_optional),
        )
        if name and found is None and not optional
    ]
    if missing:
        raise ReconcilerError(
            f"valuesFrom: {' and '.join(missing)} not found; every release of this installation "
            "is held: create it, fix the name in installation.yaml (valuesFrom), or mark it "
            "`optional: true`"
        )
    return cluster_values_from_data(
        _data(config_map),
        _data(secret),
        f"{source.namespace}/{source.config_map}",
        f"{source.namespace}/{source.secret}",
    )


def _data(obj: JsonObject | None) -> dict[str, str]:
    data = (obj or {}).get("data")
    return data if isinstance(data, dict) else {}


def observe(
    env: Environments,
    installation: str,
    kube: Kube,
    full: bool = False,
    namespaces: Collection[str] = (),
    signer: Signer | None = None,
) -> Observation:
    """Desired state with in-cluster values, and the releases as the cluster has them.

    Only releases whose labels do not prove them in sync are decoded (one GET
    each); `full` decodes every declared release to find drift made by hand, and
    reads the live objects of those in sync (reconciler.driftcheck).
    `namespaces` confines the history read to those namespaces (namespaced mode).
    `signer` keys the digests and checks which revisions the reconciler wrote.
    """

    if installation not in env.installations:
        known = ", ".join(sorted(env.installations)) or "none"
        raise ReconcilerError(
            f"installation {installation!r} is not in the environments repo (known: {known})"
        )
    source = env.installations[installation].values_from
    cluster_values = read_cluster_values(kube, source)
    signer = signer or Signer.keyless(installation)
    desired = keyed(desired_state(env, installation, cluster_values), signer)
    index = read_index(kube, sorted(namespaces), signer)
    observed = dict(index.releases)
    for release in desired.releases:
        state = index.releases.get((release.namespace, release.name))
        if state is None or state.latest.status == "uninstalled":
            continue
        if state.latest.signed and not state.latest.proven:
            state = observed[state.key] = with_proven_copy(kube, state)
        # A release that is not ours is decoded too: its hold names its chart.
        stale = state.latest.status == "deployed" and state.latest.digest != release.digest
        if full or stale or not state.latest.signed:
            observed[state.key] = with_detail(kube, state)
    secrets = _secret_strings(cluster_values)
    # One read of every deployed release's live objects, judged for drift now and for
    # health after the pass (drift: off still reads them: health needs them).
    mask = SecretMask(secrets)
    live = read_live_state(kube, desired, observed, mask=mask) if full else LiveState()
    drift = check_drift(kube, desired, observed, live, namespaces, mask=mask) if full else {}
    return Observation(desired, observed, secrets, index.unreadable, signer, drift, live)


def keyed(desired: DesiredState, signer: Signer) -> DesiredState:
    """The desired state with every digest keyed: a label or status entry then reveals
    nothing of the values it covers, Secret-sourced ones included."""

    releases = tuple(
        dataclasses.replace(r, keyed_digest=signer.digest(r.chart, r.values))
        for r in desired.releases
    )
    return dataclasses.replace(desired, releases=releases)


def plan_pass(
    observation: Observation, memory: Memory, options: Options, now: datetime | None = None
) -> Plan:
    memory.sync(observation.desired, observation.observed)
    # Drift names objects and map keys, which values (Secret-sourced ones too) may have
    # made: masked before the plan's reasons, Events, status and helm's description quote it.
    drift = {key: masked_drift(found, observation.mask) for key, found in observation.drift.items()}
    return plan(
        observation.desired,
        observation.observed,
        now or datetime.now(UTC),
        memory.failures,
        options,
        observation.unreadable,
        drift,
    )


def apply_pass(
    the_plan: Plan,
    observation: Observation,
    helm: Helm,
    memory: Memory,
    on_outcome: Callable[[Outcome], None] = lambda outcome: None,
    proceed: Callable[[], str] = lambda: "",
    kube: Kube | None = None,
    create_namespaces: bool = True,
    on_health: Callable[[Key, ReleaseHealth], None] = lambda key, health: None,
) -> list[Outcome]:
    """Run the plan; `create_namespaces` off (namespaced mode) leaves a missing
    namespace to fail the install, as creating one needs a cluster-wide right.

    With `kube`, every install and upgrade helm reported done is verified: its objects
    must be healthy within the policy's timeoutSeconds, or the attempt failed (then
    remediation and retries apply as for a failed helm run); `on_health` hears each
    verdict, masked.
    """

    def record(outcome: Outcome) -> None:
        memory.record(outcome, datetime.now(UTC))
        on_outcome(outcome)

    def probe(namespace: str, name: str) -> int | None:
        return latest_revision(kube, namespace, name) if kube else None

    def namespace(name: str) -> None:
        if kube and create_namespaces:
            ensure_namespace(kube, name)

    # A rollback's revision is signed as the account helm ran as: in lockdown the
    # reconciler itself may only read release history, not write it.
    accounts = {a.key: a.service_account for a in the_plan.actions}

    def sign(kube: Kube, signer: Signer, namespace: str, name: str, target: int) -> None:
        account = accounts.get((namespace, name))
        acting = as_release_account(kube, namespace, account)
        sign_rollback(acting, signer, namespace, name, target, account)

    proof = Proof()
    signer = observation.signer
    if signer is not None and signer.has_key:
        proof = Proof(
            labels=signer.labels,
            after_rollback=lambda ns, name, target: (
                sign(kube, signer, ns, name, target) if kube else None
            ),
        )
    policy = observation.desired.policy
    crd_prepare, check = crd_steps(kube)
    manifests = {
        key: state.detail.manifest
        for key, state in observation.observed.items()
        if state.detail is not None and state.detail.manifest
    }
    rules = {
        (r.namespace, r.name): r.drift_ignore
        for r in observation.desired.releases
        if r.drift_ignore
    }
    repairs = repairs_of({d.key: d.drift for d in the_plan.drifted}, manifests, rules)
    # A correction re-applies the whole chart: fields a driftIgnore rule keeps are read
    # before helm and set back after it.
    keep_before, keep_after = keep_steps(
        kube, kept_of([d.key for d in the_plan.drifted], manifests, rules)
    )
    prepare = _in_turn(crd_prepare, repair_step(kube, repairs), keep_before)
    verify: Callable[[Action], None] = _unverified
    if kube is not None:
        verify = HealthVerifier(
            kube,
            policy.timeout_seconds,
            on_health=lambda ns, name, health: on_health(
                (ns, name), masked(health, observation.mask)
            ),
            cancelled=helm.cancel.is_set,
        )
    return execute(
        the_plan,
        helm,
        policy,
        observation.mask,
        record,
        proceed,
        probe if kube else None,
        namespace,
        proof,
        verify=_chained(keep_after, verify, test_gate(helm, policy, kube)),
        prepare=prepare,
        check=check,
    )


def _unverified(action: Action) -> None:
    return None


def _in_turn(
    *steps: Callable[[Action, Path | None], str],
) -> Callable[[Action, Path | None], str]:
    """`prepare` hooks run one after the other; their notes joined."""

    def prepare(action: Action, archive: Path | None) -> str:
        return "; ".join(filter(None, (step(action, archive) for step in steps)))

    return prepare


def _chained(*verifiers: Callable[[Action], None]) -> Callable[[Action], None]:
    """Run each verifier in order: a release's tests run only once its workloads are ready."""

    def verify(action: Action) -> None:
        for each in verifiers:
            each(action)

    return verify


def read_health(
    kube: Kube,
    observation: Observation,
    skip: Collection[Key] = (),
    changed: Collection[Key] = (),
) -> dict[Key, ReleaseHealth]:
    """The health of every declared release whose latest revision is deployed (a full
    resync), no waiting, judged from the live objects `observe` read for the pass (plus a
    Pod LIST per workload not ready). `changed`: releases acted on since, read again now
    (their record from the observation, else one GET). `skip`: releases whose health is
    known."""

    fresh = set(changed) - set(skip)
    again = (
        read_live_state(
            kube, observation.desired, observation.observed, fresh, mask=observation.mask
        )
        if fresh
        else LiveState()
    )
    accounts = {(r.namespace, r.name): r.service_account for r in observation.desired.releases}
    judged = {}
    for source, keys in ((observation.live, set(observation.live.found) - fresh), (again, fresh)):
        for key in sorted(keys & set(source.found) - set(skip)):
            acting = as_release_account(kube, key[0], accounts.get(key))
            judged[key] = masked(judge_live(acting, source.found[key]), observation.mask)
    return judged


def _same_detail(state: ReleaseState, before: ReleaseState | None) -> ReleaseState:
    """`state` with the decoded record read before the pass, while it is still the latest
    (so status keeps naming the chart version helm deployed, not a revision number)."""

    if before is None or before.detail is None or before.latest.secret != state.latest.secret:
        return state
    return dataclasses.replace(state, detail=before.detail)


def _secret_strings(values: ClusterValues) -> frozenset[str]:
    """Every scalar of the Secret's values, list items and nested ones included."""

    return frozenset(scalars([values.secret.shared, *values.secret.per_release.values()]))


@dataclass(frozen=True)
class PassResult:
    """`health`: each release's health as last read (after an install or upgrade, or on
    a full resync; a release missing from it has none known)."""

    plan: Plan
    outcomes: tuple[Outcome, ...]
    health: Mapping[Key, ReleaseHealth] = field(default_factory=dict)

    @property
    def failed(self) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if o.result != "succeeded")

    def states(self) -> dict[Key, str]:
        """Each release's state after the pass: in-sync, succeeded, failed, skipped, or held: <reason>."""

        states: dict[Key, str] = dict.fromkeys(self.plan.in_sync, "in-sync")
        for hold in self.plan.held:
            states[(hold.namespace, hold.release)] = f"held: {hold.reason}"
        for outcome in self.outcomes:
            states[outcome.key] = outcome.result
        return states


class Engine:
    """Runs passes for one installation and keeps what must survive between them."""

    def __init__(
        self,
        installation: str,
        kube: Kube,
        helm_factory: Callable[[], Helm],
        status: StatusStore,
        options: Options = Options(),  # noqa: B008 - frozen, so sharing the default is safe
    ) -> None:
        self.installation = installation
        self.kube = kube
        self.status = status
        self.options = options
        remembered = status.read()
        self.memory = Memory(failures_from(remembered))
        # Health as last read, kept across passes: a quiet pass does not read it again.
        self.health: dict[Key, ReleaseHealth] = health_from(remembered)
        self._helm_factory = helm_factory
        self._helm: Helm | None = None
        self._last_status = ""
        self._signer: Signer | None = None
        # The live drift the last full resync found, shown in status until the next one.
        self._drifted: dict[Key, Drifted] = {}
        # What each `crds: create` release's CRDs lack of its chart's (reconciler.crds), from
        # its last install or upgrade or the last full resync; shown in status until gone.
        self._crds: dict[Key, str] = crds_from(remembered)
        self.key_namespace = status.namespace

    def signer(self, create: bool) -> Signer:
        """The installation's key, read once per process; created when `create` (apply, run)
        and missing. `plan` never creates it: without it nothing is provably ours yet."""

        if self._signer is None or (create and not self._signer.has_key):
            signer = load_key(self.kube, self.key_namespace, self.installation, create)
            if not signer.has_key and not create:
                return signer
            self._signer = signer
        return self._signer

    @property
    def helm(self) -> Helm:
        # Detected on first use: a pass with nothing to do starts no helm process at all.
        if self._helm is None:
            self._helm = self._helm_factory()
        return self._helm

    def cancel_helm(self) -> None:
        """Stop running helm processes (SIGTERM): the shutdown grace period is over."""

        if self._helm is not None:
            self._helm.cancel.set()

    def plan(
        self, env: Environments, full: bool = False, writing: bool = False
    ) -> tuple[Plan, Observation]:
        """`writing`: the plan is applied next, so the key is created if missing."""

        signer = self.signer(create=writing)
        observation = observe(
            env, self.installation, self.kube, full, self.options.namespaces, signer
        )
        return plan_pass(observation, self.memory, self.options), observation

    def apply(
        self,
        env: Environments,
        full: bool = False,
        on_outcome: Callable[[Outcome], None] = lambda outcome: None,
        proceed: Callable[[], str] = lambda: "",
        on_plan: Callable[[Plan], None] = lambda plan: None,
    ) -> PassResult:
        the_plan, observation = self.plan(env, full, writing=True)
        on_plan(the_plan)
        outcomes: list[Outcome] = []
        verified: dict[Key, ReleaseHealth] = {}
        if the_plan.actions:
            outcomes = apply_pass(
                the_plan,
                observation,
                self.helm,
                self.memory,
                on_outcome,
                proceed,
                self.kube,
                # In lockdown (the flag or the repo's policy) a release's namespace holds its
                # ServiceAccount: it exists.
                create_namespaces=not self.options.namespaces
                and not (self.options.lockdown or observation.desired.policy.lockdown),
                on_health=verified.__setitem__,
            )
            # The status should say what helm holds now, not what it held before.
            index = read_index(self.kube, sorted(self.options.namespaces), observation.signer)
            observed = {
                key: _same_detail(state, observation.observed.get(key))
                for key, state in index.releases.items()
            }
            observation = dataclasses.replace(observation, observed=observed)
        self._update_health(observation, outcomes, verified, full)
        result = PassResult(the_plan, tuple(outcomes), dict(self.health))
        if full:
            self._drifted = {d.key: d for d in the_plan.drifted}
        self._update_crds(observation, outcomes, full)
        self.record(result, observation)
        return result

    def _update_crds(self, observation: Observation, outcomes: list[Outcome], full: bool) -> None:
        """The CRD findings of the releases helm just installed or upgraded (their check's
        warning); on a full resync, of every other deployed `create` release (one GET per CRD
        of its chart, from the record decoded this pass)."""

        creating = {
            (r.namespace, r.name) for r in observation.desired.releases if r.crds == "create"
        }
        self._crds = {k: v for k, v in self._crds.items() if k in creating}
        checked = set()
        for outcome in outcomes:
            if outcome.kind in ("install", "upgrade") and outcome.result == "succeeded":
                checked.add(outcome.key)
                self._crds.pop(outcome.key, None)
                if outcome.warning:
                    self._crds[outcome.key] = outcome.warning
        if not full:
            return
        others = [r for r in observation.desired.releases if (r.namespace, r.name) not in checked]
        for key in creating - checked:
            self._crds.pop(key, None)
        for release, found in deployed_differences(self.kube, others, observation.observed):
            self._crds[(release.namespace, release.name)] = observation.mask(report(found))

    def _update_health(
        self,
        observation: Observation,
        outcomes: list[Outcome],
        verified: Mapping[Key, ReleaseHealth],
        full: bool,
    ) -> None:
        """What a pass learnt of health: the verdicts of its installs and upgrades; for a
        release it acted on without one (helm failed, a rollback, an uninstall), none is
        known; a full resync reads every other deployed release's."""

        declared = {(r.namespace, r.name) for r in observation.desired.releases}
        for key in [k for k in self.health if k not in declared]:
            del self.health[key]
        for outcome in outcomes:
            self.health.pop(outcome.key, None)
            verdict = verified.get(outcome.key)
            state = observation.observed.get(outcome.key)
            latest = state.latest.number if state else None
            # A failed check's verdict holds only while its revision is still the latest
            # (remediation `none`): after a rollback or uninstall it describes nothing live.
            if verdict and (outcome.result == "succeeded" or latest == outcome.unverified_revision):
                self.health[outcome.key] = verdict
        if full:
            for key in declared - set(verified):
                self.health.pop(key, None)
            # Read once by observe for drift and health alike; what this pass changed is
            # read again.
            changed = {o.key for o in outcomes}
            self.health.update(read_health(self.kube, observation, verified, changed))
            self._forget_recovered(observation)

    def _forget_recovered(self, observation: Observation) -> None:
        """A deployed revision that failed its health check and is healthy now (its Pods
        came up late, a dependency appeared) works after all: its failure is forgotten,
        so the next pass calls the release in sync instead of holding or retrying it."""

        for key, failure in list(self.memory.failures.items()):
            state = observation.observed.get(key)
            verdict = self.health.get(key)
            if (
                failure.revision is not None
                and state is not None
                and state.latest.number == failure.revision
                and verdict is not None
                and verdict.healthy
            ):
                del self.memory.failures[key]

    def read_health(self, observation: Observation) -> dict[Key, ReleaseHealth]:
        """Every deployed release's health, from the live objects `observe(full)` read
        (`plan --full`)."""

        return read_health(self.kube, observation)

    def record(self, result: PassResult, observation: Observation) -> None:
        """Write the status ConfigMap when what it says changed (not on every quiet poll)."""

        document = status_document(
            observation.desired,
            observation.observed,
            result.plan,
            result.outcomes,
            self.memory.failures,
            datetime.now(UTC),
            self._drifted,
            result.health,
            self._crds,
        )
        fingerprint = json.dumps({k: v for k, v in document.items() if k != "time"}, sort_keys=True)
        if fingerprint != self._last_status:
            self.status.write(document)
            self._last_status = fingerprint
