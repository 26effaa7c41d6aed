"""The image's promises, read from the Dockerfile: pinned inputs, non-root, nothing to build."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.dockerfile import DOCKERFILE, ROOT, arg_defaults, copy_sources, parse


def _hadolint() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    assert found, "hadolint is missing: install the dev extras (pip install -e '.[dev]')"
    return found


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [_hadolint(), str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_image_is_a_pinned_slim_python() -> None:
    global_args, stages = parse()
    base = global_args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", base)
    assert all(stage.base == "${PYTHON_IMAGE}" for stage in stages)


def test_helm_is_pinned_with_its_published_checksums() -> None:
    _, stages = parse()
    helm = next(s for s in stages if s.name == "helm")
    pins = arg_defaults(helm)
    assert re.fullmatch(r"v\d+\.\d+\.\d+", pins["HELM_VERSION"])
    for arch in ("AMD64", "ARM64"):
        assert re.fullmatch(r"[0-9a-f]{64}", pins[f"HELM_SHA256_{arch}"])
    script = helm.last("RUN")
    assert "https://get.helm.sh/" in script
    assert "helm-${HELM_VERSION}-linux-${TARGETARCH}.tar.gz" in script
    assert "sha256sum --check" in script
    assert 'if [ -z "${sum}" ]' in script  # an unpinned checksum fails the build


def test_final_stage_runs_reconciler_as_a_numeric_non_root_user() -> None:
    _, stages = parse()
    final = stages[-1]
    user = final.last("USER").replace("${UID}", arg_defaults(final)["UID"])
    uid, _, gid = user.partition(":")
    assert uid.isdigit()
    assert int(uid) != 0
    assert gid.isdigit()
    assert final.exec_form("ENTRYPOINT") == ["reconciler"]
    assert final.exec_form("CMD") == ["run"]


def test_final_stage_installs_no_build_tools_and_copies_only_built_artifacts() -> None:
    _, stages = parse()
    final = stages[-1]
    installed = " ".join(final.all("RUN"))
    for tool in ("gcc", "build-essential", "make", "curl", "wget"):
        assert not re.search(rf"\b{tool}\b", installed), tool
    assert {"git", "openssh-client"} <= set(installed.split())
    assert copy_sources(final) == []  # everything comes from the build and helm stages


def test_everything_writable_lives_under_tmp() -> None:
    _, stages = parse()
    env = " ".join(stages[-1].all("ENV"))
    for variable in ("HOME", "TMPDIR", "HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        assert re.search(rf"\b{variable}=/tmp(/|\s|$)", env), variable


def test_build_context_allows_exactly_what_the_build_copies() -> None:
    _, stages = parse()
    build = next(s for s in stages if s.name == "build")
    allowed = {
        line.strip("!/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    assert set(copy_sources(build)) == allowed
