"""The subprocess wrapper, with real child processes."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from reconciler.errors import CommandError
from reconciler.proc import CommandTimeout, run, run_bytes


def test_returns_text_output() -> None:
    done = run(["sh", "-c", "echo out; echo err >&2"])
    assert (done.returncode, done.stdout, done.stderr) == (0, "out\n", "err\n")


def test_passes_input_cwd_and_env(tmp_path: Path) -> None:
    done = run(
        ["sh", "-c", 'cat; pwd; echo "$GREETING"'],
        cwd=tmp_path,
        env={"GREETING": "hi", "PATH": "/usr/bin:/bin"},
        input="from stdin\n",
    )
    assert done.stdout == f"from stdin\n{tmp_path}\nhi\n"


def test_bytes_stay_bytes() -> None:
    done = run_bytes(["sh", "-c", r"printf '\377\000ok'"])
    assert done.stdout == b"\xff\x00ok"


def test_failure_shows_command_exit_code_and_stderr() -> None:
    with pytest.raises(CommandError) as caught:
        run(["sh", "-c", "echo first >&2; echo 'fatal: no such ref' >&2; exit 3"])
    error = caught.value
    assert error.returncode == 3
    assert error.argv[0] == "sh"
    assert "exited 3" in error.message
    assert "fatal: no such ref" in error.message
    assert "fatal: no such ref" in error.stderr


def test_check_false_returns_the_failure() -> None:
    assert run(["sh", "-c", "exit 4"], check=False).returncode == 4


def test_missing_executable_is_a_command_error() -> None:
    with pytest.raises(CommandError, match="cannot start"):
        run(["/nonexistent/definitely-not-here"])


# A timeout cannot wait for the child to be ready, so the timeouts below leave a
# loaded machine ample time to start the shell and install its trap before SIGTERM.


def test_timeout_sends_sigterm_first() -> None:
    # The child notes the SIGTERM on stderr and exits: helm gets the same chance to
    # mark its release failed instead of leaving it pending.
    script = (
        "trap 'echo got-SIGTERM >&2; exit 143' TERM; echo started >&2; while :; do sleep 0.05; done"
    )
    started = time.monotonic()
    with pytest.raises(CommandTimeout) as caught:
        run(["sh", "-c", script], timeout=2, terminate_timeout=30)
    elapsed = time.monotonic() - started
    error = caught.value
    assert "got-SIGTERM" in error.stderr
    assert "started" in error.stderr
    assert error.killed is False
    assert 2 <= elapsed < 15, "SIGTERM sufficed; no wait for the kill grace"
    assert "timed out after 2s" in error.message


def test_timeout_kills_after_grace_when_sigterm_is_ignored() -> None:
    script = "trap '' TERM; echo ignoring >&2; while :; do sleep 0.05; done"
    started = time.monotonic()
    with pytest.raises(CommandTimeout) as caught:
        run(["sh", "-c", script], timeout=2, terminate_timeout=0.7)
    elapsed = time.monotonic() - started
    assert caught.value.killed is True
    assert "ignoring" in caught.value.stderr
    assert 2 + 0.7 <= elapsed < 10, "killed after the 0.7 s grace, not the default 10 s"
    assert "SIGTERM, then SIGKILL" in caught.value.message


def test_timeout_stops_grandchildren_too(tmp_path: Path) -> None:
    marker = tmp_path / "grandchild-alive"
    script = f"(sleep 1.5; touch {marker}) & wait"
    with pytest.raises(CommandTimeout):
        run(["sh", "-c", script], timeout=0.3, terminate_timeout=2)
    time.sleep(1.7)
    assert not marker.exists()


def test_python_child_sees_sigterm() -> None:
    code = (
        "import signal, sys, time\n"
        "def on_term(*_):\n"
        "    sys.stderr.write('clean exit\\n')\n"
        "    sys.exit(1)\n"
        "signal.signal(signal.SIGTERM, on_term)\n"
        "sys.stderr.write('ready\\n'); sys.stderr.flush()\n"
        "time.sleep(30)\n"
    )
    with pytest.raises(CommandTimeout) as caught:
        run([sys.executable, "-c", code], timeout=5.0, terminate_timeout=10)
    assert "clean exit" in caught.value.stderr
    assert not caught.value.killed


def test_cancel_stops_the_child_with_sigterm(tmp_path: Path) -> None:
    import threading

    cancel = threading.Event()
    ready = tmp_path / "trap-installed"
    script = (
        f"trap 'echo got-SIGTERM >&2; exit 143' TERM; touch '{ready}'; while :; do sleep 0.05; done"
    )

    def cancel_once_the_trap_is_installed() -> None:
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        cancel.set()

    threading.Thread(target=cancel_once_the_trap_is_installed, daemon=True).start()
    with pytest.raises(CommandError) as caught:
        run(["sh", "-c", script], timeout=60, cancel=cancel)
    assert "got-SIGTERM" in caught.value.stderr
    assert "cancelled (shutting down)" in caught.value.message
    assert not isinstance(caught.value, CommandTimeout)
