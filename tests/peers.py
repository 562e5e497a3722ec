"""What the real-peer fixtures share: a free port, and skipping where a peer is missing."""

from __future__ import annotations

import os

import pytest

from stat_bot.web.server import free_port

__all__ = ["free_port", "require"]


def require(reason: str | None, peers: str) -> None:
    """Skip, loudly, a test whose real peer is not installed (`reason` says which and how to
    install it), except under CI, where a missing peer is a failure: `.ci/run` installs
    them all, so a skip there would hide a broken install step."""
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"the {peers} tests must run in CI: {reason}")
    pytest.skip(reason)
