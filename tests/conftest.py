"""Shared fixtures: every async test runs on both anyio backends."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from .redis_fixture import redis_cluster, skip_without_redis

settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile("dev", deadline=None, print_blob=True)
settings.register_profile(
    "soak",
    deadline=None,
    max_examples=2000,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def redis_cluster_nodes() -> Iterator[list[tuple[str, int]]]:
    """A three-master Redis Cluster shared by the session's tests (about 2 s to form)."""
    skip_without_redis()
    with redis_cluster(3) as nodes:
        yield nodes
