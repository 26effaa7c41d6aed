"""The one subprocess wrapper for git and helm.

A failure raises `CommandError` showing the command, exit code and stderr.
On timeout the child's process group gets SIGTERM first and SIGKILL only after
`terminate_timeout` seconds: helm marks a release failed on SIGTERM but leaves it
stuck in `pending-*` when killed outright.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from reconciler.errors import CommandError

DEFAULT_TERMINATE_TIMEOUT = 10.0
CANCEL_POLL = 0.2


class CommandTimeout(CommandError):
    """The command ran past its timeout and was stopped; `killed` if SIGTERM was not enough."""

    def __init__(self, argv: list[str], timeout: float, stderr: str, *, killed: bool) -> None:
        self.timeout = timeout
        self.killed = killed
        how = "SIGTERM, then SIGKILL" if killed else "SIGTERM"
        super().__init__(argv, -1, f"{stderr}\ntimed out after {timeout:g}s; stopped with {how}")


@dataclass(frozen=True)
class _Outcome:
    returncode: int
    stdout: bytes
    stderr: bytes


def run(
    argv: Sequence[str],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    input: str | bytes | None = None,
    terminate_timeout: float = DEFAULT_TERMINATE_TIMEOUT,
    check: bool = True,
    cancel: threading.Event | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `argv` and return its output as text (undecodable bytes replaced).

    Setting `cancel` stops the child the same careful way as a timeout does.
    """

    done = _run_bytes(argv, cwd, env, timeout, input, terminate_timeout, check, cancel)
    return subprocess.CompletedProcess(
        list(argv), done.returncode, _text(done.stdout), _text(done.stderr)
    )


def run_bytes(
    argv: Sequence[str],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    input: str | bytes | None = None,
    terminate_timeout: float = DEFAULT_TERMINATE_TIMEOUT,
    check: bool = True,
    cancel: threading.Event | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Like `run`, for output that must stay bytes (file contents from `git cat-file`)."""

    done = _run_bytes(argv, cwd, env, timeout, input, terminate_timeout, check, cancel)
    return subprocess.CompletedProcess(list(argv), done.returncode, done.stdout, done.stderr)


def _run_bytes(
    argv: Sequence[str],
    cwd: str | os.PathLike[str] | None,
    env: Mapping[str, str] | None,
    timeout: float | None,
    input_: str | bytes | None,
    terminate_timeout: float,
    check: bool,
    cancel: threading.Event | None = None,
) -> _Outcome:
    args = [str(a) for a in argv]
    data = input_.encode() if isinstance(input_, str) else input_
    outcome = _communicate(args, cwd, env, timeout, data, terminate_timeout, cancel)
    if check and outcome.returncode != 0:
        raise CommandError(args, outcome.returncode, _text(outcome.stderr))
    return outcome


def _communicate(
    args: list[str],
    cwd: str | os.PathLike[str] | None,
    env: Mapping[str, str] | None,
    timeout: float | None,
    data: bytes | None,
    terminate_timeout: float,
    cancel: threading.Event | None = None,
) -> _Outcome:
    try:
        # Its own process group, so that stopping it also stops its children (ssh, plugins).
        child = subprocess.Popen(
            args,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            process_group=0,
        )
    except OSError as error:
        raise CommandError(args, 127, f"cannot start {args[0]}: {error.strerror}") from None
    try:
        stdout, stderr = _wait(child, data, timeout, cancel)
    except subprocess.TimeoutExpired:
        stderr, killed = _stop(child, terminate_timeout)
        if cancel is not None and cancel.is_set():
            raise CommandError(args, -1, f"{_text(stderr)}\ncancelled (shutting down)") from None
        raise CommandTimeout(args, timeout or 0.0, _text(stderr), killed=killed) from None
    except BaseException:
        # Interrupted (Ctrl-C, daemon shutdown): the child is in its own group and
        # would not see the terminal's SIGINT, so stop it the same careful way.
        _stop(child, terminate_timeout)
        raise
    return _Outcome(child.returncode, stdout, stderr)


def _wait(
    child: subprocess.Popen[bytes],
    data: bytes | None,
    timeout: float | None,
    cancel: threading.Event | None,
) -> tuple[bytes, bytes]:
    """communicate(), waking up now and then to notice `cancel` (raises TimeoutExpired then)."""

    if cancel is None:
        return child.communicate(data, timeout=timeout)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        step = CANCEL_POLL if deadline is None else min(CANCEL_POLL, deadline - time.monotonic())
        try:
            return child.communicate(data, timeout=max(step, 0.0))
        except subprocess.TimeoutExpired:
            data = None  # already written by the first call
            if cancel.is_set() or (deadline is not None and time.monotonic() >= deadline):
                raise


def _stop(child: subprocess.Popen[bytes], grace: float) -> tuple[bytes, bool]:
    """SIGTERM the child's group, wait `grace` seconds, then SIGKILL; returns (stderr, killed)."""

    _signal_group(child, signal.SIGTERM)
    try:
        _, stderr = child.communicate(timeout=grace)
        return stderr or b"", False
    except subprocess.TimeoutExpired:
        _signal_group(child, signal.SIGKILL)
        _, stderr = child.communicate()
        return stderr or b"", True


def _signal_group(child: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signum)


def _text(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", errors="replace")
