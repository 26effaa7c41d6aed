"""`reconciler run` as a daemon on the real testbed: leader election, endpoints, status, shutdown."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from engine_world import (
    World,
    daemon,
    daemon_log,
    helm_spy,
    log_entries,
    wait_for,
    wait_for_log,
    written_release,
)

from reconciler.status import status_name

FAST = {"retries": 0, "retryBackoffSeconds": 1, "timeoutSeconds": 60}
# Tests that show a webhook or a file change triggers a pass poll only every SLOW_POLL
# seconds and allow the pass LATENCY_BOUND: far less, so only the trigger explains it.
SLOW_POLL = 300
LATENCY_BOUND = 60
assert SLOW_POLL >= 4 * LATENCY_BOUND


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except (OSError, http.client.HTTPException):
        return 0, ""  # not listening yet, or a timeout or reset on a loaded machine


def listening_url(world: World, name: str) -> str:
    """Where daemon `name`, started with `--listen 127.0.0.1:0`, serves."""
    entry = wait_for_log(daemon_log(world, name), "listening", timeout=60)
    return f"http://{entry['address']}"


def seconds_until_upgraded(world: World, release: str, since: float) -> float:
    """Seconds from `since` until `release` runs chart 0.2.0."""

    wait_for(
        lambda: world.latest(release)["chart"] == "app-0.2.0",
        timeout=LATENCY_BOUND + 30,
        interval=0.5,
    )
    return time.monotonic() - since


def two_releases(world: World) -> None:
    for name in ("alpha", "beta"):
        world.repo.project(name, world.namespace)
        world.repo.release(world.installation, name, version="0.1.0")
    world.repo.installation(world.installation, policy=FAST)
    world.repo.commit("two releases")


def lease_path(world: World) -> str:
    return f"/apis/coordination.k8s.io/v1/namespaces/{world.namespace}/leases/reconciler-{world.installation}"


def lease_spec(world: World) -> dict[str, Any]:
    spec: dict[str, Any] = world.testbed.admin.call("GET", lease_path(world))["spec"]
    return spec


def lease_holder(world: World) -> str:
    try:
        return str(lease_spec(world).get("holderIdentity") or "")
    except Exception:  # the lease does not exist yet
        return ""


def seconds(micro_time: str) -> float:
    """A Lease MicroTime ("2025-01-02T03:04:05.123456Z") as a Unix time."""
    return datetime.fromisoformat(micro_time.replace("Z", "+00:00")).timestamp()


def upgrades(log: Path) -> list[str]:
    """Releases a replica's helm installed or upgraded."""

    return [
        name
        for line in log.read_text().splitlines()
        if line.startswith("start") and (name := written_release(line.split(" ", 2)[2]))
    ]


def test_two_reconcilers_one_acts_and_the_other_takes_over(world: World) -> None:
    two_releases(world)
    spy_a, log_a = helm_spy(world.testbed.helm_binaries["helm4"], world.workdir / "a")
    spy_b, log_b = helm_spy(world.testbed.helm_binaries["helm4"], world.workdir / "b")
    # Long enough that on a loaded machine replica a does not miss its renewals (a try
    # every 0.8 s, given up after 4 s) and lose the lease to b before it is killed.
    duration = 6
    lease = ("--leader-elect", "--lease-duration", str(duration))
    with daemon(world, *lease, name="a", spy=spy_a) as first:
        wait_for(lambda: lease_holder(world) == "a", timeout=30)
        with daemon(world, *lease, name="b", spy=spy_b):
            wait_for(lambda: world.releases() == {"alpha": "deployed", "beta": "deployed"})
            wait_for_log(daemon_log(world, "b"), "new revision", revision=_head(world))
            time.sleep(2)  # b has seen the revision and had several polls to act on it
            assert sorted(upgrades(log_a)) == ["alpha", "beta"]
            assert upgrades(log_b) == [], "the replica without the lease does not act"

            killed_at = time.time()
            first.send_signal(signal.SIGKILL)  # no chance to hand the lease back
            first.wait()
            held = lease_spec(world)
            assert held["holderIdentity"] == "a", "a held the lease until it was killed"
            wait_for(lambda: lease_holder(world) == "b", timeout=60)
            acquired = seconds(lease_spec(world)["acquireTime"])
            # Judged by the Lease's own times, so how fast this test polls does not count.
            waited = acquired - seconds(held["renewTime"])
            assert waited >= duration - 0.25, (
                f"b took over {waited:.1f}s after a's last renewal; the lease lasts {duration}s"
            )
            took = acquired - killed_at
            assert took < duration + 14, f"takeover took {took:.1f}s, lease duration is {duration}s"

            world.repo.release(world.installation, "alpha", version="0.2.0")
            world.repo.commit("alpha moves while a is gone")
            wait_for(lambda: world.latest("alpha")["chart"] == "app-0.2.0", timeout=60)
            assert upgrades(log_b) == ["alpha"]
    assert sorted(upgrades(log_a)) == ["alpha", "beta"], "each change ran helm once, in one replica"


def test_a_reconciler_that_loses_the_lease_stops_acting(world: World) -> None:
    two_releases(world)
    with daemon(world, "--leader-elect", "--lease-duration", "3", name="a"):
        wait_for(lambda: world.releases() == {"alpha": "deployed", "beta": "deployed"})
        path = lease_path(world)

        def take_over() -> bool:
            lease = world.testbed.admin.call("GET", path)
            lease["spec"] |= {"holderIdentity": "intruder", "leaseDurationSeconds": 3600}
            status, _ = world.testbed.admin.request("PUT", path, lease)
            return status == 200  # 409 when the holder renewed in between: try again

        def times_lost() -> int:
            entries = log_entries(daemon_log(world, "a"))
            return sum(entry.get("msg") == "leadership lost" for entry in entries)

        before = times_lost()  # a slow renewal under load may have cost it the lease once
        wait_for(take_over, timeout=20)
        wait_for(lambda: times_lost() > before, timeout=30)
        world.reset_calls()
        world.repo.release(world.installation, "alpha", version="0.2.0")
        head = world.repo.commit("while someone else holds the lease")
        wait_for_log(daemon_log(world, "a"), "new revision", revision=head)
        time.sleep(3)  # a has seen the revision and had several polls to act on it
        assert world.helm_calls() == []
        assert world.latest("alpha")["chart"] == "app-0.1.0"


def test_metrics_and_readiness_follow_the_sync(world: World) -> None:
    with daemon(world, "--listen", "127.0.0.1:0", name="m"):
        base = listening_url(world, "m")
        wait_for(lambda: get(f"{base}/healthz")[0] == 200, timeout=30)
        assert get(f"{base}/readyz")[0] == 503, (
            "not ready before the first sync (the repo is empty)"
        )
        two_releases(world)
        wait_for(lambda: get(f"{base}/readyz")[0] == 200, timeout=30)
        wait_for(
            lambda: (
                'state="succeeded"' in get(f"{base}/metrics")[1]
                or 'state="in-sync"' in get(f"{base}/metrics")[1]
            )
        )
        metrics = get(f"{base}/metrics")[1]
    assert 'reconciler_helm_operations_total{kind="install",result="succeeded"} 2.0' in metrics
    assert "reconciler_pass_duration_seconds_count" in metrics
    assert "reconciler_git_fetch_duration_seconds_count" in metrics
    assert "reconciler_last_success_timestamp_seconds" in metrics
    assert f'reconciler_revision_info{{revision="{_head(world)}"}} 1.0' in metrics


def test_push_webhook_triggers_a_poll_at_once_and_checks_its_signature(world: World) -> None:
    secret_file = world.workdir / "hook-secret"
    secret_file.write_text("hook-secret-value")
    two_releases(world)
    args = (
        "--listen",
        "127.0.0.1:0",
        "--webhook-secret-file",
        str(secret_file),
        "--interval",
        str(SLOW_POLL),
    )
    with daemon(world, *args, name="w"):
        hook = f"{listening_url(world, 'w')}/hooks/git"
        wait_for(lambda: world.releases() == {"alpha": "deployed", "beta": "deployed"}, timeout=60)
        world.repo.release(world.installation, "beta", version="0.2.0")
        world.repo.commit("beta moves")
        body = b'{"ref": "refs/heads/main"}'
        unsigned = urllib.request.Request(hook, data=body, method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(unsigned, timeout=30)
        assert refused.value.code == 401
        signature = "sha256=" + hmac.new(b"hook-secret-value", body, hashlib.sha256).hexdigest()
        signed = urllib.request.Request(
            hook, data=body, method="POST", headers={"X-Hub-Signature-256": signature}
        )
        sent = time.monotonic()
        with urllib.request.urlopen(signed, timeout=30) as response:
            assert response.status == 202
        latency = seconds_until_upgraded(world, "beta", sent)
    assert latency < LATENCY_BOUND, (
        f"webhook to upgraded took {latency:.1f}s with a {SLOW_POLL}s poll interval"
    )


def test_status_shows_the_table_after_a_converge_and_after_a_failure(world: World) -> None:
    two_releases(world)
    assert world.apply()[0] == 0
    done = world.cli("status", "--namespace", world.namespace)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1].split()[:5] == ["RELEASE", "NAMESPACE", "DESIRED", "DEPLOYED", "STATE"]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert rows["alpha"][2:5] == ["0.1.0", "0.1.0", "succeeded"]

    world.repo.release(world.installation, "beta", version="0.2.0", values={"broken": True})
    world.repo.commit("beta breaks")
    assert world.apply()[0] == 1
    done = world.cli("status", "--namespace", world.namespace, "-o", "json")
    assert done.returncode == 1
    import json

    document = json.loads(done.stdout)
    by_name = {r["release"]: r for r in document["releases"]}
    assert by_name["beta"]["state"] == "failed"
    assert by_name["beta"]["desired"] == "0.2.0"
    assert "rolled back" in by_name["beta"]["message"]
    assert by_name["alpha"]["state"] == "in-sync"
    config_map = world.testbed.admin.call(
        "GET", f"/api/v1/namespaces/{world.namespace}/configmaps/{status_name(world.installation)}"
    )
    assert "status.json" in config_map["data"]
    events = world.testbed.admin.call("GET", f"/api/v1/namespaces/{world.namespace}/events")[
        "items"
    ]
    assert events == [] or all(e["source"]["component"] == "reconciler" for e in events)


def test_events_are_recorded_for_actions_and_failures(world: World) -> None:
    two_releases(world)
    with daemon(world, name="e"):
        wait_for(lambda: world.releases() == {"alpha": "deployed", "beta": "deployed"})
        world.repo.release(world.installation, "beta", version="0.2.0", values={"broken": True})
        world.repo.commit("beta breaks")

        def reasons() -> set[str]:
            items = world.testbed.admin.call("GET", f"/api/v1/namespaces/{world.namespace}/events")[
                "items"
            ]
            return {e["reason"] for e in items}

        wait_for(lambda: {"Installed", "UpgradeFailed"} <= reasons(), timeout=30)


def test_sigterm_mid_upgrade_leaves_no_pending_release(world: World) -> None:
    two_releases(world)
    assert world.apply()[0] == 0
    world.repo.installation(
        world.installation, policy={**FAST, "wait": True, "timeoutSeconds": 300}
    )
    world.repo.release(world.installation, "alpha", version="0.1.0", values={"hang": True})
    world.repo.commit("alpha waits for a Deployment that never becomes ready")
    with daemon(world, "--shutdown-grace", "2", name="t") as process:
        wait_for(lambda: world.latest("alpha")["status"] == "pending-upgrade", timeout=60)
        stopped = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        took = time.monotonic() - stopped
    assert process.returncode == 0
    assert took < 20, f"shutdown took {took:.1f}s"
    assert world.latest("alpha")["status"] == "failed", (
        "helm was stopped with SIGTERM, never left pending"
    )


def _head(world: World) -> str:
    from envrepo import git

    return git(world.repo.root, "rev-parse", "HEAD")


@contextmanager
def fake_github(world: World) -> Iterator[tuple[Any, dict[str, str]]]:
    """A GitHub-shaped API on loopback, and the environment that points the daemon at it."""
    from tests.support.fakegithub import FakeGitHub

    github = FakeGitHub().start()
    token_file = world.workdir / "github-token"
    token_file.write_text(github.token)
    env = {
        "RECONCILER_GITHUB_TOKEN_FILE": str(token_file),
        "RECONCILER_GITHUB_API_URL": github.url,
    }
    try:
        yield github, env
    finally:
        github.stop()


def promote_for_deployment(world: World, github: Any, sha: str) -> int:
    """Create a GitHub Deployment of alpha at `sha` and promote it; the deployment's id."""

    deployment = github.add_deployment("acme/alpha", sha, world.installation)
    done = world.cli(
        "promote", "-p", "alpha", "-r", sha, "-i", world.installation,
        "--deployment-id", str(deployment["id"]), "--deployment-repo", "acme/alpha",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return int(deployment["id"])


def posted(github: Any, deployment_id: int) -> list[str]:
    return [status["state"] for status in github.statuses.get(deployment_id, [])]


def test_deployment_statuses_follow_the_converge(world: World, publish_chart: Any) -> None:
    good, bad = "a1" * 20, "b2" * 20
    publish_chart("app", f"1.0.0-g{good[:7]}")  # the bad ref's chart is never published
    world.repo.project("alpha", world.namespace, version_template="1.0.0-g{ref:7}")
    world.repo.release(world.installation, "alpha", ref="c3" * 20)
    world.repo.installation(world.installation, policy=FAST)
    publish_chart("app", "1.0.0-gc3c3c3c")
    world.repo.commit("alpha")
    with (
        fake_github(world) as (github, github_env),
        daemon(world, name="g", extra_env=github_env),
    ):
        wait_for(lambda: world.releases() == {"alpha": "deployed"})
        for sha in (good, bad):
            deployment_id = promote_for_deployment(world, github, sha)
            expected = ["in_progress", "success" if sha == good else "failure"]
            wait_for(lambda d=deployment_id, e=expected: posted(github, d) == e, timeout=30)
    assert world.latest("alpha")["chart"] == f"app-1.0.0-g{good[:7]}"


def test_a_retry_that_succeeds_posts_success_not_failure(world: World, publish_chart: Any) -> None:
    """The promotion lands before CI has pushed its chart: the first attempt fails, a retry
    after the chart arrives succeeds, and GitHub only ever hears in_progress then success."""

    first, late = "d4" * 20, "e5" * 20
    publish_chart("app", f"1.0.0-g{first[:7]}")
    world.repo.project("alpha", world.namespace, version_template="1.0.0-g{ref:7}")
    world.repo.release(world.installation, "alpha", ref=first)
    world.repo.installation(
        world.installation, policy={**FAST, "retries": 5, "retryBackoffSeconds": 1}
    )
    world.repo.commit("alpha")
    with (
        fake_github(world) as (github, github_env),
        daemon(world, name="r", extra_env=github_env),
    ):
        wait_for(lambda: world.releases() == {"alpha": "deployed"})
        deployment_id = promote_for_deployment(world, github, late)
        wait_for_log(daemon_log(world, "r"), "upgrade failed", release="alpha")
        assert posted(github, deployment_id) == ["in_progress"], (
            "a failed attempt with retries left is not final"
        )
        publish_chart("app", f"1.0.0-g{late[:7]}")
        wait_for(lambda: posted(github, deployment_id) == ["in_progress", "success"])
    assert world.latest("alpha")["chart"] == f"app-1.0.0-g{late[:7]}"


class _Inbox:
    """A local HTTP endpoint that keeps what is posted to it (a Slack-style webhook)."""

    def __init__(self) -> None:
        import http.server
        import json
        import threading

        inbox = self
        self.messages: list[dict[str, Any]] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                inbox.messages.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


def test_notifications_summarize_passes_that_acted(world: World) -> None:
    inbox = _Inbox()
    url_file = world.workdir / "notify-url"
    url_file.write_text(inbox.url)
    two_releases(world)
    try:
        with daemon(world, "--notify-url-file", str(url_file), name="n"):
            wait_for(lambda: len(inbox.messages) >= 1, timeout=60)
            world.repo.release(world.installation, "beta", version="0.2.0", values={"broken": True})
            world.repo.commit("beta breaks")
            wait_for(lambda: len(inbox.messages) >= 2, timeout=60)
            time.sleep(2)
    finally:
        inbox.server.shutdown()
    first, second = inbox.messages[0]["text"], inbox.messages[1]["text"]
    assert first.startswith(f":white_check_mark: {world.installation} at ")
    assert "2 succeeded, 0 failed" in first
    assert second.startswith(":x:")
    assert "upgrade" in second
    assert "beta: failed:" in second
    assert len(inbox.messages) == 2, "quiet passes send nothing"


def test_a_local_folder_is_watched_and_converged_without_waiting_for_a_poll(world: World) -> None:
    two_releases(world)
    args = ("--repo", str(world.repo.root), "--interval", str(SLOW_POLL))
    with daemon(world, *args, name="f"):
        wait_for(lambda: world.releases() == {"alpha": "deployed", "beta": "deployed"}, timeout=60)
        time.sleep(1)
        world.repo.release(world.installation, "alpha", version="0.2.0")
        latency = seconds_until_upgraded(world, "alpha", time.monotonic())
    assert latency < LATENCY_BOUND, (
        f"file change to upgraded took {latency:.1f}s with a {SLOW_POLL}s poll interval"
    )
