"""Live drift: where the cluster's objects differ from a release's rendered manifest.

Pure functions over a manifest object and its live counterpart. Only the fields the
manifest sets are compared (what other controllers add, defaults included, is not
drift), after undoing what the API server does to a field on its way in: zero values
left out (`{}`, `[]`, `""`, `false`, `0`, null; kept for pointer fields, see
`POINTER_KEYS`), quantities rewritten in typed quantity fields only (`0.5` -> `500m`,
`1024Mi` -> `1Gi`), a Secret's `stringData` moved into `data` (base64), a number given as
a string. Strings elsewhere (ConfigMap and Secret data, env values, any duration-like
text) are compared as they are: the API server keeps them verbatim. Fields a Kubernetes
controller owns by design (see `owned_paths`) are never compared. A freshly installed
release therefore shows no drift, and a change by hand to any field the chart sets does.

Findings name JSON pointer paths only, never values: a Secret's data must never reach a
message, and no other value needs to.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from reconciler.jsonshape import MAX_DEPTH, mapping, too_deep
from reconciler.liveobjects import LiveObject
from reconciler.masking import MASK as MASKED
from reconciler.model import DriftIgnore as IgnoreRule

# Paths never compared: the object's identity (a namespace the manifest names for a
# cluster-scoped kind is dropped by the server) and what controllers report.
ALWAYS_IGNORED = ("/metadata/namespace", "/metadata/creationTimestamp", "/status")
REPLICAS = "/spec/replicas"
# Maps whose values the API server stores as a resource.Quantity in canonical form
# (`resources.limits`, `resources.requests`, ResourceQuota `hard`, PV `capacity`, Pod
# `overhead`, RuntimeClass `overhead.podFixed`, LimitRange `limits[*]` bounds), and keys
# whose own value is one (emptyDir `sizeLimit`, CSIStorageCapacity `maximumVolumeSize`).
QUANTITY_MAPS = frozenset(
    {
        *("limits", "requests", "hard", "capacity", "overhead", "podFixed", "allocatable"),
        *("max", "min", "default", "defaultRequest", "maxLimitRequestRatio"),
    }
)
QUANTITY_LEAVES = frozenset({"sizeLimit", "maximumVolumeSize"})
# Strings the API server keeps verbatim whatever they look like: never normalised.
VERBATIM = re.compile(r"^/(?:data|stringData|binaryData)/|/env/\d+/value$")
# Pointer-typed fields: a zero value (`false`, `0`) the chart sets is stored, not left out,
# and removing it changes the meaning (`allowPrivilegeEscalation` then defaults to true).
POINTER_KEYS = frozenset(
    {
        "allowPrivilegeEscalation",
        "automountServiceAccountToken",
        "enableServiceLinks",
        "fsGroup",
        "hostUsers",
        "privileged",
        "readOnlyRootFilesystem",
        "runAsGroup",
        "runAsNonRoot",
        "runAsUser",
        "setHostnameAsFQDN",
        "shareProcessNamespace",
    }
)
# Annotations by which cert-manager's CA injector owns a `caBundle` the chart may set.
CA_INJECTION = (
    "cert-manager.io/inject-ca-from",
    "cert-manager.io/inject-ca-from-secret",
    "cert-manager.io/inject-apiserver-ca",
)
_QUANTITY = re.compile(
    r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:[eE]([+-]?\d+))?(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$"
)
_SUFFIX = {
    "": Decimal(1), "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
    "P": Decimal("1e15"), "E": Decimal("1e18"),
    "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30), "Ti": Decimal(2**40),
    "Pi": Decimal(2**50), "Ei": Decimal(2**60),
}  # fmt: skip
# A status row, Event or helm description names at most this many characters of drift.
SUMMARY_LIMIT = 2000
PATH_LIMIT = 300


@dataclass(frozen=True)
class ObjectDrift:
    """One object that differs: `missing`, or the manifest's paths whose live value differs."""

    ref: str
    missing: bool = False
    paths: tuple[str, ...] = ()

    def describe(self, limit: int = 4) -> str:
        if self.missing:
            return f"{self.ref} missing"
        shown = ", ".join(_cut(path, PATH_LIMIT) for path in self.paths[:limit])
        more = f" and {len(self.paths) - limit} more" if len(self.paths) > limit else ""
        return f"{self.ref} {shown}{more}"


@dataclass(frozen=True)
class LiveDrift:
    """A release's drift: the objects that differ, those that could not be read (with why:
    never counted as drift), and the workloads an autoscaler scales whose replicas the
    manifest sets (a correction through helm resets them; see docs/format.md)."""

    objects: tuple[ObjectDrift, ...] = ()
    unreadable: tuple[str, ...] = ()
    autoscaled: tuple[str, ...] = ()

    @property
    def drifted(self) -> bool:
        return bool(self.objects)

    def summary(self, limit: int = 3) -> str:
        """`Deployment ns/web /spec/replicas; ConfigMap ns/cfg missing` (paths only)."""

        shown = "; ".join(o.describe() for o in self.objects[:limit])
        more = len(self.objects) - limit
        return _cut(shown, SUMMARY_LIMIT) + (f"; and {more} more object(s)" if more > 0 else "")


def masked(drift: LiveDrift, mask: Callable[[str], str]) -> LiveDrift:
    """The same drift with every name and path masked: a map key or an object's name can
    come from a Secret-sourced value. A path is masked per key as well as whole, so a
    value JSON-pointer escaping rewrote (`/` as `~1`) is caught as the value itself."""

    def path(pointer: str) -> str:
        keys = pointer.split("/")
        hidden = [mask(unescape(key)) != unescape(key) for key in keys]
        return mask("/".join(MASKED if h else key for key, h in zip(keys, hidden, strict=True)))

    return LiveDrift(
        tuple(
            ObjectDrift(mask(o.ref), o.missing, tuple(path(p) for p in o.paths))
            for o in drift.objects
        ),
        tuple(mask(text) for text in drift.unreadable),
        tuple(mask(text) for text in drift.autoscaled),
    )


def release_drift(
    found: Iterable[LiveObject],
    rules: Sequence[IgnoreRule] = (),
    autoscaled: Collection[tuple[str, str, str]] = (),
) -> LiveDrift:
    """The drift of one release from its objects' live state. `autoscaled` holds the
    (namespace, kind, name) of workloads a HorizontalPodAutoscaler targets: their
    `/spec/replicas` is the autoscaler's, never drift."""

    objects: list[ObjectDrift] = []
    unreadable: list[str] = []
    reset: list[str] = []
    for item in found:
        obj = item.obj
        if item.error:
            unreadable.append(f"{obj.ref}: {item.error}")
            continue
        if item.live is None:
            objects.append(ObjectDrift(obj.ref, missing=True))
            continue
        if too_deep(obj.body) or too_deep(item.live):
            unreadable.append(f"{obj.ref}: nested more than {MAX_DEPTH} levels, not compared")
            continue
        ignored = [
            *ALWAYS_IGNORED,
            *owned_paths(obj.kind, obj.body),
            *rule_paths(rules, obj.kind, obj.name),
        ]
        scaled = (obj.namespace, obj.kind, obj.name) in autoscaled
        if scaled:
            ignored.append(REPLICAS)
            if _has(obj.body, REPLICAS):
                reset.append(obj.ref)
        paths = diff_paths(_as_stored(obj.kind, obj.body), item.live, ignored)
        if paths:
            objects.append(ObjectDrift(obj.ref, paths=tuple(paths)))
    return LiveDrift(tuple(objects), tuple(unreadable), tuple(reset))


def owned_paths(kind: str, body: Mapping[str, Any]) -> list[str]:
    """JSON pointers of fields a controller owns by design though a chart may set them:
    an aggregated ClusterRole's `rules` (the aggregation controller fills them), and a
    `caBundle` cert-manager's CA injector fills when the object asks for it by annotation.
    Never drift; `/spec/replicas` under an autoscaler is handled by `release_drift`."""

    paths: list[str] = []
    if kind == "ClusterRole" and body.get("aggregationRule") is not None:
        paths.append("/rules")
    annotations = mapping(mapping(body.get("metadata")).get("annotations"))
    if any(key in annotations for key in CA_INJECTION):
        if kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
            hooks = body.get("webhooks")
            count = len(hooks) if isinstance(hooks, list) else 0
            paths += [f"/webhooks/{i}/clientConfig/caBundle" for i in range(count)]
        elif kind == "CustomResourceDefinition":
            paths.append("/spec/conversion/webhook/clientConfig/caBundle")
        elif kind == "APIService":
            paths.append("/spec/caBundle")
    return paths


def hpa_targets(autoscalers: Iterable[Mapping[str, Any]]) -> set[tuple[str, str, str]]:
    """(namespace, kind, name) of every workload the given HorizontalPodAutoscalers scale."""

    targets = set()
    for hpa in autoscalers:
        namespace = mapping(mapping(hpa).get("metadata")).get("namespace", "")
        ref = mapping(mapping(hpa).get("spec")).get("scaleTargetRef")
        if isinstance(ref, dict) and ref.get("kind") and ref.get("name"):
            targets.add((str(namespace), str(ref["kind"]), str(ref["name"])))
    return targets


def diff_paths(want: Any, have: Any, ignored: Sequence[str] = ()) -> list[str]:
    """JSON pointers of what `want` (a manifest object) sets and `have` (the live one) does
    not hold, in manifest order. Paths in `ignored`, and everything under them, are skipped.
    Below `MAX_DEPTH` levels nothing is compared (the path there is reported instead)."""

    found: list[str] = []
    _diff(want, have, "", frozenset(ignored), found, 0)
    return found


def _diff(
    want: Any, have: Any, path: str, ignored: frozenset[str], found: list[str], depth: int
) -> None:
    if path in ignored or want is None:
        return
    if depth >= MAX_DEPTH and isinstance(want, dict | list):
        found.append(path)
        return
    if isinstance(want, dict):
        if not isinstance(have, dict):
            if not (have is None and not want):
                found.append(path or "/")
            return
        for key, value in want.items():
            child = f"{path}/{_escape(str(key))}"
            if have.get(key) is None:
                if (not _zero(value) or _kept(key, value)) and child not in ignored:
                    found.append(child)
                continue
            _diff(value, have[key], child, ignored, found, depth + 1)
    elif isinstance(want, list):
        if not isinstance(have, list) or len(want) != len(have):
            if not (have is None and not want):
                found.append(path)
            return
        for index, (mine, theirs) in enumerate(zip(want, have, strict=True)):
            _diff(mine, theirs, f"{path}/{index}", ignored, found, depth + 1)
    elif not _same_scalar(want, have, path):
        found.append(path)


def _zero(value: Any) -> bool:
    """What Go's `omitempty` leaves out of the stored object."""

    return value is None or value is False or (not isinstance(value, bool) and not value)


def _kept(key: Any, value: Any) -> bool:
    """A zero value the API server stores (a pointer field's `false` or `0`)."""

    return key in POINTER_KEYS and (value is False or (_is_number(value) and value == 0))


def _same_scalar(want: Any, have: Any, path: str) -> bool:
    if isinstance(want, _Decoded):
        return bool(want == have)
    if type(want) is type(have) and want == have:
        return True
    if isinstance(want, bool) or isinstance(have, bool):
        return str(want).lower() == str(have).lower()
    if _is_number(want) and _is_number(have):
        return bool(want == have)
    if VERBATIM.search(path):
        return False
    if _quantity_field(path):
        mine, theirs = _quantity(want), _quantity(have)
        if mine is not None and mine == theirs:
            return True
    if isinstance(want, str) and isinstance(have, str):
        return False
    # A number the chart wrote where the API keeps a string (or the other way round).
    return _is_number(want) != _is_number(have) and _number_text(want) == _number_text(have)


def _quantity_field(path: str) -> bool:
    parts = path.rsplit("/", 2)
    return (len(parts) == 3 and unescape(parts[1]) in QUANTITY_MAPS) or (
        unescape(parts[-1]) in QUANTITY_LEAVES
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _quantity(value: Any) -> Decimal | None:
    if _is_number(value):
        return Decimal(str(value))
    if not isinstance(value, str):
        return None
    match = _QUANTITY.match(value.strip())
    if not match:
        return None
    try:
        number = Decimal(match[1]) * (Decimal(10) ** int(match[2] or 0))
    except (InvalidOperation, ValueError):
        return None
    return number * _SUFFIX[match[3] or ""]


def _as_stored(kind: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
    """The manifest object as the API server stores it: a Secret's `stringData` is merged
    into `data` (base64) and not kept; data is compared decoded (see `_Decoded`)."""

    if kind not in ("Secret", "ConfigMap"):
        return body
    stored = dict(body)
    # A record's manifest is anyone's: a `data` that is no mapping is compared as it is.
    if kind == "Secret" and isinstance(body.get("data") or {}, Mapping):
        data = {k: _Decoded.of(v) for k, v in (body.get("data") or {}).items()}
        for key, value in mapping(body.get("stringData")).items():
            data[key] = _Decoded(str(value).encode())
        stored.pop("stringData", None)
        if data:
            stored["data"] = data
    elif kind == "ConfigMap" and isinstance(body.get("binaryData"), Mapping):
        stored["binaryData"] = {k: _Decoded.of(v) for k, v in body["binaryData"].items()}
    return stored


@dataclass(frozen=True)
class _Decoded:
    """Bytes a manifest gives as base64: equal to a live base64 string of the same bytes,
    however either side wraps or pads it."""

    raw: bytes | None

    @classmethod
    def of(cls, text: Any) -> _Decoded:
        return cls(_b64(text))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _Decoded):
            return self.raw == other.raw
        return self.raw is not None and self.raw == _b64(other)

    def __hash__(self) -> int:
        return hash(self.raw)


def _b64(text: Any) -> bytes | None:
    if not isinstance(text, str):
        return None
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def rule_paths(rules: Sequence[IgnoreRule], kind: str, name: str) -> list[str]:
    """The JSON pointers `rules` keep out of drift for object `kind`/`name`."""

    return [path.rstrip("/") for rule in rules if rule.applies(kind, name) for path in rule.paths]


def _has(body: Mapping[str, Any], pointer: str) -> bool:
    return pointer_get(body, pointer)[0]


def pointer_get(body: Any, pointer: str) -> tuple[bool, Any]:
    """(found, value) at JSON pointer `pointer` (RFC 6901) in `body`; a null value counts
    as absent, as the API server leaves null fields out."""

    node = body
    for token in pointer.split("/")[1:]:
        key = unescape(token)
        if isinstance(node, Mapping) and node.get(key) is not None:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return False, None
    return True, node


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def unescape(key: str) -> str:
    """A JSON pointer token as the key it stands for (`~1` is `/`, `~0` is `~`)."""

    return key.replace("~1", "/").replace("~0", "~")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
