"""The cost of a full resync with live-drift checks, beside the no-op pass, on the testbed.

For each size (100 and 1,000 releases of the `drifty` test chart: a ConfigMap, a Secret,
a Deployment and a Service each, so four live objects per release), the releases are
converged once, then measured in process, one engine, medians of a few passes:

- no-op pass: what every poll costs (labels prove the releases in sync);
- full resync, `drift: off`: every release record decoded, and every live object read
  once for health;
- full resync, `drift: correct`: the same reads (drift and health judge one read of the
  live objects, reconciler.livestate) plus one LIST of HorizontalPodAutoscalers.

Figures: wall time, CPU time of this process (all threads), kube-apiserver CPU (from
/proc, 10 ms resolution), API calls, helm processes (must be 0: nothing drifted).
Prints figures measured in this one run; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from envrepo import EnvRepo  # noqa: E402

from testbed import Testbed  # noqa: E402

CHART = ROOT / "tests" / "charts" / "drifty"
ROUNDS = 3


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def seed(repo: EnvRepo, installation: str, namespace: str, count: int, drift: str) -> str:
    # No Pods: 1,000 releases of Pods would measure the scheduler, not the reconciler.
    repo.project("web", namespace, chart="drifty", values={"replicas": 0, "headless": True})
    policy = {"concurrency": 8, "retries": 0, "drift": drift}
    repo.installation(installation, policy=policy)
    for i in range(count):
        repo.release(installation, f"r{i:04d}", project="web", version="0.1.0")
    return repo.commit(f"{count} releases, drift {drift}")


def measure(pass_: Callable[[], Any], kube: Any, helm: Any, apiserver: int) -> dict[str, float]:
    walls, cpus, apis, calls, helms = [], [], [], [], []
    for _ in range(ROUNDS):
        before = (kube.calls, helm.counter.processes, time.process_time(), _proc_cpu(apiserver))
        started = time.perf_counter()
        pass_()
        walls.append(time.perf_counter() - started)
        calls.append(kube.calls - before[0])
        helms.append(helm.counter.processes - before[1])
        cpus.append(time.process_time() - before[2])
        apis.append(_proc_cpu(apiserver) - before[3])
    return {
        "wall": statistics.median(walls),
        "cpu": statistics.median(cpus),
        "api_cpu": statistics.median(apis),
        "calls": max(calls),
        "helm": max(helms),
    }


def one_size(
    bed: Testbed, chart_repo: str, count: int, work: Path
) -> list[tuple[str, dict[str, float]]]:
    os.environ.update(bed.helm_env())
    from reconciler.helm import Helm
    from reconciler.kube import Kube
    from reconciler.reconcile import Engine, load_revision
    from reconciler.source import GitSource
    from reconciler.status import StatusStore

    name = f"drift{count}"
    namespace = bed.create_namespace(name)
    url = bed.create_git_repo(name)
    repo = EnvRepo(url, work / name, chart_repo)
    seed(repo, name, namespace, count, "correct")
    kube = Kube.connect(str(bed.kubeconfig))
    helm = Helm.detect(str(bed.helm_binaries["helm4"]), str(bed.kubeconfig), plain_http=True)
    source = GitSource(url)
    engine = Engine(name, kube, lambda: helm, StatusStore(kube, namespace, name))
    env = load_revision(source)
    started = time.perf_counter()
    result = engine.apply(env)
    if result.failed:
        raise SystemExit(f"converge failed: {result.failed[0].message}")
    print(
        f"set-up: {count} releases converged in {time.perf_counter() - started:.1f} s", flush=True
    )
    engine.apply(env, full=True)  # settle the status ConfigMap
    apiserver = next(p.pid for p in bed.procs if p.name == "kube-apiserver")
    rows = [("no-op pass", measure(lambda: engine.apply(env), kube, helm, apiserver))]
    seed(repo, name, namespace, count, "off")
    off = load_revision(source)
    rows.append(
        (
            "full resync, drift: off",
            measure(lambda: engine.apply(off, full=True), kube, helm, apiserver),
        )
    )
    rows.append(
        (
            "full resync with drift checks",
            measure(lambda: engine.apply(env, full=True), kube, helm, apiserver),
        )
    )
    drifted = [d for d in engine.plan(env, full=True)[0].drifted]
    if drifted:
        print(f"unexpected drift: {drifted[0].drift.summary()}")
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100,1000", help="release counts, comma-separated")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="reconciler-drift-bench-"))
    with Testbed.start(work / "testbed") as bed:
        chart_repo = bed.publish_chart(CHART, "0.1.0").rsplit("/", 1)[0]
        for count in (int(size) for size in args.sizes.split(",")):
            rows = one_size(bed, chart_repo, count, work)
            print(
                f"| {count} releases ({count * 4} live objects) | wall s | CPU s | API-server CPU s | API calls | helm processes |"
            )
            print("|---|---|---|---|---|---|")
            for label, m in rows:
                print(
                    f"| {label} | {m['wall']:.3f} | {m['cpu']:.3f} | {m['api_cpu']:.2f} | "
                    f"{m['calls']:.0f} | {m['helm']:.0f} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
