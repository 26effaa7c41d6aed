"""Hostile HTTP clients on loopback, for the tests and the benchmark of the daemon's and the
mirror webhook's servers: raw requests, slow senders, idle connections, floods, and a
bounded attack that mixes them while probing a health endpoint and sampling the RSS.

Everything here stops by itself: every socket has a timeout, every loop a deadline.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import socket
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

Address = tuple[str, int]

# Malformed requests of every kind a parser must refuse (400), not crash on.
MALFORMED: dict[str, bytes] = {
    "negative-length": b"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    "non-ascii-digit-length": "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: \u00b2\r\n\r\n".encode(),
    "latin1-digit-length": b"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: \xb2\r\n\r\n",
    "arabic-digit-length": "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: \u0661\u0662\r\n\r\n".encode(),
    "word-length": b"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n",
    "two-lengths": b"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nab",
    "length-and-chunked": b"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "header-without-colon": b"GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
    "space-before-colon": b"GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n",
    "control-byte-in-header": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "bad-request-line": b"GET\r\n\r\n",
    "bad-version": b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n",
    "huge-header": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 65536 + b"\r\n\r\n",
    "many-headers": b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
    + b"".join(b"X-%d: v\r\n" % i for i in range(500))
    + b"\r\n",
}


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def connect(address: Address, timeout: float = 10) -> socket.socket:
    sock = socket.create_connection(address, timeout=timeout)
    sock.settimeout(timeout)
    return sock


def read_status(sock: socket.socket) -> int | None:
    """The status code of the response on `sock`; None if closed (or reset) without one."""

    data = b""
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except (ConnectionError, TimeoutError, OSError):
        pass
    parts = data.split(b" ", 2)
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/1.") and parts[1].isdigit():
        return int(parts[1])
    return None


def send_raw(address: Address, data: bytes, timeout: float = 10) -> int | None:
    """Send `data` as-is and return the status of the answer (None: closed without one)."""

    with connect(address, timeout) as sock:
        with contextlib.suppress(ConnectionError, OSError):
            sock.sendall(data)
        return read_status(sock)


def post_head(path: str, length: int | str, signature: str | None = None, extra: str = "") -> bytes:
    """The request line and headers of a webhook POST, without the body."""

    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines.append(f"Content-Length: {length}")
    lines.append("X-GitHub-Event: deployment")
    if signature is not None:
        lines.append(f"X-Hub-Signature-256: {signature}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes `sock` within `seconds` (data it sends is read and dropped)."""

    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except (ConnectionError, OSError):
            return True
    return False


def answered_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server answers or closes `sock` within `seconds`; an answer stays unread."""

    sock.settimeout(max(seconds, 0.001))
    try:
        sock.recv(1, socket.MSG_PEEK)
    except TimeoutError:
        return False
    except (ConnectionError, OSError):
        pass
    return True


def trickle(sock: socket.socket, data: bytes, interval: float, seconds: float) -> bool:
    """Send `data` one byte every `interval` s for up to `seconds`; True if the server closed
    the connection or answered (the answer stays unread) before the time was up."""

    deadline = time.monotonic() + seconds
    for byte in data:
        if time.monotonic() >= deadline:
            return False
        try:
            sock.sendall(bytes([byte]))
        except (ConnectionError, OSError):
            return True
        if answered_within(sock, interval):
            return True
    return answered_within(sock, max(0.0, deadline - time.monotonic()))


def get(address: Address, path: str, timeout: float = 5) -> tuple[int | None, float]:
    """(status, seconds) of a GET on a new connection; status None if it failed."""

    started = time.perf_counter()
    try:
        status = send_raw(
            address,
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode(),
            timeout,
        )
    except OSError:
        status = None
    return status, time.perf_counter() - started


def rss_kib(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) of process `pid` in KiB, from /proc (VmRSS, VmHWM)."""

    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields.get("VmRSS", 0), fields.get("VmHWM", 0)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass(frozen=True)
class Plan:
    """How hard to attack, for how long: counts of concurrent attackers of each kind."""

    seconds: float = 6.0
    idle: int = 50
    slow_headers: int = 20
    slow_bodies: int = 10
    floods: int = 4  # threads posting unsigned requests back to back
    wrong_signatures: int = 2  # threads posting bodies of max_body with a wrong signature
    oversized: int = 2  # threads declaring 400 MiB (no signature) and streaming a body
    negative: int = 2  # threads declaring Content-Length -1 and streaming a body
    malformed: int = 2  # threads sending MALFORMED requests in turn
    max_body: int = 1 << 20
    probe_interval: float = 0.05
    # Probed in turn every 0.2 s besides /healthz (the daemon's /readyz and /metrics).
    other_paths: tuple[str, ...] = ()


@dataclass
class Report:
    answered: Counter[int | None] = field(default_factory=Counter)
    probes: list[float] = field(default_factory=list)
    probe_failures: int = 0
    probe_failed_with: Counter[int | None] = field(default_factory=Counter)
    others: Counter[tuple[str, int | None]] = field(default_factory=Counter)
    peak_rss_kib: int = 0
    start_rss_kib: int = 0
    signed: object = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, status: int | None) -> None:
        with self.lock:
            self.answered[status] += 1

    @property
    def requests_answered(self) -> int:
        return sum(n for status, n in self.answered.items() if status is not None)

    def p99(self) -> float:
        if len(self.probes) < 2:
            return max(self.probes, default=0.0)
        return statistics.quantiles(self.probes, n=100)[98]

    def others_failed(self) -> int:
        return sum(n for (_, status), n in self.others.items() if status != 200)

    def summary(self) -> str:
        statuses = ", ".join(
            f"{status or 'no answer'}: {n}" for status, n in sorted(self.answered.items(), key=str)
        )
        return (
            f"peak RSS {self.peak_rss_kib / 1024:.1f} MiB (at start {self.start_rss_kib / 1024:.1f} MiB); "
            f"hostile requests answered {self.requests_answered} ({statuses}); "
            f"/healthz probes {len(self.probes)} answered 200, {self.probe_failures} not"
            + (
                " ("
                + ", ".join(f"{s or 'no answer'}: {n}" for s, n in self.probe_failed_with.items())
                + ")"
                if self.probe_failures
                else ""
            )
            + "; "
            f"/healthz p99 {self.p99() * 1000:.1f} ms, max {max(self.probes, default=0) * 1000:.1f} ms"
            + "".join(
                f"; {path} {status or 'no answer'}: {n}"
                for (path, status), n in sorted(self.others.items(), key=str)
            )
        )


def attack(
    address: Address,
    pid: int,
    hook: str,
    plan: Plan,
    signed: Callable[[], object] | None = None,
) -> Report:
    """Run every kind of abuse at once against `hook` for `plan.seconds`, probing /healthz
    and sampling the RSS of `pid`; `signed` (a valid delivery) runs halfway through."""

    report = Report(start_rss_kib=rss_kib(pid)[0])
    stop = threading.Event()
    deadline = time.monotonic() + plan.seconds

    def until_stopped(work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    work()
                except OSError:
                    report.count(None)
                    time.sleep(0.01)

        return run

    def flood() -> None:
        body = b"{" + b" " * 65534 + b"}"
        report.count(send_raw(address, post_head(hook, len(body)) + body, timeout=5))

    def wrong_signature() -> None:
        body = b"x" * plan.max_body
        head = post_head(hook, len(body), "sha256=" + "0" * 64)
        report.count(send_raw(address, head + body, timeout=10))

    def streamed(length: str) -> Callable[[], None]:
        def run() -> None:
            with connect(address, timeout=5) as sock:
                try:
                    sock.sendall(post_head(hook, length))
                    for _ in range(64):  # up to 64 MiB a connection, while it is accepted
                        sock.sendall(b"\0" * (1 << 20))
                except (ConnectionError, OSError):
                    pass
                report.count(read_status(sock))

        return run

    malformed_cases = list(MALFORMED.values())

    def malformed() -> None:
        case = malformed_cases[report.requests_answered % len(malformed_cases)]
        report.count(send_raw(address, case.replace(b"{path}", hook.encode()), timeout=5))

    def slow_header() -> None:
        with connect(address, timeout=5) as sock:
            head = post_head(hook, 10, "sha256=" + "0" * 64)
            trickle(sock, head, 0.5, deadline - time.monotonic())
            report.count(read_status(sock))

    def slow_body() -> None:
        with connect(address, timeout=5) as sock:
            sock.sendall(post_head(hook, 4096, "sha256=" + "0" * 64))
            trickle(sock, b"x" * 4096, 0.5, deadline - time.monotonic())
            report.count(read_status(sock))

    def idle() -> None:
        with connect(address, timeout=5) as sock:
            closed_within(sock, deadline - time.monotonic())

    def probe() -> None:
        while not stop.is_set() and time.monotonic() < deadline:
            status, seconds = get(address, "/healthz", timeout=5)
            with report.lock:
                if status == 200:
                    report.probes.append(seconds)
                else:
                    report.probe_failures += 1
                    report.probe_failed_with[status] += 1
            time.sleep(plan.probe_interval)

    def probe_others() -> None:
        turn = 0
        while plan.other_paths and not stop.is_set() and time.monotonic() < deadline:
            path = plan.other_paths[turn % len(plan.other_paths)]
            status, _ = get(address, path, timeout=5)
            with report.lock:
                report.others[(path, status)] += 1
            turn += 1
            time.sleep(0.2)

    def sample() -> None:
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                report.peak_rss_kib = max(report.peak_rss_kib, rss_kib(pid)[0])
            except OSError:
                return
            time.sleep(0.05)

    def deliver_signed() -> None:
        time.sleep(plan.seconds / 2)
        report.signed = signed() if signed else None

    workers: list[Callable[[], None]] = [probe, probe_others, sample, deliver_signed]
    workers += [until_stopped(idle)] * plan.idle
    workers += [until_stopped(slow_header)] * plan.slow_headers
    workers += [until_stopped(slow_body)] * plan.slow_bodies
    workers += [until_stopped(flood)] * plan.floods
    workers += [until_stopped(wrong_signature)] * plan.wrong_signatures
    workers += [until_stopped(streamed(str(400 << 20)))] * plan.oversized
    workers += [until_stopped(streamed("-1"))] * plan.negative
    workers += [until_stopped(malformed)] * plan.malformed
    threads = [threading.Thread(target=work, daemon=True) for work in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()) + 15)
    stop.set()
    report.peak_rss_kib = max(report.peak_rss_kib, rss_kib(pid)[1])
    return report
