"""``hodei up`` turns its docker provider on by itself when a Docker engine answers."""

from __future__ import annotations

import re
import shutil

import docker
import pytest

from tests.docker_engine import DockerEngine, TestImages, job_containers
from tests.e2e.conftest import HODEI, HodeiUp, product_env, run
from tests.integration.conftest import traversable_tmpdir

pytestmark = pytest.mark.timeout(240)


def test_hodei_up_runs_image_jobs_in_containers_when_an_engine_answers(
    docker_engine: DockerEngine, docker_client: docker.DockerClient, test_images: TestImages
) -> None:
    data_dir = traversable_tmpdir("hodei-up-docker-")
    up = HodeiUp(
        data_dir=data_dir,
        workers=1,
        other_workers=1,  # the docker provider keeps one warm worker
        env=product_env(DOCKER_HOST=docker_engine.host),
    )
    try:
        up.start()
        assert "Docker engine found" in up.log_tail()
        result = up.cli(
            "job",
            "run",
            "--image",
            test_images.busybox,
            'echo "in $(busybox | head -1 | cut -d" " -f1)"; echo "job $HODEI_JOB_ID"',
            timeout=120,
        )
        assert result.returncode == 0, result.stderr + up.log_tail()
        lines = result.stdout.splitlines()
        assert lines[0] == "in BusyBox"
        job_id = re.search(r"job (\S+) SUCCEEDED", result.stderr)
        assert job_id is not None, result.stderr
        assert lines[1] == f"job {job_id.group(1)}"
        assert "not applied" not in result.stderr
        workers = run([HODEI, "job", "get", job_id.group(1), "--server", up.address])
        assert "note" not in workers.stdout
        # The container is gone once the job ended.
        left = job_containers(docker_client, job_id.group(1))
        assert all(c["State"] != "running" for c in left)
    finally:
        if up.process is not None:
            up.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
