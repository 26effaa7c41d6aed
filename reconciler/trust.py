"""Proof of authorship for release records, and the key it rests on.

Release records are Secrets that anybody with Secret rights in a namespace can write,
so a label saying `managed-by=reconciler` proves nothing. Every revision the reconciler
writes carries two more labels:

- `reconciler-revision`: the revision number the labels were written for, and
- `reconciler-mac`: HMAC-SHA256, under the installation's key, of (installation,
  namespace, release, that revision number, digest) and, when the revision was written as
  a ServiceAccount, its `reconciler-service-account` label: prune runs `helm uninstall` as
  that account, so a tenant who rewrites the label (helm's storage is its to write) makes
  the record unproven instead of choosing who the reconciler acts as.

A revision is *proven* when its MAC verifies and names its own number: helm copies a
revision's labels on `helm rollback` and on a later `helm upgrade`, so a copy names
another number and proves nothing until the reconciler signs it anew (it does so right
after its own rollbacks). The digest label is keyed with the same key, so values that
came from a Secret cannot be guessed back from it offline.

The key is 32 random bytes in the Secret `reconciler-key-<installation>` in the
reconciler's own namespace, created by the first `apply` or `run`; `plan` only reads it.
Verification is pure CPU: a pass with nothing to do reads no more than before.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from reconciler.errors import KubeError, ReconcilerError
from reconciler.kube import SECRETS, Kube
from reconciler.model import LABEL_DIGEST, LABEL_SERVICE_ACCOUNT, ChartRef, Values, digest_payload

KEY_DATA = "key"
KEY_BYTES = 32
LABEL_REVISION = "reconciler-revision"
LABEL_MAC = "reconciler-mac"
# Set by the reconciler when it signs a revision that its own `helm rollback` wrote.
LABEL_ROLLBACK_OF = "reconciler-rollback-of"
NOT_A_ROLLBACK = "none"
MAC_LENGTH = 32  # hex characters: 128 bits, well inside a label value's 63


def key_secret_name(installation: str) -> str:
    return f"reconciler-key-{installation}"


@dataclass(frozen=True)
class Signer:
    """Keyed digests and MACs of one installation. Without a key (`keyless`: none exists
    yet) nothing can be proven, and every digest is keyed with a throwaway key."""

    installation: str
    key: bytes = field(repr=False)
    has_key: bool = True

    @classmethod
    def keyless(cls, installation: str) -> Signer:
        return cls(installation, secrets.token_bytes(KEY_BYTES), has_key=False)

    def digest(self, chart: ChartRef, values: Values) -> str:
        """20 hex characters naming what helm is given; the release label `reconciler-digest`."""

        payload = b"digest\0" + digest_payload(chart, values)
        return hmac.new(self.key, payload, hashlib.sha256).hexdigest()[:20]

    def mac(
        self, namespace: str, release: str, revision: int, digest: str, account: str = ""
    ) -> str:
        fields: tuple[str, ...] = ("mac", self.installation, namespace, release, str(revision))
        fields += (digest,)
        # Without an account the message is what it always was: revisions written before
        # the account was signed, or as the reconciler itself, keep verifying.
        if account:
            fields += ("service-account", account)
        message = "\0".join(fields).encode()
        return hmac.new(self.key, message, hashlib.sha256).hexdigest()[:MAC_LENGTH]

    def labels(
        self, namespace: str, release: str, revision: int, digest: str, account: str | None = None
    ) -> dict[str, str]:
        """The proof labels of a revision the reconciler is about to write (or just wrote)
        as ServiceAccount `account` of `namespace` (None: as itself). The account label is
        always set, empty for none: helm upgrade keeps the previous revision's labels."""

        return {
            LABEL_SERVICE_ACCOUNT: account or "",
            LABEL_REVISION: str(revision),
            LABEL_MAC: self.mac(namespace, release, revision, digest, account or ""),
            # helm upgrade keeps the previous revision's labels: overwrite a rollback mark.
            LABEL_ROLLBACK_OF: NOT_A_ROLLBACK,
        }

    def proves(self, namespace: str, release: str, number: int, labels: Mapping[str, str]) -> bool:
        """True when `labels` were written by this installation for revision `number`."""

        if not self.has_key or labels.get(LABEL_REVISION) != str(number):
            return False
        digest = labels.get(LABEL_DIGEST, "")
        account = labels.get(LABEL_SERVICE_ACCOUNT, "")
        expected = self.mac(namespace, release, number, digest, account)
        return hmac.compare_digest(labels.get(LABEL_MAC, ""), expected)


def load_key(kube: Kube, namespace: str, installation: str, create: bool) -> Signer:
    """The installation's Signer from its key Secret; with `create`, the Secret is made when
    missing (one GET, and one POST the first time). Raises ReconcilerError when unreadable."""

    name = key_secret_name(installation)
    found = kube.get(SECRETS.path(namespace, name))
    if found is None and create:
        found = _create(kube, namespace, name)
    if found is None:
        return Signer.keyless(installation)
    encoded = (found.get("data") or {}).get(KEY_DATA, "")
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) < KEY_BYTES:
        raise ReconcilerError(
            f"Secret {namespace}/{name}: key {KEY_DATA!r} is not {KEY_BYTES} base64-encoded bytes; "
            "restore it from a backup (deleting it makes every release unverifiable)"
        )
    return Signer(installation, key)


def _create(kube: Kube, namespace: str, name: str) -> dict[str, object] | None:
    key = base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "reconciler"},
        },
        "data": {KEY_DATA: key},
    }
    try:
        return kube.request("POST", SECRETS.path(namespace), body=body)
    except KubeError as error:
        if error.status == 409:  # another replica made it first
            return kube.get(SECRETS.path(namespace, name))
        if error.status == 404:
            raise ReconcilerError(
                f"cannot create the key Secret {namespace}/{name}: namespace {namespace} "
                "does not exist; create it or set RECONCILER_NAMESPACE"
            ) from None
        raise


def sign_rollback(
    kube: Kube,
    signer: Signer,
    namespace: str,
    release: str,
    target: int,
    account: str | None = None,
) -> None:
    """Sign the revision a `helm rollback` to `target` just wrote (helm copied the target's
    labels, which name the target's number) as written by ServiceAccount `account` (None:
    the reconciler), the identity helm ran as: one LIST and one PATCH."""

    items = kube.list_items(
        SECRETS.path(namespace), f"owner=helm,name={release}", metadata_only=True
    )
    newest: tuple[int, str, Mapping[str, str]] | None = None
    for item in items:
        metadata = item.get("metadata") or {}
        labels = metadata.get("labels") or {}
        version = labels.get("version", "")
        if version.isdigit() and (newest is None or int(version) > newest[0]):
            newest = (int(version), str(metadata.get("name", "")), labels)
    if newest is None or newest[0] <= target:
        return
    number, secret, labels = newest
    digest = labels.get(LABEL_DIGEST, "")
    patch = {
        "metadata": {
            "labels": {
                **signer.labels(namespace, release, number, digest, account),
                LABEL_ROLLBACK_OF: str(target),
            }
        }
    }
    kube.request(
        "PATCH",
        SECRETS.path(namespace, secret),
        body=patch,
        content_type="application/merge-patch+json",
    )
