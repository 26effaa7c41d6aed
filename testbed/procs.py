"""Child processes of the testbed: one process group each, always stoppable."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

_PR_SET_PDEATHSIG = 1


class TestbedError(RuntimeError):
    """A testbed part could not be started, reached or stopped."""

    __test__ = False  # not a pytest test class, despite the name


def free_ports(count: int) -> list[int]:
    """`count` different loopback ports that are free right now (the kernel picks them).

    Every probe socket stays bound until all are picked, so no two ports coincide.
    Another process may still take one before our child binds it: `Testbed.start`
    retries on "address already in use".
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            probe = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            probe.bind(("127.0.0.1", 0))
            ports.append(int(probe.getsockname()[1]))
        return ports


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As Go servers do; else connections of a just-stopped server in TIME_WAIT
        # would make a free port look taken.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _die_with_parent() -> None:
    # Linux only: if the test run is killed hard, its servers go with it instead of
    # lingering. SIGKILL, because on SIGTERM etcd and kube-apiserver shut down
    # gracefully and wait for each other's connections for a long time. The signal is
    # tied to the thread that spawned the child, so spawn from the main thread.
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class Proc:
    """A started child: its own session, so stopping it reaches every descendant."""

    name: str
    pid: int
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    @classmethod
    def spawn(
        cls,
        name: str,
        argv: Sequence[str],
        log: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        detached: bool = False,
    ) -> Proc:
        """Start argv with output to `log`; `detached` children outlive this process."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=None if detached else _die_with_parent,
            )
        return cls(name=name, pid=popen.pid, log=log, popen=popen)

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return _pid_alive(self.pid)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the whole group, SIGKILL whatever is left after `timeout`."""
        _signal_group(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._reaped():
                break
            time.sleep(0.05)
        # Descendants (git http-backend under the git server) may outlive the leader.
        _signal_group(self.pid, signal.SIGKILL)
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=5)

    def _reaped(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is not None
        return not _pid_alive(self.pid)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # A zombie is dead for our purposes; its parent (init) reaps it soon.
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def pid_runs(pid: int, executable: str) -> bool:
    """Whether `pid` still runs `executable`: guards against a reused pid before a kill."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return _pid_alive(pid) and any(executable.encode() in part for part in cmdline[:3])


def wait_until(
    what: str,
    ready: Callable[[], bool],
    *,
    timeout: float,
    procs: Sequence[Proc] = (),
    interval: float = 0.05,
) -> None:
    """Poll `ready` until true; fail early with the log of a child that died meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        if ready():
            return
        for proc in procs:
            if not proc.alive():
                raise TestbedError(
                    f"{proc.name} exited while waiting for {what}; log {proc.log}:\n"
                    + proc.log_tail()
                )
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.name} ({p.log}):\n{p.log_tail()}" for p in procs)
            raise TestbedError(f"timed out after {timeout:.0f}s waiting for {what}\n{tails}")
        time.sleep(interval)


def tcp_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0
