"""The session's Docker Engine is real: containers run, print and exit with their code."""

from __future__ import annotations

import docker

from tests.docker_engine import DockerEngine, TestImages


def test_engine_answers(docker_engine: DockerEngine, docker_client: docker.DockerClient) -> None:
    assert docker_engine.host.startswith("unix:///tmp/hd-")
    assert docker_client.ping()
    assert "bridge" not in {n.name for n in docker_client.networks.list()}


def test_busybox_output_and_exit_code(
    docker_client: docker.DockerClient, test_images: TestImages
) -> None:
    container = docker_client.containers.create(
        test_images.busybox, ["sh", "-c", "echo hi; exit 3"], network_mode="none"
    )
    try:
        container.start()
        assert container.wait(timeout=30)["StatusCode"] == 3
        assert container.logs() == b"hi\n"
    finally:
        container.remove(force=True)


def test_python_image(docker_client: docker.DockerClient, test_images: TestImages) -> None:
    output = docker_client.containers.run(
        test_images.python,
        ["python3", "-c", "import json, os, sys; print(6*7)"],
        network_mode="none",
        remove=True,
    )
    assert output == b"42\n"


def test_python_image_has_a_shell(
    docker_client: docker.DockerClient, test_images: TestImages
) -> None:
    output = docker_client.containers.run(
        test_images.python,
        ["sh", "-c", "python3 -c 'import sys; print(sys.version_info[0])' | cat; ls /tmp"],
        network_mode="none",
        remove=True,
    )
    assert output == b"3\n"
