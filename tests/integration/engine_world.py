"""One test's world for the engine: an environments repo on the git server, a namespace,
a helm that logs every call, and the `reconciler` CLI pointed at all of it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envrepo import EnvRepo

from testbed import CommandError, KubeAPIError


def helm_spy(real_helm: Path, folder: Path) -> tuple[Path, Path]:
    """A helm wrapper that records each call (start and end) and then runs the real one."""

    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "helm-calls.log"
    spy = folder / "helm"
    spy.write_text(
        "#!/bin/sh\n"
        f'echo "start $(date +%s.%N) $*" >> "{log}"\n'
        f'"{real_helm}" "$@"\n'
        "code=$?\n"
        f'echo "end $(date +%s.%N) $*" >> "{log}"\n'
        "exit $code\n"
    )
    spy.chmod(0o755)
    log.touch()
    return spy, log


@dataclass
class World:
    testbed: Any
    namespace: str
    repo: EnvRepo
    spy: Path
    spy_log: Path
    helm_name: str
    workdir: Path
    installation: str

    def env(self) -> dict[str, str]:
        return {
            **self.testbed.helm_env(),
            "RECONCILER_NAMESPACE": self.namespace,
            "RECONCILER_PLAIN_HTTP": "1",
            "RECONCILER_HELM": str(self.spy),
            "RECONCILER_INSTALLATION": self.installation,
            "RECONCILER_REPO": self.repo.url,
        }

    def cli_argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "reconciler", *args]

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.cli_argv(*args),
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.workdir,
        )

    def apply(self, *args: str) -> tuple[int, dict[str, Any], str]:
        done = self.cli("apply", "-o", "json", *args)
        try:
            document = json.loads(done.stdout) if done.stdout.strip() else {}
        except ValueError:
            document = {}
        return done.returncode, document, done.stderr

    def plan(self, *args: str) -> tuple[int, dict[str, Any]]:
        done = self.cli("plan", "-o", "json", *args)
        assert done.stdout.strip(), done.stderr
        return done.returncode, json.loads(done.stdout)

    def helm_calls(self) -> list[str]:
        """Every helm call since the last `reset_calls`, as its argument line."""

        lines = self.spy_log.read_text().splitlines()
        return [line.split(" ", 2)[2] for line in lines if line.startswith("start ")]

    def helm_events(self) -> list[tuple[str, float, str]]:
        events = []
        for line in self.spy_log.read_text().splitlines():
            kind, stamp, args = line.split(" ", 2)
            events.append((kind, float(stamp), args))
        return events

    def reset_calls(self) -> None:
        self.spy_log.write_text("")

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.testbed.helm(
            *args, "--namespace", self.namespace, helm=self.helm_name, check=check
        )

    def history(self, release: str) -> list[dict[str, Any]]:
        out = self.helm("history", release, "-o", "json").stdout
        rows: list[dict[str, Any]] = json.loads(out)
        return rows

    def latest(self, release: str) -> dict[str, Any]:
        return self.history(release)[-1]

    def values(self, release: str) -> dict[str, Any]:
        out = self.helm("get", "values", release, "-o", "json").stdout
        document: dict[str, Any] = json.loads(out) or {}
        return document

    def releases(self) -> dict[str, str]:
        show_all = ["--all"] if self.helm_name == "helm3" else []  # helm 4 lists every state anyway
        out = self.helm("list", *show_all, "-o", "json").stdout
        return {r["name"]: r["status"] for r in json.loads(out)}


def written_release(args: str) -> str | None:
    """The release a helm call installs or upgrades (`install X ...`, `upgrade --install X ...`)."""

    words = args.split()
    if words[:2] == ["upgrade", "--install"]:
        return words[2]
    if words[:1] == ["install"]:
        return words[1]
    return None


def wait_for(predicate: Any, timeout: float = 60, interval: float = 0.2) -> Any:
    """Poll `predicate` until it is truthy; a failed helm or kube call counts as "not yet"."""

    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
        # A helm or kube call that failed once (a loaded machine, a dropped connection)
        # only means "not yet"; a lasting failure shows in the timeout message.
        except (CommandError, KubeAPIError, TimeoutError, ConnectionError) as error:
            last_error, result = error, None
        if result:
            return result
        time.sleep(interval)
    detail = f"; last error: {last_error}" if last_error else ""
    raise AssertionError(f"condition not met within {timeout}s{detail}")


def log_entries(path: Path) -> list[dict[str, Any]]:
    """The JSON log lines a daemon wrote to `path` (anything else, e.g. a traceback, skipped)."""

    entries = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def wait_for_log(path: Path, msg: str, timeout: float = 60, **fields: Any) -> dict[str, Any]:
    """The first log entry with message `msg` and these field values, once it is written."""

    def found() -> dict[str, Any] | None:
        for entry in log_entries(path):
            if entry.get("msg") == msg and all(entry.get(k) == v for k, v in fields.items()):
                return entry
        return None

    entry: dict[str, Any] = wait_for(found, timeout=timeout)
    return entry


def kube_json(testbed: Any, method: str, path: str, body: Any = None) -> Any:
    return (
        testbed.admin.call(method, path, body)
        if body is not None
        else testbed.admin.call(method, path)
    )


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (helm runs in a process group of its own)."""

    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()  # noqa: SIM115
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def apply_killed_mid_upgrade(world: World, release: str = "alpha") -> None:
    """`reconciler apply` and its helm SIGKILLed while helm holds the release pending-upgrade,
    as when a node dies."""

    process = subprocess.Popen(
        world.cli_argv("apply"), env=world.env(), cwd=world.workdir,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: world.latest(release)["status"] == "pending-upgrade", timeout=60)
    finally:
        for pid in [process.pid, *descendants(process.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait()


__all__ = [
    "World",
    "apply_killed_mid_upgrade",
    "helm_spy",
    "kube_json",
    "log_entries",
    "os",
    "wait_for",
    "wait_for_log",
    "written_release",
]


def daemon_log(world: World, name: str) -> Path:
    return world.workdir / f"daemon-{name}.log"


@contextmanager
def daemon(
    world: World,
    *args: str,
    name: str = "a",
    spy: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[str]]:
    env = {**world.env(), "POD_NAME": name, **(extra_env or {})}
    if spy:
        env["RECONCILER_HELM"] = str(spy)
    logs = daemon_log(world, name).open("w")
    process = subprocess.Popen(
        world.cli_argv("run", "--interval", "0.5", "--log-format", "json", *args),
        env=env, stdout=subprocess.DEVNULL, stderr=logs, text=True,
    )  # fmt: skip
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        logs.close()
