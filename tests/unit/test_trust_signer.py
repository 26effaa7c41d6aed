"""Signatures of release revisions: what proves a revision was written by this installation."""

from __future__ import annotations

from reconciler.model import (
    LABEL_DIGEST,
    LABEL_INSTALLATION,
    LABEL_SERVICE_ACCOUNT,
    ChartRef,
    digest_of,
)
from reconciler.observe import _revision_of
from reconciler.trust import LABEL_MAC, LABEL_REVISION, LABEL_ROLLBACK_OF, Signer

KEY = bytes(range(32))
CHART = ChartRef("oci://registry.local/charts", "web", "1.0.0")


def labels(
    signer: Signer, revision: int, digest: str = "d1", release: str = "api"
) -> dict[str, str]:
    return {
        LABEL_INSTALLATION: signer.installation,
        LABEL_DIGEST: digest,
        **signer.labels("apps", release, revision, digest),
    }


def metadata(number: int, own: dict[str, str], release: str = "api") -> dict[str, object]:
    return {
        "name": f"sh.helm.release.v1.{release}.v{number}",
        "namespace": "apps",
        "labels": {**own, "name": release, "version": str(number), "status": "deployed"},
    }


def parsed(
    signer: Signer, number: int, own: dict[str, str], release: str = "api"
) -> tuple[bool, bool]:
    found = _revision_of(metadata(number, own, release), signer)
    assert found is not None
    return found[1].signed, found[1].proven


def test_a_revision_written_for_its_own_number_is_proven() -> None:
    signer = Signer("prod", KEY)
    assert parsed(signer, 3, labels(signer, 3)) == (True, True)


def test_labels_copied_to_a_later_revision_are_signed_but_not_proven() -> None:
    signer = Signer("prod", KEY)
    assert parsed(signer, 5, labels(signer, 3)) == (True, False)


def test_labels_of_another_release_key_or_installation_prove_nothing() -> None:
    signer = Signer("prod", KEY)
    assert parsed(signer, 3, labels(signer, 3), release="other") == (False, False)
    assert parsed(signer, 3, labels(Signer("prod", bytes(32)), 3)) == (False, False)
    stranger = Signer("dev", KEY)
    assert parsed(signer, 3, {**labels(stranger, 3), LABEL_INSTALLATION: "prod"}) == (False, False)


def test_a_changed_digest_or_forged_mac_is_not_proven() -> None:
    signer = Signer("prod", KEY)
    assert parsed(signer, 3, {**labels(signer, 3), LABEL_DIGEST: "d2"}) == (False, False)
    assert parsed(signer, 3, {**labels(signer, 3), LABEL_MAC: "0" * 32}) == (False, False)
    assert parsed(signer, 3, {**labels(signer, 3), LABEL_REVISION: "4"}) == (False, False)


def test_without_a_key_nothing_is_proven() -> None:
    signer = Signer.keyless("prod")
    assert not signer.has_key
    assert parsed(signer, 1, labels(signer, 1)) == (False, False)


def test_digest_is_keyed() -> None:
    values = {"pin": "4711"}
    one, two = Signer("prod", KEY), Signer("prod", bytes(32))
    assert one.digest(CHART, values) != digest_of(CHART, values)
    assert one.digest(CHART, values) != two.digest(CHART, values)
    assert one.digest(CHART, values) == Signer("prod", KEY).digest(CHART, values)
    assert len(one.digest(CHART, values)) == 20


def test_an_upgrade_overwrites_a_copied_rollback_mark() -> None:
    assert Signer("prod", KEY).labels("apps", "api", 4, "d")[LABEL_ROLLBACK_OF] == "none"


def account_labels(signer: Signer, revision: int, account: str | None) -> dict[str, str]:
    return {
        LABEL_INSTALLATION: signer.installation,
        LABEL_DIGEST: "d1",
        **signer.labels("apps", "api", revision, "d1", account),
    }


def test_the_account_a_revision_was_written_as_is_signed() -> None:
    signer = Signer("prod", KEY)
    own = account_labels(signer, 3, "deployer")
    assert own[LABEL_SERVICE_ACCOUNT] == "deployer"
    assert parsed(signer, 3, own) == (True, True)
    # Removed, emptied or renamed by whoever may write the Secret: proves nothing.
    removed = {k: v for k, v in own.items() if k != LABEL_SERVICE_ACCOUNT}
    assert parsed(signer, 3, removed) == (False, False)
    assert parsed(signer, 3, {**own, LABEL_SERVICE_ACCOUNT: ""}) == (False, False)
    assert parsed(signer, 3, {**own, LABEL_SERVICE_ACCOUNT: "admin"}) == (False, False)


def test_a_revision_written_as_the_reconciler_proves_no_account_added_later() -> None:
    signer = Signer("prod", KEY)
    own = account_labels(signer, 3, None)
    assert own[LABEL_SERVICE_ACCOUNT] == ""  # set: helm upgrade keeps older labels
    assert parsed(signer, 3, own) == (True, True)
    assert parsed(signer, 3, {**own, LABEL_SERVICE_ACCOUNT: "deployer"}) == (False, False)


def test_revisions_signed_before_the_account_was_covered_still_verify() -> None:
    signer = Signer("prod", KEY)
    old = {LABEL_INSTALLATION: "prod", LABEL_DIGEST: "d1", LABEL_REVISION: "3"}
    old[LABEL_MAC] = signer.mac("apps", "api", 3, "d1")
    assert parsed(signer, 3, old) == (True, True)
