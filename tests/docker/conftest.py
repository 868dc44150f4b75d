"""A private Docker Engine for the tests that need one: one ``dockerd`` per session, in a temporary
directory, with no default bridge (containers use ``network_mode="none"`` or ``"host"``), stopped
at the end of the session together with everything it started.

The tests are skipped when Docker Engine is not installed, unless ``HODEI_REQUIRE_DOCKER=1``
(then they fail): ``scripts/install-system-deps.sh`` installs it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import docker
import pytest

from tests.docker_engine import DockerEngine, TestImages, build_test_images, dockerd_path
from tests.registry import LocalRegistry


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    if dockerd_path() is None:
        message = "dockerd is not installed (scripts/install-system-deps.sh installs docker.io)"
        if os.environ.get("HODEI_REQUIRE_DOCKER") == "1":
            pytest.fail(message + " and HODEI_REQUIRE_DOCKER=1")
        pytest.skip(message)
    engine = DockerEngine()
    try:
        engine.start()
        yield engine
    finally:
        engine.stop()


@pytest.fixture(scope="session")
def docker_client(docker_engine: DockerEngine) -> Iterator[docker.DockerClient]:
    with contextlib.closing(docker_engine.client()) as client:
        yield client


@pytest.fixture(scope="session")
def test_images(docker_client: docker.DockerClient) -> TestImages:
    return build_test_images(docker_client)


@pytest.fixture
def registry() -> Iterator[LocalRegistry]:
    """A read-only image registry on 127.0.0.1 for this test (see tests/registry.py)."""
    with LocalRegistry() as local_registry:
        yield local_registry
