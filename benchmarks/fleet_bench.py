"""A fleet on one git server: N simulated reconcilers polling an environments repo of 1,000
installations x 25 releases, while concurrent `reconciler promote` runs push promotions.

Each simulated reconciler runs the product's poll-and-fetch code, the daemon loop's fetch step
(Loop._refresh: GitSource.head(), then load_revision() when the head moved: the clone or
fetch, and the load and validation of its installation), on threads of one process; there is
no cluster to apply to. The same run is made twice: sparse (a partial
clone, the server allows filters) and full shallow (the server cannot filter: every object
of the tree is sent). Measured: commit-to-fetched latency per installation (p50, p99), the
git server's CPU (its process and the git children it runs) and bytes on the wire (through a
counting relay) per head check and per fetch, clone size and time. From these, per day and
the largest fleet one git-server core carries at a 30 s poll interval; beside them, the cost
of polling the GitHub Deployments API instead, counted from the API's shape.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import cast

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from polling_bench import CountingProxy, cpu_seconds  # noqa: E402

from reconciler.loop import Loop, LoopSettings  # noqa: E402
from reconciler.reconcile import Engine, load_revision  # noqa: E402
from reconciler.source import GitSource, sparse_paths  # noqa: E402
from tests.support.envrepo import GitServer  # noqa: E402
from tests.support.fleetrepo import fleet_files, import_commit, sha, site  # noqa: E402

INSTALLATIONS, RELEASES, PROJECTS = 1000, 25, 20
DAY, TARGET_INTERVAL = 86400.0, 30.0
RECONCILER = str(Path(sys.executable).with_name("reconciler"))


@dataclass
class Promotion:
    project: str
    ref: str
    installations: tuple[str, ...]
    pushed: float  # when `reconciler promote` returned
    commit: str = ""


@dataclass
class Fleet:
    """What the simulated reconcilers saw, shared between their threads. `landed` maps a
    commit to when the server's branch first pointed at it (the push itself)."""

    promotions: list[Promotion] = field(default_factory=list)
    landed: dict[str, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    head_checks: int = 0
    fetches: int = 0
    fetch_seconds: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class _Named:
    """All of the engine that the loop's fetch step reads: which installation it serves."""

    installation: str


@dataclass
class Simulated:
    """One reconciler's loop, fetch step only (no cluster), and the promotions to it whose
    arrival it has not seen yet."""

    installation: str
    source: GitSource
    seen: set[int] = field(default_factory=set)
    loop: Loop = field(init=False)
    # (project, ref) -> when a load first showed it here; a promotion is recorded by its job
    # a moment after the push, possibly after this reconciler already fetched it.
    first_seen: dict[tuple[str, str | None], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.loop = Loop(cast(Engine, _Named(self.installation)), self.source, LoopSettings())

    def poll(self, fleet: Fleet) -> None:
        # The daemon's own step: a head check; a fetch, load and validation when it moved.
        before = self.loop.state.head
        started = time.perf_counter()
        self.loop._refresh()
        now = time.time()
        with fleet.lock:
            fleet.head_checks += 1
        env = self.loop.state.good
        moved = self.loop.state.head != before and env is not None
        if env is not None and moved:
            for release in env.installations[self.installation].releases:
                self.first_seen.setdefault((release.project, release.ref), now)
        with fleet.lock:
            if moved:
                fleet.fetches += 1
                fleet.fetch_seconds.append(time.perf_counter() - started)
            for number, promotion in enumerate(fleet.promotions):
                if number in self.seen or self.installation not in promotion.installations:
                    continue
                arrived = self.first_seen.get((promotion.project, promotion.ref))
                if arrived is not None:
                    self.seen.add(number)
                    pushed = fleet.landed.get(promotion.commit, promotion.pushed)
                    fleet.latencies.append(max(0.0, arrived - pushed))


@dataclass
class Mode:
    name: str
    url: str  # the measured server
    proxy: CountingProxy
    server_pid: int
    push_url: str  # the promote jobs' server
    git_dir: Path  # the repository on the servers' disk


@dataclass
class Figures:
    mode: str
    reconcilers: int
    clone_seconds: float
    clone_bytes: float
    clone_disk: float
    head_bytes: float
    head_cpu: float
    fetch_bytes: float
    fetch_cpu: float
    fetch_wall: float
    latencies: list[float]
    promotions: int
    commits: int
    errors: list[str]


def build_repos(server: GitServer) -> list[tuple[str, str]]:
    """(mode, URL): the same fleet repo, served with and without filters."""

    first = server.root / "sparse.git"
    server.create_repo("sparse")
    files = fleet_files(INSTALLATIONS, RELEASES, PROJECTS)
    import_commit(first, files, f"{INSTALLATIONS} installations x {RELEASES} releases")
    shutil.copytree(first, server.root / "full-shallow.git")
    subprocess.run(
        ["git", "config", "--file", str(first / "config"), "uploadpack.allowFilter", "true"],
        check=True,
    )
    base = f"http://127.0.0.1:{server.port}"
    return [("sparse", f"{base}/sparse.git"), ("full-shallow", f"{base}/full-shallow.git")]


def second_server(root: Path, work: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Another git server process on the same repositories: the promote jobs push through
    it, so the measured server's CPU is the fleet's polls and fetches only. It and the jobs
    run at the lowest priority, as if on other machines."""

    port_file = work / "promote-server.port"
    process = subprocess.Popen(
        ["nice", "-n", "19", sys.executable, "-m", "testbed.gitserver", "--root", str(root),
         "--port-file", str(port_file)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while not port_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return process, int(port_file.read_text())


def via(url: str, proxy: CountingProxy) -> str:
    port = url.split(":")[2].split("/")[0]
    return url.replace(f":{port}/", f":{proxy.port}/")


def measure(mode: Mode, action: Callable[[], object], repeat: int) -> tuple[float, float, float]:
    """(bytes on the wire, git-server CPU seconds, wall seconds) per run of `action`."""

    mode.proxy.reset()
    cpu, wall = cpu_seconds(mode.server_pid), time.perf_counter()
    for _ in range(repeat):
        action()
    wall = (time.perf_counter() - wall) / repeat
    cpu = (cpu_seconds(mode.server_pid) - cpu) / repeat
    return (mode.proxy.up + mode.proxy.down) / repeat, cpu, wall


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def promoter(
    url: str, names: list[str], stop: threading.Event, fleet: Fleet, work: Path, seed: int
) -> None:
    """A CI job promoting builds, one `reconciler promote` after another."""

    rng = random.Random(seed)
    while not stop.is_set():
        promoter_once(url, names, fleet, work, rng.random())
        stop.wait(rng.uniform(2.0, 4.0))


def promoter_once(url: str, names: list[str], fleet: Fleet, work: Path, seed: float) -> None:
    """One `reconciler promote` of a random project to three installations of the fleet."""

    rng = random.Random(seed)
    project = f"project-{rng.randrange(PROJECTS):02d}"
    ref = sha("promoted", seed)
    targets = tuple(sorted(rng.sample(names, k=min(3, len(names)))))
    # At the lowest priority: CI jobs run elsewhere, not on the reconcilers' CPU.
    argv = ["nice", "-n", "19", RECONCILER, "promote", "--repo", url]
    argv += ["-p", project, "-r", ref, "-o", "json"]
    for name in targets:
        argv += ["-i", name]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=work)
    pushed = time.time()
    if done.returncode != 0:
        with fleet.lock:
            fleet.errors.append((done.stderr.strip().splitlines() or ["?"])[-1][:200])
    elif (result := json.loads(done.stdout))["status"] == "pushed":
        with fleet.lock:
            fleet.promotions.append(Promotion(project, ref, targets, pushed, result["commit"]))


def simulate(
    mode: Mode, work: Path, reconcilers: int, interval: float, duration: float, promoters: int
) -> Figures:
    names = [site(i * (INSTALLATIONS // reconcilers)) for i in range(reconcilers)]
    url = via(mode.url, mode.proxy)

    def source(name: str, index: int) -> GitSource:
        folder = work / mode.name / f"{name}-{index}"
        return GitSource(url, workdir=folder, sparse=sparse_paths(name))

    # Clone size and time: three fresh clones, each loaded as the reconciler loads it.
    samples = iter(range(3))

    def fresh_clone() -> None:
        number = next(samples)
        load_revision(source(names[number], 100 + number), names[number])

    clone_bytes, _, clone_seconds = measure(mode, fresh_clone, 3)
    clone_disk = disk_bytes(work / mode.name / f"{names[0]}-100")
    fleet = Fleet()
    simulated = [Simulated(name, source(name, 0)) for name in names]
    for one in simulated:
        one.poll(fleet)
    first = simulated[0]
    head_bytes, head_cpu, _ = measure(mode, first.source.head, 20)
    mode.proxy.reset()
    fleet = Fleet()
    stop = threading.Event()
    threads = [
        threading.Thread(target=promoter, args=(mode.push_url, names, stop, fleet, work, seed))
        for seed in range(promoters)
    ]
    threads += [
        threading.Thread(target=_poll_loop, args=(one, fleet, stop, interval, n / len(simulated)))
        for n, one in enumerate(simulated)
    ]
    threads.append(threading.Thread(target=watch_branch, args=(mode.git_dir, fleet, stop)))
    for thread in threads:
        thread.start()
    time.sleep(duration)
    stop.set()
    for thread in threads:
        thread.join()
    # The next poll of each catches the last promotions.
    for one in simulated:
        one.poll(fleet)
    # The cost of one fetch: a promotion lands, every reconciler polls once (head + fetch).
    fetch_bytes = fetch_cpu = 0.0
    rounds = 2
    for number in range(rounds):
        promoted = Fleet()
        promoter_once(mode.push_url, names, promoted, work, 1000 + number)
        polls = iter(simulated)
        b, c, _ = measure(mode, partial(_next_poll, polls, promoted), len(simulated))
        fetch_bytes += (b - head_bytes) / rounds
        fetch_cpu += (c - head_cpu) / rounds
    commits = len({p.ref for p in fleet.promotions})
    return Figures(
        mode.name, reconcilers, clone_seconds, clone_bytes, clone_disk, head_bytes, head_cpu,
        fetch_bytes, fetch_cpu, statistics.median(fleet.fetch_seconds or [0.0]),
        fleet.latencies, len(fleet.promotions), commits, fleet.errors,
    )  # fmt: skip


def watch_branch(git_dir: Path, fleet: Fleet, stop: threading.Event) -> None:
    """When each commit landed: the branch file on the server's disk, read every 10 ms
    (no request to the measured server)."""

    ref = git_dir / "refs" / "heads" / "main"
    while not stop.is_set():
        try:
            head = ref.read_text().strip()
        except OSError:
            head = ""
        if head:
            with fleet.lock:
                fleet.landed.setdefault(head, time.time())
        stop.wait(0.01)


def _next_poll(polls: Iterator[Simulated], fleet: Fleet) -> None:
    next(polls).poll(fleet)


def _poll_loop(
    one: Simulated, fleet: Fleet, stop: threading.Event, interval: float, phase: float
) -> None:
    stop.wait(phase * interval)  # spread over the interval, as independent clusters are
    while not stop.is_set():
        started = time.monotonic()
        try:
            one.poll(fleet)
        except Exception as error:
            with fleet.lock:
                fleet.errors.append(f"{type(error).__name__}: {str(error)[:200]}")
        stop.wait(max(0.0, interval - (time.monotonic() - started)))


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def report(figures: Figures, interval: float, commits_per_day: float) -> None:
    f = figures
    polls_per_day = DAY / TARGET_INTERVAL
    # Per installation and day at 30 s: head checks, plus one fetch per commit to the branch.
    cpu_day = polls_per_day * f.head_cpu + commits_per_day * f.fetch_cpu
    bytes_day = polls_per_day * f.head_bytes + commits_per_day * f.fetch_bytes
    capacity = DAY / cpu_day if cpu_day else float("inf")
    polls_only = TARGET_INTERVAL / f.head_cpu if f.head_cpu else float("inf")
    print(
        f"[{f.mode}] clone: {f.clone_seconds:.2f} s, {f.clone_bytes / 1e6:.2f} MB on the wire,"
        f" {f.clone_disk / 1e6:.2f} MB on disk (load included)"
    )
    print(
        f"[{f.mode}] per poll: head check {f.head_bytes / 1e3:.1f} KB, {f.head_cpu * 1e3:.1f} ms"
        f" server CPU; per fetch of a new commit: {f.fetch_bytes / 1e3:.1f} KB,"
        f" {f.fetch_cpu * 1e3:.1f} ms server CPU, {f.fetch_wall * 1e3:.0f} ms for a poll that fetched: head check, fetch, load (median)"
    )
    print(
        f"[{f.mode}] {f.reconcilers} reconcilers polling every {interval:.0f} s, {f.promotions}"
        f" promotions: commit-to-fetched p50 {percentile(f.latencies, 0.5):.2f} s,"
        f" p99 {percentile(f.latencies, 0.99):.2f} s ({len(f.latencies)} arrivals; the wait for"
        f" the next poll is uniform, so at a {TARGET_INTERVAL:.0f} s interval expect about"
        f" {(TARGET_INTERVAL - interval) / 2:.1f} s more at p50, {(TARGET_INTERVAL - interval) * 0.99:.1f} s"
        f" more at p99)"
    )
    print(
        f"[{f.mode}] per installation and day at {TARGET_INTERVAL:.0f} s with"
        f" {commits_per_day:,.0f} commits/day: {bytes_day / 1e6:.1f} MB,"
        f" {cpu_day:.1f} server CPU-s; {INSTALLATIONS} installations:"
        f" {bytes_day * INSTALLATIONS / 1e9:.2f} GB/day, {cpu_day * INSTALLATIONS / 3600:.1f}"
        f" CPU-hours/day; one git-server core carries {capacity:,.0f} installations"
        f" ({polls_only:,.0f} if nothing were ever committed)"
    )
    if f.errors:
        print(f"[{f.mode}] {len(f.errors)} errors, first: {f.errors[0]}")


def before(mode: Mode, work: Path) -> None:
    """What one reconciler did before sparse fetch: a full shallow clone, the whole repo
    checked out, loaded and validated on every new commit."""

    from reconciler.repo import load_environments

    source = GitSource(via(mode.url, mode.proxy), workdir=work / "before")
    mode.proxy.reset()
    started = time.perf_counter()
    revision, root = source.sync()
    cloned = time.perf_counter() - started
    load_environments(root, revision=revision)
    loaded = time.perf_counter() - started - cloned
    print(
        f"[before: full clone, whole repo loaded] clone {cloned:.2f} s,"
        f" {(mode.proxy.up + mode.proxy.down) / 1e6:.2f} MB on the wire,"
        f" {disk_bytes(work / 'before') / 1e6:.1f} MB on disk; load and validation of all"
        f" {INSTALLATIONS * (RELEASES + 1) + PROJECTS:,} files {loaded:.2f} s on every new commit"
    )


def github_cost() -> None:
    polls_per_day = DAY / TARGET_INTERVAL
    # Each installation asks each project's repository for its Deployments to its
    # environment: GET /repos/{owner}/{project}/deployments?environment=<installation>.
    per_poll = INSTALLATIONS * PROJECTS
    per_day = per_poll * polls_per_day
    print(
        f"GitHub Deployments API instead ({PROJECTS} projects x {INSTALLATIONS} installations,"
        f" every {TARGET_INTERVAL:.0f} s): {per_poll:,} requests per poll round, {per_day:,.0f}"
        f" requests/day ({PROJECTS}x the git head checks), plus one statuses request per new"
        f" Deployment; GitHub allows 5,000 requests/hour per token: one token for the fleet"
        f" would need {per_day / 24 / 5000:,.0f}x that, a token per installation uses"
        f" {PROJECTS * polls_per_day / 24 / 5000:.0%} of its budget on polling alone"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fleet_bench")
    parser.add_argument("--reconcilers", type=int, default=12)
    parser.add_argument("--interval", type=float, default=5.0, help="poll interval of the run")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of polling per mode")
    parser.add_argument("--promoters", type=int, default=2, help="concurrent promote jobs")
    parser.add_argument("--commits-per-day", type=float, default=1440.0)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="reconciler-fleet-"))
    server = GitServer.start(work / "git")
    pusher, push_port = second_server(server.root, work)
    try:
        started = time.perf_counter()
        modes = []
        for name, url in build_repos(server):
            push_url = url.replace(f":{server.port}/", f":{push_port}/")
            proxy = CountingProxy(server.port)
            git_dir = server.root / f"{name}.git"
            modes.append(Mode(name, url, proxy, server.process.pid, push_url, git_dir))
        print(
            f"environments repo: {INSTALLATIONS} installations x {RELEASES} releases,"
            f" {PROJECTS} projects ({time.perf_counter() - started:.1f} s to build)"
        )
        for mode in modes:
            figures = simulate(
                mode, work, args.reconcilers, args.interval, args.duration, args.promoters
            )
            report(figures, args.interval, args.commits_per_day)
            if mode.name == "full-shallow":
                before(mode, work)
            mode.proxy.close()
        github_cost()
    finally:
        pusher.terminate()
        pusher.wait(timeout=10)
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
