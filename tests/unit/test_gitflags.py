"""What --ssh-key and --known-hosts accept before ssh ever sees them."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.commands.gitflags import file_for_ssh
from reconciler.errors import UsageError


def test_an_existing_file_is_taken_as_given(tmp_path: Path) -> None:
    key = tmp_path / "deploy key"
    key.write_text("key")
    assert file_for_ssh(str(key), "--ssh-key") == str(key)
    assert file_for_ssh(None, "--ssh-key") is None


@pytest.mark.parametrize("name", ["tab\there", "${HOME}x"])
def test_paths_ssh_would_split_or_expand_are_refused(tmp_path: Path, name: str) -> None:
    key = tmp_path / name
    key.write_text("key")
    with pytest.raises(UsageError, match=r"--ssh-key .*ssh cannot take a path"):
        file_for_ssh(str(key), "--ssh-key")


def test_a_pasted_key_is_refused_without_being_echoed() -> None:
    pasted = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE\n-----END"
    with pytest.raises(UsageError) as refused:
        file_for_ssh(pasted, "--ssh-key")
    assert "b3BlbnNzaC1rZXktdjE" not in str(refused.value)


def test_a_missing_file_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"--known-hosts .*No such file"):
        file_for_ssh(str(tmp_path / "absent"), "--known-hosts")
