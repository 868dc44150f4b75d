"""The test registry (tests/registry.py) serves an engine's image over loopback HTTP: the engine
pulls it from there and runs it, and a missing tag fails the way a real registry makes it fail."""

from __future__ import annotations

import contextlib
import hashlib
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

import docker
import docker.errors
import pytest

from tests.docker_engine import TestImages
from tests.registry import (
    IMAGE_CONFIG,
    LAYER_TAR,
    LAYER_TAR_GZIP,
    MANIFEST_V2,
    LocalRegistry,
    RegistryRequest,
)

NAME = "hodei/pulled"


def _remove_image(client: docker.DockerClient, reference: str, force: bool = False) -> None:
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.remove(reference, force=force)


@pytest.fixture
def cleanup(docker_client: docker.DockerClient) -> Iterator[list[str]]:
    """References (names or ids) to remove from the engine at the end of the test, last first."""
    references: list[str] = []
    yield references
    for reference in reversed(references):
        _remove_image(docker_client, reference, force=True)


def _publish(
    client: docker.DockerClient,
    registry: LocalRegistry,
    source: str,
    cleanup: list[str],
    *,
    compress: bool = False,
    labels: dict[str, str] | None = None,
) -> str:
    """Publish source as NAME:1 and make sure the engine does not have that reference."""
    reference = registry.publish_from_engine(
        client, source, NAME, "1", compress=compress, labels=labels
    )
    cleanup.append(reference)
    _remove_image(client, reference)
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(reference)
    return reference


def test_engine_pulls_and_runs_a_published_image(
    docker_client: docker.DockerClient,
    test_images: TestImages,
    registry: LocalRegistry,
    cleanup: list[str],
) -> None:
    reference = _publish(docker_client, registry, test_images.busybox, cleanup)
    assert reference == f"{registry.address}/{NAME}:1"
    assert registry.address.startswith("127.0.0.1:")

    image = docker_client.images.pull(f"{registry.address}/{NAME}", tag="1")

    assert reference in image.tags
    assert f"{registry.address}/{NAME}@{registry.digest(NAME, '1')}" in image.attrs["RepoDigests"]
    assert registry.pulls(NAME) == 1
    # The same config is the same image: the engine had it, so it fetched no blob.
    assert image.id == docker_client.images.get(test_images.busybox).id
    output = docker_client.containers.run(
        reference, ["echo", "pulled from the registry"], network_mode="none", remove=True
    )
    assert output == b"pulled from the registry\n"


@pytest.mark.parametrize("compress", [False, True], ids=["tar", "tar.gzip"])
def test_engine_downloads_the_layers_it_does_not_have(
    docker_client: docker.DockerClient,
    test_images: TestImages,
    registry: LocalRegistry,
    cleanup: list[str],
    compress: bool,
) -> None:
    # An image with a layer of its own (busybox + /token), served, then deleted from the engine:
    # pulling it must bring that layer over the wire.
    token = uuid.uuid4().hex
    container = docker_client.containers.create(
        test_images.busybox, ["sh", "-c", f"echo {token} > /token"], network_mode="none"
    )
    try:
        container.start()
        assert container.wait(timeout=30)["StatusCode"] == 0
        source = container.commit(repository="hodei-test/unique", tag=token)
    finally:
        container.remove(force=True)
    source_id = source.id
    assert source_id is not None
    cleanup.append(source_id)
    reference = _publish(docker_client, registry, source_id, cleanup, compress=compress)
    docker_client.images.remove(source_id)
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(source_id)

    image = docker_client.images.pull(f"{registry.address}/{NAME}", tag="1")

    assert image.id == source_id
    assert registry.pulls(NAME) == 1
    manifest = json.loads(_get(f"http://{registry.address}/v2/{NAME}/manifests/1")[2])
    fetched = registry.blob_gets(NAME)
    assert manifest["config"]["digest"] in fetched
    assert manifest["layers"][-1]["digest"] in fetched  # the token layer
    output = docker_client.containers.run(
        reference, ["cat", "/token"], network_mode="none", remove=True
    )
    assert output == f"{token}\n".encode()


def test_pulling_a_missing_tag_fails_with_manifest_unknown(
    docker_client: docker.DockerClient,
    test_images: TestImages,
    registry: LocalRegistry,
    cleanup: list[str],
) -> None:
    _publish(docker_client, registry, test_images.busybox, cleanup)
    cleanup.append(f"{registry.address}/{NAME}:2")

    with pytest.raises(docker.errors.APIError) as failure:
        docker_client.images.pull(f"{registry.address}/{NAME}", tag="2")

    assert isinstance(failure.value, docker.errors.NotFound)
    message = str(failure.value).lower()
    assert "manifest unknown" in message or "not found" in message
    assert registry.pulls(NAME) == 0
    assert RegistryRequest("HEAD", NAME, "manifests", "2", 404) in registry.requests


def _get(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read()


@pytest.mark.parametrize("compress", [False, True], ids=["tar", "tar.gzip"])
def test_manifest_and_blobs_follow_the_api(
    docker_client: docker.DockerClient,
    test_images: TestImages,
    registry: LocalRegistry,
    compress: bool,
) -> None:
    registry.publish_from_engine(docker_client, test_images.busybox, NAME, "1", compress=compress)
    base = f"http://{registry.address}/v2"

    assert _get(f"{base}/")[::2] == (200, b"{}")

    status, headers, body = _get(f"{base}/{NAME}/manifests/1")
    assert status == 200
    assert headers["Content-Type"] == MANIFEST_V2
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    assert headers["Docker-Content-Digest"] == digest == registry.digest(NAME, "1")
    manifest = json.loads(body)
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == MANIFEST_V2
    assert manifest["config"]["mediaType"] == IMAGE_CONFIG
    assert {layer["mediaType"] for layer in manifest["layers"]} == {
        LAYER_TAR_GZIP if compress else LAYER_TAR
    }

    head_status, head_headers, head_body = _get(f"{base}/{NAME}/manifests/{digest}", "HEAD")
    assert (head_status, head_body) == (200, b"")
    assert head_headers["Docker-Content-Digest"] == digest
    assert head_headers["Content-Length"] == str(len(body))
    assert registry.pulls(NAME) == 1  # by digest: no tag resolved

    for descriptor in (manifest["config"], *manifest["layers"]):
        status, headers, blob = _get(f"{base}/{NAME}/blobs/{descriptor['digest']}")
        assert status == 200
        assert headers["Docker-Content-Digest"] == descriptor["digest"]
        assert "sha256:" + hashlib.sha256(blob).hexdigest() == descriptor["digest"]
        assert len(blob) == descriptor["size"]
    config = json.loads(_get(f"{base}/{NAME}/blobs/{manifest['config']['digest']}")[2])
    image_id = docker_client.images.get(test_images.busybox).id
    assert manifest["config"]["digest"] == image_id
    assert len(config["rootfs"]["diff_ids"]) == len(manifest["layers"])


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        (f"{NAME}/manifests/2", 404, "MANIFEST_UNKNOWN"),
        (f"{NAME}/blobs/sha256:{'0' * 64}", 404, "BLOB_UNKNOWN"),
        ("hodei/unknown/manifests/1", 404, "NAME_UNKNOWN"),
    ],
)
def test_unknown_content_answers_the_registry_error(
    docker_client: docker.DockerClient,
    test_images: TestImages,
    registry: LocalRegistry,
    path: str,
    status: int,
    code: str,
) -> None:
    registry.publish_from_engine(docker_client, test_images.busybox, NAME, "1")

    answer_status, headers, body = _get(f"http://{registry.address}/v2/{path}")

    assert answer_status == status
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["errors"][0]["code"] == code


def test_the_registry_is_read_only_and_stops(registry: LocalRegistry) -> None:
    address = registry.address
    request = urllib.request.Request(f"http://{address}/v2/{NAME}/blobs/uploads/", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    with refused.value:
        assert refused.value.code == 405
    assert registry.requests[-1] == RegistryRequest("POST", None, None, None, 405)

    registry.stop()
    registry.stop()  # idempotent

    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://{address}/v2/", timeout=5)
