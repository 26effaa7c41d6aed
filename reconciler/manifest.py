"""A release's rendered manifest as frozen objects.

The manifest is the `manifest` field of a decoded Helm release record: the chart's
rendered templates, YAML documents separated by `---` (hooks and `crds/` are not in it).
It is written by helm, but the release Secret is writable by others, so it is parsed
with a safe loader and anything that is not an object with apiVersion, kind and name
is skipped, never fatal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from reconciler.errors import ReconcilerError

# Kinds that live outside any namespace. Discovery (reconciler.liveobjects) is the
# authority; this list only decides which objects get the release namespace by default.
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "APIService",
        "CertificateSigningRequest",
        "ClusterRole",
        "ClusterRoleBinding",
        "CSIDriver",
        "CSINode",
        "CustomResourceDefinition",
        "IngressClass",
        "MutatingWebhookConfiguration",
        "Namespace",
        "Node",
        "PersistentVolume",
        "PriorityClass",
        "RuntimeClass",
        "StorageClass",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ValidatingWebhookConfiguration",
        "VolumeAttachment",
    }
)


class ManifestError(ReconcilerError):
    """A release manifest is not YAML at all."""


class _Loader(yaml.CSafeLoader if hasattr(yaml, "CSafeLoader") else yaml.SafeLoader):  # type: ignore[misc]
    """Safe YAML where timestamps stay strings, as the API server (JSON) keeps them."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True)
class ManifestObject:
    """One object of a manifest. `namespace` is "" for cluster-scoped kinds; `body` is the
    whole rendered object as JSON-like data (do not mutate it: it is shared)."""

    api_version: str
    kind: str
    namespace: str
    name: str
    body: Mapping[str, Any] = field(compare=False, repr=False)

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def ref(self) -> str:
        """How messages name it: Kind namespace/name (or Kind name when cluster-scoped)."""

        return (
            f"{self.kind} {self.namespace}/{self.name}"
            if self.namespace
            else f"{self.kind} {self.name}"
        )


def parse(text: str, namespace: str) -> tuple[ManifestObject, ...]:
    """The objects of a rendered manifest, in manifest order; `namespace` (the release's)
    is given to namespaced objects that name none. A `kind: List` is expanded. Raises
    ManifestError when the text is not YAML (its message holds no content of it)."""

    try:
        documents = list(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ManifestError(f"the release manifest is not valid YAML{where}") from None
    objects: list[ManifestObject] = []
    for document in documents:
        items = _items(document)
        objects.extend(obj for item in items if (obj := _object(item, namespace)) is not None)
    return tuple(objects)


def parse_record(record: Mapping[str, Any]) -> tuple[ManifestObject, ...]:
    """The objects of a decoded release record (`reconciler.observe.read_record`)."""

    manifest = record.get("manifest")
    namespace = record.get("namespace")
    if not isinstance(manifest, str) or not isinstance(namespace, str):
        return ()
    return parse(manifest, namespace)


def _items(document: Any) -> list[Any]:
    if isinstance(document, dict) and document.get("kind") == "List":
        items = document.get("items")
        return items if isinstance(items, list) else []
    return [document]


def _object(document: Any, namespace: str) -> ManifestObject | None:
    if not isinstance(document, dict):
        return None
    api_version, kind = document.get("apiVersion"), document.get("kind")
    metadata = document.get("metadata")
    if not isinstance(metadata, dict):
        return None
    name, own_namespace = metadata.get("name"), metadata.get("namespace")
    if not all(isinstance(v, str) and v for v in (api_version, kind, name)):
        return None
    if kind in CLUSTER_SCOPED_KINDS:
        where = ""
    elif isinstance(own_namespace, str) and own_namespace:
        where = own_namespace
    else:
        where = namespace
    return ManifestObject(str(api_version), str(kind), where, str(name), document)
