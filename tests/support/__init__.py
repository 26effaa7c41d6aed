"""Helpers shared by the promote and mirror tests: a real git server and a fake GitHub API."""
