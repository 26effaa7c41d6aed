"""A small local stand-in for the GitHub REST API, following its documented behaviour.

Endpoints: GET /repos/{owner}/{repo}/deployments (newest first, `per_page`/`page`,
filters `sha`, `ref`, `task`, `environment`, `Link` with rel next/prev/first/last, a strong
`ETag`, 304 for a matching `If-None-Match` that does not count against the rate limit),
POST /repos/{owner}/{repo}/deployments/{id}/statuses (201, 404, 422) and
GET of the same path (the statuses, newest first, paged like the deployments).
Every response carries X-RateLimit-Limit/Remaining/Used/Reset/Resource; an
exhausted budget answers 403 with X-RateLimit-Remaining: 0, and a forced
secondary limit answers 429 with Retry-After. Requests need a Bearer token.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

DOCS = "https://docs.github.com/rest"
STATES = {"error", "failure", "inactive", "in_progress", "queued", "pending", "success"}


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    status: int
    body: Any = None


@dataclass
class FakeGitHub:
    token: str = "ghp_test_token_0123456789"
    limit: int = 5000
    remaining: int = 5000
    reset_in: int = 3600
    retry_after_once: int | None = None  # next request gets 429 + Retry-After
    deployments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    statuses: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    next_id: int = 1000
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    # --- test controls ----------------------------------------------------------------

    def add_deployment(
        self, repository: str, sha: str, environment: str, task: str = "deploy", age: float = 0
    ) -> dict[str, Any]:
        with self.lock:
            self.next_id += 1
            created = datetime.now(UTC) - timedelta(seconds=age)
            owner, _, name = repository.partition("/")
            item = {
                "url": f"{self.url}/repos/{repository}/deployments/{self.next_id}",
                "id": self.next_id,
                "node_id": f"DE_{self.next_id}",
                "sha": sha,
                "ref": "main",
                "task": task,
                "payload": {},
                "original_environment": environment,
                "environment": environment,
                "description": None,
                "creator": {"login": "ci-bot", "id": 1, "type": "Bot"},
                "created_at": created.isoformat(timespec="seconds").replace("+00:00", "Z"),
                "updated_at": created.isoformat(timespec="seconds").replace("+00:00", "Z"),
                "statuses_url": f"{self.url}/repos/{repository}/deployments/{self.next_id}/statuses",
                "repository_url": f"{self.url}/repos/{owner}/{name}",
                "transient_environment": False,
                "production_environment": environment == "production",
            }
            self.deployments.setdefault(repository.lower(), []).append(item)
            return item

    def refill(self) -> None:
        with self.lock:
            self.remaining = self.limit

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def counted(self) -> int:
        """Requests that counted against the rate limit (everything but 304s)."""

        return sum(1 for r in self.requests if r.status != 304)

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> FakeGitHub:
        fake = self

        class Handler(_Handler):
            github = fake

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    github: FakeGitHub

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        status, headers, document = self._route(method, url.path, parse_qs(url.query), body)
        with self.github.lock:
            self.github.requests.append(
                Recorded(
                    method,
                    url.path,
                    parse_qs(url.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    status,
                    body,
                )
            )
        self._reply(status, headers, document)

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], body: Any
    ) -> tuple[int, dict[str, str], Any]:
        gh = self.github
        if self.headers.get("Authorization") != f"Bearer {gh.token}":
            return 401, {}, {"message": "Bad credentials", "documentation_url": DOCS}
        with gh.lock:
            if gh.retry_after_once is not None:
                wait, gh.retry_after_once = gh.retry_after_once, None
                return (
                    429,
                    {"Retry-After": str(wait)},
                    {
                        "message": "You have exceeded a secondary rate limit.",
                        "documentation_url": DOCS,
                    },
                )
            if gh.remaining <= 0:
                return (
                    403,
                    {},
                    {
                        "message": "API rate limit exceeded for user ID 1.",
                        "documentation_url": DOCS,
                    },
                )
        parts = path.strip("/").split("/")
        if (
            method == "GET"
            and len(parts) == 4
            and parts[0] == "repos"
            and parts[3] == "deployments"
        ):
            return self._list(f"{parts[1]}/{parts[2]}", query)
        if (
            method == "POST"
            and len(parts) == 6
            and parts[0] == "repos"
            and parts[3] == "deployments"
            and parts[5] == "statuses"
        ):
            return self._status(f"{parts[1]}/{parts[2]}", int(parts[4]), body)
        if (
            method == "GET"
            and len(parts) == 6
            and parts[0] == "repos"
            and parts[3] == "deployments"
            and parts[5] == "statuses"
            and parts[4].isdigit()
        ):
            return self._statuses(f"{parts[1]}/{parts[2]}", int(parts[4]), query)
        return 404, {}, {"message": "Not Found", "documentation_url": DOCS}

    def _list(
        self, repository: str, query: dict[str, list[str]]
    ) -> tuple[int, dict[str, str], Any]:
        gh = self.github
        with gh.lock:
            if repository.lower() not in gh.deployments:
                self._spend()
                return 404, {}, {"message": "Not Found", "documentation_url": DOCS}
            items = sorted(gh.deployments[repository.lower()], key=lambda d: -d["id"])
        for key in ("sha", "ref", "task", "environment"):
            if key in query:
                items = [d for d in items if d[key] == query[key][0]]
        return self._page(items, query, f"/repos/{repository}/deployments")

    def _statuses(
        self, repository: str, deployment_id: int, query: dict[str, list[str]]
    ) -> tuple[int, dict[str, str], Any]:
        gh = self.github
        with gh.lock:
            known = any(
                d["id"] == deployment_id for d in gh.deployments.get(repository.lower(), [])
            )
            items = list(reversed(gh.statuses.get(deployment_id, [])))
        if not known:
            self._spend()
            return 404, {}, {"message": "Not Found", "documentation_url": DOCS}
        return self._page(items, query, f"/repos/{repository}/deployments/{deployment_id}/statuses")

    def _page(
        self, items: list[dict[str, Any]], query: dict[str, list[str]], path: str
    ) -> tuple[int, dict[str, str], Any]:
        per_page = min(100, int(query.get("per_page", ["30"])[0]))
        page = int(query.get("page", ["1"])[0])
        chunk = items[(page - 1) * per_page : page * per_page]
        etag = (
            '"' + hashlib.sha256(json.dumps(chunk, sort_keys=True).encode()).hexdigest()[:32] + '"'
        )
        if self.headers.get("If-None-Match") == etag:
            return 304, {"ETag": etag}, None  # free: a 304 does not count
        self._spend()
        last = max(1, -(-len(items) // per_page))
        headers = {"ETag": etag}
        if last > 1:
            headers["Link"] = self._links(path, query, per_page, page, last)
        return 200, headers, chunk

    def _links(
        self, path: str, query: dict[str, list[str]], per_page: int, page: int, last: int
    ) -> str:
        kept = "".join(
            f"{k}={v[0]}&" for k, v in sorted(query.items()) if k not in ("page", "per_page")
        )
        base = f"{self.github.url}{path}?{kept}per_page={per_page}&page="
        rels = []
        if page < last:
            rels += [f'<{base}{page + 1}>; rel="next"', f'<{base}{last}>; rel="last"']
        if page > 1:
            rels += [f'<{base}1>; rel="first"', f'<{base}{page - 1}>; rel="prev"']
        return ", ".join(rels)

    def _status(
        self, repository: str, deployment_id: int, body: Any
    ) -> tuple[int, dict[str, str], Any]:
        gh = self.github
        self._spend()
        with gh.lock:
            known = any(
                d["id"] == deployment_id for d in gh.deployments.get(repository.lower(), [])
            )
            if not known:
                return 404, {}, {"message": "Not Found", "documentation_url": DOCS}
            if not isinstance(body, dict) or body.get("state") not in STATES:
                return (
                    422,
                    {},
                    {
                        "message": "Validation Failed",
                        "errors": [
                            {"resource": "DeploymentStatus", "field": "state", "code": "invalid"}
                        ],
                        "documentation_url": DOCS,
                    },
                )
            deployment = next(
                d for d in gh.deployments[repository.lower()] if d["id"] == deployment_id
            )
            now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
            status = {
                "id": len(gh.statuses.get(deployment_id, [])) + 1,
                "environment": deployment["environment"],
                "created_at": now,
                **body,
            }
            gh.statuses.setdefault(deployment_id, []).append(status)
        return 201, {}, status

    def _spend(self) -> None:
        with self.github.lock:
            self.github.remaining = max(0, self.github.remaining - 1)

    def _reply(self, status: int, headers: dict[str, str], document: Any) -> None:
        gh = self.github
        payload = json.dumps(document).encode() if document is not None else b""
        self.send_response(status)
        with gh.lock:
            rate = {
                "X-RateLimit-Limit": str(gh.limit),
                "X-RateLimit-Remaining": str(gh.remaining),
                "X-RateLimit-Used": str(gh.limit - gh.remaining),
                "X-RateLimit-Reset": str(int(time.time()) + gh.reset_in),
                "X-RateLimit-Resource": "core",
            }
        for key, value in (rate | headers).items():
            self.send_header(key, value)
        if payload:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        return None
