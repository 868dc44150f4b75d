"""A minimal, read-only Docker Registry (HTTP API v2) for tests, on loopback, in a thread.

Nothing can be pulled from the internet on the test machines, yet the docker runtime's "pull a
missing image" path needs a registry. ``LocalRegistry`` serves images taken from a Docker Engine
(``docker save``) over plain HTTP on ``127.0.0.1:<free port>``; dockerd treats registries on
127.0.0.0/8 as insecure by default, so it pulls from it without TLS or configuration.

Served: ``GET /v2/``, ``GET``/``HEAD /v2/<name>/manifests/<tag or digest>`` (an image manifest,
schema 2) and ``GET``/``HEAD /v2/<name>/blobs/<digest>`` (the image config and the layers).
Anything unknown answers 404 with the registry's JSON error body (``MANIFEST_UNKNOWN``,
``BLOB_UNKNOWN``, ``NAME_UNKNOWN``), so dockerd reports e.g. "manifest unknown"; writes answer 405.

dockerd tries HTTPS first even for an insecure registry: a connection that opens with a TLS
handshake is closed at once, so it falls back to HTTP without waiting for a timeout.

Usage::

    with LocalRegistry() as registry:
        ref = registry.publish_from_engine(client, "hodei-test/busybox:1", "hodei/pulled", "1")
        client.images.pull(f"{registry.address}/hodei/pulled", tag="1")  # ref == that + ":1"
        assert registry.pulls("hodei/pulled") == 1

What counts as a pull: dockerd 20.10 resolves the tag with a ``HEAD`` (then ``GET``s the manifest
by digest, unless its content store still holds that manifest from an earlier pull in the same
engine, whichever registry served it), so ``pulls(name)`` counts the requests that found a
manifest by tag (``HEAD`` or ``GET``): one per pull. ``requests`` logs every request for finer
assertions (which blobs were fetched, which tags were missing).

By default the published image is the source image unchanged (same config, so the same image
id): an engine that still has the source then fetches no layer. ``labels=...`` adds labels to the
config (a new image id); to force the layers over the wire, publish an image whose layers the
engine does not have (e.g. a committed container, removed from the engine before the pull).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.server
import io
import json
import re
import socket
import sys
import tarfile
import tempfile
import threading
import urllib.parse
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, cast

import docker

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
IMAGE_CONFIG = "application/vnd.docker.container.image.v1+json"
LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
LAYER_TAR_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

# Repository names and tags as the distribution spec allows them.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
NAME = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
TAG = re.compile(r"^\w[\w.-]{0,127}$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_ROUTE = re.compile(r"^/v2/(?P<name>.+)/(?P<kind>manifests|blobs)/(?P<ref>[^/]+)$")
_TLS_HANDSHAKE = b"\x16"
LOOPBACK = "127.0.0.1"


class RegistryError(RuntimeError):
    pass


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class _Repository:
    manifests: dict[str, str] = field(default_factory=dict)  # tag or digest -> manifest digest
    blobs: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class RegistryRequest:
    """One answered request: method, repository name (None for ``/v2/`` and unknown paths),
    ``manifests`` or ``blobs`` (None likewise), tag or digest, HTTP status."""

    method: str
    name: str | None
    kind: str | None
    reference: str | None
    status: int


@dataclass(frozen=True)
class _Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    digest: str | None = None


class LocalRegistry:
    """See the module docstring. Start and stop it, or use it as a context manager."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._repositories: dict[str, _Repository] = {}
        self._manifests: dict[str, bytes] = {}  # digest -> manifest body
        self._blobs: dict[str, bytes] = {}  # digest -> blob
        self._requests: list[RegistryRequest] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, the registry part of an image reference."""
        if self._server is None:
            raise RegistryError("the registry is not started")
        return f"{LOOPBACK}:{self._server.server_address[1]}"

    def start(self) -> None:
        if self._server is not None:
            raise RegistryError("the registry is already started")
        server = _Server((LOOPBACK, 0), _Handler)
        server.registry = self
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"test-registry-{server.server_address[1]}",
            daemon=True,
        )
        self._server, self._thread = server, thread
        thread.start()

    def stop(self) -> None:
        """Stop serving, close open connections and join every thread. Idempotent."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        if thread is not None and thread.is_alive():
            server.shutdown()
        server.close_connections()
        server.server_close()  # joins the request threads
        if thread is not None:
            thread.join()

    def __enter__(self) -> LocalRegistry:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- content --------------------------------------------------------------------------------

    def publish_from_engine(
        self,
        client: docker.DockerClient,
        source_image: str,
        name: str,
        tag: str,
        *,
        compress: bool = False,
        labels: dict[str, str] | None = None,
    ) -> str:
        """Serve ``source_image`` of the engine behind client as ``ADDRESS/name:tag``.

        The layers are served as they come from ``docker save`` (uncompressed tars) or, with
        ``compress``, gzipped. Returns the full reference ``127.0.0.1:PORT/name:tag``.
        """
        config, layers = _export(client, source_image)
        if labels:
            document = json.loads(config)
            settings = document.setdefault("config", {})
            settings["Labels"] = {**(settings.get("Labels") or {}), **labels}
            config = json.dumps(document, separators=(",", ":")).encode()
        return self.publish(name, tag, config, layers, compress=compress)

    def publish(
        self, name: str, tag: str, config: bytes, layers: list[bytes], *, compress: bool = False
    ) -> str:
        """Serve an image made of this config and these uncompressed layer tars as name:tag."""
        if not NAME.match(name):
            raise RegistryError(f"invalid repository name {name!r}")
        if not TAG.match(tag):
            raise RegistryError(f"invalid tag {tag!r}")
        diff_ids = json.loads(config).get("rootfs", {}).get("diff_ids", [])
        actual = [sha256_digest(layer) for layer in layers]
        if actual != diff_ids:
            raise RegistryError(f"the layers do not match the config's diff_ids: {actual}")
        blobs = (
            [gzip.compress(layer, compresslevel=1, mtime=0) for layer in layers]
            if compress
            else layers
        )
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_V2,
            "config": {
                "mediaType": IMAGE_CONFIG,
                "size": len(config),
                "digest": sha256_digest(config),
            },
            "layers": [
                {
                    "mediaType": LAYER_TAR_GZIP if compress else LAYER_TAR,
                    "size": len(blob),
                    "digest": sha256_digest(blob),
                }
                for blob in blobs
            ],
        }
        body = json.dumps(manifest, indent=3).encode()
        manifest_digest = sha256_digest(body)
        with self._lock:
            repository = self._repositories.setdefault(name, _Repository())
            for blob in (config, *blobs):
                digest = sha256_digest(blob)
                self._blobs[digest] = blob
                repository.blobs.add(digest)
            self._manifests[manifest_digest] = body
            repository.manifests[tag] = manifest_digest
            repository.manifests[manifest_digest] = manifest_digest
        return f"{self.address}/{name}:{tag}"

    def forget_blob(self, digest: str) -> None:
        """Stop serving a blob (a registry that breaks halfway through a pull)."""
        with self._lock:
            self._blobs.pop(digest, None)
            for repository in self._repositories.values():
                repository.blobs.discard(digest)

    def digest(self, name: str, tag: str) -> str:
        """The manifest digest served for name:tag (as in the pulled image's ``RepoDigests``)."""
        with self._lock:
            return self._repositories[name].manifests[tag]

    def pulls(self, name: str) -> int:
        """How many times a tag of name was resolved to a manifest (HEAD or GET by tag, found).

        One per pull by dockerd, whether or not it then GETs the manifest body (see the module
        docstring); a client that HEADs and then GETs by tag counts twice. Missing tags do not
        count: see ``requests``.
        """
        return sum(
            1
            for r in self.requests
            if r.name == name
            and r.kind == "manifests"
            and r.status == 200
            and not DIGEST.match(r.reference or "")
        )

    def blob_gets(self, name: str) -> list[str]:
        """The digests of the blobs of name that were sent (GET, found), in order."""
        return [
            r.reference or ""
            for r in self.requests
            if r.name == name and r.kind == "blobs" and r.method == "GET" and r.status == 200
        ]

    @property
    def requests(self) -> list[RegistryRequest]:
        """Every request answered so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    # --- serving --------------------------------------------------------------------------------

    def _answer(self, method: str, path: str) -> _Response:
        route = _ROUTE.match(path)
        name, kind, ref = (route["name"], route["kind"], route["ref"]) if route else (None,) * 3
        with self._lock:
            if method in ("GET", "HEAD"):
                response = self._lookup(path, name, kind, ref)
            else:
                response = _error(405, "UNSUPPORTED", "this registry is read-only")
            self._requests.append(RegistryRequest(method, name, kind, ref, response.status))
        return response

    def _lookup(self, path: str, name: str | None, kind: str | None, ref: str | None) -> _Response:
        if path in ("/v2", "/v2/"):
            return _Response(200, b"{}")
        if name is None or ref is None:
            return _error(404, "UNSUPPORTED", "no such endpoint")
        repository = self._repositories.get(name)
        if repository is None:
            return _error(404, "NAME_UNKNOWN", "repository name not known to registry")
        if kind == "manifests":
            digest = repository.manifests.get(ref)
            if digest is None:
                return _error(404, "MANIFEST_UNKNOWN", "manifest unknown", {"Tag": ref})
            return _Response(200, self._manifests[digest], MANIFEST_V2, digest)
        if not DIGEST.match(ref):
            return _error(400, "DIGEST_INVALID", "provided digest did not match uploaded content")
        if ref not in repository.blobs:
            return _error(404, "BLOB_UNKNOWN", "blob unknown to registry", ref)
        return _Response(200, self._blobs[ref], "application/octet-stream", ref)


def _error(status: int, code: str, message: str, detail: Any = None) -> _Response:
    body = json.dumps({"errors": [{"code": code, "message": message, "detail": detail}]})
    return _Response(status, body.encode())


def _export(client: docker.DockerClient, source_image: str) -> tuple[bytes, list[bytes]]:
    """The config and the uncompressed layer tars of an engine's image, via ``docker save``.

    Reads the tarball's manifest.json, so both the classic layout (``<id>.json``,
    ``<id>/layer.tar``) and the OCI layout of newer engines (``blobs/sha256/...``) work.
    """
    image = client.images.get(source_image)
    with tempfile.TemporaryFile() as spool:
        for chunk in image.save():
            spool.write(chunk)
        spool.seek(0)
        with tarfile.open(fileobj=spool, mode="r:") as archive:

            def read(member: str) -> bytes:
                stream = archive.extractfile(member)
                if stream is None:
                    raise RegistryError(f"{member} is not a file in the saved {source_image}")
                with stream:
                    return stream.read()

            entries = json.loads(read("manifest.json"))
            if len(entries) != 1:
                raise RegistryError(f"docker save of {source_image} holds {len(entries)} images")
            return read(entries[0]["Config"]), [read(p) for p in entries[0]["Layers"]]


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = True  # server_close() joins the request threads
    registry: LocalRegistry

    def __init__(self, address: tuple[str, int], handler: type[_Handler]) -> None:
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Wake every request thread still reading from a client: it then ends."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return  # the client went away (dockerd cancels, retries, closes idle connections)
        super().handle_error(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection: nothing idles open
    server_version = "hodei-test-registry/1"
    timeout = 10.0

    def handle(self) -> None:
        try:
            first = cast(io.BufferedReader, self.rfile).peek(1)[:1]
        except OSError:
            return
        if first == _TLS_HANDSHAKE:
            return  # dockerd tries HTTPS first: close now so that it falls back to plain HTTP
        super().handle()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def _refuse(self) -> None:
        self._serve(body=True)  # answered 405

    do_POST = do_PUT = do_PATCH = do_DELETE = _refuse  # noqa: N815

    def _serve(self, body: bool) -> None:
        path = urllib.parse.urlsplit(self.path).path
        self._send(self.server.registry._answer(self.command, path), body=body)

    def _send(self, response: _Response, body: bool) -> None:
        self.send_response(response.status)
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        if response.digest is not None:
            self.send_header("Docker-Content-Digest", response.digest)
            self.send_header("ETag", f'"{response.digest}"')
        self.end_headers()
        if body:
            self.wfile.write(response.body)
