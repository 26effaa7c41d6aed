"""Git over SSH: an asyncssh server that runs the real `git upload-pack` and
`git receive-pack` on the repositories the smart-HTTP server serves (the same root).

Like a deploy key on a git host: user `git`, public-key auth with the one authorized
key and nothing else, and no shell: a session may only run `git-upload-pack '<repo>'`
or `git-receive-pack '<repo>'` for a repository under the root. OpenSSH's `sshd` is
not needed (nor always installed); the client side is the real `ssh`.

Run as `python -m testbed.sshserver --root DIR --host-key FILE --authorized-key FILE
--port-file FILE [--port N]`. `write_keys` makes the key files.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import asyncssh

GIT_USER = "git"
# What git runs on the remote side, and the `git` subcommand that does it.
GIT_COMMANDS = {"git-upload-pack": "upload-pack", "git-receive-pack": "receive-pack"}
_CHUNK = 64 * 1024


class Refused(Exception):
    """A session asked for something this server does not do; the message says what."""


def _log(message: str) -> None:
    # One line per event: the log doubles as the record of who asked for what.
    print(f"ssh: {message}", file=sys.stderr, flush=True)


# ----- keys -----------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyFiles:
    """The server's host key and the one client key it accepts (OpenSSH formats)."""

    folder: Path

    @property
    def host_key(self) -> Path:
        return self.folder / "host_ed25519"

    @property
    def host_public_key(self) -> Path:
        return self.folder / "host_ed25519.pub"

    @property
    def client_key(self) -> Path:
        return self.folder / "client_ed25519"

    @property
    def client_public_key(self) -> Path:
        return self.folder / "client_ed25519.pub"

    @property
    def known_hosts(self) -> Path:
        return self.folder / "known_hosts"


def write_keys(folder: Path) -> KeyFiles:
    """A fresh host key and client key in `folder` (private keys readable by the owner only)."""
    keys = KeyFiles(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for private, public, comment in (
        (keys.host_key, keys.host_public_key, "testbed git host"),
        (keys.client_key, keys.client_public_key, "testbed git client"),
    ):
        key = asyncssh.generate_private_key("ssh-ed25519", comment=comment)
        _write_private(private, key.export_private_key())
        public.write_bytes(key.export_public_key())
    return keys


def _write_private(path: Path, data: bytes) -> None:
    # Created 0600, never briefly readable by others: ssh refuses a key that is.
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def known_hosts_line(host_public_key: Path, port: int) -> str:
    """The known_hosts entry for the server on 127.0.0.1:`port` (`[host]:port` form)."""
    algorithm, blob = host_public_key.read_text().split()[:2]
    return f"[127.0.0.1]:{port} {algorithm} {blob}\n"


# ----- what a session may run -----------------------------------------------------------


def git_argv(command: str | None, root: Path) -> list[str]:
    """The git command line for what the client asked to run; raises Refused otherwise."""
    try:
        words = shlex.split(command or "")
    except ValueError:
        words = []
    if len(words) != 2 or words[0] not in GIT_COMMANDS:
        allowed = " or ".join(f"{name} '<repo>'" for name in GIT_COMMANDS)
        raise Refused(f"only {allowed} may run here, not {command!r}")
    return ["git", GIT_COMMANDS[words[0]], str(repository(root, words[1]))]


def repository(root: Path, requested: str) -> Path:
    """The bare repository `requested` names under `root` (which must be resolved)."""
    # ssh://host/x.git asks for "/x.git", host:x.git for "x.git": both under the root.
    path = (root / requested.lstrip("/")).resolve()
    if path == root or not path.is_relative_to(root) or not (path / "HEAD").is_file():
        raise Refused(f"no repository {requested!r}")
    return path


# ----- the server -----------------------------------------------------------------------


class DeployKeyAuth(asyncssh.SSHServer):
    """Public-key auth for user `git` with the authorized key; every other way is refused."""

    def __init__(self, authorized: asyncssh.SSHKey) -> None:
        self._authorized = authorized

    def begin_auth(self, username: str) -> bool:
        return True  # authentication is always required

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        accepted = username == GIT_USER and key.public_data == self._authorized.public_data
        if not accepted:
            _log(f"refused key {key.get_fingerprint()} for user {username!r}")
        return accepted


async def serve_git(process: asyncssh.SSHServerProcess[bytes], root: Path) -> None:
    """Run the one git command a session may run, wired to the channel; exit with its status."""
    try:
        argv = git_argv(process.command, root)
    except Refused as refused:
        _log(f"refused {process.command!r}: {refused}")
        process.stderr.write(f"testbed ssh: {refused}\n".encode())
        process.exit(1)
        return
    status = await _run_git(process, argv)
    _log(f"{process.command}: exit {status}")
    process.exit(status)


async def _run_git(process: asyncssh.SSHServerProcess[bytes], argv: list[str]) -> int:
    git = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_git_env(process.env),
    )
    if not (git.stdin and git.stdout and git.stderr):
        raise RuntimeError("git started without pipes")
    # The client may never close its side once git is done, so stdin is not waited for.
    feeding = asyncio.create_task(_feed(process.stdin, git.stdin))
    try:
        await asyncio.gather(_drain(git.stdout, process.stdout), _drain(git.stderr, process.stderr))
        status = await git.wait()
    finally:
        feeding.cancel()
        if git.returncode is None:  # the client went away mid-transfer
            git.kill()
            await git.wait()
    return status if status >= 0 else 128 - status


def _git_env(client_env: Mapping[str, str]) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    # git's client sends GIT_PROTOCOL (SendEnv) to ask for protocol v2, as over HTTP.
    if protocol := client_env.get("GIT_PROTOCOL"):
        env["GIT_PROTOCOL"] = protocol
    return env


async def _feed(source: asyncssh.SSHReader[bytes], target: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while chunk := await source.read(_CHUNK):
            target.write(chunk)
            await target.drain()
        target.close()


async def _drain(source: asyncio.StreamReader, target: asyncssh.SSHWriter[bytes]) -> None:
    while chunk := await source.read(_CHUNK):
        target.write(chunk)
        await target.drain()


async def serve(root: Path, port: int, keys: tuple[Path, Path], port_file: Path) -> None:
    host_key, authorized_key = keys
    authorized = asyncssh.read_public_key(authorized_key)

    async def session(process: asyncssh.SSHServerProcess[bytes]) -> None:
        await serve_git(process, root)

    acceptor = await asyncssh.create_server(
        lambda: DeployKeyAuth(authorized),
        "127.0.0.1",
        port,
        server_host_keys=[str(host_key)],
        process_factory=session,
        encoding=None,
        password_auth=False,
        kbdint_auth=False,
        allow_pty=False,
        agent_forwarding=False,
        x11_forwarding=False,
    )
    # Written last and atomically: its presence means the socket already accepts.
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(str(acceptor.get_port()))
    tmp.replace(port_file)
    async with acceptor:
        await asyncio.Event().wait()  # serve until the testbed kills the process


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m testbed.sshserver")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--host-key", type=Path, required=True)
    parser.add_argument("--authorized-key", type=Path, required=True)
    args = parser.parse_args(argv)
    keys = (args.host_key, args.authorized_key)
    asyncio.run(serve(args.root.resolve(), args.port, keys, args.port_file))


if __name__ == "__main__":
    main()
