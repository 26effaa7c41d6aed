"""Scratch folders in the temp dir, named after the process that made them.

A reconciler killed outright (OOM, SIGKILL) leaves its values files, which may hold
Secret values, and its chart archives behind; in a Pod they stay on the /tmp
emptyDir across container restarts. `reconciler run` removes them when it starts.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from pathlib import Path

KINDS = ("values", "charts", "kube", "repo")
_NAME = re.compile(rf"reconciler-({'|'.join(KINDS)})-(\d+)-\w+")


_made: set[str] = set()  # names of the folders this process made


def make(kind: str, *, until_exit: bool = False) -> Path:
    """A new private folder for `kind` (one of KINDS) in the temp dir; `until_exit` removes
    it when the process ends (a clone or a kubeconfig kept for the process's life)."""

    path = Path(tempfile.mkdtemp(prefix=f"reconciler-{kind}-{os.getpid()}-"))
    _made.add(path.name)
    if until_exit:
        atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def sweep_orphans(root: Path | None = None) -> list[Path]:
    """Remove the scratch folders of processes that are gone.

    A folder with our own PID that this process did not make comes from an earlier
    process that had the same PID, as PID 1 of a restarted container does.
    """

    removed = []
    for path in Path(root or tempfile.gettempdir()).glob("reconciler-*"):
        match = _NAME.fullmatch(path.name)
        if not match or not path.is_dir() or path.is_symlink():
            continue
        pid = int(match.group(2))
        ours = pid == os.getpid()
        if (ours and path.name in _made) or (not ours and _alive(pid)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True
