"""Scratch folders a killed reconciler left behind are removed; a live process's are not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from reconciler import scratch


def folder(root: Path, kind: str, pid: int) -> Path:
    path = root / f"reconciler-{kind}-{pid}-abc123"
    path.mkdir()
    (path / "values.yaml").write_text("password: s3cret\n")
    return path


def finished_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_orphans_go_and_live_processes_keep_theirs(tmp_path: Path) -> None:
    dead = finished_pid()
    parent = os.getppid()  # alive for as long as this test runs
    gone = [folder(tmp_path, "values", dead), folder(tmp_path, "charts", dead)]
    earlier_self = folder(tmp_path, "repo", os.getpid())  # a restarted PID 1, say
    kept = [folder(tmp_path, "values", parent)]
    made = scratch.make("values")
    made_here = tmp_path / made.name
    made.rename(made_here)  # one this process made, moved under the swept root
    kept.append(made_here)
    unrelated = tmp_path / "reconciler-promote-xyz"
    unrelated.mkdir()
    elsewhere = tmp_path / "other-values-1-abc"
    elsewhere.mkdir()

    removed = scratch.sweep_orphans(tmp_path)

    assert sorted(removed) == sorted([*gone, earlier_self])
    assert not any(p.exists() for p in [*gone, earlier_self])
    assert all(p.exists() for p in [*kept, unrelated, elsewhere])


def test_a_symlink_named_like_a_scratch_folder_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.mkdir()
    (target / "keep").write_text("x")
    (tmp_path / f"reconciler-values-{finished_pid()}-abc").symlink_to(target)
    scratch.sweep_orphans(tmp_path)
    assert (target / "keep").exists()


def test_made_folders_carry_the_pid_and_are_private() -> None:
    path = scratch.make("charts")
    try:
        assert path.name.startswith(f"reconciler-charts-{os.getpid()}-")
        assert (path.stat().st_mode & 0o777) == 0o700
    finally:
        path.rmdir()


def test_a_folder_kept_for_the_process_goes_when_it_exits() -> None:
    code = "from reconciler import scratch; print(scratch.make('repo', until_exit=True))"
    made = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert made.startswith(str(Path(made).parent / "reconciler-repo-"))
    assert not Path(made).exists()
