"""`reconciler mirror webhook` as a process: GitHub `deployment` deliveries into commits
on a real git smart-HTTP server."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from reconciler import trailers
from tests.support import hostile
from tests.support.envrepo import (
    GitServer,
    Seed,
    commits,
    declared_ref,
    push_seed,
    read_remote,
    release_file,
    sha,
)
from tests.support.events import deliver, deployment_event, sign

RECONCILER = str(Path(sys.executable).with_name("reconciler"))
SECRET = b"webhook-secret-for-tests"
MAPPING = """\
apiVersion: reconciler/v1
kind: DeploymentMapping
repositories:
  acme/api:
    project: api
    unlistedEnvironments: same-name
    ignoreEnvironments: [github-pages, "pr-*"]
    environments:
      production: [prod-eu, prod-us]
  acme/web:
    project: web
    unlistedEnvironments: reject
    environments:
      testing: {selector: {stage: testing}}
"""


@dataclass
class Receiver:
    url: str
    process: subprocess.Popen[str]
    lines: list[str]
    reader: threading.Thread

    @property
    def address(self) -> tuple[str, int]:
        host, _, port = self.url.removeprefix("http://").rstrip("/").rpartition(":")
        return host, int(port)

    def stop(self) -> str:
        """Stop with SIGTERM; everything the receiver wrote on stderr."""
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=20)
        self.reader.join(timeout=10)
        return "".join(self.lines)


@pytest.fixture(scope="module")
def git_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    server = GitServer.start(tmp_path_factory.mktemp("git-http"))
    yield server
    server.stop()


@pytest.fixture
def env_url(git_http: GitServer, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    url = git_http.create_repo(f"webhook-{request.node.name}-{secrets.token_hex(3)}")
    seed = Seed(
        projects=("api", "web"),
        installations={
            "prod-eu": {"stage": "production"},
            "prod-us": {"stage": "production"},
            "staging": {"stage": "staging"},
            "test-1": {"stage": "testing"},
        },
        releases={
            name: {"api": release_file("api", "api", sha(1))} for name in ("prod-eu", "prod-us")
        },
    )
    push_seed(url, tmp_path, seed)
    return url


@pytest.fixture
def start_receiver(env_url: str, tmp_path: Path) -> Iterator[Callable[..., Receiver]]:
    (tmp_path / "secret").write_bytes(SECRET + b"\n")
    (tmp_path / "mapping.yaml").write_text(MAPPING)
    started: list[Receiver] = []

    def start(*extra: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> Receiver:
        argv = [
            RECONCILER, "mirror", "webhook", "--listen", "127.0.0.1:0", "--repo", env_url,
            "--secret-file", str(tmp_path / "secret"), "--mapping", str(tmp_path / "mapping.yaml"),
            "--log-format", "json", *extra,
        ]  # fmt: skip
        process = subprocess.Popen(
            argv, stderr=subprocess.PIPE, text=True, cwd=cwd, env={**os.environ, **(env or {})}
        )
        assert process.stderr
        lines: list[str] = []
        for line in process.stderr:
            lines.append(line)
            entry = json.loads(line)
            if entry["msg"] == "webhook: listening":
                # Keep reading stderr, so a chatty receiver never blocks on a full pipe.
                reader = threading.Thread(target=lines.extend, args=(process.stderr,))
                reader.start()
                receiver = Receiver(f"http://{entry['address']}/", process, lines, reader)
                started.append(receiver)
                return receiver
        raise AssertionError(f"the receiver exited with {process.wait()}: {''.join(lines)}")

    yield start
    for receiver in started:
        if receiver.process.poll() is None:
            receiver.stop()


def _history(env_url: str, tmp_path: Path) -> list[tuple[str, str]]:
    return commits(read_remote(env_url, tmp_path))


def test_a_signed_deployment_is_promoted_with_its_id(
    start_receiver: Callable[..., Receiver], env_url: str, tmp_path: Path
) -> None:
    receiver = start_receiver()

    status, answer = deliver(receiver.url, deployment_event(101, sha(2), "production"), SECRET)

    assert status == 201, answer
    assert answer["status"] == "promoted"
    checkout = read_remote(env_url, tmp_path)
    head, message = commits(checkout)[-1]
    assert answer["commit"] == head
    assert trailers.promotion_of(message) == trailers.Promotion(
        "api", sha(2), ("prod-eu", "prod-us"), 101, "acme/api"
    )
    assert declared_ref(checkout, "prod-eu", "api") == sha(2)
    assert declared_ref(checkout, "prod-us", "api") == sha(2)


def test_a_selector_environment_creates_the_release(
    start_receiver: Callable[..., Receiver], env_url: str, tmp_path: Path
) -> None:
    receiver = start_receiver()

    status, answer = deliver(
        receiver.url, deployment_event(102, sha(3), "testing", repository="acme/web"), SECRET
    )

    assert status == 201, answer
    assert declared_ref(read_remote(env_url, tmp_path), "test-1", "web") == sha(3)


@pytest.mark.parametrize(
    "signature",
    [None, "", "sha256=" + "0" * 64, "sha1=0123456789abcdef0123456789abcdef01234567"],
    ids=["missing", "empty", "wrong", "sha1-only"],
)
def test_a_bad_or_missing_signature_is_401_and_commits_nothing(
    start_receiver: Callable[..., Receiver], env_url: str, tmp_path: Path, signature: str | None
) -> None:
    receiver = start_receiver()
    before = _history(env_url, tmp_path)

    status, answer = deliver(
        receiver.url, deployment_event(103, sha(4), "production"), None, signature=signature
    )

    assert status == 401
    assert "X-Hub-Signature-256" in answer["error"]
    assert _history(env_url, tmp_path) == before


def test_a_signature_over_other_bytes_is_rejected(
    start_receiver: Callable[..., Receiver], env_url: str, tmp_path: Path
) -> None:
    receiver = start_receiver()
    before = _history(env_url, tmp_path)
    signed = json.dumps(deployment_event(104, sha(4), "production")).encode()
    tampered = signed.replace(sha(4).encode(), sha(5).encode())

    status, _ = deliver(receiver.url, None, SECRET, raw=tampered, signature=sign(SECRET, signed))

    assert status == 401
    assert _history(env_url, tmp_path) == before


def test_a_redelivery_commits_nothing_new(
    start_receiver: Callable[..., Receiver], env_url: str, tmp_path: Path
) -> None:
    receiver = start_receiver()
    event = deployment_event(105, sha(6), "production")

    first, _ = deliver(receiver.url, event, SECRET, delivery="d-105")
    after_first = _history(env_url, tmp_path)
    again, answer = deliver(receiver.url, event, SECRET, delivery="d-105")

    assert (first, again) == (201, 200)
    assert answer["status"] == "duplicate"
    assert _history(env_url, tmp_path) == after_first


def test_an_old_deployment_redelivered_after_a_restart_never_rolls_back(
    start_receiver: Callable[..., Receiver], env_url: str, tmp_path: Path
) -> None:
    receiver = start_receiver()  # no state file: only the commit trailers remember
    assert deliver(receiver.url, deployment_event(106, sha(7), "production"), SECRET)[0] == 201
    assert deliver(receiver.url, deployment_event(107, sha(8), "production"), SECRET)[0] == 201
    receiver.stop()
    before = _history(env_url, tmp_path)

    restarted = start_receiver()
    status, answer = deliver(restarted.url, deployment_event(106, sha(7), "production"), SECRET)

    assert status == 200, answer
    assert answer["status"] == "duplicate"
    assert _history(env_url, tmp_path) == before
    assert declared_ref(read_remote(env_url, tmp_path), "prod-eu", "api") == sha(8)


def test_the_state_file_remembers_deliveries_across_restarts(
    start_receiver: Callable[..., Receiver], env_url: str, tmp_path: Path
) -> None:
    state = tmp_path / "state.json"
    receiver = start_receiver("--state-file", str(state))
    event = deployment_event(108, sha(9), "production")
    assert deliver(receiver.url, event, SECRET, delivery="d-108")[0] == 201
    receiver.stop()
    before = _history(env_url, tmp_path)

    restarted = start_receiver("--state-file", str(state))
    status, answer = deliver(restarted.url, event, SECRET, delivery="d-108")

    assert (status, answer["status"]) == (200, "duplicate")
    assert "d-108" in json.loads(state.read_text())["deliveries"]
    assert _history(env_url, tmp_path) == before


@pytest.mark.parametrize(
    ("repository", "environment", "error"),
    [
        ("acme/web", "production", "environment 'production' is not in the mapping for acme/web"),
        ("acme/api", "moon-base", "unknown installation(s): moon-base"),
        ("acme/other", "production", "repository acme/other is not in the mapping"),
    ],
    ids=["unmapped-environment", "no-such-installation", "unmapped-repository"],
)
def test_an_unknown_environment_is_a_clear_422_and_commits_nothing(
    start_receiver: Callable[..., Receiver],
    env_url: str,
    tmp_path: Path,
    repository: str,
    environment: str,
    error: str,
) -> None:
    receiver = start_receiver()
    before = _history(env_url, tmp_path)

    status, answer = deliver(
        receiver.url, deployment_event(109, sha(10), environment, repository=repository), SECRET
    )

    assert status == 422
    assert answer["status"] == "rejected"
    assert error in answer["error"]
    assert _history(env_url, tmp_path) == before


def test_ping_other_events_and_actions_are_acknowledged_without_commits(
    start_receiver: Callable[..., Receiver], env_url: str, tmp_path: Path
) -> None:
    receiver = start_receiver()
    before = _history(env_url, tmp_path)

    ping = deliver(
        receiver.url, {"zen": "Keep it logically awesome.", "hook_id": 1}, SECRET, event="ping"
    )
    push = deliver(receiver.url, {"ref": "refs/heads/main"}, SECRET, event="push")
    task = deliver(
        receiver.url, deployment_event(110, sha(11), "production", task="db:migrate"), SECRET
    )
    garbage = deliver(receiver.url, None, SECRET, raw=b"{not json")

    assert ping == (200, {"status": "pong"})
    assert push[0] == 200
    assert push[1]["status"] == "ignored"
    assert task[0] == 200
    assert task[1]["status"] == "ignored"
    assert garbage[0] == 400
    assert _history(env_url, tmp_path) == before


def test_a_form_encoded_delivery_is_told_to_use_json(
    start_receiver: Callable[..., Receiver], env_url: str, tmp_path: Path
) -> None:
    receiver = start_receiver()
    before = _history(env_url, tmp_path)
    payload = deployment_event(120, sha(20), "production")
    body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()

    status, answer = deliver(
        receiver.url, None, SECRET, raw=body, content_type="application/x-www-form-urlencoded"
    )

    assert status == 415
    assert "set the webhook's content type to application/json" in answer["error"]
    assert _history(env_url, tmp_path) == before


@pytest.mark.parametrize("environment", ["github-pages", "PR-1234"])
def test_an_ignored_environment_is_acknowledged_not_rejected(
    start_receiver: Callable[..., Receiver], env_url: str, tmp_path: Path, environment: str
) -> None:
    receiver = start_receiver()
    before = _history(env_url, tmp_path)

    status, answer = deliver(receiver.url, deployment_event(121, sha(21), environment), SECRET)

    assert (status, answer["status"]) == (200, "ignored")
    assert environment in answer["message"]
    assert _history(env_url, tmp_path) == before


def test_a_relative_workdir_works(
    start_receiver: Callable[..., Receiver], env_url: str, tmp_path: Path
) -> None:
    receiver = start_receiver("--workdir", "mirror-work", cwd=tmp_path)

    status, answer = deliver(receiver.url, deployment_event(122, sha(22), "production"), SECRET)

    assert (status, answer["status"]) == (201, "promoted"), answer
    assert (tmp_path / "mirror-work" / "checkout" / ".git").is_dir()


# --- Hostile traffic: the limits of the HTTP server (docs/deploy.md, "HTTP limits") ---

SHORT = {
    "RECONCILER_HTTP_HEADER_TIMEOUT": "2",
    "RECONCILER_HTTP_BODY_TIMEOUT": "2",
    "RECONCILER_HTTP_MAX_CONNECTIONS": "32",
}


@pytest.mark.parametrize("case", sorted(hostile.MALFORMED))
def test_a_malformed_request_is_400_without_a_traceback(
    start_receiver: Callable[..., Receiver], case: str
) -> None:
    receiver = start_receiver()
    request = hostile.MALFORMED[case].replace(b"{path}", b"/")

    status = hostile.send_raw(receiver.address, request, timeout=10)
    health = hostile.get(receiver.address, "/healthz")[0]
    err = receiver.stop()

    assert status == 400, f"{case}: answered {status}"
    assert health == 200
    assert "Traceback" not in err, err


def test_an_unsigned_request_is_refused_before_its_body_is_sent(
    start_receiver: Callable[..., Receiver],
) -> None:
    receiver = start_receiver()

    for signature in (None, "", "sha1=0123456789abcdef0123456789abcdef01234567"):
        with hostile.connect(receiver.address, timeout=5) as sock:
            sock.sendall(hostile.post_head("/", 512 << 10, signature))  # no body follows
            assert hostile.read_status(sock) == 401, signature


def test_a_body_larger_than_the_limit_is_413_before_it_is_read(
    start_receiver: Callable[..., Receiver],
) -> None:
    receiver = start_receiver(env={"RECONCILER_HTTP_MAX_BODY": "100000"})
    with hostile.connect(receiver.address, timeout=5) as sock:
        sock.sendall(hostile.post_head("/", 100001, "sha256=" + "0" * 64))
        assert hostile.read_status(sock) == 413


def test_slow_headers_and_idle_connections_are_closed_after_the_header_timeout(
    start_receiver: Callable[..., Receiver],
) -> None:
    receiver = start_receiver(env=SHORT)
    idle = [hostile.connect(receiver.address) for _ in range(5)]
    slow = hostile.connect(receiver.address)
    started = time.monotonic()

    cut = hostile.trickle(slow, hostile.post_head("/", 10), interval=0.5, seconds=10)

    assert cut, "a request trickled one byte every 0.5 s was still open after 10 s"
    assert time.monotonic() - started < 6
    assert all(hostile.closed_within(sock, 2) for sock in idle)
    for sock in [*idle, slow]:
        sock.close()


def test_a_slow_body_is_408_after_the_body_timeout(
    start_receiver: Callable[..., Receiver],
) -> None:
    receiver = start_receiver(env=SHORT)
    with hostile.connect(receiver.address, timeout=10) as sock:
        sock.sendall(hostile.post_head("/", 1000, "sha256=" + "0" * 64) + b"{")
        started = time.monotonic()
        assert hostile.read_status(sock) == 408
        assert time.monotonic() - started < 6


def test_connections_beyond_the_cap_drop_the_oldest_idle_and_probes_still_answer(
    start_receiver: Callable[..., Receiver],
) -> None:
    receiver = start_receiver(env=SHORT)  # at most 32 connections
    idle = [hostile.connect(receiver.address) for _ in range(100)]
    time.sleep(1.5)  # older than the grace a new connection gets to send its request

    status, _ = hostile.get(receiver.address, "/healthz")
    closed = [hostile.closed_within(sock, 0.5) for sock in idle]
    fds = hostile.open_fds(receiver.process.pid)
    for sock in idle:
        sock.close()

    assert status == 200
    assert sum(closed) >= 100 - 32
    assert all(closed[:32]), "the oldest idle connections go first"
    assert fds < 32 + 30  # the cap, plus the files and pipes any process holds


def test_a_flood_leaves_memory_bounded_probes_answered_and_a_signed_delivery_promoted(
    start_receiver: Callable[..., Receiver], env_url: str, tmp_path: Path
) -> None:
    receiver = start_receiver(env=SHORT)
    before = _history(env_url, tmp_path)

    def signed() -> tuple[int, dict[str, Any]]:
        return deliver(receiver.url, deployment_event(120, sha(12), "production"), SECRET)

    plan = hostile.Plan(seconds=6, idle=30, slow_headers=10, slow_bodies=5, max_body=1 << 20)
    report = hostile.attack(receiver.address, receiver.process.pid, "/", plan, signed)
    print(report.summary())
    err = receiver.stop()

    assert report.signed is not None
    status, answer = report.signed  # type: ignore[misc]
    assert status == 201, answer
    assert len(_history(env_url, tmp_path)) == len(before) + 1  # that delivery alone
    assert report.probe_failures == 0
    assert len(report.probes) >= 5  # answered throughout, however loaded the machine
    assert report.peak_rss_kib - report.start_rss_kib < 40 * 1024, report.summary()
    assert report.answered[401] > 0
    assert "Traceback" not in err


def test_expect_100_continue_is_answered_only_for_a_well_formed_signature(
    start_receiver: Callable[..., Receiver], env_url: str, tmp_path: Path
) -> None:
    receiver = start_receiver()
    before = _history(env_url, tmp_path)
    body = json.dumps(deployment_event(130, sha(13), "production")).encode()
    expect = "Expect: 100-continue\r\n"

    with hostile.connect(receiver.address, timeout=5) as sock:
        sock.sendall(hostile.post_head("/", len(body), None, expect))
        unsigned = hostile.read_status(sock)
    with hostile.connect(receiver.address, timeout=30) as sock:
        sock.sendall(hostile.post_head("/", len(body), sign(SECRET, body), expect))
        go_on = hostile.read_status(sock)
        sock.sendall(body)
        promoted = hostile.read_status(sock)

    assert unsigned == 401
    assert (go_on, promoted) == (100, 201)
    assert len(_history(env_url, tmp_path)) == len(before) + 1
