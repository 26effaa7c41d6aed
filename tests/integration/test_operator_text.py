"""What an operator reads after a failure, on the real testbed: the whole cause, the last error
of a held release, and never a Secret-sourced value, in any encoding, in any output.

The `hostile` test chart fails in every way helm and the API server print values back:
`required`, `fail` (with %q and b64enc), `toJson`, a values.schema.json pattern, and objects the
API server refuses (`Invalid value: "..."`, a refused data key).
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from engine_world import World, daemon, daemon_log, wait_for, wait_for_log

from tests.support.fakegithub import FakeGitHub

SECRET_VALUES: dict[str, Any] = {
    "password": 'p"w<&>\\x-Secret\\9',
    "pem": (
        "-----BEGIN TEST KEY-----\n"
        "MIIBOgIBAAJBAKj34GkxFhD90vcN\n"
        "LYLBXXwKrJ5sMqZQ2vHkP3ny8bWb\n"
        "-----END TEST KEY-----\n"
    ),
    "token": "tok-3f9a8b7c6d5e4f",
    "hosts": ["alpha-host-1.internal", "beta-host-2.internal"],
    "nested": [{"key": "nested-list-secret-77"}],
    "pin": "demo",  # short: masked where it is echoed, never inside `r-demo`
    "unicode": "pässwörd-ünï✓",
}
SCHEMA_SECRET = "schema-probe-secret-31"
MODES = {"r-demo": "required", "r-fail": "fail", "r-json": "json", "r-schema": "schema"}
MODES["r-invalid"] = "invalid"
POLICY = {"retries": 0, "retryBackoffSeconds": 1, "timeoutSeconds": 60}


def _scalars(tree: Any) -> list[str]:
    if isinstance(tree, dict):
        return [s for value in tree.values() for s in _scalars(value)]
    if isinstance(tree, list):
        return [s for item in tree for s in _scalars(item)]
    return [str(tree)]


def leaked_forms() -> dict[str, str]:
    """Each Secret-sourced value (and each line of one) in the encodings helm may print it in."""

    forms: dict[str, str] = {}
    for value in [*_scalars(SECRET_VALUES), SCHEMA_SECRET]:
        pieces = {value.strip(), *(line for line in value.splitlines() if len(line) >= 8)}
        if value == SECRET_VALUES["pin"]:
            pieces = {f"pin={value}", f'"pin":"{value}"'}
        for piece in pieces:
            forms[piece] = piece
            inner = json.dumps(piece)[1:-1]
            forms[f"json of {piece!r}"] = inner
            forms[f"unicode json of {piece!r}"] = json.dumps(piece, ensure_ascii=False)[1:-1]
            html = inner.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            forms[f"go json of {piece!r}"] = html
            forms[f"base64 of {piece!r}"] = base64.b64encode(piece.encode()).decode()
    return forms


def assert_no_secret(where: str, text: str) -> None:
    found = [name for name, form in leaked_forms().items() if form in text]
    assert not found, f"{where} shows Secret-sourced values: {found}\n{text[:3000]}"


def hostile_world(world: World, publish_chart: Any) -> str:
    repository = publish_chart("hostile", "0.1.0").rsplit("/", 1)[0]
    repo = world.repo
    repo.chart_repository = repository
    for release, mode in MODES.items():
        repo.project(f"p-{release}", world.namespace, chart="hostile")
        repo.release(
            world.installation, release, version="0.1.0", project=f"p-{release}",
            values={"mode": mode},
        )  # fmt: skip
    values_from = {"namespace": world.namespace, "secret": "hostile-secrets"}
    repo.installation(world.installation, policy=POLICY, values_from=values_from)
    secret_data = {
        "values.yaml": json.dumps(SECRET_VALUES),
        "r-schema.yaml": json.dumps({"schemaProbe": SCHEMA_SECRET, "schemaCount": "x"}),
    }
    world.testbed.admin.call(
        "POST",
        f"/api/v1/namespaces/{world.namespace}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "hostile-secrets", "namespace": world.namespace},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in secret_data.items()},
        },
    )
    return repo.commit("releases that echo their Secret values in their errors")


def assert_whole_causes(messages: dict[str, str]) -> None:
    """The details helm prints after its first line are there (masked), not only the first line."""

    assert "schemaProbe" in messages["r-schema"], messages["r-schema"]
    assert "schemaCount" in messages["r-schema"], "every schema error, not the first one"
    assert "probe" in messages["r-invalid"] or "labels" in messages["r-invalid"], messages[
        "r-invalid"
    ]
    assert "required: no .Values.absent" in messages["r-demo"]
    assert "pin=***" in messages["r-demo"], "a short Secret value is masked where echoed"
    assert "helm install r-demo" in messages["r-demo"], "and does not mask ordinary words"


def status_config_map(world: World) -> str:
    name = f"reconciler-status-{world.installation}"
    found = world.testbed.admin.call(
        "GET", f"/api/v1/namespaces/{world.namespace}/configmaps/{name}"
    )
    return json.dumps(found)


def events_text(world: World) -> str:
    found = world.testbed.admin.call("GET", f"/api/v1/namespaces/{world.namespace}/events")
    return json.dumps([item.get("message", "") for item in found.get("items", [])])


@pytest.mark.helm3
def test_a_hostile_chart_gets_no_secret_value_into_any_output(
    world: World, publish_chart: Any
) -> None:
    hostile_world(world, publish_chart)

    code, applied, stderr = world.apply()
    assert code == 1, stderr
    assert "outcomes" in applied, stderr
    outcomes = {o["release"]: o for o in applied["outcomes"]}
    assert {name: o["result"] for name, o in outcomes.items()} == dict.fromkeys(MODES, "failed")
    messages = {name: o["message"] for name, o in outcomes.items()}
    assert_no_secret("apply -o json", json.dumps(applied) + stderr)
    assert_whole_causes(messages)

    text = world.cli("apply", "--force-retry")
    assert text.returncode == 1
    assert "5 failed" in text.stdout
    assert_no_secret("apply", text.stdout + text.stderr)

    held = world.cli("apply", "-o", "json")
    reasons = {h["release"]: h["reason"] for h in json.loads(held.stdout)["held"]}
    assert set(reasons) == set(MODES)
    assert "last error:" in reasons["r-schema"]
    assert "schemaProbe" in reasons["r-schema"]
    assert_no_secret("held reasons", held.stdout + held.stderr)

    status_text = world.cli("status")
    status_json = world.cli("status", "-o", "json")
    rows = {r["release"]: r for r in json.loads(status_json.stdout)["releases"]}
    assert rows["r-schema"]["state"] == "held"
    assert "schemaProbe" in rows["r-schema"]["message"], "a held release keeps its last error"
    assert "schemaProbe" in status_text.stdout
    assert_no_secret("status", status_text.stdout + status_json.stdout)
    assert_no_secret("status ConfigMap", status_config_map(world))


def test_daemon_reports_carry_whole_masked_errors(world: World, publish_chart: Any) -> None:
    """JSON logs, Events, the notification webhook and GitHub statuses, from `reconciler run`."""

    from test_daemon import _Inbox

    first = hostile_world(world, publish_chart)
    inbox = _Inbox()
    url_file = world.workdir / "notify-url"
    url_file.write_text(inbox.url)
    github = FakeGitHub().start()
    token_file = world.workdir / "github-token"
    token_file.write_text(github.token)
    env = {
        "RECONCILER_GITHUB_TOKEN_FILE": str(token_file),
        "RECONCILER_GITHUB_API_URL": github.url,
    }
    try:
        with daemon(world, "--notify-url-file", str(url_file), name="h", extra_env=env):
            wait_for(lambda: inbox.messages, timeout=120)
            deployment = github.add_deployment("acme/json", first, world.installation)
            world.repo.release(
                world.installation, "r-json", version="0.1.0", project="p-r-json",
                values={"mode": "json", "attempt": 2},
            )  # fmt: skip
            world.repo.commit(
                f"p-r-json again\n\nDeployment-Id: {deployment['id']}\n"
                f"Deployment-Repository: acme/json\nProject: p-r-json\nRef: {first}\n"
                f"Installations: {world.installation}\n"
            )
            wait_for(lambda: len(github.statuses.get(deployment["id"], [])) >= 2, timeout=120)
            wait_for_log(daemon_log(world, "h"), "install failed", release="r-json")
            time.sleep(2)
    finally:
        inbox.server.shutdown()
        github.stop()
    statuses = github.statuses[deployment["id"]]
    assert [s["state"] for s in statuses] == ["in_progress", "failure"]
    description = statuses[-1]["description"]
    assert "failed in" in description
    assert '"***"' in description, f"the failure says why: {description}"
    assert_no_secret("GitHub statuses", json.dumps(statuses))
    notifications = json.dumps(inbox.messages)
    assert "schemaProbe" in notifications
    assert_no_secret("notifications", notifications)
    logs = daemon_log(world, "h").read_text()
    assert "schemaProbe" in logs
    assert_no_secret("JSON logs", logs)
    events = events_text(world)
    assert "schemaProbe" in events
    assert "Held" in json.dumps(
        world.testbed.admin.call("GET", f"/api/v1/namespaces/{world.namespace}/events")
    )
    assert_no_secret("Events", events)


ESCAPE = "\x1b[2J\x1b[H\x1b[32mall releases in sync\x1b[0m\x07"


@pytest.mark.helm3
def test_terminal_output_escapes_what_the_repo_and_helm_print(
    world: World, publish_chart: Any
) -> None:
    """plan, apply and status show escape sequences from values and helm errors, never obey
    them; a success says what happened; a skipped release is not counted as failed."""

    repository = publish_chart("hostile", "0.1.0").rsplit("/", 1)[0]
    repo = world.repo
    repo.project("ok", world.namespace)
    repo.release(world.installation, "ok", version="0.1.0")
    repo.project("base", world.namespace, values={"broken": True})
    repo.release(world.installation, "base", version="0.1.0")
    repo.project("top", world.namespace, depends_on=("base",))
    repo.release(world.installation, "top", version="0.1.0")
    repo.chart_repository = repository
    repo.project("esc", world.namespace, chart="hostile")
    echoed = {"mode": "fail", "password": "p", "pem": ESCAPE, "token": "t", "unicode": "u"}
    repo.release(world.installation, "esc", version="0.1.0", values=echoed)
    repo.installation(world.installation, policy=POLICY)
    repo.commit("one good, one broken, one waiting on it, one printing escapes")

    code, applied, stderr = world.apply()
    assert code == 1, stderr
    outcomes = {o["release"]: o for o in applied["outcomes"]}
    assert outcomes["ok"]["result"] == "succeeded"
    assert outcomes["ok"]["message"] == "installed app 0.1.0", "what happened, not why"
    assert outcomes["top"]["result"] == "skipped"
    assert "\x1b[2J" in outcomes["esc"]["message"], "JSON keeps the text as it is, escaped by JSON"

    text = world.cli("apply", "--force-retry")
    assert text.returncode == 1
    shown = text.stdout + text.stderr
    assert "0 succeeded, 2 failed, 1 skipped" in text.stdout
    assert "\x1b" not in shown
    assert "\x07" not in shown
    assert "\\e[2J\\e[H" in text.stdout, "the sequence is shown, not obeyed"

    status = world.cli("status")
    assert "\x1b" not in status.stdout + status.stderr
    assert "\\e[2J" in status.stdout

    repo.release(world.installation, "ok", version="0.1.0", values={ESCAPE: 1})
    repo.commit("a value key with escapes")
    plan = world.cli("plan")
    assert plan.returncode == 2, plan.stderr
    assert "\x1b" not in plan.stdout + plan.stderr
    assert "values changed: \\e[2J" in plan.stdout
