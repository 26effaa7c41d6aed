"""Chart versions: SemVer 2, and the templates that turn a commit SHA into one."""

from __future__ import annotations

import re

from reconciler.model import REF_PLACEHOLDER, render_version

# semver.org's own expression; schema/release.schema.json carries the same pattern.
SEMVER = re.compile(
    r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(-((0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)(\.(0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(\+([0-9a-zA-Z-]+(\.[0-9a-zA-Z-]+)*))?$(?!\n)"
)
MIN_REF_CHARS = 7
# A rendered version is valid for every SHA once it is for these: an identifier made only
# of digits may not start with 0 (first SHA), and major.minor.patch take no letters (second).
WORST_CASE_REFS = (
    "0123456789012345678901234567890123456789",
    "abcdefabcdefabcdefabcdefabcdefabcdefabcd",
)
# OCI tags allow at most 128 characters.
MAX_VERSION_CHARS = 128


def is_semver(version: str) -> bool:
    return SEMVER.match(version) is not None


def template_problems(template: str) -> list[str]:
    """Why a versionTemplate cannot produce a valid chart version for every commit, if it can't."""

    placeholders = list(REF_PLACEHOLDER.finditer(template))
    if not placeholders:
        return [
            f'"{template}" has no {{ref}} placeholder, so every commit would get the same chart'
            " version; write e.g. 1.0.0-g{ref}"
        ]
    problems = []
    for match in placeholders:
        length = match.group(1)
        if length is not None and not MIN_REF_CHARS <= int(length) <= 40:
            problems.append(
                f"{match.group(0)} must take {MIN_REF_CHARS} to 40 characters of the SHA"
                " (fewer would let two commits share a version)"
            )
    leftover = REF_PLACEHOLDER.sub("", template)
    if "{" in leftover or "}" in leftover:
        problems.append(
            f'"{template}" has a brace that is not a placeholder; only {{ref}} and {{ref:N}} exist'
        )
    if problems:
        return problems
    for ref in WORST_CASE_REFS:
        version = render_version(template, ref)
        if not is_semver(version) or len(version) > MAX_VERSION_CHARS:
            return [
                f'"{template}" gives "{version}" for commit {ref[:12]}..., which is not a valid'
                " SemVer 2 chart version (a prerelease made only of digits may not start with 0);"
                " keep a letter next to the SHA, e.g. 1.0.0-g{ref}"
            ]
    return []
