"""Git smart HTTP: `git http-backend` (CGI) behind a small threaded HTTP server.

Repositories under `<root>/private/` need HTTP basic auth with the server's token as
password (any user name), like a token over HTTPS on a real git host; the rest is open.
Push is enabled for every repository.

Run as `python -m testbed.gitserver --root DIR --port-file FILE [--port N] [--token T]`.
"""

from __future__ import annotations

import argparse
import base64
import hmac
import os
import subprocess
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

PRIVATE_PREFIX = "/private/"


def _http_backend() -> str:
    exec_path = subprocess.run(
        ["git", "--exec-path"], check=True, capture_output=True, text=True
    ).stdout.strip()
    return str(Path(exec_path) / "git-http-backend")


class GitHandler(BaseHTTPRequestHandler):
    # HTTP/1.1 with Content-Length lets git keep one connection per fetch, as real hosts do.
    protocol_version = "HTTP/1.1"
    server: GitHTTPServer

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        url = urlsplit(self.path)
        user = ""
        if url.path.startswith(PRIVATE_PREFIX):
            user = self._authenticated_user()
            if not user:
                self._reply(HTTPStatus.UNAUTHORIZED, {"WWW-Authenticate": 'Basic realm="git"'}, b"")
                return
        body = self._request_body()
        result = subprocess.run(
            [self.server.backend],
            input=body,
            capture_output=True,
            env=self._cgi_env(url.path, url.query, len(body), user),
            check=False,
        )
        if result.stderr:
            sys.stderr.write(result.stderr.decode(errors="replace"))
        status, headers, payload = _parse_cgi(result.stdout)
        self._reply(status, headers, payload)

    def _authenticated_user(self) -> str:
        header = self.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return ""
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return ""
        if not hmac.compare_digest(password.encode(), self.server.token.encode()):
            return ""
        return user or "token"

    def _request_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            # git streams large pushes (over http.postBuffer) chunked, without a length.
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _cgi_env(self, path: str, query: str, length: int, user: str) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/"),
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(length),
            "REMOTE_ADDR": self.client_address[0],
            # http-backend refuses anonymous pushes unless http.receivepack is true.
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "http.receivepack",
            "GIT_CONFIG_VALUE_0": "true",
        }
        if user:
            env["REMOTE_USER"] = user
        if encoding := self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = encoding
        if protocol := self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = protocol
        return env

    def _reply(self, status: int, headers: dict[str, str], payload: bytes) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        # One line per request: the log doubles as the record of git server cost per poll.
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def _parse_cgi(output: bytes) -> tuple[int, dict[str, str], bytes]:
    for separator in (b"\r\n\r\n", b"\n\n"):
        head, found, payload = output.partition(separator)
        if found:
            break
    else:
        return HTTPStatus.BAD_GATEWAY, {"Content-Type": "text/plain"}, b"bad CGI output\n"
    status = HTTPStatus.OK.value
    headers: dict[str, str] = {}
    for line in head.decode("latin-1").splitlines():
        key, _, value = line.partition(":")
        if key.lower() == "status":
            status = int(value.strip().split()[0])
        elif key:
            headers[key.strip()] = value.strip()
    return status, headers, payload


class GitHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, root: Path, token: str) -> None:
        super().__init__(("127.0.0.1", port), GitHandler)
        self.root = root
        self.token = token
        self.backend = _http_backend()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m testbed.gitserver")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--token", default=os.environ.get("TESTBED_GIT_TOKEN", ""))
    args = parser.parse_args(argv)
    server = GitHTTPServer(args.port, args.root.resolve(), args.token)
    # Written last and atomically: its presence means the socket already accepts.
    tmp = args.port_file.with_suffix(".tmp")
    tmp.write_text(str(server.server_address[1]))
    tmp.replace(args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
