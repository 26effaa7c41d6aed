"""One reconcile pass: observe the cluster, plan against the desired state, execute.

This module wires the adapters together; the decisions live in `plan`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from reconciler.desired import ClusterValues, cluster_values_from_data, desired_state, leaves
from reconciler.errors import ReconcilerError
from reconciler.execute import Outcome, execute
from reconciler.helm import Helm
from reconciler.kube import CONFIGMAPS, SECRETS, Kube, ensure_namespace
from reconciler.model import DesiredState, Environments, ValuesFrom
from reconciler.observe import ReleaseState, latest_revision, read_index, with_detail
from reconciler.plan import Failure, Key, Options, Plan, plan
from reconciler.repo import load_environments
from reconciler.source import GitSource, LocalSource
from reconciler.status import StatusStore, status_document

MIN_SECRET_LENGTH = 4  # shorter strings would mask ordinary words in messages


@dataclass(frozen=True)
class Observation:
    desired: DesiredState
    observed: Mapping[Key, ReleaseState]
    secret_values: frozenset[str]
    unreadable: Mapping[str, str] = field(default_factory=dict)

    def mask(self, text: str) -> str:
        """Hide every Secret-sourced value that shows up in a message."""

        for value in sorted(self.secret_values, key=len, reverse=True):
            text = text.replace(value, "***")
        return text


@dataclass
class Memory:
    """Failed attempts remembered between passes (helm's history is gone after an uninstall)."""

    failures: dict[Key, Failure] = field(default_factory=dict)

    def record(self, outcome: Outcome, now: datetime) -> None:
        if outcome.result == "succeeded":
            self.failures.pop(outcome.key, None)
        if outcome.result != "failed" or not outcome.digest:
            return
        known = self.failures.get(outcome.key)
        attempts = known.attempts + 1 if known and known.digest == outcome.digest else 1
        self.failures[outcome.key] = Failure(outcome.digest, attempts, now)


def load_revision(source: GitSource | LocalSource, installation: str | None = None) -> Environments:
    """Sync the source and load it; an invalid revision raises ValidationError and is not acted on.

    With `installation`, only its part of the repo is loaded and validated (projects/ and
    installations/<installation>/): other installations' files never block it.
    """

    revision, root = source.sync()
    return load_environments(root, revision=revision, installation=installation)


def read_cluster_values(kube: Kube, source: ValuesFrom) -> ClusterValues:
    config_map = (
        kube.get(CONFIGMAPS.path(source.namespace, source.config_map))
        if source.config_map
        else None
    )
    secret = kube.get(SECRETS.path(source.namespace, source.secret)) if source.secret else None
    try:
        return cluster_values_from_data((config_map or {}).get("data"), (secret or {}).get("data"))
    except ReconcilerError as error:
        where = f"values from namespace {source.namespace}"
        raise ReconcilerError(f"{where}: {error}; fix the object or remove the key") from None


def observe(
    env: Environments,
    installation: str,
    kube: Kube,
    full: bool = False,
    namespaces: Collection[str] = (),
) -> Observation:
    """Desired state with in-cluster values, and the releases as the cluster has them.

    Only releases whose labels do not prove them in sync are decoded (one GET
    each); `full` decodes every declared release to find drift made by hand.
    `namespaces` confines the history read to those namespaces (namespaced mode).
    """

    if installation not in env.installations:
        known = ", ".join(sorted(env.installations)) or "none"
        raise ReconcilerError(
            f"installation {installation!r} is not in the environments repo (known: {known})"
        )
    source = env.installations[installation].values_from
    cluster_values = read_cluster_values(kube, source)
    desired = desired_state(env, installation, cluster_values)
    index = read_index(kube, sorted(namespaces))
    observed = dict(index.releases)
    for release in desired.releases:
        state = index.releases.get((release.namespace, release.name))
        if state is None or state.latest.status != "deployed":
            continue
        if full or state.latest.digest != release.digest:
            observed[state.key] = with_detail(kube, state)
    return Observation(desired, observed, _secret_strings(cluster_values), index.unreadable)


def plan_pass(
    observation: Observation, memory: Memory, options: Options, now: datetime | None = None
) -> Plan:
    return plan(
        observation.desired,
        observation.observed,
        now or datetime.now(UTC),
        memory.failures,
        options,
        observation.unreadable,
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
) -> list[Outcome]:
    """Run the plan; `create_namespaces` off (namespaced mode) leaves a missing
    namespace to fail the install, as creating one needs a cluster-wide right."""

    def record(outcome: Outcome) -> None:
        memory.record(outcome, datetime.now(UTC))
        on_outcome(outcome)

    def probe(namespace: str, name: str) -> int | None:
        return latest_revision(kube, namespace, name) if kube else None

    def namespace(name: str) -> None:
        if kube and create_namespaces:
            ensure_namespace(kube, name)

    policy = observation.desired.policy
    return execute(
        the_plan,
        helm,
        policy,
        observation.mask,
        record,
        proceed,
        probe if kube else None,
        namespace,
    )


def _secret_strings(values: ClusterValues) -> frozenset[str]:
    sources = [values.secret.shared, *values.secret.per_release.values()]
    found = {
        str(value)
        for source in sources
        for _, value in leaves(source)
        if value is not None and len(str(value)) >= MIN_SECRET_LENGTH
    }
    return frozenset(found)


@dataclass(frozen=True)
class PassResult:
    plan: Plan
    outcomes: tuple[Outcome, ...]

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
        self.memory = Memory(status.failures())
        self._helm_factory = helm_factory
        self._helm: Helm | None = None
        self._last_status = ""

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

    def plan(self, env: Environments, full: bool = False) -> tuple[Plan, Observation]:
        observation = observe(env, self.installation, self.kube, full, self.options.namespaces)
        return plan_pass(observation, self.memory, self.options), observation

    def apply(
        self,
        env: Environments,
        full: bool = False,
        on_outcome: Callable[[Outcome], None] = lambda outcome: None,
        proceed: Callable[[], str] = lambda: "",
        on_plan: Callable[[Plan], None] = lambda plan: None,
    ) -> PassResult:
        the_plan, observation = self.plan(env, full)
        on_plan(the_plan)
        outcomes: list[Outcome] = []
        if the_plan.actions:
            outcomes = apply_pass(
                the_plan,
                observation,
                self.helm,
                self.memory,
                on_outcome,
                proceed,
                self.kube,
                create_namespaces=not self.options.namespaces,
            )
            # The status should say what helm holds now, not what it held before.
            index = read_index(self.kube, sorted(self.options.namespaces))
            observation = dataclasses.replace(observation, observed=index.releases)
        result = PassResult(the_plan, tuple(outcomes))
        self.record(result, observation)
        return result

    def record(self, result: PassResult, observation: Observation) -> None:
        """Write the status ConfigMap when what it says changed (not on every quiet poll)."""

        document = status_document(
            observation.desired,
            observation.observed,
            result.plan,
            result.outcomes,
            self.memory.failures,
            datetime.now(UTC),
        )
        fingerprint = json.dumps({k: v for k, v in document.items() if k != "time"}, sort_keys=True)
        if fingerprint != self._last_status:
            self.status.write(document)
            self._last_status = fingerprint
