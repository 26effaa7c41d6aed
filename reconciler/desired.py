"""The desired state of one installation: charts resolved, values layered.

Values precedence, lowest first (each later layer wins):

1. chart defaults (`values.yaml` inside the chart; applied by Helm, not here)
2. project values (`projects/<project>.yaml`)
3. installation values (`installations/<name>/installation.yaml`)
4. release values (`installations/<name>/releases/<release>.yaml`)
5. in-cluster ConfigMap, key `values.yaml` (every release)
6. in-cluster ConfigMap, key `<release>.yaml`
7. in-cluster Secret, key `values.yaml` (every release)
8. in-cluster Secret, key `<release>.yaml`

Layers merge like `helm -f low.yaml -f high.yaml`: mappings merge key by key, any
other value (scalar, list) replaces, and a `null` replaces whatever lies below it.
The `null` is kept in the result rather than dropped, so that Helm in turn removes
the key from the chart defaults; dropping it here would bring the chart default back.

Values from the Secret must never be printed: `secret_paths` says which paths
they occupy and `mask_secrets` hides them.

Every layer is read as helm reads a values file (`reconciler.repo.helmyaml`), and the
merged values are kept in helm's canonical form (numbers as float64), so that what is
compared with the deployed release and what helm is given are one and the same.
An in-cluster key that helm would refuse or read differently holds only the releases
that use it (`DesiredRelease.values_problem`).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from reconciler.errors import ReconcilerError
from reconciler.model import (
    ChartRef,
    DesiredRelease,
    DesiredState,
    Environments,
    Installation,
    Project,
    Release,
    Values,
    render_version,
)
from reconciler.repo import helmyaml, yamldoc

SHARED_KEY = "values.yaml"
SECRET_MASK = "<secret>"  # noqa: S105 - the placeholder printed instead of a secret

ValuePath = tuple[str, ...]


@dataclass(frozen=True)
class ValuesSource:
    """The values of one in-cluster object: `values.yaml` and one `<release>.yaml` per release.

    `problems` maps a key that could not be read as helm would (`values.yaml` or
    `<release>.yaml`) to a one-line message; its releases are held, the others go on.
    """

    shared: Values = field(default_factory=dict)
    per_release: Mapping[str, Values] = field(default_factory=dict)
    problems: Mapping[str, str] = field(default_factory=dict)

    def for_release(self, release: str) -> Values:
        return self.per_release.get(release, {})

    def problem_for(self, release: str) -> str | None:
        return self.problems.get(SHARED_KEY) or self.problems.get(f"{release}.yaml")


@dataclass(frozen=True)
class ClusterValues:
    """The installation's values that live in the cluster, not in git."""

    config_map: ValuesSource = field(default_factory=ValuesSource)
    secret: ValuesSource = field(default_factory=ValuesSource)

    def problem_for(self, release: str) -> str | None:
        """Why the in-cluster values of `release` cannot be used, or None."""

        return self.config_map.problem_for(release) or self.secret.problem_for(release)


def desired_state(
    env: Environments, installation: str, cluster_values: ClusterValues | None = None
) -> DesiredState:
    """What `installation` should run at `env.revision`, releases sorted by name."""

    inst = _installation(env, installation)
    in_cluster = cluster_values or ClusterValues()
    releases = tuple(
        _desired_release(env, inst, release, in_cluster)
        for release in sorted(inst.releases, key=lambda r: r.name)
    )
    return DesiredState(
        installation=inst.name, revision=env.revision, policy=inst.policy, releases=releases
    )


def value_layers(
    project: Project, installation: Installation, release: Release, cluster_values: ClusterValues
) -> list[tuple[str, Values]]:
    """The named layers of one release's values, lowest precedence first."""

    name = release.name
    return [
        ("project", project.values),
        ("installation", installation.values),
        ("release", release.values),
        ("configmap", cluster_values.config_map.shared),
        ("configmap-release", cluster_values.config_map.for_release(name)),
        ("secret", cluster_values.secret.shared),
        ("secret-release", cluster_values.secret.for_release(name)),
    ]


def merge_values(layers: Sequence[Values]) -> Values:
    """Merge layers given lowest precedence first; the inputs are left untouched."""

    merged: Values = {}
    for layer in layers:
        if layer:
            merged = _merge(merged, layer)
    return merged


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> Values:
    out: Values = dict(base)
    for key, value in override.items():
        below = out.get(key)
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            out[key] = _merge(below, value)
        else:
            out[key] = _copy(value)
    return out


def _copy(value: Any) -> Any:
    # Copied so that a caller mutating the result can never reach into the model.
    if isinstance(value, Mapping):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


def secret_paths(cluster_values: ClusterValues, release: str) -> frozenset[ValuePath]:
    """The value paths of `release` that the Secret sets; everything at or under them is secret."""

    secret = merge_values(
        [cluster_values.secret.shared, cluster_values.secret.for_release(release)]
    )
    return frozenset(path for path, _ in leaves(secret))


def is_secret(path: ValuePath, secrets: frozenset[ValuePath]) -> bool:
    """True when `path` holds a Secret value or contains one (an ancestor mapping)."""

    return any(path[: len(s)] == s or s[: len(path)] == path for s in secrets)


def mask_secrets(values: Values, secrets: frozenset[ValuePath]) -> Values:
    """A copy of `values` with every Secret-sourced leaf replaced by `SECRET_MASK`."""

    def walk(node: Mapping[str, Any], prefix: ValuePath) -> Values:
        out: Values = {}
        for key, value in node.items():
            path = (*prefix, str(key))
            if path in secrets:
                out[key] = SECRET_MASK
            elif isinstance(value, Mapping) and is_secret(path, secrets):
                out[key] = walk(value, path)
            else:
                out[key] = _copy(value)
        return out

    return walk(values, ())


def leaves(values: Mapping[str, Any], prefix: ValuePath = ()) -> Iterator[tuple[ValuePath, Any]]:
    """Every (path, value) whose value is not a non-empty mapping; lists count as one value."""

    for key, value in values.items():
        path = (*prefix, str(key))
        if isinstance(value, Mapping) and value:
            yield from leaves(value, path)
        else:
            yield path, value


def cluster_values_from_data(
    config_map: Mapping[str, str] | None,
    secret: Mapping[str, str] | None,
    config_map_name: str = "",
    secret_name: str = "",
) -> ClusterValues:
    """Parse the `data` of the values ConfigMap (text) and Secret (base64, as the API gives it).

    Never raises for what the objects hold: a key that cannot be read is recorded in its
    source's `problems` (a Secret's message shows no text of the Secret).
    """

    return ClusterValues(
        config_map=_source(config_map or {}, f"ConfigMap {config_map_name}".strip(), _identity),
        secret=_source(secret or {}, f"Secret {secret_name}".strip(), _b64decode, sensitive=True),
    )


def _identity(text: str) -> str:
    return text


def _b64decode(text: str) -> str:
    try:
        return base64.b64decode(text, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError) as error:
        raise ValueError("not base64-encoded UTF-8") from error


def _source(
    data: Mapping[str, str], kind: str, decode: Callable[[str], str], *, sensitive: bool = False
) -> ValuesSource:
    shared: Values = {}
    per_release: dict[str, Values] = {}
    problems: dict[str, str] = {}
    for key, raw in data.items():
        if not isinstance(key, str) or not key.endswith(".yaml"):
            continue
        try:
            values = _parse(decode(raw) if isinstance(raw, str) else "", sensitive=sensitive)
        except ValueError as error:
            problems[key] = f"{kind} key {key!r}: {error}; fix the object or remove the key"
            continue
        if key == SHARED_KEY:
            shared = values
        else:
            per_release[key.removesuffix(".yaml")] = values
    return ValuesSource(shared=shared, per_release=per_release, problems=problems)


def _parse(text: str, *, sensitive: bool) -> Values:
    """One in-cluster values text as helm reads it; ValueError names the first problem."""

    values, problems = yamldoc.parse_values(text)
    if values is not None:
        return values
    first = problems[0]
    message = first.safe if sensitive else first.message
    line = f"line {first.line}: " if first.line else ""
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    raise ValueError(f"{line}{message}{more}")


def _installation(env: Environments, name: str) -> Installation:
    try:
        return env.installations[name]
    except KeyError:
        known = ", ".join(sorted(env.installations)) or "none"
        raise ReconcilerError(f"unknown installation {name!r}; known: {known}") from None


def _desired_release(
    env: Environments, inst: Installation, release: Release, cluster_values: ClusterValues
) -> DesiredRelease:
    project = env.projects.get(release.project)
    if project is None:
        raise ReconcilerError(
            f"{release.path or release.name}: release {release.name!r} names unknown "
            f"project {release.project!r}"
        )
    merged = merge_values([v for _, v in value_layers(project, inst, release, cluster_values)])
    problem = cluster_values.problem_for(release.name)
    try:
        values = helmyaml.canonical(merged)
    except helmyaml.ValueProblem as error:  # git values are checked on load; kept as a guard
        values, problem = {}, problem or f"values: {error}"
    desired = DesiredRelease(
        name=release.name,
        namespace=release.namespace or project.namespace,
        project=project.name,
        chart=_chart(project, inst, release),
        values=values,
        depends_on=_depends_on(inst, project),
        ref=release.ref,
        adopt=release.adopt,
        drift_ignore=project.drift_ignore,
    )
    return replace(desired, values_problem=problem) if problem else desired


def _chart(project: Project, inst: Installation, release: Release) -> ChartRef:
    if release.version is not None:
        version = release.version
    elif release.ref is not None:
        version = render_version(project.chart.version_template, release.ref)
    else:
        raise ReconcilerError(
            f"{release.path or release.name}: release {release.name!r} has neither "
            "`ref` nor `version`; set one of them"
        )
    repository = inst.chart_repository or project.chart.repository
    return ChartRef(repository=repository, name=project.chart.name, version=version)


def _depends_on(inst: Installation, project: Project) -> tuple[str, ...]:
    # A dependency on a project this installation does not run is satisfied by definition.
    wanted = set(project.depends_on)
    return tuple(sorted(r.name for r in inst.releases if r.project in wanted))
