"""The daemon's HTTP endpoints under hostile traffic, against the real `reconciler run` process
on the testbed: malformed requests, oversized and negative lengths, unsigned and slow
senders, idle connections, a flood; the limits are in docs/deploy.md ("HTTP limits")."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from engine_world import World, daemon, daemon_log, wait_for, wait_for_log

from tests.support import hostile

SECRET = b"hook-secret-value"
HOOK = "/hooks/git"
SHORT = {
    "RECONCILER_HTTP_HEADER_TIMEOUT": "2",
    "RECONCILER_HTTP_BODY_TIMEOUT": "2",
    "RECONCILER_HTTP_MAX_CONNECTIONS": "32",
}
# The design's memory target for the daemon, hostile traffic or not; the chart's limit is 512Mi.
TARGET_RSS_KIB = 100 * 1024
FAST = {"retries": 0, "retryBackoffSeconds": 1, "timeoutSeconds": 60}


@contextmanager
def serving(
    world: World, *args: str, name: str = "h", seed: bool = True
) -> Iterator[tuple[hostile.Address, int]]:
    """A daemon with the hook enabled: ((host, port), pid), once /healthz answers 200."""

    if seed:
        world.repo.installation(world.installation, policy=FAST)
        world.repo.commit("an installation without releases")
    secret_file = world.workdir / "hook-secret"
    secret_file.write_bytes(SECRET)
    argv = ("--listen", "127.0.0.1:0", "--webhook-secret-file", str(secret_file), *args)
    with daemon(world, *argv, name=name, extra_env=SHORT) as process:
        host, _, port = wait_for_log(daemon_log(world, name), "listening")["address"].rpartition(
            ":"
        )
        address = (host, int(port))
        wait_for(lambda: hostile.get(address, "/healthz")[0] == 200, timeout=60)
        yield address, process.pid
        assert process.poll() is None, "the daemon exited"


def no_traceback(world: World, name: str = "h") -> None:
    text = daemon_log(world, name).read_text()
    assert "Traceback" not in text, text[-3000:]


def test_malformed_requests_are_400_and_the_daemon_goes_on(world: World) -> None:
    with serving(world) as (address, _):
        answers = {
            case: hostile.send_raw(address, request.replace(b"{path}", HOOK.encode()))
            for case, request in sorted(hostile.MALFORMED.items())
        }
        health = hostile.get(address, "/healthz")[0]
    assert {case: status for case, status in answers.items() if status != 400} == {}
    assert health == 200
    no_traceback(world)


def test_a_negative_length_with_a_large_body_is_400_and_nothing_is_read(world: World) -> None:
    with serving(world) as (address, pid):
        before = hostile.rss_kib(pid)[0]
        with hostile.connect(address, timeout=5) as sock:
            sock.sendall(hostile.post_head(HOOK, "-1"))
            try:
                for _ in range(200):  # 200 MiB, as long as the daemon takes them
                    sock.sendall(b"\0" * (1 << 20))
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            status = hostile.read_status(sock)
        grown = hostile.rss_kib(pid)[1] - before
    assert status == 400
    assert grown < 20 * 1024, f"RSS grew {grown / 1024:.0f} MiB"
    no_traceback(world)


@pytest.mark.parametrize(
    "signature",
    [None, "", "sha1=" + "0" * 40, "sha256=short"],
    ids=["missing", "empty", "sha1", "short"],
)
def test_an_unsigned_hook_is_401_before_its_body_is_sent(
    world: World, signature: str | None
) -> None:
    with serving(world) as (address, _), hostile.connect(address, timeout=5) as sock:
        sock.sendall(hostile.post_head(HOOK, 1 << 20, signature))  # no body follows
        assert hostile.read_status(sock) == 401


def test_slow_senders_and_idle_connections_are_closed_and_capped(world: World) -> None:
    with serving(world) as (address, pid):
        slow = hostile.connect(address)
        started = time.monotonic()
        cut = hostile.trickle(slow, hostile.post_head(HOOK, 10), interval=0.5, seconds=10)
        header_seconds = time.monotonic() - started
        with hostile.connect(address, timeout=10) as sock:
            sock.sendall(hostile.post_head(HOOK, 1000, "sha256=" + "0" * 64) + b"{")
            slow_body = hostile.read_status(sock)
        idle = [hostile.connect(address) for _ in range(100)]
        time.sleep(1.5)
        health = hostile.get(address, "/healthz")[0]
        closed = sum(hostile.closed_within(sock, 0.5) for sock in idle)
        fds = hostile.open_fds(pid)
        for sock in [*idle, slow]:
            sock.close()
    assert cut, "a request trickled one byte every 0.5 s was still open after 10 s"
    assert header_seconds < 6
    assert slow_body == 408
    assert health == 200
    assert closed >= 100 - 32
    assert fds < 32 + 60  # the cap, plus the daemon's own files and client sockets


def test_a_flood_leaves_memory_bounded_probes_answered_and_a_signed_push_polls(
    world: World,
) -> None:
    for name in ("alpha", "beta"):
        world.repo.project(name, world.namespace)
        world.repo.release(world.installation, name, version="0.1.0")
    world.repo.installation(world.installation, policy=FAST)
    world.repo.commit("two releases")
    with serving(world, "--interval", "300", seed=False) as (address, pid):
        wait_for(lambda: world.releases() == {"alpha": "deployed", "beta": "deployed"}, timeout=90)
        world.repo.release(world.installation, "beta", version="0.2.0")
        world.repo.commit("beta moves")

        def signed() -> int | None:
            body = b'{"ref": "refs/heads/main"}'
            head = hostile.post_head(HOOK, len(body), hostile.sign(SECRET, body))
            return hostile.send_raw(address, head + body, timeout=30)

        plan = hostile.Plan(
            seconds=6, idle=30, slow_headers=10, slow_bodies=5, other_paths=("/readyz", "/metrics")
        )
        report = hostile.attack(address, pid, HOOK, plan, signed)
        print(report.summary())
        # Only the signed push explains a poll: the interval is 300 s.
        wait_for(lambda: world.latest("beta")["chart"] == "app-0.2.0", timeout=90, interval=0.5)
    assert report.signed == 202
    assert report.probe_failures == 0
    assert len(report.probes) >= 5  # answered throughout, however loaded the machine
    assert report.others_failed() == 0, report.summary()
    assert sum(report.others.values()) >= 2
    assert report.peak_rss_kib < TARGET_RSS_KIB, report.summary()
    assert report.answered[401] > 0
    no_traceback(world)
