"""Credentials in repo URLs: taken out for git's environment, scrubbed from every message."""

from __future__ import annotations

import pytest

from reconciler.commands.gitflags import refuse_secrets_in_argv
from reconciler.errors import UsageError
from reconciler.source import Credentials


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("fatal: https://bob:p@ss@w0rd@git.example/envs.git not found", "ss@w0rd"),
        ("fatal: https://git.example/envs.git?access_token=ghp_abc123 not found", "ghp_abc123"),
        ("fatal: https://git.example/envs.git?x=1&private_token=glpat-9 gone", "glpat-9"),
        ("fatal: https://x-access-token:ghp_zz@git.example/e.git", "ghp_zz"),
    ],
)
def test_every_form_of_a_url_credential_is_scrubbed(text: str, secret: str) -> None:
    assert secret not in Credentials().scrub(text)
    assert "git.example" in Credentials().scrub(text)


def test_a_password_with_at_signs_moves_to_the_environment() -> None:
    url, credentials = Credentials().without_url_secrets(
        "https://bob:p%40ss@w0rd@git.example/e.git"
    )
    assert url == "https://git.example/e.git"
    assert (credentials.url_user, credentials.url_password) == ("bob", "p@ss@w0rd")
    header = credentials.environment()["GIT_CONFIG_VALUE_0"]
    assert header.startswith("Authorization: Basic ")
    assert "p@ss" not in header
    assert credentials.scrub("bad password p%40ss%40w0rd / p@ss@w0rd") == "bad password *** / ***"


def test_a_token_as_the_user_name_moves_to_the_environment() -> None:
    token = "ghp_0123456789abcdefghijklmnop"
    url, credentials = Credentials().without_url_secrets(f"https://{token}@github.com/a/e.git")
    assert url == "https://github.com/a/e.git"
    assert credentials.environment()["GIT_CONFIG_VALUE_0"].startswith("Authorization: Basic ")
    assert credentials.scrub(f"denied for {token}") == "denied for ***"


def test_a_query_string_token_is_refused() -> None:
    with pytest.raises(UsageError, match="--token-file") as refused:
        Credentials().without_url_secrets("https://git.example/e.git?access_token=ghp_abc")
    assert "ghp_abc" not in str(refused.value)


def test_ssh_urls_keep_their_user() -> None:
    url, credentials = Credentials().without_url_secrets("ssh://git@git.example/e.git")
    assert url == "ssh://git@git.example/e.git"
    assert credentials == Credentials()


def test_a_url_with_a_password_on_the_command_line_is_refused() -> None:
    url = "https://bob:hunter22@git.example/e.git"
    with pytest.raises(UsageError) as refused:
        refuse_secrets_in_argv(url, ["plan", "--repo", url])
    assert "hunter22" not in str(refused.value)
    refuse_secrets_in_argv(url, ["plan"])  # from RECONCILER_REPO: fine
