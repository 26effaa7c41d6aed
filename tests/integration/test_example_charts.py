"""The example charts lint clean with the pinned helm binaries, and every release of the
example environments renders with its layered values (project < installation < release)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from reconciler.repo import load_environments
from testbed.binaries import find_binaries
from tests.support.envfiles import EXAMPLES

CHARTS = sorted(p for p in (EXAMPLES / "charts").iterdir() if (p / "Chart.yaml").is_file())


def helm(name: str) -> Path:
    return find_binaries().helm[name]


@pytest.mark.parametrize("binary", ["helm4", "helm3"])
@pytest.mark.parametrize("chart", CHARTS, ids=[c.name for c in CHARTS])
def test_chart_lints_clean(binary: str, chart: Path) -> None:
    done = subprocess.run(
        [str(helm(binary)), "lint", "--strict", str(chart)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[WARNING]" not in done.stdout
    assert "[ERROR]" not in done.stdout


def test_every_example_release_renders(tmp_path: Path) -> None:
    env = load_environments(EXAMPLES)
    rendered = 0
    for installation in env.installations.values():
        for release in installation.releases:
            project = env.projects[release.project]
            layers = []
            for layer, values in (
                ("project", project.values),
                ("installation", installation.values),
                ("release", release.values),
            ):
                path = tmp_path / f"{installation.name}-{release.name}-{layer}.yaml"
                path.write_text(yaml.safe_dump(values))
                layers += ["-f", str(path)]
            done = subprocess.run(
                [
                    str(helm("helm4")),
                    "template",
                    release.name,
                    str(EXAMPLES / "charts" / project.chart.name),
                    "--namespace",
                    release.namespace or project.namespace,
                    *layers,
                ],
                capture_output=True,
                text=True,
                check=False,
                timeout=120,
            )
            assert done.returncode == 0, f"{release.path}: {done.stderr}"
            kinds = [d["kind"] for d in yaml.safe_load_all(done.stdout) if d]
            assert "ConfigMap" in kinds
            rendered += 1
    assert rendered == 69
