"""Engine benchmarks on the real testbed: the in-process no-op pass, one change among many,
and the daemon's peak memory. The product against other tools (cold converge, one change and
no-op passes of whole processes, the scale curve) is `peers_bench.py`.

Prints figures measured in this one run; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from envrepo import EnvRepo  # noqa: E402

from testbed import Testbed  # noqa: E402

CHART = ROOT / "tests" / "charts" / "app"


def seed(repo: EnvRepo, installation: str, namespace: str, count: int, concurrency: int) -> str:
    repo.project("app", namespace)
    repo.installation(installation, policy={"concurrency": concurrency, "retries": 0})
    for i in range(count):
        repo.release(
            installation,
            f"r{i:04d}",
            project="app",
            version="0.1.0",
            values={"message": f"release {i}"},
        )
    return repo.commit(f"{count} releases")


def cli(
    bed: Testbed, *args: str, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**bed.helm_env(), "RECONCILER_PLAIN_HTTP": "1", **(extra_env or {})}
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def converge_and_measure(
    bed: Testbed, repo_url: str, installation: str, namespace: str
) -> tuple[float, str]:
    helm = str(bed.helm_binaries["helm4"])
    started = time.perf_counter()
    done = cli(bed, "apply", "--repo", repo_url, "-i", installation, "--helm", helm,
               extra_env={"RECONCILER_NAMESPACE": namespace})  # fmt: skip
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"reconciler apply failed: {done.stderr[-2000:]}")
    return seconds, done.stdout.splitlines()[-1] if done.stdout else ""


def in_process_passes(
    bed: Testbed, repo_url: str, installation: str, namespace: str, repo: EnvRepo
) -> None:
    os.environ.update(bed.helm_env())
    from reconciler.helm import Helm
    from reconciler.kube import Kube
    from reconciler.observe import read_index
    from reconciler.reconcile import Engine, load_revision
    from reconciler.source import GitSource
    from reconciler.status import StatusStore

    kube = Kube.connect(str(bed.kubeconfig))
    helm = Helm.detect(str(bed.helm_binaries["helm4"]), str(bed.kubeconfig), plain_http=True)
    source = GitSource(repo_url)
    engine = Engine(installation, kube, lambda: helm, StatusStore(kube, namespace, installation))
    env = load_revision(source)
    engine.apply(env)  # settle the status ConfigMap

    heads = []
    for _ in range(10):
        started = time.perf_counter()
        source.head()
        heads.append(time.perf_counter() - started)
    timings, calls = [], []
    helm_before = helm.counter.processes
    for _ in range(20):
        before = kube.calls
        started = time.perf_counter()
        result = engine.apply(env)
        timings.append(time.perf_counter() - started)
        calls.append(kube.calls - before)
        assert not result.plan.actions
    releases = len(env.installations[installation].releases)
    in_cluster = len(read_index(kube).releases)
    print(f"head check (git ls-remote over HTTP): median {statistics.median(heads) * 1000:.1f} ms")
    print(
        f"no-op pass, {releases} releases: median {statistics.median(timings) * 1000:.1f} ms, "
        f"max {max(timings) * 1000:.1f} ms, API calls per pass {max(calls)}, "
        f"helm processes {helm.counter.processes - helm_before} "
        f"(each LIST returns all {in_cluster} helm releases in the cluster)"
    )

    full_resyncs(engine, kube, helm, env, releases)

    repo.release(
        installation, "r0042", project="app", version="0.2.0", values={"message": "release 42"}
    )
    repo.commit("one release moves")
    env = load_revision(source)
    helm_before = helm.counter.processes
    started = time.perf_counter()
    result = engine.apply(env)
    seconds = time.perf_counter() - started
    upgraded = [o.release for o in result.outcomes if o.result == "succeeded"]
    print(
        f"one changed release among {releases}: helm processes {helm.counter.processes - helm_before}, "
        f"upgraded {upgraded}, pass {seconds:.2f} s"
    )


def full_resyncs(engine: Any, kube: Any, helm: Any, env: Any, releases: int) -> None:
    """A full resync with nothing to do: every record decoded, every release's health read."""

    timings, cpu, calls = [], [], []
    helm_before = helm.counter.processes
    for _ in range(3):
        before = kube.calls
        started, cpu_started = time.perf_counter(), time.process_time()
        result = engine.apply(env, full=True)
        timings.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
        calls.append(kube.calls - before)
        assert not result.plan.actions
    healthy = sum(1 for verdict in result.health.values() if verdict.healthy)
    print(
        f"full resync, {releases} releases: median {statistics.median(timings):.2f} s wall, "
        f"{statistics.median(cpu):.2f} s CPU (reconciler process), API calls per pass "
        f"{max(calls)}, helm processes {helm.counter.processes - helm_before}, "
        f"health read of {len(result.health)} releases ({healthy} Healthy)"
    )


def daemon_peak_rss(bed: Testbed, chart_repo: str, count: int, work: Path) -> None:
    namespace = bed.create_namespace("memory")
    url = bed.create_git_repo("memory")
    repo = EnvRepo(url, work / "memory-repo", chart_repo)
    seed(repo, "memory", namespace, count, concurrency=4)
    env = {
        **bed.helm_env(),
        "RECONCILER_PLAIN_HTTP": "1",
        "RECONCILER_NAMESPACE": namespace,
        "RECONCILER_HELM": str(bed.helm_binaries["helm4"]),
    }
    log = work / "memory-daemon.log"
    started = time.perf_counter()
    with log.open("w") as sink:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "reconciler", "run", "--repo", url, "-i", "memory", "--interval", "1",
             "--resync-interval", "3", "--log-format", "json"],
            env=env, stdout=subprocess.DEVNULL, stderr=sink,
        )  # fmt: skip
        converged = _wait_for_log(log, '"pass done"', timeout=1800)
        time.sleep(8)  # no-op polls, and full resyncs that decode every release
        peak_kib = _peak_rss_kib(daemon.pid)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=120)
    print(
        f"daemon with {count} releases: converged in {converged - started:.1f} s; "
        f"peak RSS of the reconciler process {peak_kib / 1024:.1f} MiB (helm children not included)"
    )


def _peak_rss_kib(pid: int) -> int:
    """The process's own high-water mark (VmHWM), helm children excluded."""

    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _wait_for_log(path: Path, needle: str, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in path.read_text():
            return time.perf_counter()
        time.sleep(0.5)
    raise SystemExit(f"daemon did not converge within {timeout}s; see {path}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--releases", type=int, default=100)
    parser.add_argument(
        "--concurrency", type=int, default=4, help="the installation's policy.concurrency"
    )
    parser.add_argument(
        "--memory-releases", type=int, default=1000, help="0 skips the memory benchmark"
    )
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="reconciler-bench-"))
    with Testbed.start(work / "testbed") as bed:
        print(
            f"testbed up in {bed.startup_seconds:.1f} s (kube-apiserver ready after "
            f"{bed.api_startup_seconds:.1f} s, then controllers, scheduler and kwok nodes)"
        )
        for version in ("0.1.0", "0.2.0"):
            chart_ref = bed.publish_chart(CHART, version)
        chart_repo = chart_ref.rsplit("/", 1)[0]
        installation, namespace = "bench", bed.create_namespace("bench")
        url = bed.create_git_repo(installation)
        repo = EnvRepo(url, work / installation, chart_repo)
        seed(repo, installation, namespace, args.releases, concurrency=args.concurrency)
        converged, _ = converge_and_measure(bed, url, installation, namespace)
        print(f"set-up: reconciler apply converged {args.releases} releases in {converged:.1f} s")
        in_process_passes(bed, url, installation, namespace, repo)
        if args.memory_releases:
            daemon_peak_rss(bed, chart_repo, args.memory_releases, work)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
