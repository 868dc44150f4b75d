"""REST request and response bodies. Field names match the gRPC messages (hodei.v1)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from hodei.api.grpc.convert import SECRET_MASK
from hodei.domain.jobs import Job
from hodei.domain.logs import LogRecord
from hodei.domain.workers import Worker

CommandTypeName = Literal["SHELL", "DOCKER_EXEC", "PYTHON", "NODE"]
PriorityName = Literal["LOW", "NORMAL", "HIGH"]
LevelName = Literal["INFO", "WARN", "ERROR"]
StateName = Literal["PENDING", "ASSIGNED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "TIMEOUT"]


class Resources(BaseModel):
    """Zero means the default: 1 CPU core, 512 MB, no storage, no time limit."""

    model_config = ConfigDict(extra="forbid")
    cpu_cores: float = 0
    memory_mb: int = 0
    storage_mb: int = 0
    timeout_ms: int = 0
    gpu_required: bool = False
    arch: str = Field(default="", description="x86_64 or arm64; empty for any")


class Preferences(BaseModel):
    model_config = ConfigDict(extra="forbid")
    provider: str = Field(default="", description="a provider name; empty or 'any' for any")
    region: str = Field(default="", description="a region; empty or 'auto' for any")
    priority: PriorityName = "NORMAL"
    allow_retry: bool = False
    max_attempts: int = 0


class JobDefinition(BaseModel):
    """What to run. ``secret_env`` values are write-only: they are never returned."""

    model_config = ConfigDict(extra="forbid")
    name: str = ""
    command_type: CommandTypeName = "SHELL"
    script: str = ""
    image: str = ""
    env: dict[str, str] = Field(default_factory=dict)
    secret_env: dict[str, str] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=lambda: Resources())
    preferences: Preferences = Field(default_factory=lambda: Preferences())
    labels: dict[str, str] = Field(default_factory=dict)


class QueueJobResponse(BaseModel):
    job_id: str


class JobOut(BaseModel):
    id: str
    definition: JobDefinition
    state: StateName
    attempt: int
    worker_id: str | None
    created_at: datetime
    assigned_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    exit_code: int | None
    error_message: str
    log_truncated: bool = Field(
        default=False, description="the log reached its size cap: later output was not kept"
    )

    @classmethod
    def from_job(cls, job: Job) -> JobOut:
        spec = job.spec
        res, prefs = spec.resources, spec.preferences
        return cls(
            id=job.id,
            definition=JobDefinition(
                name=spec.name,
                command_type=spec.command_type.value,
                script=spec.script,
                image=spec.image,
                env=dict(spec.env),
                secret_env=dict.fromkeys(spec.secret_env, SECRET_MASK),
                resources=Resources(
                    cpu_cores=res.cpu_cores,
                    memory_mb=res.memory_mb,
                    storage_mb=res.storage_mb,
                    timeout_ms=res.timeout_ms,
                    gpu_required=res.gpu_required,
                    arch=res.arch,
                ),
                preferences=Preferences(
                    provider=prefs.provider,
                    region=prefs.region,
                    priority=prefs.priority.name,  # type: ignore[arg-type]
                    allow_retry=prefs.allow_retry,
                    max_attempts=prefs.max_attempts,
                ),
                labels=dict(spec.labels),
            ),
            state=job.state.value,
            attempt=job.attempt,
            worker_id=job.worker_id,
            created_at=job.created_at,
            assigned_at=job.assigned_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            exit_code=job.exit_code,
            error_message=job.error_message,
            log_truncated=job.log_truncated,
        )


class JobList(BaseModel):
    jobs: list[JobOut]
    next_page_token: str = Field(
        description="pass as page_token for the next page; empty at the end"
    )


class LogLineOut(BaseModel):
    sequence: int
    timestamp: datetime
    stream: Literal["STDOUT", "STDERR"]
    level: Literal["INFO", "WARN", "ERROR"]
    line: str
    attempt: int
    invalid_utf8: bool

    @classmethod
    def from_record(cls, record: LogRecord) -> LogLineOut:
        return cls(
            sequence=record.sequence,
            timestamp=record.timestamp,
            stream=record.stream.name,  # type: ignore[arg-type]
            level=record.level.name,  # type: ignore[arg-type]
            line=record.line,
            attempt=record.attempt,
            invalid_utf8=record.invalid_utf8,
        )


class LogPage(BaseModel):
    lines: list[LogLineOut]
    last_sequence: int
    job_finished: bool


class QueueStatusOut(BaseModel):
    jobs_by_state: dict[str, int]
    queue_depth: int
    delayed: int
    ready_workers: int


class WorkerOut(BaseModel):
    id: str
    hostname: str
    provider: str
    state: Literal["READY", "DRAINING", "DISCONNECTED", "TERMINATED"]
    arch: str
    region: str
    runtime: str
    cpu_cores: float
    memory_mb: int
    gpus: int
    used_cpu_cores: float
    used_memory_mb: int
    running_jobs: int
    labels: dict[str, str]
    registered_at: datetime
    last_heartbeat_at: datetime

    @classmethod
    def from_worker(cls, worker: Worker) -> WorkerOut:
        info = worker.info
        return cls(
            id=worker.id,
            hostname=info.hostname,
            provider=worker.provider,
            state=worker.state.value,
            arch=info.arch,
            region=info.region,
            runtime=info.runtime,
            cpu_cores=info.cpu_cores,
            memory_mb=info.memory_mb,
            gpus=info.gpus,
            used_cpu_cores=worker.used_cpu_cores,
            used_memory_mb=worker.used_memory_mb,
            running_jobs=worker.running_jobs,
            labels=dict(info.labels),
            registered_at=worker.registered_at,
            last_heartbeat_at=worker.last_heartbeat_at,
        )


class Problem(BaseModel):
    """An error: what went wrong, in one line."""

    detail: str
