"""Flags and wiring shared by `plan`, `apply`, `run` and `status`."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler import scratch
from reconciler.commands.gitflags import (
    add_credential_flags,
    credentials_from_args,
    refuse_secrets_in_argv,
)
from reconciler.errors import UsageError
from reconciler.excerpt import one_line
from reconciler.execute import Outcome
from reconciler.health import ReleaseHealth
from reconciler.helm import Helm
from reconciler.kube import Kube, in_cluster, in_cluster_kubeconfig
from reconciler.plan import Drifted, Key, Options, Plan
from reconciler.source import GitSource, LocalSource, open_source
from reconciler.terminal import for_terminal

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
MAX_LABEL = 63


def add_source_flags(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    group = parser.add_argument_group("environments repo")
    group.add_argument(
        "--repo",
        default=env("RECONCILER_REPO", "."),
        help="git URL (https://, ssh://, file://) to clone, or a local folder read in place "
        "(env RECONCILER_REPO; default: .)",
    )
    group.add_argument(
        "--branch",
        default=env("RECONCILER_BRANCH", "main"),
        help="branch to follow (default: main)",
    )
    group.add_argument(
        "--workdir", type=Path, help="where to keep the clone (default: a temporary folder)"
    )
    add_credential_flags(group, "file holding an HTTPS token for the git server")


def add_cluster_flags(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    group = parser.add_argument_group("cluster")
    group.add_argument(
        "-i",
        "--installation",
        default=env("RECONCILER_INSTALLATION"),
        help="the installation this cluster runs (env RECONCILER_INSTALLATION)",
    )
    group.add_argument(
        "--kubeconfig",
        default=env("KUBECONFIG"),
        help="kubeconfig file (env KUBECONFIG; default: in-cluster service account, else ~/.kube/config)",
    )
    group.add_argument("--context", help="kubeconfig context")
    group.add_argument(
        "--helm", default=env("RECONCILER_HELM", "helm"), help="helm binary (3.13+ or 4.x)"
    )
    group.add_argument(
        "--plain-http",
        action="store_true",
        default=env("RECONCILER_PLAIN_HTTP", "") in ("1", "true"),
        help="talk plain HTTP to OCI registries (loopback test registries only)",
    )
    group.add_argument(
        "--namespaces",
        default=env("RECONCILER_NAMESPACES", ""),
        metavar="A,B,...",
        help="namespaced mode: read release history in these namespaces only, hold releases "
        "declared elsewhere, prune nowhere else, create no namespace (env RECONCILER_NAMESPACES; "
        "default: the whole cluster)",
    )
    group.add_argument(
        "--lockdown",
        action="store_true",
        default=env("RECONCILER_LOCKDOWN", "") in ("1", "true"),
        help="every release runs helm as a ServiceAccount of its namespace (the project's or "
        "installation's serviceAccount); one without is held, whatever policy.lockdown says; "
        "creates no namespace (env RECONCILER_LOCKDOWN; the deploy chart's rbac.lockdown sets it)",
    )
    group.add_argument(
        "--full",
        action="store_true",
        help="a full resync: decode every declared release to find changes made by hand, "
        "compare its live objects with its manifest (live drift, per policy.drift) and read "
        "every deployed release's workload health",
    )
    group.add_argument(
        "--force-retry", action="store_true", help="retry releases that failed at this same state"
    )
    group.add_argument(
        "--force-prune", action="store_true", help="prune even beyond policy.maxPruneShare"
    )
    group.add_argument(
        "--adopt",
        action="append",
        default=[],
        metavar="[NAMESPACE/]RELEASE",
        help="take over this existing release although the reconciler cannot prove it "
        "installed it (by hand, another installation, or before revisions were signed); "
        "repeatable, '*' for every declared release. Without it such a release is held. "
        "The release field `adopt: true` does the same from git",
    )


def add_output_flag(
    parser: argparse.ArgumentParser, choices: Sequence[str] = ("text", "json")
) -> None:
    parser.add_argument(
        "-o", "--output", choices=list(choices), default="text", help="output format"
    )


@dataclass(frozen=True)
class Wiring:
    installation: str
    source: GitSource | LocalSource
    kube: Kube
    helm_binary: str
    kubeconfig: str | None
    plain_http: bool
    options: Options

    @property
    def source_label(self) -> str:
        """The repo for logs: a URL without credentials, or a folder."""

        if isinstance(self.source, GitSource):
            return self.source.credentials.scrub(self.source.url)
        return str(self.source.path)

    def helm(self) -> Helm:
        return Helm.detect(self.helm_binary, self.kubeconfig, self.plain_http)


def wiring(args: argparse.Namespace) -> Wiring:
    if not args.installation:
        raise UsageError("--installation is required (or set RECONCILER_INSTALLATION)")
    options = Options(
        force_retry=args.force_retry,
        force_prune=args.force_prune,
        namespaces=parse_namespaces(args.namespaces),
        adopt=frozenset(getattr(args, "adopt", None) or ()),
        lockdown=bool(getattr(args, "lockdown", False)),
    )
    refuse_secrets_in_argv(args.repo)
    if len(args.installation) > MAX_LABEL or not DNS_LABEL.fullmatch(args.installation):
        raise UsageError(
            f"--installation {args.installation!r} is not an installation name"
            " (lower-case letters, digits and '-', at most 63 characters)"
        )
    source = open_source(
        args.repo, args.branch, args.workdir, credentials_from_args(args), args.installation
    )
    if isinstance(source, LocalSource) and not source.path.is_dir():
        raise UsageError(f"--repo {args.repo}: no such folder (give a git URL or a folder)")
    kube, kubeconfig = connect(args.kubeconfig, args.context)
    return Wiring(args.installation, source, kube, args.helm, kubeconfig, args.plain_http, options)


def parse_namespaces(text: str) -> frozenset[str]:
    """`a,b,c` as a set of namespace names; empty means the whole cluster."""

    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if len(name) > MAX_LABEL or not DNS_LABEL.fullmatch(name):
            raise UsageError(
                f"--namespaces: {name!r} is not a namespace name "
                "(a DNS-1123 label: lower-case letters, digits and '-', at most 63 characters)"
            )
    return frozenset(names)


def connect(kubeconfig: str | None, context: str | None) -> tuple[Kube, str | None]:
    """The API client, and the kubeconfig helm should use (made from the service account in a Pod)."""

    if not kubeconfig and in_cluster():
        kubeconfig = in_cluster_kubeconfig(scratch.make("kube", until_exit=True))
    return Kube.connect(kubeconfig, context), kubeconfig


def plan_rows(the_plan: Plan) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for action in the_plan.actions:
        desired = action.desired
        rows.append(
            {
                "release": action.release,
                "namespace": action.namespace,
                "chart": f"{desired.chart.name} {desired.chart.version}" if desired else "",
                "action": action.kind,
                "reason": action.reason,
                # Whom helm runs as (None: the reconciler itself); JSON only.
                "service_account": action.service_account,
            }
        )
    for hold in the_plan.held:
        rows.append(
            {
                "release": hold.release,
                "namespace": hold.namespace,
                "chart": "",
                "action": "hold",
                "reason": hold.reason,
            }
        )
    return rows


def plan_json(the_plan: Plan) -> dict[str, Any]:
    return {
        "installation": the_plan.installation,
        "revision": the_plan.revision,
        "changes_pending": the_plan.changes_pending,
        "actions": [r for r in plan_rows(the_plan) if r["action"] != "hold"],
        "held": [
            {"release": h.release, "namespace": h.namespace, "reason": h.reason}
            for h in the_plan.held
        ],
        "in_sync": [{"namespace": ns, "release": name} for ns, name in the_plan.in_sync],
        "drifted": [drifted_json(d) for d in the_plan.drifted],
    }


def drifted_json(drifted: Drifted) -> dict[str, Any]:
    """A release's live drift: objects and JSON pointer paths, never values."""

    return {
        "release": drifted.release,
        "namespace": drifted.namespace,
        "policy": drifted.policy,
        "objects": [
            {"object": o.ref, "missing": o.missing, "paths": list(o.paths)}
            for o in drifted.drift.objects
        ],
    }


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    return {
        "release": outcome.release,
        "namespace": outcome.namespace,
        "action": outcome.kind,
        "result": outcome.result,
        "message": outcome.message,
        # What a step that worked left wrong (CRDs that differ from the chart's), or "".
        "warning": outcome.warning,
        "seconds": round(outcome.seconds, 3),
    }


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A plain aligned table; the last column is left unpadded. Cells come from the repo,
    the cluster and helm: each is put on one line and escaped for the terminal."""

    if not rows:
        return ""
    cells = [{c: for_terminal(one_line(str(r.get(c, "")))) for c in columns} for r in rows]
    widths = {c: max(len(c), *(len(r[c]) for r in cells)) for c in columns}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip()]
    for row in cells:
        lines.append("  ".join(row[c].ljust(widths[c]) for c in columns).rstrip())
    return "\n".join(lines)


def print_plan(the_plan: Plan) -> None:
    rows = plan_rows(the_plan)
    head = for_terminal(
        f"installation {the_plan.installation} at {the_plan.revision[:12] or '(unknown)'}"
    )
    print(
        f"{head}: {len(the_plan.actions)} action(s), {len(the_plan.held)} held, {len(the_plan.in_sync)} in sync"
    )
    if rows:
        print(table(rows, ["release", "namespace", "action", "chart", "reason"]))
    if the_plan.drifted:
        print("live drift (objects and fields that differ from the deployed manifest):")
    for drifted in the_plan.drifted:
        print(for_terminal(f"  {drifted.namespace}/{drifted.release} (drift: {drifted.policy}):"))
        for obj in drifted.drift.objects:
            detail = "missing" if obj.missing else ", ".join(obj.paths)
            print("    " + for_terminal(one_line(f"{obj.ref}: {detail}")))


def health_json(health: Mapping[Key, ReleaseHealth]) -> list[dict[str, Any]]:
    return [
        {"namespace": key[0], "release": key[1], **verdict.as_json()}
        for key, verdict in sorted(health.items())
    ]


def print_health(health: Mapping[Key, ReleaseHealth]) -> None:
    """One line per release that is not Healthy, naming its unready objects."""

    for (namespace, release), verdict in sorted(health.items()):
        if not verdict.healthy:
            print(for_terminal(f"health {namespace}/{release}: {verdict.summary()}"))


def dump_json(document: Any) -> None:
    json.dump(document, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")
