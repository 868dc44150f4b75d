"""The docker runtime against a real engine: each attempt in a container of its own."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import textwrap
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import docker
import psutil
import pytest
import pytest_asyncio

from hodei.domain.jobs import CommandType
from hodei.domain.logs import LogStream
from hodei.domain.states import JobState
from hodei.worker.containers import (
    LABEL_JOB,
    LABEL_WORKER,
    DockerRuntime,
    DockerSettings,
    connect,
    remove_orphans,
)
from hodei.worker.runtime import ExecutionResult, JobLaunch, LaunchCancelledError, LaunchError
from hodei.worker.usage import GroupSampler
from tests.docker_engine import DockerEngine, TestImages, build_test_images, job_containers
from tests.registry import LocalRegistry

pytestmark = pytest.mark.timeout(120)


class Output:
    """Collects what a job writes, line by line, per stream."""

    def __init__(self) -> None:
        self.lines: dict[LogStream, list[str]] = {LogStream.STDOUT: [], LogStream.STDERR: []}

    async def __call__(self, stream: LogStream, block: bytes) -> None:
        self.lines[stream].extend(block.decode().split("\n"))

    async def until(self, line: str, seconds: float = 20) -> None:
        """Until the job wrote ``line`` on stdout."""
        deadline = time.monotonic() + seconds
        while line not in self.stdout:
            assert time.monotonic() < deadline, f"the job never wrote {line!r}"
            await asyncio.sleep(0.02)

    @property
    def stdout(self) -> list[str]:
        return self.lines[LogStream.STDOUT]

    @property
    def stderr(self) -> list[str]:
        return self.lines[LogStream.STDERR]


@pytest_asyncio.fixture
async def runtime(
    docker_engine: DockerEngine, test_images: TestImages
) -> AsyncIterator[DockerRuntime]:
    runtime = DockerRuntime(
        DockerSettings(default_image=test_images.busybox, docker_host=docker_engine.host)
    )
    await runtime.prepare(f"test-{uuid.uuid4()}")
    try:
        yield runtime
    finally:
        await runtime.close()


def launch(
    script: str,
    tmp_path: Path,
    *,
    image: str = "",
    command_type: CommandType = CommandType.SHELL,
    env: dict[str, str] | None = None,
    timeout_ms: int = 0,
    memory_mb: int = 0,
    cpu_cores: float = 0.0,
    stop_grace: float = 2.0,
) -> JobLaunch:
    return JobLaunch(
        job_id=str(uuid.uuid4()),
        attempt=1,
        command_type=command_type,
        script=script,
        image=image,
        env=env or {},
        timeout_ms=timeout_ms,
        workdir=tmp_path,
        stop_grace=stop_grace,
        memory_mb=memory_mb,
        cpu_cores=cpu_cores,
    )


async def run(runtime: DockerRuntime, job: JobLaunch) -> tuple[ExecutionResult, Output]:
    output = Output()
    execution = await runtime.start(job, output)
    return await execution.wait(), output


def containers_of(client: docker.DockerClient, job: JobLaunch) -> list[str]:
    return [c["Id"] for c in job_containers(client, job.job_id)]


async def until_removed(client: docker.DockerClient, job: JobLaunch) -> None:
    deadline = time.monotonic() + 15
    while containers_of(client, job):
        assert time.monotonic() < deadline, "the job's container was not removed"
        await asyncio.sleep(0.05)


async def test_shell_job_in_busybox(
    runtime: DockerRuntime, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    job = launch("echo out; echo err >&2; ls /bin/busybox; exit 3", tmp_path)
    result, output = await run(runtime, job)
    assert result == ExecutionResult(JobState.FAILED, 3, "exited with code 3")
    assert output.stdout == ["out", "/bin/busybox"]
    assert output.stderr == ["err"]
    await until_removed(docker_client, job)


async def test_python_job_with_env(
    runtime: DockerRuntime, test_images: TestImages, tmp_path: Path
) -> None:
    script = textwrap.dedent(
        """
        import os, sys
        print("greeting:", os.environ["GREETING"])
        print("job:", os.environ["HODEI_JOB_ID"])
        print(sys.version_info[:2])
        """
    )
    job = launch(
        script,
        tmp_path,
        image=test_images.python,
        command_type=CommandType.PYTHON,
        env={"GREETING": "hola mundo"},
    )
    result, output = await run(runtime, job)
    assert result.state is JobState.SUCCEEDED, result
    assert output.stdout == ["greeting: hola mundo", f"job: {job.job_id}", "(3, 11)"]


async def test_a_large_python_script_goes_in_as_a_file(
    runtime: DockerRuntime, test_images: TestImages, tmp_path: Path
) -> None:
    script = "x = 1\n" * 30_000 + "print('big script ran', x)\n"  # 180 KB: too long for argv
    job = launch(script, tmp_path, image=test_images.python, command_type=CommandType.PYTHON)
    result, output = await run(runtime, job)
    assert result.state is JobState.SUCCEEDED, result
    assert output.stdout == ["big script ran 1"]


async def test_docker_exec_is_a_plain_argv(runtime: DockerRuntime, tmp_path: Path) -> None:
    job = launch(
        "echo '$HOME; not a shell' \"two words\"", tmp_path, command_type=CommandType.DOCKER_EXEC
    )
    result, output = await run(runtime, job)
    assert result.state is JobState.SUCCEEDED, result
    assert output.stdout == ["$HOME; not a shell two words"]


async def test_output_is_complete_and_in_order(runtime: DockerRuntime, tmp_path: Path) -> None:
    job = launch("seq 1 200000; seq 1 1000 >&2", tmp_path)
    result, output = await run(runtime, job)
    assert result.state is JobState.SUCCEEDED, result
    assert output.stdout == [str(i) for i in range(1, 200_001)]
    assert output.stderr == [str(i) for i in range(1, 1001)]


async def test_out_of_memory_fails_and_says_so(
    runtime: DockerRuntime, test_images: TestImages, tmp_path: Path
) -> None:
    job = launch(
        "b = bytearray(256 * 2**20)\nprint('survived')",
        tmp_path,
        image=test_images.python,
        command_type=CommandType.PYTHON,
        memory_mb=32,
    )
    result, output = await run(runtime, job)
    assert result.state is JobState.FAILED
    assert result.exit_code == 137
    assert "out of memory" in result.error_message
    assert "32 MB" in result.error_message
    assert "survived" not in output.stdout


async def test_cpu_and_memory_limits_reach_the_container(
    runtime: DockerRuntime, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    job = launch("sleep 30", tmp_path, memory_mb=64, cpu_cores=0.5)
    execution = await runtime.start(job, Output())
    try:
        (container_id,) = containers_of(docker_client, job)
        host = docker_client.api.inspect_container(container_id)["HostConfig"]
        assert host["Memory"] == 64 * 2**20
        assert host["NanoCpus"] == 500_000_000
        assert host["NetworkMode"] == "none"
        labels = docker_client.api.inspect_container(container_id)["Config"]["Labels"]
        assert labels[LABEL_JOB] == job.job_id
        assert labels[LABEL_WORKER].startswith("test-")
    finally:
        await execution.cancel(grace=0)
        await execution.wait()


async def test_cancel_stops_the_container_gracefully(
    runtime: DockerRuntime, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    job = launch(
        "trap 'echo got TERM; exit 0' TERM; echo ready; while true; do sleep 0.1; done", tmp_path
    )
    output = Output()
    execution = await runtime.start(job, output)
    await output.until("ready")
    await execution.cancel(grace=5)
    result = await execution.wait()
    assert result.state is JobState.CANCELLED
    assert result.error_message == "cancelled"
    assert "got TERM" in output.stdout
    await until_removed(docker_client, job)


async def test_cancel_kills_after_the_grace(runtime: DockerRuntime, tmp_path: Path) -> None:
    job = launch("trap '' TERM; echo ready; while true; do sleep 0.1; done", tmp_path)
    output = Output()
    execution = await runtime.start(job, output)
    await output.until("ready")
    began = time.monotonic()
    await execution.cancel(grace=1)
    result = await execution.wait()
    assert result.state is JobState.CANCELLED
    assert result.exit_code == 137
    assert time.monotonic() - began < 15


async def test_timeout_stops_the_container(
    runtime: DockerRuntime, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    job = launch("echo start; sleep 60; echo never", tmp_path, timeout_ms=1000, stop_grace=1)
    result, output = await run(runtime, job)
    assert result.state is JobState.TIMEOUT
    assert result.error_message == "timed out after 1000 ms"
    assert output.stdout == ["start"]
    await until_removed(docker_client, job)


async def test_missing_image_names_the_image_and_the_engine_error(
    runtime: DockerRuntime, tmp_path: Path
) -> None:
    job = launch("true", tmp_path, image="127.0.0.1:9/hodei/does-not-exist:1")
    with pytest.raises(LaunchError) as raised:
        await runtime.start(job, Output())
    message = str(raised.value)
    assert "127.0.0.1:9/hodei/does-not-exist:1" in message
    assert "could not be pulled" in message
    assert "connection refused" in message.lower()


async def test_a_bad_argv_is_a_launch_error(runtime: DockerRuntime, tmp_path: Path) -> None:
    job = launch("echo 'unclosed", tmp_path, command_type=CommandType.DOCKER_EXEC)
    with pytest.raises(LaunchError, match="cannot be split"):
        await runtime.start(job, Output())


async def test_kept_containers_stay(
    docker_engine: DockerEngine,
    docker_client: docker.DockerClient,
    test_images: TestImages,
    tmp_path: Path,
) -> None:
    runtime = DockerRuntime(
        DockerSettings(
            default_image=test_images.busybox,
            docker_host=docker_engine.host,
            keep_containers=True,
        )
    )
    await runtime.prepare(f"test-{uuid.uuid4()}")
    try:
        job = launch("echo kept", tmp_path)
        result, _ = await run(runtime, job)
        assert result.state is JobState.SUCCEEDED
        (container_id,) = containers_of(docker_client, job)
        assert docker_client.containers.get(container_id).logs() == b"kept\n"
        docker_client.api.remove_container(container_id, force=True)
    finally:
        await runtime.close()


CRASHING_WORKER = """
import asyncio, os, sys, uuid
from pathlib import Path
from hodei.domain.jobs import CommandType
from hodei.worker.containers import DockerRuntime, DockerSettings
from hodei.worker.runtime import JobLaunch

async def main():
    runtime = DockerRuntime(DockerSettings(default_image=sys.argv[2], docker_host=sys.argv[1]))
    await runtime.prepare("crashing-" + str(uuid.uuid4()))
    launch = JobLaunch(job_id=str(uuid.uuid4()), attempt=1, command_type=CommandType.SHELL,
                       script="sleep 300", image="", env={}, timeout_ms=0, workdir=Path("/tmp"))
    async def sink(stream, block): pass
    execution = await runtime.start(launch, sink)
    print(launch.job_id, flush=True)
    os.kill(os.getpid(), 9)  # a crash: nothing is cleaned up

asyncio.run(main())
"""


async def test_a_new_worker_removes_what_a_crashed_one_left(
    docker_engine: DockerEngine,
    docker_client: docker.DockerClient,
    test_images: TestImages,
    tmp_path: Path,
) -> None:
    crashed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", CRASHING_WORKER, docker_engine.host, test_images.busybox],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ | {"PYTHONPATH": str(Path(__file__).parents[2] / "src")},
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    job_id = crashed.stdout.strip()
    left = job_containers(docker_client, job_id)
    assert len(left) == 1
    assert left[0]["State"] == "running"

    runtime = DockerRuntime(
        DockerSettings(default_image=test_images.busybox, docker_host=docker_engine.host)
    )
    await runtime.prepare(f"test-{uuid.uuid4()}")
    try:
        assert job_containers(docker_client, job_id) == []
    finally:
        await runtime.close()


async def test_the_containers_of_live_workers_are_left_alone(
    runtime: DockerRuntime,
    docker_engine: DockerEngine,
    docker_client: docker.DockerClient,
    test_images: TestImages,
    tmp_path: Path,
) -> None:
    job = launch("sleep 30", tmp_path)
    execution = await runtime.start(job, Output())
    try:
        neighbour = DockerRuntime(
            DockerSettings(default_image=test_images.busybox, docker_host=docker_engine.host)
        )
        await neighbour.prepare(f"test-{uuid.uuid4()}")  # sweeps for dead workers' containers
        await neighbour.close()
        assert len(containers_of(docker_client, job)) == 1
    finally:
        await execution.cancel(grace=0)
        await execution.wait()


async def test_a_container_jobs_processes_are_sampled(
    runtime: DockerRuntime, tmp_path: Path
) -> None:
    job = launch("echo go; while :; do :; done", tmp_path)
    output = Output()
    execution = await runtime.start(job, output)
    try:
        sampler = GroupSampler()
        sampler.sample({execution.pid})
        await asyncio.sleep(0.5)
        usage = sampler.sample({execution.pid})[execution.pid]
        assert usage.cpu_percent > 20  # the busy loop runs in the container's command's group
        assert usage.memory_bytes > 0
    finally:
        await execution.cancel(grace=0)
        await execution.wait()


async def test_the_job_runs_its_command_not_the_images_entrypoint(
    runtime: DockerRuntime,
    docker_client: docker.DockerClient,
    test_images: TestImages,
    tmp_path: Path,
) -> None:
    base = docker_client.containers.create(test_images.busybox, ["true"])
    image = "hodei-test/entrypoint:1"
    try:
        docker_client.api.commit(
            base.id, repository="hodei-test/entrypoint", tag="1",
            changes=['ENTRYPOINT ["echo", "ENTRY:"]'],
        )  # fmt: skip
    finally:
        base.remove(force=True)
    try:
        result, output = await run(runtime, launch("echo hi; exit 3", tmp_path, image=image))
        assert result == ExecutionResult(JobState.FAILED, 3, "exited with code 3")
        assert output.stdout == ["hi"]
        # DOCKER_EXEC runs the image as it is: its entrypoint, with the job's arguments.
        exec_job = launch("from exec", tmp_path, image=image, command_type=CommandType.DOCKER_EXEC)
        result, output = await run(runtime, exec_job)
        assert result.state is JobState.SUCCEEDED
        assert output.stdout == ["ENTRY: from exec"]
    finally:
        docker_client.images.remove(image, force=True)


async def test_a_job_cancelled_while_it_was_prepared_never_starts(
    runtime: DockerRuntime, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    job = dataclasses.replace(launch("echo must not run", tmp_path), cancelled=lambda: True)
    with pytest.raises(LaunchCancelledError):
        await runtime.start(job, Output())
    await until_removed(docker_client, job)


async def test_a_pull_that_breaks_halfway_names_the_image_and_the_engines_error(
    runtime: DockerRuntime, registry: LocalRegistry, tmp_path: Path
) -> None:
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        data = uuid.uuid4().bytes
        info = tarfile.TarInfo("token")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    digest = "sha256:" + hashlib.sha256(layer.getvalue()).hexdigest()
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "config": {},
         "rootfs": {"type": "layers", "diff_ids": [digest]}}
    ).encode()  # fmt: skip
    image = registry.publish("hodei/broken", "1", config, [layer.getvalue()])
    registry.forget_blob(digest)  # the registry breaks after the manifest resolved
    with pytest.raises(LaunchError) as raised:
        await runtime.start(launch("true", tmp_path, image=image), Output())
    message = str(raised.value)
    assert message.startswith(f"image {image} could not be pulled: ")
    assert "unknown" in message.lower() or "not found" in message.lower(), message


async def test_kept_containers_of_a_dead_worker_are_stopped_not_removed(
    docker_engine: DockerEngine, docker_client: docker.DockerClient, test_images: TestImages
) -> None:
    labels = {
        LABEL_WORKER: "dead-worker",
        LABEL_JOB: str(uuid.uuid4()),
        "hodei.worker.host": socket.gethostname(),
        "hodei.worker.pid": "999999",
        "hodei.worker.started": "1.0",
    }
    finished = docker_client.containers.run(
        test_images.busybox, ["true"], labels=labels, network_mode="none", detach=True
    )
    running = docker_client.containers.run(
        test_images.busybox, ["sleep", "300"], labels=labels, network_mode="none", detach=True
    )
    try:
        finished.wait(timeout=30)
        api = connect(docker_engine.host)
        try:
            assert remove_orphans(api, keep=True) == 1
        finally:
            api.close()
        running.reload()
        finished.reload()
        assert running.status == "exited"  # stopped: it was a dead worker's
        assert finished.status == "exited"  # kept, as the provider asks
    finally:
        running.remove(force=True)
        finished.remove(force=True)


# The Docker SDK leaves the socket of a refused connection to the garbage collector.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
async def test_an_engine_that_dies_hands_the_job_back_and_leaves_no_process(
    test_images: TestImages, tmp_path: Path
) -> None:
    engine = DockerEngine()
    try:
        await asyncio.to_thread(engine.start)
        client = engine.client()
        await asyncio.to_thread(build_test_images, client)
        client.close()
        runtime = DockerRuntime(
            DockerSettings(default_image=test_images.busybox, docker_host=engine.host)
        )
        await runtime.prepare(f"test-{uuid.uuid4()}")
        output = Output()
        execution = await runtime.start(launch("echo up; sleep 300", tmp_path), output)
        await output.until("up")
        assert psutil.pid_exists(execution.pid)
        assert engine.pid is not None
        os.kill(engine.pid, signal.SIGKILL)  # the engine crashes; the container's shim lives on
        result = await asyncio.wait_for(execution.wait(), 60)
        assert result.state is JobState.PENDING
        assert result.error_message.startswith("handed back: the Docker engine stopped answering")
        deadline = time.monotonic() + 10
        while psutil.pid_exists(execution.pid):  # its init: killed on this host
            assert time.monotonic() < deadline, "the container's processes outlived the engine"
            await asyncio.sleep(0.05)
        await runtime.close()
    finally:
        await asyncio.to_thread(engine.stop)
        gc.collect()  # here, where the SDK's leaked sockets are expected


async def test_node_job_in_its_image(
    runtime: DockerRuntime, test_images: TestImages, tmp_path: Path
) -> None:
    if not test_images.node:
        pytest.skip("the host has no node binary to build hodei-test/node:1 from")
    script = "console.log(process.env.GREETING, typeof require)\nprocess.exit(5)\n"
    job = launch(
        script,
        tmp_path,
        image=test_images.node,
        command_type=CommandType.NODE,
        env={"GREETING": "hola"},
    )
    result, output = await run(runtime, job)
    assert result == ExecutionResult(JobState.FAILED, 5, "exited with code 5")
    assert output.stdout == ["hola function"]

    big = "// padding\n" * 6_400 + 'console.log("big")\n'  # 70 KB: goes in as /hodei/main.js
    assert len(big) > 64 * 1024
    job = launch(big, tmp_path, image=test_images.node, command_type=CommandType.NODE)
    result, output = await run(runtime, job)
    assert result.state is JobState.SUCCEEDED, result
    assert output.stdout == ["big"]
