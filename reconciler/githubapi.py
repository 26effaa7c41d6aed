"""A small GitHub REST client on `urllib.request`, with errors a user can act on.

It sends the token as `Authorization: Bearer`, never follows a link or a
redirect to another origin (the token would go with it), honours `Retry-After`
and `X-RateLimit-Remaining`/`X-RateLimit-Reset` by waiting (up to a bound), and
returns 304 Not Modified as a response, not an error, for conditional requests.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from reconciler import __version__, log
from reconciler.errors import ReconcilerError

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
# GitHub's advice when a secondary rate limit names no time: wait at least a minute.
SECONDARY_LIMIT_WAIT = 60.0
_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="([^"]+)"')


class GitHubError(ReconcilerError):
    """The GitHub API refused or failed a request; `status` is the HTTP code (0 if none)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class RateLimited(GitHubError):
    """A rate limit that asks for a longer wait than the client may spend."""

    def __init__(self, message: str, wait: float, status: int) -> None:
        super().__init__(message, status)
        self.wait = wait


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: Any

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def etag(self) -> str | None:
        return self.header("ETag")

    @property
    def links(self) -> dict[str, str]:
        return {rel: url for url, rel in _LINK.findall(self.header("Link") or "")}


@dataclass
class Client:
    api_url: str = DEFAULT_API_URL
    token: str | None = None
    timeout: float = 15.0
    max_wait: float = 900.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    _not_before: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        if _origin(self.api_url)[0] not in ("http", "https") or not _origin(self.api_url)[1]:
            raise GitHubError(f"API URL {self.api_url!r}: expected http(s)://host[/path]")

    def get(
        self, path: str, *, params: Mapping[str, str] | None = None, etag: str | None = None
    ) -> Response:
        url = self.url(path) + ("?" + urlencode(params) if params else "")
        return self.request("GET", url, etag=etag)

    def post(self, path: str, body: Mapping[str, Any]) -> Response:
        return self.request("POST", self.url(path), body=body)

    def url(self, path: str) -> str:
        """An API path, or a full URL (from a Link header) that must stay on the API's origin."""

        if "://" not in path:
            return self.api_url.rstrip("/") + "/" + path.lstrip("/")
        if _origin(path) != _origin(self.api_url):
            raise GitHubError(f"refusing to follow {path}: not on {self.api_url}")
        return path

    def request(
        self,
        method: str,
        url: str,
        *,
        body: Mapping[str, Any] | None = None,
        etag: str | None = None,
    ) -> Response:
        for _ in range(3):
            self._wait(self._not_before - self.clock(), "rate limit exhausted")
            try:
                response = self._send(method, url, body, etag)
            except RateLimited as limited:
                self._wait(limited.wait, str(limited), limited)
                continue
            self._remember_budget(response)
            return response
        raise GitHubError(f"{method} {self._path(url)}: still rate limited after waiting")

    def _wait(self, seconds: float, why: str, error: RateLimited | None = None) -> None:
        if seconds <= 0:
            return
        if seconds > self.max_wait:
            raise error or RateLimited(f"{why}; next request allowed in {seconds:.0f}s", seconds, 0)
        log.warning("github: waiting for the rate limit", seconds=round(seconds, 1), reason=why)
        self.sleep(seconds)

    def _remember_budget(self, response: Response) -> None:
        remaining = response.header("X-RateLimit-Remaining")
        reset = response.header("X-RateLimit-Reset")
        if remaining == "0" and reset and reset.isdigit():
            self._not_before = float(reset) + 1
        elif remaining is not None:
            self._not_before = 0.0

    def _send(
        self, method: str, url: str, body: Mapping[str, Any] | None, etag: str | None
    ) -> Response:
        # `url` is always on the API's origin, whose scheme __post_init__ checked.
        request = urllib.request.Request(url, method=method, headers=self._headers(etag, body))  # noqa: S310
        if body is not None:
            request.data = json.dumps(body).encode()
        try:
            with _OPENER.open(request, timeout=self.timeout) as raw:
                return _response(raw.status, raw.headers.items(), raw.read())
        except urllib.error.HTTPError as error:
            response = _response(error.code, error.headers.items(), error.read())
            if response.status == 304:
                return response
            raise self._error(method, url, response) from None
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise GitHubError(
                f"{method} {self._path(url)}: cannot reach {self.api_url}: {reason}"
            ) from None

    def _headers(self, etag: str | None, body: Mapping[str, Any] | None) -> dict[str, str]:
        headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": f"reconciler/{__version__}",
        }
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if etag:
            headers["If-None-Match"] = etag
        if body is not None:
            headers["Content-Type"] = "application/json"
        return headers

    def _error(self, method: str, url: str, response: Response) -> GitHubError:
        status = response.status
        message = _message(response.body)
        where = f"{method} {self._path(url)}: {status}"
        wait = self._rate_limit_wait(response)
        if wait is not None:
            return RateLimited(f"{where} rate limited ({message})", wait, status)
        hints = {
            401: "bad credentials: check the token",
            403: "forbidden: the token lacks a permission this endpoint needs",
            404: "not found: the repository or deployment does not exist, or the token cannot see it",
            422: "rejected as invalid",
        }
        hint = hints.get(status, "GitHub failed the request" if status >= 500 else "refused")
        text = f"{where} {hint} ({message})" if message else f"{where} {hint}"
        return GitHubError(text.replace(self.token or "\0", "***"), status)

    def _rate_limit_wait(self, response: Response) -> float | None:
        if response.status not in (403, 429):
            return None
        retry_after = response.header("Retry-After")
        if retry_after and retry_after.strip().isdigit():
            return float(retry_after)
        reset = response.header("X-RateLimit-Reset")
        if response.header("X-RateLimit-Remaining") == "0" and reset and reset.isdigit():
            return max(0.0, float(reset) - self.clock()) + 1
        if response.status == 429 or "rate limit" in _message(response.body).lower():
            return SECONDARY_LIMIT_WAIT
        return None

    def _path(self, url: str) -> str:
        return urlsplit(url).path


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect to another host would carry the Authorization header along.
    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        if _origin(newurl) != _origin(req.full_url):
            return None
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_SameOriginRedirects())


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _response(status: int, headers: Any, payload: bytes) -> Response:
    lowered = {key.lower(): value for key, value in headers}
    body: Any = None
    if payload:
        try:
            body = json.loads(payload)
        except ValueError:
            body = payload.decode("utf-8", errors="replace")
    return Response(status, lowered, body)


def _message(body: Any) -> str:
    if isinstance(body, dict):
        return str(body.get("message", ""))
    return str(body or "")[:200]
