"""`reconciler promote --after KEY=VALUE [--wave-size N]`: promote only on reported health.

Each run decides from the environments repo and GitHub as they are now and does at most one
step: refuse (exit 3 while installations are in progress or have not reported, 4 when one
failed), or push the next wave, or report that every wave is declared and healthy. CI runs
it again until it exits 0 with nothing left to do.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler import gates
from reconciler.commands import githubflags, pushing
from reconciler.errors import UsageError
from reconciler.githubapi import Client
from reconciler.loader import load_environments
from reconciler.model import Environments
from reconciler.promote import PromoteError, Request, Result, select_installations

EXIT_WAITING = 3  # gate installations in progress or silent: run again later
EXIT_FAILED = 4  # a gate installation reported failure: retrying will not open it
_LISTED: tuple[tuple[gates.Verdict, str], ...] = (
    ("failed", "failed"),
    ("in-progress", "in progress"),
    ("missing", "missing"),
)


def add_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("promotion gates")
    group.add_argument(
        "--after",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="promote only when every installation with these labels reports --ref deployed and "
        "healthy (repeatable or comma-separated; all must match)",
    )
    group.add_argument(
        "--wave-size",
        type=int,
        metavar="N",
        help="promote to N of the selected installations at a time (by name), the next N only "
        "once the previous ones report --ref healthy",
    )
    group.add_argument(
        "--github-repo",
        metavar="OWNER/REPO",
        help="the project's repository, whose Deployment statuses the reconcilers post "
        "(default: --deployment-repo, else env GITHUB_REPOSITORY)",
    )
    githubflags.add_status_reader_flags(group)


def requested(args: argparse.Namespace) -> bool:
    return bool(args.after) or args.wave_size is not None


@dataclass(frozen=True)
class Step:
    """What one gated run did: `status` is promoted, done, waiting or failed."""

    status: str
    wave: int
    waves: int
    waiting_on: str = ""
    gate: gates.Gate | None = None
    result: Result | None = None


def run(args: argparse.Namespace, request: Request) -> int:
    selector = pushing.parse_labels(args.after, "--after")
    if args.wave_size is not None and args.wave_size < 1:
        raise UsageError("--wave-size must be at least 1")
    client = _client(args)
    repository = (
        args.github_repo or request.deployment_repository or os.environ.get("GITHUB_REPOSITORY")
    )
    if not repository:
        raise UsageError("--after/--wave-size need --github-repo OWNER/REPO (or GITHUB_REPOSITORY)")
    with tempfile.TemporaryDirectory(prefix="reconciler-promote-") as workdir:
        promoter = pushing.promoter_from_args(args, Path(workdir), depth=1)
        promoter.clone.sync()
        env = load_environments(promoter.clone.path)
        targets = select_installations(env, request)
        after = _after(env, selector)
        reports = gates.read_reports(client, repository, request.ref)
        step = decide(env, request, targets, after, reports, args.wave_size)
        if step.status == "promote":
            wave = gates.waves(targets, args.wave_size)[step.wave - 1]
            result = promoter.promote(_for(request, wave))
            step = Step("promoted", step.wave, step.waves, result=result)
    _print(args.output, request, step, after)
    return {"waiting": EXIT_WAITING, "failed": EXIT_FAILED}.get(step.status, 0)


def decide(
    env: Environments,
    request: Request,
    targets: tuple[str, ...],
    after: tuple[str, ...],
    reports: Mapping[str, gates.Report],
    wave_size: int | None,
) -> Step:
    """The next step, from the repo and the reports alone (pure)."""

    slices = gates.waves(targets, wave_size)
    if after:
        gate = gates.evaluate(after, reports)
        if not gate.open:
            return _refused(gate, 1, len(slices), "--after")
    for number, wave in enumerate(slices, start=1):
        if not _declared(env, wave, request):
            return Step("promote", number, len(slices))
        gate = gates.evaluate(wave, reports)
        if not gate.open and number < len(slices):
            return _refused(gate, number + 1, len(slices), f"wave {number}")
    return Step("done", len(slices), len(slices))


def _refused(gate: gates.Gate, wave: int, waves: int, waiting_on: str) -> Step:
    return Step("failed" if gate.failed else "waiting", wave, waves, waiting_on, gate)


def _declared(env: Environments, wave: tuple[str, ...], request: Request) -> bool:
    """Every release of the project in each installation of the wave is at the ref, except
    pinned ones, which promote leaves where they are."""

    for name in wave:
        releases = [r for r in env.installations[name].releases if r.project == request.project]
        if not releases or any(r.ref != request.ref for r in releases if not r.pinned):
            return False
    return True


def _after(env: Environments, selector: Mapping[str, str]) -> tuple[str, ...]:
    if not selector:
        return ()
    matched = tuple(
        sorted(
            name
            for name, inst in env.installations.items()
            if all(inst.labels.get(k) == v for k, v in selector.items())
        )
    )
    if not matched:
        shown = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        raise PromoteError(f"--after {shown} matches no installation; a gate on none would pass")
    return matched


def _for(request: Request, wave: tuple[str, ...]) -> Request:
    return dataclasses.replace(request, installations=wave, selector={})


def _client(args: argparse.Namespace) -> Client:
    client = githubflags.status_reader(args)
    if client is None:
        raise UsageError(
            "--after/--wave-size read Deployment statuses: give --github-token-file"
            " (or RECONCILER_GITHUB_TOKEN_FILE)"
        )
    return client


def step_json(request: Request, step: Step, after: tuple[str, ...]) -> dict[str, Any]:
    document: dict[str, Any] = {
        "status": step.status,
        "project": request.project,
        "ref": request.ref,
        "after": list(after),
        "wave": step.wave,
        "waves": step.waves,
    }
    if step.gate is not None:
        document["waiting_on"] = step.waiting_on
        document["installations"] = step.gate.as_dict()
    if step.result is not None:
        document["commit"] = step.result.commit
        document["installations"] = list(step.result.installations)
        document["changes"] = [c.as_dict() for c in step.result.changes]
    return document


def _print(output: str, request: Request, step: Step, after: tuple[str, ...]) -> None:
    if output == "json":
        pushing.dump_json(step_json(request, step, after))
        return
    short = request.ref[:12]
    of = f"wave {step.wave} of {step.waves}"
    if step.status == "done":
        print(f"{request.project} at {short}: every wave is declared; nothing to promote")
    elif step.status == "promoted" and step.result is not None:
        where = ", ".join(step.result.installations)
        commit = step.result.commit or "nothing to commit"
        print(f"promoted {request.project} to {short}, {of}: {where} ({commit})")
    elif step.gate is not None:
        verb = "refused" if step.status == "failed" else "waiting"
        print(
            f"{verb}: {step.waiting_on} has not reported {request.project} at {short} healthy;"
            f" {of} not promoted",
            file=sys.stderr,
        )
        for key, label in _LISTED:
            names = step.gate.named(key)
            if names:
                print(f"  {label:12} {', '.join(names)}", file=sys.stderr)
