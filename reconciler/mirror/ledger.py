"""What the mirror has already handled, kept in a small JSON file across restarts.

It is the fast path: the commit trailers in the environments repo remain the
authority (a promotion checks them before committing), so losing this file
costs git work, never a second commit for the same deployment.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from reconciler.errors import UsageError

MAX_DELIVERIES = 10_000
MAX_DEPLOYMENTS_PER_REPOSITORY = 2_000


class Ledger:
    def __init__(self, path: Path | None, data: dict[str, Any] | None = None) -> None:
        self.path = path
        self._data: dict[str, Any] = data or {"version": 1, "deliveries": [], "repositories": {}}
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path | None) -> Ledger:
        if path is None or not path.exists():
            return cls(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise UsageError(f"state file {path}: cannot read it ({error}); move it away") from None
        if not isinstance(data, dict) or data.get("version") != 1:
            raise UsageError(f"state file {path}: not a reconciler mirror state file")
        return cls(path, data)

    # --- webhook deliveries -----------------------------------------------------------

    def seen_delivery(self, guid: str) -> bool:
        with self._lock:
            return guid in self._data["deliveries"]

    def record_delivery(self, guid: str) -> None:
        with self._lock:
            deliveries: list[str] = self._data["deliveries"]
            if guid not in deliveries:
                deliveries.append(guid)
                del deliveries[:-MAX_DELIVERIES]
            self._save()

    # --- deployments ------------------------------------------------------------------

    def mirrored(self, repository: str, deployment_id: int) -> bool:
        with self._lock:
            return deployment_id in self._repo(repository).get("mirrored", [])

    def record_deployment(self, repository: str, deployment_id: int) -> None:
        with self._lock:
            entry = self._repo(repository)
            mirrored: list[int] = entry.setdefault("mirrored", [])
            if deployment_id not in mirrored:
                mirrored.append(deployment_id)
                del mirrored[:-MAX_DEPLOYMENTS_PER_REPOSITORY]
            entry["last_id"] = max(int(entry.get("last_id", 0)), deployment_id)
            self._save()

    def last_id(self, repository: str) -> int:
        with self._lock:
            return int(self._repo(repository).get("last_id", 0))

    # --- poller -----------------------------------------------------------------------

    def etag(self, repository: str) -> str | None:
        with self._lock:
            value = self._repo(repository).get("etag")
            return str(value) if value else None

    def set_etag(self, repository: str, etag: str | None) -> None:
        with self._lock:
            self._repo(repository)["etag"] = etag
            self._save()

    def since(self, repository: str, default: str) -> str:
        """The creation time before which a repository's deployments are never mirrored.

        Fixed the first time the repository is polled, so adding a repository to the
        mapping later does not replay its older deployments.
        """

        with self._lock:
            entry = self._repo(repository)
            if not entry.get("since"):
                entry["since"] = default
                self._save()
            return str(entry["since"])

    # --- storage ----------------------------------------------------------------------

    def _repo(self, repository: str) -> dict[str, Any]:
        repositories: dict[str, dict[str, Any]] = self._data["repositories"]
        return repositories.setdefault(repository.lower(), {})

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Write-then-rename: a crash leaves the old file or the new one, never half of one.
        fd, tmp = tempfile.mkstemp(prefix=self.path.name, dir=self.path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(self._data, handle, indent=1, sort_keys=True)
        os.replace(tmp, self.path)
