"""Commit message trailers that record what a promotion did.

`git log` and `git interpret-trailers` read them, and so do the mirror (to
never mirror one GitHub Deployment twice) and the status reporter (to know
which Deployment a converged commit answers).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

PROJECT = "Project"
REF = "Ref"
INSTALLATIONS = "Installations"
DEPLOYMENT_ID = "Deployment-Id"
DEPLOYMENT_REPOSITORY = "Deployment-Repository"

_TRAILER = re.compile(r"^([A-Za-z0-9][A-Za-z0-9-]*):\s*(.*?)\s*$")


@dataclass(frozen=True)
class Promotion:
    """What one promotion commit declares."""

    project: str
    ref: str
    installations: tuple[str, ...]
    deployment_id: int | None = None
    deployment_repository: str | None = None

    def trailers(self) -> list[tuple[str, str]]:
        pairs = [
            (PROJECT, self.project),
            (REF, self.ref),
            (INSTALLATIONS, ", ".join(self.installations)),
        ]
        if self.deployment_id is not None:
            pairs.append((DEPLOYMENT_ID, str(self.deployment_id)))
        if self.deployment_repository:
            pairs.append((DEPLOYMENT_REPOSITORY, self.deployment_repository))
        return pairs


def commit_message(promotion: Promotion, releases: Sequence[str]) -> str:
    """Subject, a body naming each changed release file, and the trailers."""

    where = _where(promotion.installations)
    subject = f"promote {promotion.project} to {promotion.ref[:12]} in {where}"
    body = "\n".join(f"- {path}" for path in releases)
    trailers = "\n".join(f"{key}: {value}" for key, value in promotion.trailers())
    return f"{subject}\n\n{body}\n\n{trailers}\n" if body else f"{subject}\n\n{trailers}\n"


def _where(installations: Sequence[str]) -> str:
    if len(installations) <= 3:
        return ", ".join(installations)
    return f"{len(installations)} installations"


def parse(message: str) -> dict[str, str]:
    """The trailers of a commit message: the `Key: value` lines of its last paragraph."""

    paragraphs = [p for p in message.strip().split("\n\n") if p.strip()]
    if len(paragraphs) < 2:
        return {}
    found: dict[str, str] = {}
    for line in paragraphs[-1].splitlines():
        match = _TRAILER.match(line)
        if not match:
            return {}
        found[match.group(1)] = match.group(2)
    return found


def promotion_of(message: str) -> Promotion | None:
    """The promotion a commit message records, or None for any other commit."""

    found = parse(message)
    if PROJECT not in found or REF not in found:
        return None
    installations = tuple(i.strip() for i in found.get(INSTALLATIONS, "").split(",") if i.strip())
    raw_id = found.get(DEPLOYMENT_ID, "")
    return Promotion(
        project=found[PROJECT],
        ref=found[REF],
        installations=installations,
        deployment_id=int(raw_id) if raw_id.isdigit() else None,
        deployment_repository=found.get(DEPLOYMENT_REPOSITORY) or None,
    )
