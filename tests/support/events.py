"""GitHub `deployment` webhook deliveries, shaped as GitHub documents them, and a way to send them."""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request
import uuid
from typing import Any


def deployment_event(
    deployment_id: int,
    sha: str,
    environment: str,
    repository: str = "acme/api",
    task: str = "deploy",
    action: str = "created",
) -> dict[str, Any]:
    """The payload of a `deployment` event (webhook-deployment-created)."""

    owner, _, name = repository.partition("/")
    api = f"https://api.github.com/repos/{repository}"
    user = {
        "login": "octocat",
        "id": 1,
        "node_id": "MDQ6VXNlcjE=",
        "type": "User",
        "site_admin": False,
    }
    return {
        "action": action,
        "deployment": {
            "url": f"{api}/deployments/{deployment_id}",
            "id": deployment_id,
            "node_id": f"DE_kwDO{deployment_id}",
            "task": task,
            "original_environment": environment,
            "environment": environment,
            "description": None,
            "created_at": "2024-05-01T10:00:00Z",
            "updated_at": "2024-05-01T10:00:00Z",
            "statuses_url": f"{api}/deployments/{deployment_id}/statuses",
            "repository_url": api,
            "creator": user,
            "sha": sha,
            "ref": "main",
            "payload": {},
            "transient_environment": False,
            "production_environment": environment.startswith("prod"),
            "performed_via_github_app": None,
        },
        "repository": {
            "id": 1296269,
            "node_id": "MDEwOlJlcG9zaXRvcnkxMjk2MjY5",
            "name": name,
            "full_name": repository,
            "private": True,
            "owner": {**user, "login": owner, "type": "Organization"},
            "html_url": f"https://github.com/{repository}",
            "url": api,
            "default_branch": "main",
        },
        "sender": user,
        "workflow": None,
        "workflow_run": None,
    }


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def deliver(
    url: str,
    payload: Any,
    secret: bytes | None,
    *,
    event: str = "deployment",
    delivery: str | None = None,
    signature: str | None = None,
    raw: bytes | None = None,
    content_type: str = "application/json",
) -> tuple[int, dict[str, Any]]:
    """POST a delivery as GitHub does; returns (HTTP status, JSON answer)."""

    body = raw if raw is not None else json.dumps(payload).encode()
    headers = {
        "Content-Type": content_type,
        "User-Agent": "GitHub-Hookshot/5f7a1c2",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "292430182",
        "X-GitHub-Hook-Installation-Target-ID": "1296269",
        "X-GitHub-Hook-Installation-Target-Type": "repository",
    }
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    elif secret is not None:
        headers["X-Hub-Signature-256"] = sign(secret, body)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
