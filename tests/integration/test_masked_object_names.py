"""An object named by a Secret-sourced value goes missing: no output names it unmasked
(drift lines, the health verdict, status and its ConfigMap)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from engine_world import World

pytestmark = pytest.mark.testbed
SECRET = "tok-9f8e7d6c5b4a"
TEMPLATE = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-{{ .Values.suffix }}
data: {a: b}
"""


def test_a_missing_object_named_by_a_secret_value_is_masked_everywhere(
    world: World, publish_chart: Any, tmp_path: Path
) -> None:
    root = tmp_path / "probe-named"
    (root / "templates").mkdir(parents=True)
    (root / "Chart.yaml").write_text("apiVersion: v2\nname: probe-named\nversion: 0.1.0\n")
    (root / "values.yaml").write_text("suffix: x\n")
    (root / "templates" / "cm.yaml").write_text(TEMPLATE)
    publish_chart(root, "0.1.0", helm=world.helm_name)
    ns = world.namespace
    world.repo.project("web", ns, chart="probe-named")
    world.repo.release(world.installation, "web", version="0.1.0")
    world.repo.installation(
        world.installation,
        policy={"timeoutSeconds": 20, "retries": 0, "drift": "warn"},
        values_from={"namespace": ns, "secret": "named-secrets"},
    )
    world.testbed.admin.call(
        "POST",
        f"/api/v1/namespaces/{ns}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "named-secrets"},
            "stringData": {"values.yaml": json.dumps({"suffix": SECRET})},
        },
    )
    world.repo.commit("web")
    code, _, stderr = world.apply()
    assert code == 0, stderr
    world.testbed.kubectl("delete", "configmap", f"web-{SECRET}", "-n", ns)
    shown = {}
    for args in (("plan", "--full"), ("apply", "--full"), ("status",), ("status", "-o", "json")):
        done = world.cli(*args)
        shown[" ".join(args)] = done.stdout + done.stderr
    leaks = [k for k, text in shown.items() if SECRET in text]
    assert not leaks, {k: shown[k][-800:] for k in leaks}
