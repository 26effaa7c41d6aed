"""`--namespaces` / RECONCILER_NAMESPACES: namespaced mode's list, checked before anything connects."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.commands.common import parse_namespaces
from reconciler.errors import UsageError
from reconciler.main import main


def test_a_comma_list_becomes_a_set_and_empty_means_the_whole_cluster() -> None:
    assert parse_namespaces("apps, team-b,apps,") == frozenset({"apps", "team-b"})
    assert parse_namespaces("") == frozenset()
    assert parse_namespaces(" , ") == frozenset()


@pytest.mark.parametrize("bad", ["Apps", "team_b", "-apps", "apps-", "a.b", "x" * 64, "a\nb"])
def test_a_name_that_is_no_dns_label_is_a_usage_error_naming_it(bad: str) -> None:
    with pytest.raises(UsageError) as raised:
        parse_namespaces(f"apps,{bad}")
    message = str(raised.value)
    assert repr(bad) in message
    assert "\n" not in message


@pytest.mark.parametrize("command", ["plan", "apply", "run"])
def test_every_observing_command_rejects_a_bad_list_from_the_environment(
    command: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("RECONCILER_NAMESPACES", "apps,Team_B")
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")
    assert main([command, "-i", "prod", "--repo", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == (
        "error: --namespaces: 'Team_B' is not a namespace name (a DNS-1123 label: "
        "lower-case letters, digits and '-', at most 63 characters)\n"
    )
