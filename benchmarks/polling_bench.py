"""What 1,000 installations polling one environments repo cost the git server, beside
polling the GitHub Deployments API (20 projects x 1,000 installations).

Measured on the testbed's smart-HTTP git server through a byte-counting proxy:
the head check (`git ls-remote`, no objects) per poll, in bytes and server CPU.
The GitHub side is measured against the local server that follows GitHub's API
(tests/support/fakegithub.py): bytes of a conditional 304 and of a first page.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from reconciler.source import GitSource  # noqa: E402
from testbed import Testbed  # noqa: E402
from tests.support.fakegithub import FakeGitHub  # noqa: E402

INSTALLATIONS, PROJECTS, INTERVAL = 1000, 20, 30.0
POLLS = 100


class CountingProxy:
    """A TCP relay on loopback that counts the bytes each way."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.up = self.down = 0
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pipe, args=(client, server, "up"), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, "down"), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, direction: str) -> None:
        try:
            while data := source.recv(65536):
                with self.lock:
                    setattr(self, direction, getattr(self, direction) + len(data))
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def reset(self) -> None:
        with self.lock:
            self.up = self.down = 0

    def close(self) -> None:
        self.listener.close()


def cpu_seconds(pid: int) -> float:
    """CPU of a process and its reaped children (git http-backend runs as a child)."""

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def push_examples(bed: Testbed, work: Path) -> str:
    url = bed.create_git_repo("polling")
    tree = work / "tree"
    shutil.copytree(ROOT / "example-environments", tree)
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@x"}  # fmt: skip
    for argv in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["commit", "-qm", "x"],
        ["push", "-q", url, "HEAD:main"],
    ):
        subprocess.run(["git", *argv], cwd=tree, env=env, check=True)
    return url


def git_side(bed: Testbed, work: Path) -> tuple[float, float, float]:
    url = push_examples(bed, work)
    git_port = int(url.split(":")[2].split("/")[0])
    proxy = CountingProxy(git_port)
    source = GitSource(url.replace(f":{git_port}/", f":{proxy.port}/"))
    source.head()
    server_pid = next(p.pid for p in bed.procs if p.name == "git-server")
    proxy.reset()
    cpu_before, started = cpu_seconds(server_pid), time.perf_counter()
    for _ in range(POLLS):
        source.head()
    wall = (time.perf_counter() - started) / POLLS
    cpu = (cpu_seconds(server_pid) - cpu_before) / POLLS
    per_poll = (proxy.up + proxy.down) / POLLS
    proxy.close()
    return per_poll, cpu, wall


def github_side() -> tuple[float, float]:
    """Bytes on the wire of one conditional (304) and one first-page list request."""

    github = FakeGitHub().start()
    try:
        for i in range(30):
            github.add_deployment("acme/api", f"{i:040x}", "prod-eu")
        url = f"{github.url}/repos/acme/api/deployments?per_page=30"
        headers = {
            "Authorization": f"Bearer {github.token}",
            "Accept": "application/vnd.github+json",
        }
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as response:
            body = response.read()
            first = len(body) + sum(len(k) + len(v) + 4 for k, v in response.headers.items())
            etag = response.headers["ETag"]
        try:
            urllib.request.urlopen(
                urllib.request.Request(url, headers={**headers, "If-None-Match": etag})
            )
            not_modified = float("nan")
        except urllib.error.HTTPError as error:
            not_modified = sum(len(k) + len(v) + 4 for k, v in error.headers.items()) + 20.0
        return float(first), not_modified
    finally:
        github.stop()


def main(argv: list[str]) -> int:
    work = Path(tempfile.mkdtemp(prefix="reconciler-polling-"))
    polls_per_day = INSTALLATIONS * 86400 / INTERVAL
    # Only the git server is measured: no controllers to compete for the CPU.
    with Testbed.start(work / "testbed", controllers=False) as bed:
        per_poll, cpu, wall = git_side(bed, work)
    first_page, not_modified = github_side()
    github_requests_per_day = polls_per_day * PROJECTS
    print(
        f"git head check (ls-remote, smart HTTP): {per_poll:.0f} bytes on the wire, "
        f"{cpu * 1000:.1f} ms server CPU, {wall * 1000:.1f} ms wall per poll"
    )
    print(
        f"{INSTALLATIONS} installations every {INTERVAL:.0f}s: {polls_per_day:,.0f} polls/day, "
        f"{per_poll * polls_per_day / 1e9:.2f} GB/day, {cpu * polls_per_day / 3600:.1f} CPU-hours/day "
        f"on this git server (fetches only when a commit lands)"
    )
    print(
        f"GitHub Deployments API polled by every installation instead ({PROJECTS} projects): "
        f"{github_requests_per_day:,.0f} requests/day, {github_requests_per_day / polls_per_day:.0f}x the git polls; "
        f"a 304 is ~{not_modified:.0f} bytes, a first page of 30 deployments {first_page:,.0f} bytes; "
        f"GitHub allows 5,000 requests/hour per token, {github_requests_per_day / 24 / 5000:,.0f}x over for one token"
    )
    print(
        f"`reconciler mirror poll` instead: one poller, {PROJECTS} conditional requests per poll = "
        f"{PROJECTS * 86400 / INTERVAL:,.0f} requests/day (304s do not count against the rate limit)"
    )
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
