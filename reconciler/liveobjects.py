"""The live counterparts of manifest objects, read through the Kubernetes API.

apiVersion + kind become a REST path through API discovery: one GET of the group
version's resource list (`/api/v1`, `/apis/<group>/<version>`) the first time a pass
meets it, cached in a `Discovery` for the rest of the pass (a CRD installed later is
found by the next pass). Each object is then one GET; 404 means missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from reconciler.errors import KubeError
from reconciler.jsonshape import items, mapping
from reconciler.kube import SECRETS, JsonObject, Kube, Resource, as_release_account
from reconciler.manifest import ManifestObject

# From this many objects of one resource in one namespace, one LIST reads them all (a
# namespace holding many releases); below it, a GET each reads less.
LIST_FROM = 8


@dataclass(frozen=True)
class ApiResource:
    """Where one kind lives: its REST resource and whether it is namespaced."""

    resource: Resource
    namespaced: bool

    def path(self, namespace: str, name: str) -> str:
        return self.resource.path(namespace if self.namespaced else None, name)


@dataclass(frozen=True)
class LiveObject:
    """A manifest object and what the cluster holds for it.

    `live` is the object as the API server returns it, None when it does not exist (404)
    or could not be read; then `error` says why ("" when it is simply missing).
    """

    obj: ManifestObject
    live: JsonObject | None
    error: str = ""

    @property
    def missing(self) -> bool:
        return self.live is None and not self.error


class Discovery:
    """Kind -> REST resource, one GET per group version, cached for the life of the object
    (make one per pass). Not thread-safe: resolve before fanning out."""

    def __init__(self, kube: Kube) -> None:
        self._kube = kube
        self._versions: dict[str, Mapping[str, ApiResource] | None] = {}

    def resolve(self, api_version: str, kind: str) -> ApiResource | None:
        """The resource serving `kind` at `api_version`, or None when the cluster does not
        serve it (a CRD not installed, a removed API version). Raises KubeError when the
        API cannot be asked (other than 404)."""

        if api_version not in self._versions:
            self._versions[api_version] = self._read(api_version)
        kinds = self._versions[api_version]
        return None if kinds is None else kinds.get(kind)

    def _read(self, api_version: str) -> Mapping[str, ApiResource] | None:
        path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        if api_version != "v1" and "/" not in api_version:
            return None  # "apps" without a version, or a core version other than v1
        found = self._kube.get(path)
        if found is None:
            return None
        kinds: dict[str, ApiResource] = {}
        # An aggregated API's discovery is served by whoever runs it: any shape.
        for entry in items(found.get("resources")):
            if not isinstance(entry, Mapping):
                continue
            name = str(entry.get("name", ""))
            if not name or "/" in name:  # subresources such as deployments/scale
                continue
            kinds.setdefault(
                str(entry.get("kind", "")),
                ApiResource(Resource(api_version, name), bool(entry.get("namespaced"))),
            )
        return kinds


def read_live(
    kube: Kube,
    objects: Iterable[ManifestObject],
    discovery: Discovery | None = None,
    workers: int = 1,
) -> list[LiveObject]:
    """Each object's live state, in the order given. Objects of one resource in one
    namespace are read with one paginated LIST when there are at least `LIST_FROM` of them,
    else with one GET each (`workers` GETs at a time); plus discovery GETs the first time a
    group version is met. `kube` may be an impersonating client: only what it may read is
    read (a 403 becomes that object's `error`, never a raise; a refused LIST falls back to
    GETs). Pass one `discovery` for a whole pass to share its cache between releases.
    """

    discovery = discovery or Discovery(kube)
    objects = list(objects)
    found: dict[int, LiveObject] = {}
    groups: dict[tuple[ApiResource, str], list[int]] = {}
    for index, obj in enumerate(objects):
        try:
            where = discovery.resolve(obj.api_version, obj.kind)
        except KubeError as error:
            found[index] = LiveObject(obj, None, f"cannot discover {obj.api_version}: {error}")
            continue
        if where is None:
            problem = f"the cluster does not serve {obj.kind} in {obj.api_version}"
            found[index] = LiveObject(obj, None, problem)
            continue
        groups.setdefault((where, obj.namespace if where.namespaced else ""), []).append(index)
    singles: list[tuple[int, ApiResource]] = []
    for (where, namespace), indexes in groups.items():
        names = {objects[index].name for index in indexes}
        listed = _listed(kube, where, namespace, names) if len(indexes) >= LIST_FROM else None
        for index in indexes:
            obj = objects[index]
            live = (listed or {}).get(obj.name)
            if live is None:
                # Not listed (or no LIST): a GET tells, so a LIST's filter never makes an
                # object look missing.
                singles.append((index, where))
                continue
            # A LIST's items carry no apiVersion and kind; a GET's do.
            live = {**live, "apiVersion": obj.api_version, "kind": obj.kind}
            found[index] = LiveObject(obj, live)

    def get(single: tuple[int, ApiResource]) -> tuple[int, LiveObject]:
        index, where = single
        obj = objects[index]
        try:
            return index, LiveObject(obj, kube.get(where.path(obj.namespace, obj.name)))
        except KubeError as error:
            return index, LiveObject(obj, None, str(error))

    if workers > 1 and len(singles) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            found.update(pool.map(get, singles))
    else:
        found.update(map(get, singles))
    return [found[index] for index in range(len(objects))]


def _listed(
    kube: Kube, where: ApiResource, namespace: str, names: set[str]
) -> dict[str, JsonObject] | None:
    """The objects named `names` of one resource in one namespace, by name (only those are
    kept), or None when the LIST is refused (the caller GETs one by one: a client may hold
    `get` without `list`). Helm's own release Secrets are left out of a Secret LIST: they
    are the largest objects of a namespace and never in a manifest."""

    path = where.resource.path(namespace or None)
    selector = "owner!=helm" if where.resource == SECRETS else ""
    try:
        return {
            name: item
            for item in kube.list_items(path, selector)
            if (name := str(mapping(mapping(item).get("metadata")).get("name", ""))) in names
        }
    except KubeError:
        return None


def read_live_as(
    kube: Kube,
    releases: Sequence[tuple[str, str | None, Sequence[ManifestObject]]],
    discovery: Discovery | None = None,
    workers: int = 1,
) -> list[list[LiveObject]]:
    """`read_live` for many releases, each read as the account helm runs it as.

    `releases`: (namespace, service account or None, objects) per release; the result
    holds each release's live objects, in the order given. Releases sharing an identity
    are read together (LISTs shared); a release with no account is read as `kube`.
    """

    discovery = discovery or Discovery(kube)
    by_identity: dict[tuple[str, str] | None, list[int]] = {}
    for index, (namespace, account, _) in enumerate(releases):
        by_identity.setdefault((namespace, account) if account else None, []).append(index)
    results: list[list[LiveObject]] = [[] for _ in releases]
    for identity, indexes in by_identity.items():
        acting = as_release_account(kube, *identity) if identity else kube
        objects = [obj for i in indexes for obj in releases[i][2]]
        live = iter(read_live(acting, objects, discovery, workers))
        for i in indexes:
            results[i] = [next(live) for _ in releases[i][2]]
    return results
