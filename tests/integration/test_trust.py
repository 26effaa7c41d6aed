"""Remediation that lands on a known-good state, and release records that are not ours left
alone: on the real testbed with real helm (issue: remediation, ownership, values sources)."""

from __future__ import annotations

import base64
import gzip
import json
import secrets
import signal
import time
from typing import Any

import pytest
from engine_world import World, apply_killed_mid_upgrade, wait_for, written_release

from reconciler.model import LABEL_DIGEST, ChartRef, digest_of

# wait: true makes a release with `hang: true` (a Deployment no kubelet ever runs) time
# out, then fail: a failure that `helm rollback` to it would not notice.
HANGS = {
    "retries": 0,
    "retryBackoffSeconds": 1,
    "timeoutSeconds": 6,
    "pendingTimeoutSeconds": 7,
    "wait": True,
}


def one_release(world: World, policy: dict[str, Any], values: dict[str, Any] | None = None) -> None:
    repo = world.repo
    repo.project("alpha", world.namespace, values={"message": "alpha default"})
    repo.release(world.installation, "alpha", version="0.1.0", values=values)
    repo.installation(world.installation, policy=policy)
    repo.commit("alpha")


def set_alpha(world: World, message: str, values: dict[str, Any] | None = None) -> None:
    world.repo.release(world.installation, "alpha", version="0.1.0", values=values)
    world.repo.commit(message)


def set_policy(world: World, policy: dict[str, Any], message: str = "policy") -> None:
    world.repo.installation(world.installation, policy=policy)
    world.repo.commit(message)


def upgrades(calls: list[str]) -> list[str]:
    return [name for call in calls if (name := written_release(call))]


def statuses(world: World, release: str = "alpha") -> list[str]:
    return [row["status"] for row in world.history(release)]


def release_secret(world: World, release: str, number: int) -> dict[str, Any]:
    path = f"/api/v1/namespaces/{world.namespace}/secrets/sh.helm.release.v1.{release}.v{number}"
    secret: dict[str, Any] = world.testbed.admin.call("GET", path)
    return secret


# --- Remediation and retries -------------------------------------------------------------


@pytest.mark.helm3
def test_retry_over_a_failed_latest_rolls_back_to_the_last_deployed_revision(world: World) -> None:
    one_release(world, {**HANGS, "retries": 1, "remediation": "none"})
    assert world.apply()[0] == 0
    set_alpha(world, "alpha hangs", {"hang": True})
    assert world.apply()[0] == 1
    assert statuses(world) == ["deployed", "failed"], "remediation none leaves revision 2 failed"

    set_policy(world, {**HANGS, "retries": 1, "remediation": "rollback"})
    time.sleep(1.5)  # the retry's backoff
    code, result, _ = world.apply()
    assert code == 1
    assert "rolled back to revision 1" in result["outcomes"][0]["message"]
    assert world.latest("alpha")["status"] == "deployed"
    assert "hang" not in world.values("alpha"), "the failed revision 2 is never the target"
    assert world.latest("alpha")["description"] == "Rollback to 1"
    _, planned = world.plan()
    assert {"namespace": world.namespace, "release": "alpha"} not in planned["in_sync"], (
        "a rollback never makes the failed desired state look deployed"
    )


@pytest.mark.helm3
def test_stale_lock_is_never_cleared_to_a_failed_revision(world: World) -> None:
    one_release(world, {**HANGS, "remediation": "none"})
    assert world.apply()[0] == 0
    set_alpha(world, "alpha breaks", {"broken": True})
    assert world.apply()[0] == 1
    set_alpha(world, "alpha hangs", {"hang": True})
    apply_killed_mid_upgrade(world)
    assert statuses(world) == ["deployed", "failed", "pending-upgrade"]

    set_alpha(world, "alpha fixed", {"message": "fixed"})
    time.sleep(HANGS["pendingTimeoutSeconds"] + 1)
    world.reset_calls()
    code, result, _ = world.apply()
    assert [(a["release"], a["action"]) for a in result["actions"]] == [
        ("alpha", "unlock"),
        ("alpha", "upgrade"),
    ]
    rollbacks = [c for c in world.helm_calls() if c.startswith("rollback ")]
    assert rollbacks[0].split()[2] == "1", "the lock is cleared to revision 1, never failed 2"
    assert code == 0, result["outcomes"]
    assert world.values("alpha") == {"message": "fixed"}


@pytest.mark.helm3
@pytest.mark.parametrize("remediation", ["rollback", "uninstall"])
def test_failed_release_whose_retries_are_spent_is_remediated_by_the_planner(
    world: World, remediation: str
) -> None:
    one_release(world, {**HANGS, "remediation": "none"})
    assert world.apply()[0] == 0
    set_alpha(world, "alpha hangs", {"hang": True})
    assert world.apply()[0] == 1
    set_policy(world, {**HANGS, "remediation": remediation})

    code, result, stderr = world.apply()
    assert [(a["release"], a["action"]) for a in result["actions"]] == [("alpha", remediation)]
    assert code == 0, stderr
    if remediation == "rollback":
        assert statuses(world)[-1] == "deployed"
        assert "hang" not in world.values("alpha")
    else:
        assert "alpha" not in world.releases()

    world.reset_calls()
    code, result, _ = world.apply()
    assert world.helm_calls() == [], "after its remediation the release waits for a change"
    assert "waiting for a change" in result["held"][0]["reason"]


def test_a_desired_state_that_failed_before_is_tried_again_after_another_one(
    world: World,
) -> None:
    one_release(world, {**HANGS, "wait": False, "remediation": "rollback"})
    assert world.apply()[0] == 0
    set_alpha(world, "alpha breaks", {"broken": True})
    assert world.apply()[0] == 1
    set_alpha(world, "alpha moves on", {"message": "another"})
    assert world.apply()[0] == 0
    set_alpha(world, "alpha breaks again", {"broken": True})

    world.reset_calls()
    code, result, _ = world.apply()
    assert upgrades(world.helm_calls()) == ["alpha"], (
        "the desired state changed twice since it failed: it is tried again, not held"
    )
    assert code == 1
    assert result["outcomes"][0]["result"] == "failed"


@pytest.mark.helm3
def test_pending_timeout_not_above_helm_timeout_is_refused(world: World) -> None:
    one_release(world, {"timeoutSeconds": 60, "pendingTimeoutSeconds": 1})
    code, _, stderr = world.apply()
    assert code == 1
    assert "installation.yaml" in stderr
    assert "pendingTimeoutSeconds" in stderr
    assert "above 60" in stderr, "the message says the fix"
    assert world.helm_calls() == []


@pytest.mark.helm3
def test_failed_manual_upgrade_is_not_the_reconcilers_attempt(world: World) -> None:
    one_release(world, {**HANGS, "wait": False})
    assert world.apply()[0] == 0
    chart = f"{world.repo.chart_repository}/app"
    done = world.helm("upgrade", "alpha", chart, "--version", "0.1.0", "--plain-http",
                      "--reuse-values", "--set", "broken=true", check=False)  # fmt: skip
    assert done.returncode != 0
    assert statuses(world) == ["deployed", "failed"]

    world.reset_calls()
    code, _result, stderr = world.apply()
    assert code == 0, stderr
    assert upgrades(world.helm_calls()) == ["alpha"], "a person's failure is repaired, not held"
    assert world.latest("alpha")["status"] == "deployed"
    assert "broken" not in world.values("alpha")


# --- Ownership ---------------------------------------------------------------------------


@pytest.mark.helm3
def test_release_installed_by_hand_with_another_chart_is_held_not_taken_over(
    world: World, publish_chart: Any
) -> None:
    smoke = publish_chart("smoke", "0.1.0")
    world.helm("install", "alpha", smoke, "--version", "0.1.0", "--plain-http",
               "--set", "message=precious data")  # fmt: skip
    one_release(world, {**HANGS, "wait": False})

    world.reset_calls()
    code, result, _ = world.apply()
    assert upgrades(world.helm_calls()) == []
    (hold,) = result["held"]
    assert "not ours" in hold["reason"]
    assert "chart smoke 0.1.0" in hold["reason"]
    assert "installed outside reconciler" in hold["reason"]
    config_map = f"/api/v1/namespaces/{world.namespace}/configmaps/alpha"
    assert world.testbed.admin.call("GET", config_map)["data"]["message"] == "precious data"

    code, planned = world.plan("--adopt", "alpha")
    assert [(a["action"], a["reason"]) for a in planned["actions"]] == [
        ("upgrade", "adopt: chart smoke 0.1.0 -> app 0.1.0 (was installed outside reconciler)")
    ]
    world.repo.write(
        f"installations/{world.installation}/releases/alpha.yaml",
        {"apiVersion": "reconciler/v1", "kind": "Release", "name": "alpha",
         "project": "alpha", "version": "0.1.0", "adopt": True},
    )  # fmt: skip
    world.repo.commit("adopt alpha")
    code, _, stderr = world.apply()
    assert code == 0, stderr
    assert world.latest("alpha")["chart"] == "app-0.1.0"
    world.reset_calls()
    assert world.apply()[0] == 0
    assert world.helm_calls() == [], "once adopted, the release is ours and in sync"


def test_two_installations_declaring_one_release_do_not_take_it_from_each_other(
    world: World,
) -> None:
    one_release(world, {**HANGS, "wait": False})
    assert world.apply()[0] == 0
    other = f"{world.installation}-b"
    world.repo.installation(other, policy={**HANGS, "wait": False})
    world.repo.release(other, "alpha", version="0.2.0")
    world.repo.commit("a second installation declares alpha too")

    world.reset_calls()
    done = world.cli("apply", "-o", "json", "-i", other)
    result = json.loads(done.stdout)
    assert upgrades(world.helm_calls()) == []
    (hold,) = result["held"]
    assert f"managed by installation {world.installation}" in hold["reason"]
    assert world.latest("alpha")["chart"] == "app-0.1.0"


def forge(world: World, release: str, number: int, status: str, manifest: str,
          labels_from: dict[str, str]) -> None:  # fmt: skip
    """Write a Helm release record by hand, as anybody with Secret rights could."""

    source = release_secret(world, "alpha", 1)
    record = json.loads(
        gzip.decompress(base64.b64decode(base64.b64decode(source["data"]["release"])))
    )
    record.update(name=release, version=number, manifest=manifest)
    record["info"]["status"] = status
    blob = base64.b64encode(gzip.compress(json.dumps(record).encode()))
    labels = {**labels_from, "name": release, "version": str(number), "status": status}
    secret = {
        "apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
        "metadata": {"name": f"sh.helm.release.v1.{release}.v{number}",
                     "namespace": world.namespace, "labels": labels},
        "data": {"release": base64.b64encode(blob).decode()},
    }  # fmt: skip
    world.testbed.admin.call("POST", f"/api/v1/namespaces/{world.namespace}/secrets", secret)


def victim_manifest(namespace: str) -> str:
    return (
        "---\n# Source: app/templates/x.yaml\napiVersion: v1\nkind: ConfigMap\n"
        f"metadata:\n  name: victim\n  namespace: {namespace}\ndata:\n  owner: someone else\n"
    )


@pytest.mark.helm3
def test_forged_deployed_and_pending_pair_is_not_rolled_back_to(
    world: World, testbed: Any, namespace: str
) -> None:
    other = testbed.create_namespace(f"victim-{secrets.token_hex(4)}")
    one_release(world, {**HANGS, "wait": False})
    assert world.apply()[0] == 0
    labels = release_secret(world, "alpha", 1)["metadata"]["labels"]
    forge(world, "alpha", 2, "deployed", victim_manifest(other), labels)
    forge(world, "alpha", 3, "pending-upgrade", victim_manifest(other), labels)
    time.sleep(HANGS["pendingTimeoutSeconds"] + 1)

    world.reset_calls()
    _code, result, _ = world.apply()
    assert [c for c in world.helm_calls() if not c.startswith("pull ")] == []
    (hold,) = result["held"]
    assert "did not write" in hold["reason"]
    done = testbed.admin.request("GET", f"/api/v1/namespaces/{other}/configmaps/victim")
    assert done[0] == 404, "nothing of the forged manifest was applied"
    testbed.delete_namespace(other)


@pytest.mark.helm3
def test_forged_record_with_our_labels_is_not_pruned(
    world: World, testbed: Any, namespace: str
) -> None:
    other = testbed.create_namespace(f"victim-{secrets.token_hex(4)}")
    victim = {"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": "victim", "namespace": other}, "data": {"owner": "someone else"}}  # fmt: skip
    testbed.admin.call("POST", f"/api/v1/namespaces/{other}/configmaps", victim)
    one_release(world, {**HANGS, "wait": False, "prune": True, "maxPruneShare": 1})
    assert world.apply()[0] == 0
    labels = release_secret(world, "alpha", 1)["metadata"]["labels"]
    forge(world, "ghost", 1, "deployed", victim_manifest(other), labels)

    world.reset_calls()
    _code, result, _ = world.apply()
    assert [c for c in world.helm_calls() if c.startswith("uninstall")] == []
    held = {h["release"]: h["reason"] for h in result["held"]}
    assert "signature" in held["ghost"]
    status, _ = testbed.admin.request("GET", f"/api/v1/namespaces/{other}/configmaps/victim")
    assert status == 200, "another namespace's object survives"
    testbed.delete_namespace(other)


# --- Values sources ----------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["secret", "configMap"])
def test_missing_values_source_holds_the_releases(world: World, missing: str) -> None:
    values_from = {"namespace": world.namespace, missing: "site-valuez"}
    world.repo.project("alpha", world.namespace, values={"message": "alpha default"})
    world.repo.release(world.installation, "alpha", version="0.1.0")
    world.repo.installation(world.installation, policy=HANGS, values_from=values_from)
    world.repo.commit("a misspelt values source")

    code, _, stderr = world.apply()
    assert code == 1
    kind = "Secret" if missing == "secret" else "ConfigMap"
    assert f"{kind} {world.namespace}/site-valuez not found" in stderr
    assert "optional: true" in stderr
    assert world.helm_calls() == [], "nothing is installed with chart defaults"

    optional = {**values_from, missing: {"name": "site-valuez", "optional": True}}
    world.repo.installation(world.installation, policy=HANGS, values_from=optional)
    world.repo.commit("the source is optional")
    code, _, stderr = world.apply()
    assert code == 0, stderr
    assert world.releases() == {"alpha": "deployed"}


@pytest.mark.helm3
def test_values_that_become_empty_do_not_keep_the_old_ones(world: World) -> None:
    world.repo.project("alpha", world.namespace)
    world.repo.release(world.installation, "alpha", version="0.1.0", values={"greeting": "hi"})
    world.repo.installation(world.installation, policy={**HANGS, "wait": False})
    world.repo.commit("alpha with one value")
    assert world.apply()[0] == 0
    assert world.values("alpha") == {"greeting": "hi"}

    world.repo.release(world.installation, "alpha", version="0.1.0")
    world.repo.commit("the release's values layer is removed")
    code, _, stderr = world.apply()
    assert code == 0, stderr
    assert world.values("alpha") == {}, "helm is told the values are empty, not to reuse"
    assert world.plan("--full")[0] == 0, "a full resync finds nothing to do"


def test_digest_label_is_keyed_so_secret_values_cannot_be_guessed(world: World) -> None:
    pin = "4711"
    secret = {"apiVersion": "v1", "kind": "Secret",
              "metadata": {"name": "site-secrets", "namespace": world.namespace},
              "data": {"alpha.yaml": base64.b64encode(f"pin: '{pin}'\n".encode()).decode()}}  # fmt: skip
    world.testbed.admin.call("POST", f"/api/v1/namespaces/{world.namespace}/secrets", secret)
    world.repo.project("alpha", world.namespace, values={"message": "alpha default"})
    world.repo.release(world.installation, "alpha", version="0.1.0")
    values_from = {"namespace": world.namespace, "secret": "site-secrets"}
    world.repo.installation(world.installation, policy=HANGS, values_from=values_from)
    world.repo.commit("alpha with a PIN")
    assert world.apply()[0] == 0

    label = release_secret(world, "alpha", 1)["metadata"]["labels"][LABEL_DIGEST]
    chart = ChartRef(world.repo.chart_repository, "app", "0.1.0")
    guesses = {
        digest_of(chart, {"message": "alpha default", "pin": f"{n:04d}"}) for n in range(10000)
    }
    assert label not in guesses, "the PIN cannot be recovered from the label offline"

    # The digest is keyed with the key in the reconciler's own Secret (RECONCILER_NAMESPACE).
    from reconciler.trust import KEY_DATA, Signer, key_secret_name

    path = f"/api/v1/namespaces/{world.namespace}/secrets/{key_secret_name(world.installation)}"
    key = base64.b64decode(world.testbed.admin.call("GET", path)["data"][KEY_DATA])
    signer = Signer(world.installation, key)
    assert label == signer.digest(chart, {"message": "alpha default", "pin": pin})


PRE_ROLLBACK_HOOK = """\
{{- if .Values.slowRollback }}
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ .Release.Name }}-pre-rollback
  annotations:
    "helm.sh/hook": pre-rollback
    "helm.sh/hook-delete-policy": before-hook-creation
spec:
  backoffLimit: 0
  template:
    metadata:
      # The testbed's simulated nodes keep it running until the test lets it finish.
      annotations: {reconciler-testbed/pod: never-ready}
    spec:
      restartPolicy: Never
      containers:
        - name: wait
          image: registry.k8s.io/pause:3.10
{{- end }}
"""


def let_job_finish(world: World, name: str) -> None:
    """Let the Pods of a Job held running (never-ready) run to completion: the simulated
    nodes then end them Succeeded, and the Job controller completes the Job."""

    pods = f"/api/v1/namespaces/{world.namespace}/pods"
    found = world.testbed.admin.call("GET", f"{pods}?labelSelector=job-name%3D{name}")
    assert found["items"], f"no Pod of Job {name}"
    for pod in found["items"]:
        pod["metadata"]["annotations"]["reconciler-testbed/pod"] = "finish"
        world.testbed.admin.call("PUT", f"{pods}/{pod['metadata']['name']}", pod)


@pytest.mark.helm3
def test_shutdown_during_a_rollback_leaves_no_pending_rollback(
    world: World, publish_chart: Any, charts_dir: Any, tmp_path: Any
) -> None:
    import shutil

    from engine_world import daemon

    chart = tmp_path / "hooked"
    shutil.copytree(charts_dir / "app", chart)
    text = (chart / "Chart.yaml").read_text()
    (chart / "Chart.yaml").write_text(text.replace("name: app", "name: hooked"))
    # A pre-rollback hook Job that runs until the test lets it finish: helm's rollback
    # stays pending-rollback until then.
    (chart / "templates" / "hook.yaml").write_text(PRE_ROLLBACK_HOOK)
    publish_chart(chart, "0.1.0")
    repo = world.repo
    repo.project("alpha", world.namespace, chart="hooked")
    repo.release(world.installation, "alpha", version="0.1.0", values={"slowRollback": True})
    policy = {"retries": 0, "timeoutSeconds": 12, "pendingTimeoutSeconds": 13}
    repo.installation(world.installation, policy=policy)
    repo.commit("alpha with a slow rollback")
    assert world.apply()[0] == 0

    repo.release(world.installation, "alpha", version="0.1.0",
                 values={"slowRollback": True, "broken": True})  # fmt: skip
    repo.commit("alpha breaks: remediation rolls back")
    with daemon(world, "--shutdown-grace", "1", name="rollback") as process:
        wait_for(lambda: world.latest("alpha")["status"] == "pending-rollback", timeout=90)
        process.send_signal(signal.SIGTERM)
        time.sleep(3)  # past the shutdown grace: helm upgrades get SIGTERM now
        let_job_finish(world, "alpha-pre-rollback")
        process.wait(timeout=60)
    assert statuses(world)[-1] == "deployed", (
        "helm's rollback is let finish: a stopped helm 3 would leave the release pending-rollback"
    )
