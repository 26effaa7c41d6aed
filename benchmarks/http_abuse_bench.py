"""Hostile HTTP traffic on 127.0.0.1 against the real `reconciler run` daemon (on the testbed)
and the real `reconciler mirror webhook` (on a local git smart-HTTP server), with their
default limits: idle connections, slow headers and bodies, floods of unsigned requests,
wrong signatures over whole bodies, 400 MiB and negative Content-Lengths with bodies
streamed after them, malformed headers, all at once for a fixed time; /healthz is probed
throughout and one valid signed delivery is sent halfway.

Prints, per process: peak RSS (VmHWM, the process's whole life), hostile requests answered
by status, /healthz p99 latency during the attack, whether the signed delivery was acted
on, and for the mirror, how many commits the attack added (one: the signed delivery's).
The chart's memory limit is 512Mi; the design's target for the daemon is 100 MB.
Asserts nothing; stops by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from envrepo import EnvRepo  # noqa: E402

from testbed import Testbed  # noqa: E402
from tests.support import hostile  # noqa: E402
from tests.support.envrepo import (  # noqa: E402
    GitServer,
    Seed,
    commits,
    push_seed,
    read_remote,
    release_file,
    sha,
)
from tests.support.events import deliver, deployment_event  # noqa: E402

CHART = ROOT / "tests" / "charts" / "app"
SECRET = b"bench-webhook-secret"
MAPPING = """\
apiVersion: reconciler/v1
kind: DeploymentMapping
repositories:
  acme/api:
    project: api
    environments:
      production: [prod-eu]
"""


def plan(args: argparse.Namespace, max_body: int, others: tuple[str, ...] = ()) -> hostile.Plan:
    return hostile.Plan(
        seconds=args.seconds,
        idle=args.idle,
        slow_headers=args.slow,
        slow_bodies=args.slow // 2,
        floods=8,
        wrong_signatures=4,
        oversized=4,
        negative=4,
        malformed=4,
        max_body=max_body,
        probe_interval=0.05,
        other_paths=others,
    )


@contextmanager
def process(
    argv: list[str], env: dict[str, str], log: Path, listening: str
) -> Iterator[tuple[hostile.Address, subprocess.Popen[bytes]]]:
    with log.open("w") as sink:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=sink)
        try:
            address = _address(log, listening, proc)
            deadline = time.monotonic() + 120
            while hostile.get(address, "/healthz")[0] != 200:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{argv[3]}: /healthz never answered 200; see {log}")
                time.sleep(0.2)
            yield address, proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


def _address(log: Path, msg: str, proc: subprocess.Popen[bytes]) -> hostile.Address:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            entry = json.loads(line)
            if entry.get("msg") == msg:
                host, _, port = entry["address"].rpartition(":")
                return host, int(port)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise SystemExit(f"no {msg!r} in {log}")


def print_report(name: str, report: hostile.Report, acted: str, log: Path) -> None:
    print(f"{name}: {report.summary()}")
    print(f"{name}: signed delivery during the attack: {acted}")
    print(f"{name}: tracebacks in its log: {log.read_text().count('Traceback')}")


def bench_mirror(args: argparse.Namespace, work: Path) -> None:
    git = GitServer.start(work / "git")
    try:
        url = git.create_repo("mirror-bench")
        seed = Seed(
            projects=("api",),
            installations={"prod-eu": {"stage": "production"}},
            releases={"prod-eu": {"api": release_file("api", "api", sha(1))}},
        )
        push_seed(url, work / "seed", seed)
        (work / "secret").write_bytes(SECRET)
        (work / "mapping.yaml").write_text(MAPPING)
        before = len(commits(read_remote(url, work / "before")))
        argv = [sys.executable, "-m", "reconciler", "mirror", "webhook", "--listen", "127.0.0.1:0",
                "--repo", url, "--secret-file", str(work / "secret"),
                "--mapping", str(work / "mapping.yaml"), "--log-format", "json"]  # fmt: skip
        log = work / "mirror.log"
        with process(argv, dict(os.environ), log, "webhook: listening") as (address, proc):

            def signed() -> object:
                base = f"http://{address[0]}:{address[1]}/"
                return deliver(base, deployment_event(7, sha(7), "production"), SECRET)[0]

            report = hostile.attack(address, proc.pid, "/", plan(args, 1 << 20), signed)
        added = len(commits(read_remote(url, work / "after"))) - before
        acted = f"answered {report.signed}; commits the attack added: {added}"
        print_report("mirror webhook", report, acted, log)
    finally:
        git.stop()


def bench_daemon(args: argparse.Namespace, work: Path) -> None:
    with Testbed.start(work / "testbed") as bed:
        for version in ("0.1.0", "0.2.0"):
            chart_ref = bed.publish_chart(CHART, version)
        chart_repo = chart_ref.rsplit("/", 1)[0]
        namespace = bed.create_namespace("http-bench")
        url = bed.create_git_repo("http-bench")
        repo = EnvRepo(url, work / "daemon-repo", chart_repo)
        repo.project("app", namespace)
        repo.installation("bench", policy={"retries": 0, "timeoutSeconds": 60})
        repo.release("bench", "web", project="app", version="0.1.0")
        repo.commit("one release")
        (work / "hook-secret").write_bytes(SECRET)
        env = {
            **os.environ,
            **bed.helm_env(),
            "RECONCILER_PLAIN_HTTP": "1",
            "RECONCILER_NAMESPACE": namespace,
            "RECONCILER_HELM": str(bed.helm_binaries["helm4"]),
        }
        argv = [sys.executable, "-m", "reconciler", "run", "--repo", url, "-i", "bench",
                "--interval", "300", "--listen", "127.0.0.1:0", "--log-format", "json",
                "--webhook-secret-file", str(work / "hook-secret")]  # fmt: skip
        log = work / "daemon.log"
        with process(argv, env, log, "listening") as (address, proc):
            if not _wait(lambda: '"install succeeded"' in log.read_text(), 180):
                raise SystemExit(f"the first install did not happen; see {log}")
            repo.release("bench", "web", project="app", version="0.2.0")
            repo.commit("web moves")

            def signed() -> object:
                body = b'{"ref": "refs/heads/main"}'
                head = hostile.post_head("/hooks/git", len(body), hostile.sign(SECRET, body))
                return hostile.send_raw(address, head + body, timeout=30)

            sent = time.monotonic()
            report = hostile.attack(
                address,
                proc.pid,
                "/hooks/git",
                plan(args, 1 << 20, ("/readyz", "/metrics")),
                signed,
            )
            upgraded = _wait(lambda: '"upgrade succeeded"' in log.read_text(), 120)
        acted = (
            f"answered {report.signed}; the upgrade it triggered (poll interval 300 s) done "
            f"{upgraded - sent:.1f} s after the attack began"
            if upgraded
            else f"answered {report.signed}; NO upgrade within 120 s after the attack"
        )
        print_report("reconciler run", report, acted, log)


def _wait(done: Callable[[], bool], timeout: float) -> float:
    """When `done()` became true (time.monotonic()); 0.0 if not within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return time.monotonic()
        time.sleep(0.2)
    return 0.0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each attack")
    parser.add_argument(
        "--idle", type=int, default=150, help="idle connections held open (beyond twice the cap)"
    )
    parser.add_argument("--slow", type=int, default=30, help="slow-header senders")
    parser.add_argument("--only", choices=["daemon", "mirror"], help="run one of the two")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="reconciler-http-bench-"))
    threading.stack_size(512 * 1024)  # a few hundred attacker threads
    print(
        f"attack: {args.seconds:g} s; {args.idle} idle, {args.slow} slow-header, "
        f"{args.slow // 2} slow-body connections; 8 unsigned floods, 4 wrong-signature, "
        "4 x 400 MiB, 4 x negative length, 4 malformed-header senders; limits at their defaults"
    )
    if args.only != "daemon":
        bench_mirror(args, work)
    if args.only != "mirror":
        bench_daemon(args, work)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
