"""`python -m testbed up|down|env|status`: the testbed in the background, for manual use.

`up` prints `export` lines on stdout (so `eval "$(python -m testbed up)"` works, and puts
`helm` (helm 4) and `kubectl` on the PATH) and everything else on stderr.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from pathlib import Path

from testbed.binaries import cache_dir
from testbed.core import FAKE_NODES, MARKER_FILE, Testbed
from testbed.procs import TestbedError

DEFAULT_REGISTRY_PORT = 5001


def default_state_dir() -> Path:
    env = os.environ.get("RECONCILER_TESTBED_DIR")
    return Path(env) if env else cache_dir() / "run"


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def _print_exports(bed: Testbed, state_dir: Path) -> None:
    lines = [f"export {key}={shlex.quote(value)}" for key, value in bed.exports().items()]
    # The caller's PATH as it is when the line is evaluated, not as it is here.
    lines.append(f'export PATH={shlex.quote(str(bed.bin_dir))}:"$PATH"')
    (state_dir / "env.sh").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _running(state_dir: Path) -> Testbed | None:
    try:
        return Testbed.attach(state_dir)
    except TestbedError:
        return None


def _wipe(state_dir: Path) -> None:
    if not state_dir.exists():
        return
    if not (state_dir / MARKER_FILE).exists() and any(state_dir.iterdir()):
        raise TestbedError(f"{state_dir} is not empty and not a testbed folder; not wiping it")
    shutil.rmtree(state_dir)


def up(state_dir: Path, registry_port: int, git_port: int, *, bare: bool = False) -> int:
    bed = _running(state_dir)
    if bed is not None and bed.healthy():
        _say(f"testbed already running (state in {state_dir}); `python -m testbed down` stops it")
        _print_exports(bed, state_dir)
        return 0
    if bed is not None:
        _say("a previous testbed is only partly alive; stopping what is left of it")
        bed.stop()
    # A fresh start each time: old repositories, charts and etcd data would only confuse.
    _wipe(state_dir)
    bed = Testbed.start(
        state_dir,
        registry_port=registry_port or None,
        git_port=git_port or None,
        detached=True,
        controllers=not bare,
    )
    bed.create_git_repo("environments")
    _say(f"testbed up in {bed.startup_seconds:.1f}s (state and logs in {state_dir})")
    _say(f"  kube-apiserver {bed.api_url}  {bed.server_version()['gitVersion']}")
    if bed.controllers:
        _say(
            f"  controllers, scheduler, kwok nodes ({', '.join(FAKE_NODES)}) ready "
            f"{bed.startup_seconds - bed.api_startup_seconds:.1f}s after the API server"
        )
    else:
        _say("  bare API server: no controllers, scheduler or nodes")
    _say(f"  helm (helm 4), helm3, kubectl in {bed.bin_dir} (on the PATH below)")
    _say(f"  git (smart HTTP) {bed.git_base_url}  (/private/ repos: token in state.json)")
    _say(f"  git (SSH)        {bed.git_ssh_url('environments')}  (key {bed.ssh_key})")
    _say(f"  OCI registry   {bed.registry} (plain HTTP: helm ... --plain-http)")
    _say("export these (or eval the output of this command):")
    _print_exports(bed, state_dir)
    return 0


def down(state_dir: Path) -> int:
    bed = _running(state_dir)
    if bed is None:
        _say(f"no testbed running (no state in {state_dir})")
        return 0
    bed.stop()
    _say(f"testbed stopped (logs kept in {state_dir / 'logs'})")
    return 0


def env(state_dir: Path) -> int:
    bed = _running(state_dir)
    if bed is None or not bed.healthy():
        _say("no healthy testbed running; start one with `make testbed`")
        return 1
    _print_exports(bed, state_dir)
    return 0


def status(state_dir: Path) -> int:
    bed = _running(state_dir)
    if bed is None:
        _say(f"no testbed running (no state in {state_dir})")
        return 1
    for proc in bed.procs:
        _say(f"  {proc.name:24} pid {proc.pid:<8} {'running' if proc.alive() else 'DEAD'}")
    healthy = bed.healthy()
    _say("healthy" if healthy else "NOT healthy")
    return 0 if healthy else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed", description=__doc__)
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=default_state_dir(),
        help="state, logs, repositories (default: $RECONCILER_TESTBED_DIR or "
        "$RECONCILER_CACHE/run)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up_parser = sub.add_parser("up", help="start the testbed in the background")
    up_parser.add_argument(
        "--registry-port",
        type=int,
        default=DEFAULT_REGISTRY_PORT,
        help="fixed registry port, 0 for any free one (default %(default)s: the example "
        "environments' local installation pulls from oci://127.0.0.1:5001/charts)",
    )
    up_parser.add_argument(
        "--git-port", type=int, default=0, help="fixed git server port (default: any free one)"
    )
    up_parser.add_argument(
        "--bare",
        action="store_true",
        help="the API server alone: no controller-manager, scheduler or kwok nodes "
        "(faster start-up; Pods never run, namespaces never finish terminating)",
    )
    sub.add_parser("down", help="stop the background testbed")
    sub.add_parser("env", help="print the export lines of the running testbed")
    sub.add_parser("status", help="show the processes of the running testbed")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            return up(args.state_dir, args.registry_port, args.git_port, bare=args.bare)
        if args.command == "down":
            return down(args.state_dir)
        if args.command == "env":
            return env(args.state_dir)
        return status(args.state_dir)
    except TestbedError as error:
        _say(f"testbed: {error}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
