"""The product side by side with the tools a user would pick instead, on one testbed.

Peers: `helmfile sync` at its default concurrency (unlimited) and at the product's (4), and a
sequential `helm upgrade --install` loop, each plain and with the helm tuning the product
uses (helm's GC off below 256 MiB, no client-side OpenAPI check, namespaces created once
instead of `--create-namespace`; the loop also pulls a shared chart once and uses `helm
install` for new releases). Every tool runs in alternating rounds, in fresh namespaces, and
medians are compared.

Every figure: wall seconds; CPU seconds of the tool's process and every helm process it
ran (wait4 rusage); CPU seconds of the kube-apiserver process (/proc before and after);
helm processes (a wrapper in front of helm counts them). Passes: cold converge, one changed
release, a no-op pass; then the scale curve. Prints figures and ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from engine_bench import CHART, seed  # noqa: E402
from envrepo import EnvRepo  # noqa: E402

from testbed import Testbed  # noqa: E402
from testbed.binaries import cache_dir, pinned_versions  # noqa: E402

PASSES = ("cold", "change", "noop")
PASS_TITLES = {
    "cold": "cold converge of {n} releases",
    "change": "one changed release among {n}",
    "noop": "no-op pass, {n} releases",
}
# The helm settings the product uses that any user can copy into their own environment.
TUNED_ENV = {"GOGC": "off", "GOMEMLIMIT": "256MiB"}
PRODUCT = "reconciler apply"


@dataclass(frozen=True)
class Cost:
    """One measured pass. Seconds throughout; `helm` counts helm processes by subcommand."""

    wall: float
    cpu: float
    api_cpu: float
    helm: Counter[str] = field(default_factory=Counter)

    @property
    def processes(self) -> int:
        return sum(self.helm.values())


@dataclass
class Meter:
    """Runs commands and measures them: wall, rusage of each child and its waited-for
    descendants, the kube-apiserver's CPU, and the helm processes the wrapper logged."""

    apiserver_pid: int
    log: Path

    def run(self, commands: Sequence[Sequence[str]], env: dict[str, str], count: Path) -> Cost:
        count.write_text("")
        api_before = _proc_cpu(self.apiserver_pid)
        started = time.perf_counter()
        cpu = 0.0
        for argv in commands:
            cpu += self._one(argv, env)
        wall = time.perf_counter() - started
        api = _proc_cpu(self.apiserver_pid) - api_before
        return Cost(wall, cpu, api, Counter(count.read_text().split()))

    def _one(self, argv: Sequence[str], env: dict[str, str]) -> float:
        with self.log.open("ab") as out:
            child = subprocess.Popen(list(argv), env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise SystemExit(
                f"{shlex.join(argv[:4])} ... exited {child.returncode}; see {self.log}"
            )
        return usage.ru_utime + usage.ru_stime


def _proc_cpu(pid: int) -> float:
    """utime + stime of a live process, in seconds (10 ms resolution)."""

    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def counting_wrapper(helm: Path, folder: Path) -> tuple[Path, Path]:
    """A `helm` that logs its subcommand and execs the real one (one dash start-up, ~1 ms).

    Every tool, the loops too, runs helm through it, so the cost is the same for all."""

    folder.mkdir(parents=True, exist_ok=True)
    count, wrapper = folder / "helm-count", folder / "helm"
    wrapper.write_text(
        f'#!/bin/sh\necho "$1" >> {shlex.quote(str(count))}\nexec {shlex.quote(str(helm))} "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper, count


@dataclass
class World:
    """What every tool shares: the testbed, the chart's address, the meter."""

    bed: Testbed
    chart_repo: str
    meter: Meter
    work: Path

    def values(self, n: int, changed: int | None) -> tuple[str, str]:
        """Release n's chart version and message; the changed one moves to 0.2.0."""

        if n == changed:
            return "0.2.0", f"release {n} changed"
        return "0.1.0", f"release {n}"

    def clean(self, namespace: str) -> None:
        """Drop a finished tool's releases, so the product's cluster-wide LIST of helm
        releases sees only the releases of the pass it measures, as in a cluster one tool runs."""

        for kind in ("secrets", "configmaps"):
            self.bed.admin.request("DELETE", f"/api/v1/namespaces/{namespace}/{kind}")


class Tool:
    """One way of converging N releases: `setup` once, `run` once a pass, then `finish`."""

    name = ""
    namespace = ""

    def setup(self, world: World, tag: str, releases: int) -> None:
        raise NotImplementedError

    def run(self, world: World, what: str) -> Cost:
        raise NotImplementedError

    def finish(self, world: World) -> None:
        world.clean(self.namespace)


class Product(Tool):
    name = PRODUCT

    def setup(self, world: World, tag: str, releases: int) -> None:
        self.namespace = world.bed.create_namespace(f"rc-{tag}")
        self.installation = f"rc-{tag}"
        self.url = world.bed.create_git_repo(self.installation)
        self.releases = releases
        self.repo = EnvRepo(self.url, world.work / tag / "repo", world.chart_repo)
        seed(self.repo, self.installation, self.namespace, releases, concurrency=4)
        self.helm, self.count = counting_wrapper(
            world.bed.helm_binaries["helm4"], world.work / tag / "bin"
        )

    def run(self, world: World, what: str) -> Cost:
        if what == "change":
            mid = self.releases // 2
            version, message = world.values(mid, mid)
            self.repo.release(
                self.installation, f"r{mid:04d}", "app", version, values={"message": message}
            )
            self.repo.commit("one release moves")
        env = {
            **world.bed.helm_env(),
            "RECONCILER_PLAIN_HTTP": "1",
            "RECONCILER_NAMESPACE": self.namespace,
        }
        argv = [sys.executable, "-m", "reconciler", "apply", "--repo", self.url,
                "-i", self.installation, "--helm", str(self.helm)]  # fmt: skip
        return world.meter.run([argv], env, self.count)


class Helmfile(Tool):
    """`helmfile sync`; it has no way to skip a release whose chart and values did not
    change (`helmfile apply` needs the helm-diff plugin, which runs a diff per release)."""

    def __init__(self, binary: Path, concurrency: int, tuned: bool) -> None:
        self.binary, self.concurrency, self.tuned = binary, concurrency, tuned
        setting = (
            "default concurrency (unlimited)" if not concurrency else f"--concurrency {concurrency}"
        )
        self.name = f"helmfile sync, {setting}{', tuned' if tuned else ''}"

    def setup(self, world: World, tag: str, releases: int) -> None:
        self.namespace = world.bed.create_namespace(f"hf-{tag}")
        self.folder = world.work / tag
        self.releases = releases
        self.helm, self.count = counting_wrapper(
            world.bed.helm_binaries["helm4"], self.folder / "bin"
        )

    def run(self, world: World, what: str) -> Cost:
        changed = self.releases // 2 if what != "cold" else None
        state = self.folder / "helmfile.yaml"
        state.write_text(yaml.safe_dump(self._state(world, changed), sort_keys=False))
        env = {
            **world.bed.helm_env(),
            "HELMFILE_UPGRADE_NOTICE_DISABLED": "1",
            "HELMFILE_CACHE_HOME": str(self.folder / "cache"),
            "HELMFILE_TEMPDIR": str(self.folder),
            "OTEL_SDK_DISABLED": "true",
            **(TUNED_ENV if self.tuned else {}),
        }
        argv = [str(self.binary), "--file", str(state), "--helm-binary", str(self.helm),
                "--oci-plain-http", "--quiet", "sync"]  # fmt: skip
        if self.concurrency:
            argv += ["--concurrency", str(self.concurrency)]
        return world.meter.run([argv], env, self.count)

    def _state(self, world: World, changed: int | None) -> dict[str, object]:
        defaults: dict[str, object] = {}
        if self.tuned:
            defaults = {"createNamespace": False, "disableOpenAPIValidation": True}
        releases = []
        for n in range(self.releases):
            version, message = world.values(n, changed)
            releases.append(
                {
                    "name": f"r{n:04d}",
                    "namespace": self.namespace,
                    "chart": f"{world.chart_repo}/app",
                    "version": version,
                    "values": [{"message": message}],
                }
            )
        return {"helmDefaults": defaults, "releases": releases}


class Loop(Tool):
    """What a CI script does: one helm process per release, one after another.

    Tuned, it copies the product's settings: the environment above, no
    `--create-namespace`, no OpenAPI check, a chart two releases share pulled once per
    pass, and `helm install` on the first pass (it knows nothing is installed yet)."""

    def __init__(self, tuned: bool) -> None:
        self.tuned = tuned
        self.name = (
            "helm loop, tuned" if tuned else "helm loop (`upgrade --install --create-namespace`)"
        )

    def setup(self, world: World, tag: str, releases: int) -> None:
        self.namespace = world.bed.create_namespace(f"lp-{tag}")
        self.folder = world.work / tag
        self.releases = releases
        self.helm, self.count = counting_wrapper(
            world.bed.helm_binaries["helm4"], self.folder / "bin"
        )

    def run(self, world: World, what: str) -> Cost:
        changed = self.releases // 2 if what != "cold" else None
        env = {**world.bed.helm_env(), **(TUNED_ENV if self.tuned else {})}
        releases = [world.values(n, changed) for n in range(self.releases)]
        uses = Counter(version for version, _ in releases)
        pulls = self._pulls(world, uses) if self.tuned else {}
        commands = [argv for argv, _ in pulls.values()]
        for n, (version, message) in enumerate(releases):
            values = self.folder / f"values-{n}.yaml"
            values.write_text(yaml.safe_dump({"message": message}))
            chart = [pulls[version][1]] if version in pulls else self._remote(world, version)
            commands.append(self._install(what, n, chart, values))
        return world.meter.run(commands, env, self.count)

    def _pulls(self, world: World, uses: Counter[str]) -> dict[str, tuple[list[str], str]]:
        pulls = {}
        for version, count in uses.items():
            if count > 1:
                into = tempfile.mkdtemp(prefix="chart-", dir=self.folder)
                argv = [
                    str(self.helm),
                    "pull",
                    *self._remote(world, version),
                    "--destination",
                    into,
                ]
                pulls[version] = (argv, f"{into}/app-{version}.tgz")
        return pulls

    @staticmethod
    def _remote(world: World, version: str) -> list[str]:
        return [f"{world.chart_repo}/app", "--version", version, "--plain-http"]

    def _install(self, what: str, n: int, chart: list[str], values: Path) -> list[str]:
        if not self.tuned:
            return [str(self.helm), "upgrade", "--install", f"r{n:04d}", *chart, "--namespace",
                    self.namespace, "--create-namespace", "--values", str(values)]  # fmt: skip
        verb = ["install"] if what == "cold" else ["upgrade", "--install"]
        return [str(self.helm), *verb, f"r{n:04d}", *chart, "--namespace", self.namespace,
                "--values", str(values), "--disable-openapi-validation"]  # fmt: skip


Results = dict[str, dict[str, list[Cost]]]  # pass -> tool -> one Cost a round


def rounds(
    world: World,
    tools: Callable[[], list[Tool]],
    releases: int,
    count: int,
    passes: Sequence[str] = PASSES,
) -> Results:
    """`count` rounds; each round every tool converges `releases` releases in fresh
    namespaces and runs `passes` in order. The tools' order rotates from round to round."""

    results: Results = {what: {} for what in passes}
    for r in range(count):
        lineup = tools()
        lineup = lineup[r % len(lineup) :] + lineup[: r % len(lineup)]
        for t, tool in enumerate(lineup):
            tool.setup(world, f"{releases}-{r}-{t}", releases)
            for what in passes:
                cost = tool.run(world, what)
                results[what].setdefault(tool.name, []).append(cost)
                print(f"  round {r + 1} {what:6} {_line(tool.name, cost)}", flush=True)
            tool.finish(world)
    return results


def _line(name: str, cost: Cost) -> str:
    return (
        f"{name}: {cost.wall:.2f} s wall, {cost.cpu:.2f} s CPU, {cost.api_cpu:.2f} s API CPU, "
        f"{cost.processes} helm ({', '.join(f'{n} {k}' for k, n in cost.helm.most_common())})"
    )


def median_cost(costs: list[Cost]) -> Cost:
    """Each figure's median over the rounds; helm subcommands from the first round."""

    return Cost(
        statistics.median(c.wall for c in costs),
        statistics.median(c.cpu for c in costs),
        statistics.median(c.api_cpu for c in costs),
        costs[0].helm,
    )


FIGURES = (
    ("wall s", lambda c: c.wall),
    ("CPU s", lambda c: c.cpu),
    ("API CPU s", lambda c: c.api_cpu),
    ("helm procs", lambda c: float(c.processes)),
)


def table(title: str, by_tool: dict[str, list[Cost]]) -> list[str]:
    """One pass's medians, each figure with its ratio to the best peer's; returns the
    product's figures that are not ahead of the best peer's, as sentences."""

    medians = {name: median_cost(costs) for name, costs in by_tool.items()}
    peers = {name: c for name, c in medians.items() if name != PRODUCT}
    rounds_run = len(next(iter(by_tool.values())))
    print(f"{title}, median of {rounds_run} round(s); (x) = figure / best peer's figure")
    print(f"  {'tool':58}" + "".join(f"{label:>20}" for label, _ in FIGURES))
    for name, cost in medians.items():
        cells = []
        for _, figure in FIGURES:
            best = min((figure(p) for p in peers.values()), default=0.0)
            ratio = f"({figure(cost) / best:.2f}x)" if best > 0 else ""
            value = f"{figure(cost):.0f}" if figure is FIGURES[3][1] else f"{figure(cost):.2f}"
            cells.append(f"{value} {ratio}")
        print(f"  {name:58}" + "".join(f"{cell:>20}" for cell in cells))
    return _behind(title, medians.get(PRODUCT), peers)


def _behind(title: str, ours: Cost | None, peers: dict[str, Cost]) -> list[str]:
    if ours is None or not peers:
        return []
    behind = []
    for label, figure in FIGURES:
        best_name = min(peers, key=lambda name: figure(peers[name]))
        best = figure(peers[best_name])
        if figure(ours) >= best:
            over = f" by {(figure(ours) / best - 1) * 100:.0f}%" if best > 0 else ""
            behind.append(
                f"{title}: {label} {figure(ours):.2f} against {best:.2f} of {best_name}{over}"
            )
    return behind


def report(results: Results, releases: int) -> list[str]:
    behind = []
    for what, by_tool in results.items():
        behind += table(PASS_TITLES[what].format(n=releases), by_tool)
    return behind


def helmfile_binary() -> Path:
    version = pinned_versions()["HELMFILE_VERSION"]
    path = cache_dir() / f"helmfile-{version}" / "helmfile"
    if not os.access(path, os.X_OK):
        raise SystemExit(f"{path} is not built; run `bash testbed/build.sh helmfile`")
    return path


def peers(helmfile: Path) -> list[Tool]:
    return [
        Helmfile(helmfile, 0, tuned=False),
        Helmfile(helmfile, 0, tuned=True),
        Helmfile(helmfile, 4, tuned=False),
        Helmfile(helmfile, 4, tuned=True),
        Loop(tuned=False),
        Loop(tuned=True),
    ]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--releases", type=int, default=100, help="releases of the main table")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians")
    parser.add_argument(
        "--scale", default="10,1000", help="more sizes for the scale curve (comma-separated)"
    )
    parser.add_argument(
        "--peer-scale-limit",
        type=int,
        default=100,
        help="peers run at sizes up to this; above it only the product",
    )
    args = parser.parse_args(argv)
    helmfile = helmfile_binary()
    work = Path(tempfile.mkdtemp(prefix="reconciler-peers-"))
    with Testbed.start(work / "testbed") as bed:
        print(f"testbed up in {bed.startup_seconds:.1f} s")
        for version in ("0.1.0", "0.2.0"):
            chart_ref = bed.publish_chart(CHART, version)
        apiserver = next(p.pid for p in bed.procs if p.name == "kube-apiserver")
        world = World(bed, chart_ref.rsplit("/", 1)[0], Meter(apiserver, work / "tools.log"), work)
        lineup = lambda: [Product(), *peers(helmfile)]  # noqa: E731
        main_results = rounds(world, lineup, args.releases, args.rounds)
        behind = report(main_results, args.releases)
        print("full resync with drift checks: not measured; the product has no drift checks yet")
        behind += scale(world, args, helmfile, main_results)
        for sentence in behind:
            print(f"product not ahead: {sentence}")
        if not behind:
            print("product ahead of the best peer on every figure of every pass")
    return 0


def scale(
    world: World, args: argparse.Namespace, helmfile: Path, main_results: Results
) -> list[str]:
    """The scale curve's passes; returns the figures where the product is not ahead."""

    sizes = sorted({args.releases, *(int(s) for s in args.scale.split(",") if s)})
    curve: dict[int, Results] = {args.releases: main_results}
    for size in sizes:
        if size == args.releases:
            continue
        with_peers = size <= args.peer_scale_limit
        lineup = (lambda: [Product(), *peers(helmfile)]) if with_peers else (lambda: [Product()])
        count = args.rounds if with_peers else 1
        print(
            f"scale: {size} releases, {count} round(s), {'all tools' if with_peers else 'product only'}"
        )
        curve[size] = rounds(world, lineup, size, count, passes=("cold", "noop"))
    behind = []
    print("scale curve: medians; per release = figure / releases")
    for what in ("cold", "noop"):
        for size in sizes:
            if size != args.releases:
                medians = {name: median_cost(costs) for name, costs in curve[size][what].items()}
                title = PASS_TITLES[what].format(n=size)
                behind += _behind(title, medians.pop(PRODUCT, None), medians)
            for name, costs in curve[size][what].items():
                c = median_cost(costs)
                print(f"  {what:5} {size:>5} {_line(name, c)}; {c.wall / size * 1000:.0f} ms wall "
                      f"and {c.cpu / size * 1000:.0f} ms CPU per release")  # fmt: skip
    skipped = [s for s in sizes if s > args.peer_scale_limit]
    if skipped:
        print(f"peers skipped at {skipped} releases: every peer pass runs one or two helm "
              "processes per release, so six peers x two passes would take most of an hour "
              "on a 2-core machine; their cost per release is flat from 10 to 100 releases")  # fmt: skip
    return behind


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
