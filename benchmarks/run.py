"""Runs every benchmark and prints its figures (`make bench`). Each one asserts nothing:
the figures, and their ratios to baselines measured in the same run, are the result."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import drift_bench
import engine_bench
import http_abuse_bench
import peers_bench
import polling_bench
import validate_bench


def fleet(argv: list[str]) -> int:
    """The fleet simulation (fleet_bench.py) at its default size: a few minutes on 2 cores."""

    import fleet_bench

    return fleet_bench.main(argv)


BENCHMARKS: list[tuple[str, Callable[[list[str]], int]]] = [
    ("validate", validate_bench.main),
    ("engine", engine_bench.main),
    ("drift", drift_bench.main),
    ("peers", peers_bench.main),
    ("polling", polling_bench.main),
    ("http abuse", http_abuse_bench.main),
    ("fleet", fleet),
]


def main() -> int:
    failed = 0
    for name, bench in BENCHMARKS:
        print(f"== {name}", flush=True)
        failed += bench([]) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
