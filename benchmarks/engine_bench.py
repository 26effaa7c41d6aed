"""Engine benchmarks on the real testbed: cold converge against a sequential helm loop,
the no-op pass, one change among many, and the daemon's peak memory.

Prints figures and ratios measured in this one run; asserts nothing.
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
from dataclasses import dataclass
from pathlib import Path

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


def sequential_helm_loop(
    bed: Testbed,
    chart_repo: str,
    namespace: str,
    count: int,
    work: Path,
    create_namespace: bool = True,
) -> float:
    """What a CI script does: one `helm upgrade --install` after another."""

    helm = str(bed.helm_binaries["helm4"])
    creating = ["--create-namespace"] if create_namespace else []
    started = time.perf_counter()
    for i in range(count):
        values = work / f"values-{i}.yaml"
        values.write_text(f"message: release {i}\n")
        subprocess.run(
            [helm, "upgrade", "--install", f"r{i:04d}", f"{chart_repo}/app", "--version", "0.1.0",
             "--namespace", namespace, *creating, "--plain-http", "--values", str(values)],
            env=bed.helm_env(), check=True, capture_output=True,
        )  # fmt: skip
    return time.perf_counter() - started


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


@dataclass(frozen=True)
class Round:
    """One cold-converge round in fresh namespaces; the later benchmarks reuse the last."""

    ours: float
    loop: float
    bare: float
    installation: str
    namespace: str
    url: str
    repo: EnvRepo


def cold_converge_round(
    bed: Testbed, chart_repo: str, work: Path, args: argparse.Namespace, n: int
) -> Round:
    loop = sequential_helm_loop(
        bed, chart_repo, bed.create_namespace(f"loop-{n}"), args.releases, work
    )
    bare = sequential_helm_loop(
        bed, chart_repo, bed.create_namespace(f"bare-{n}"), args.releases, work,
        create_namespace=False,
    )  # fmt: skip
    installation, namespace = f"bench-{n}", bed.create_namespace(f"bench-{n}")
    url = bed.create_git_repo(installation)
    repo = EnvRepo(url, work / installation, chart_repo)
    seed(repo, installation, namespace, args.releases, concurrency=args.concurrency)
    ours, _ = converge_and_measure(bed, url, installation, namespace)
    return Round(ours, loop, bare, installation, namespace, url, repo)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--releases", type=int, default=100)
    parser.add_argument(
        "--concurrency", type=int, default=4, help="the installation's policy.concurrency"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="cold-converge rounds; medians are compared"
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

        first = cold_converge_round(bed, chart_repo, work, args, 0)
        # The passes below run before the other rounds add their releases to the cluster:
        # each pass LISTs every helm release there, the loops' ones too.
        idle, _ = converge_and_measure(bed, first.url, first.installation, first.namespace)
        in_process_passes(bed, first.url, first.installation, first.namespace, first.repo)
        rounds = [first] + [
            cold_converge_round(bed, chart_repo, work, args, n) for n in range(1, args.rounds)
        ]
        for n, r in enumerate(rounds, 1):
            print(
                f"  round {n}: reconciler apply {r.ours:.1f} s; loop with --create-namespace "
                f"{r.loop:.1f} s ({r.loop / r.ours:.1f}x); loop without {r.bare:.1f} s "
                f"({r.bare / r.ours:.1f}x)"
            )
        ours = statistics.median(r.ours for r in rounds)
        loop = statistics.median(r.loop for r in rounds)
        bare = statistics.median(r.bare for r in rounds)
        print(
            f"cold converge of {args.releases} releases, median of {args.rounds} rounds: "
            f"reconciler apply {ours:.1f} s (clone, load and start-up included); sequential "
            f"`helm upgrade --install --create-namespace` loop {loop:.1f} s: "
            f"{loop / ours:.1f}x faster; the same loop without --create-namespace "
            f"{bare:.1f} s: {bare / ours:.1f}x faster"
        )
        print(
            f"reconciler apply with nothing to do (start-up, clone, load, one LIST): {idle:.2f} s"
        )
        if args.memory_releases:
            daemon_peak_rss(bed, chart_repo, args.memory_releases, work)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
