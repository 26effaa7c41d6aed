"""`reconciler validate` on 1,000 installations x 25 releases (26,025 files).

Target (DESIGN.md): under 2 s on the 2-core development machine, fast enough for a
pre-commit hook. Prints the figures and the ratio to a baseline measured in the same
run: yaml.safe_load + a prebuilt jsonschema validator per file, what a straightforward
implementation would do. Asserts nothing.

    python benchmarks/validate_bench.py [--installations N] [--releases N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

TARGET_SECONDS = 2.0
PROJECTS = 25


def sha(*parts: object) -> str:
    return hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()


def generate(root: Path, installations: int, releases: int, flow: bool = False) -> int:
    """A realistic repo; `flow` writes values the way people type them by hand, in flow style
    with anchors, which the fast path leaves to libyaml."""

    files = 0
    (root / "projects").mkdir(parents=True)
    for p in range(PROJECTS):
        depends = "dependsOn:\n  - project-0\n" if p else ""
        (root / "projects" / f"project-{p}.yaml").write_text(
            f"apiVersion: reconciler/v1\nkind: Project\nname: project-{p}\nnamespace: ns-{p % 5}\n"
            "chart:\n  repository: oci://registry.example.com/charts\n  name: web-service\n"
            '  versionTemplate: "1.0.0-g{ref}"\n'
            f"{depends}values:\n  image:\n    repository: registry.example.com/project-{p}\n"
            "  port: 8080\n"
        )
        files += 1
    for i in range(installations):
        folder = root / "installations" / f"site-{i:04d}"
        (folder / "releases").mkdir(parents=True)
        (folder / "installation.yaml").write_text(
            f"apiVersion: reconciler/v1\nkind: Installation\nname: site-{i:04d}\n"
            "labels:\n  provider: onprem\n  stage: production\n"
            f"values:\n  global:\n    domain: site-{i:04d}.example.com\n"
            "policy:\n  prune: true\n  maxPruneShare: 0.1\n  remediation: rollback\n"
        )
        files += 1
        for r in range(releases):
            values = (
                "values:\n  base: &base {cpu: 100m, memory: 128Mi}\n"
                "  resources: {requests: *base, limits: {cpu: 500m}}\n"
                if flow
                else "values:\n  replicas: 2\n  resources:\n    limits:\n      cpu: 500m\n"
                "      memory: 256Mi\n  env:\n    - name: SITE\n"
                f"      value: site-{i:04d}\n"
            )
            (folder / "releases" / f"project-{r % PROJECTS}.yaml").write_text(
                f"apiVersion: reconciler/v1\nkind: Release\nname: project-{r % PROJECTS}\n"
                f"project: project-{r % PROJECTS}\nref: {sha(i, r)}\n{values}"
            )
            files += 1
    return files


def timed(action: Callable[[], object], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return times


def in_process(root: Path) -> None:
    from reconciler.repo import analyze

    analysis = analyze(root)
    assert not analysis.problems, analysis.problems[:3]


def cli(root: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "validate", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def baseline(root: Path) -> None:
    """yaml.safe_load + jsonschema per file, validators built once."""

    import json

    import yaml
    from jsonschema import Draft202012Validator

    schema_dir = Path(__file__).resolve().parents[1] / "schema"
    validators = {
        kind: Draft202012Validator(json.loads((schema_dir / f"{kind}.schema.json").read_text()))
        for kind in ("project", "installation", "release")
    }
    for path in root.rglob("*.yaml"):
        kind = "project" if path.parent.name == "projects" else path.parent.name
        kind = "installation" if path.name == "installation.yaml" else kind
        kind = "release" if kind == "releases" else kind
        document = yaml.safe_load(path.read_text())
        assert not list(validators[kind].iter_errors(document))


def fast_path_share(root: Path) -> float:
    from reconciler.repo import fastyaml

    files = list(root.rglob("*.yaml"))
    taken = sum(fastyaml.load(path.read_text()) is not None for path in files)
    return taken / len(files)


def report(label: str, times: list[float]) -> str:
    best = min(times)
    spread = f"median {statistics.median(times):.3f} s" if len(times) > 1 else ""
    return f"  {label:<44} best {best:.3f} s  {spread}"


def run(installations: int, releases: int, keep: Path | None) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="validate-bench-"))
    try:
        root = workdir / "block"
        files = generate(root, installations, releases)
        print(
            f"validate: {installations} installations x {releases} releases, {files:,} files,"
            f" {os.cpu_count()} CPUs"
        )
        print(f"  files on the fast YAML path: {fast_path_share(root):.0%}")
        cli_times = timed(lambda: cli(root), 5)
        process_times = timed(lambda: in_process(root), 5)
        base_times = timed(lambda: baseline(root), 1)
        print(report("reconciler validate (CLI, new process)", cli_times))
        print(report("analyze() in process", process_times))
        print(report("baseline: yaml.safe_load + jsonschema", base_times))
        ratio = min(base_times) / min(cli_times)
        verdict = "met" if min(cli_times) < TARGET_SECONDS else "NOT met"
        print(
            f"  CLI is {ratio:.1f}x faster than the baseline; target < {TARGET_SECONDS} s: {verdict}"
        )
        flow_root = workdir / "flow"
        generate(flow_root, installations, releases, flow=True)
        print("  same repo, values in flow style with anchors (libyaml path for every release):")
        print(f"    files on the fast YAML path: {fast_path_share(flow_root):.0%}")
        print(report("  reconciler validate (CLI, new process)", timed(lambda: cli(flow_root), 3)))
        if keep:
            shutil.copytree(root, keep, dirs_exist_ok=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--installations", type=int, default=1000)
    parser.add_argument("--releases", type=int, default=25)
    parser.add_argument("--keep", type=Path, help="copy the generated repo here")
    args = parser.parse_args(argv)
    run(args.installations, args.releases, args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
