"""`make demo`: the example environments converged on a throwaway local control plane.

1. start the testbed (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok's
   fake nodes, git server, OCI registry on 127.0.0.1:5001),
2. publish the example charts at the versions the `local` installation declares,
3. push example-environments/ to the git server,
4. `reconciler plan`, then `reconciler apply`, then `reconciler status`,
5. a second `reconciler apply`, which finds nothing to do and starts no helm process,
6. live drift: a ConfigMap deleted and a Service edited by hand, listed by `plan --full` and
   corrected by `apply --full`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from testbed.core import Testbed

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "example-environments"
INSTALLATION = "local"
REGISTRY_PORT = 5001


def banner(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def publish_charts(bed: Testbed) -> int:
    """Each chart version the installation asks for, packaged from example-environments/charts."""

    from reconciler.desired import desired_state
    from reconciler.repo import load_environments

    env = load_environments(EXAMPLES)
    wanted = {(r.chart.name, r.chart.version) for r in desired_state(env, INSTALLATION).releases}
    for chart, version in sorted(wanted):
        bed.publish_chart(EXAMPLES / "charts" / chart, version)
    return len(wanted)


def push_examples(bed: Testbed, work: Path) -> str:
    url = bed.create_git_repo("environments-demo")
    tree = work / "environments"
    shutil.copytree(EXAMPLES, tree)
    identity = {"GIT_AUTHOR_NAME": "demo", "GIT_AUTHOR_EMAIL": "demo@example.invalid"}
    identity |= {"GIT_COMMITTER_NAME": "demo", "GIT_COMMITTER_EMAIL": "demo@example.invalid"}
    for argv in (
        ["init", "--quiet", "--initial-branch=main"],
        ["add", "-A"],
        ["commit", "--quiet", "-m", "example environments"],
        ["push", "--quiet", url, "HEAD:main"],
    ):
        subprocess.run(["git", *argv], cwd=tree, env={**os.environ, **identity}, check=True)
    return url


def reconciler(
    bed: Testbed, url: str, state_namespace: str, *args: str, helm: Path | None = None
) -> int:
    env = {
        **bed.helm_env(),
        "RECONCILER_REPO": url,
        "RECONCILER_INSTALLATION": INSTALLATION,
        "RECONCILER_HELM": str(helm or bed.helm_binaries["helm4"]),
        "RECONCILER_PLAIN_HTTP": "1",
        "RECONCILER_NAMESPACE": state_namespace,
    }
    print(f"$ reconciler {' '.join(args)}", flush=True)
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args], env=env, check=False
    ).returncode


def count_helm_calls(bed: Testbed, work: Path) -> tuple[Path, Path]:
    log = work / "helm-calls.log"
    spy = work / "helm"
    spy.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\nexec "{bed.helm_binaries["helm4"]}" "$@"\n')
    spy.chmod(0o755)
    log.touch()
    return spy, log


def run_demo(bed: Testbed, work: Path) -> int:
    banner(
        f"testbed up in {bed.startup_seconds:.1f}s: kube-apiserver "
        f"{bed.server_version()['gitVersion']} ready after {bed.api_startup_seconds:.1f}s, "
        "then controllers, scheduler and kwok nodes"
    )
    started = time.monotonic()
    count = publish_charts(bed)
    print(
        f"published {count} chart versions to oci://{bed.registry}/charts in {time.monotonic() - started:.1f}s"
    )
    url = push_examples(bed, work)
    print(f"pushed example-environments/ to {url}")
    state_namespace = bed.create_namespace("reconciler")

    banner(f"plan for installation {INSTALLATION!r} (exit 2: changes pending)")
    print(f"exit {reconciler(bed, url, state_namespace, 'plan')}")

    banner("apply: converge")
    started = time.monotonic()
    code = reconciler(bed, url, state_namespace, "apply")
    print(f"exit {code} after {time.monotonic() - started:.1f}s")
    if code != 0:
        return code

    banner("status (from the status ConfigMap in the cluster)")
    reconciler(bed, url, state_namespace, "status")

    banner("a second apply: nothing to do, no helm process started")
    spy, log = count_helm_calls(bed, work)
    code = reconciler(bed, url, state_namespace, "apply", helm=spy)
    calls = log.read_text().splitlines()
    print(f"exit {code}; helm processes started: {len(calls)}")
    if code != 0 or calls:
        return code or 1
    return show_live_drift(bed, url, state_namespace)


def show_live_drift(bed: Testbed, url: str, state_namespace: str) -> int:
    banner("live drift: a person deletes a ConfigMap and edits a Service by hand")
    for argv in (
        ("delete", "configmap", "orders-config", "-n", "shop"),
        ("patch", "service", "orders", "-n", "shop", "--type=merge", "-p",
         '{"spec":{"ports":[{"name":"http","port":9999,"targetPort":"http"}]}}'),
    ):  # fmt: skip
        print(f"$ kubectl {' '.join(argv)}", flush=True)
        bed.kubectl(*argv)

    banner("plan --full compares live objects with the deployed manifests (exit 2: drift)")
    print(f"exit {reconciler(bed, url, state_namespace, 'plan', '--full')}")

    banner("apply --full corrects it through helm")
    code = reconciler(bed, url, state_namespace, "apply", "--full")
    restored = bed.kubectl("get", "configmap", "orders-config", "-n", "shop", check=False)
    port = bed.kubectl(
        "get", "service", "orders", "-n", "shop", "-o", "jsonpath={.spec.ports[0].port}"
    ).stdout
    print(f"exit {code}; ConfigMap back: {restored.returncode == 0}; Service port: {port}")
    return code if restored.returncode == 0 and port != "9999" else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m testbed.demo", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--keep", action="store_true", help="leave the testbed running (stop with Ctrl-C)"
    )
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="reconciler-demo-"))
    with Testbed.start(work / "testbed", registry_port=REGISTRY_PORT) as bed:
        code = run_demo(bed, work)
        if args.keep:
            print("\nthe testbed stays up; in another shell:")
            for key, value in bed.exports().items():
                print(f"  export {key}={value}")
            print(f'  export PATH={bed.bin_dir}:"$PATH"  # helm (helm 4), kubectl')
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    shutil.rmtree(work, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
