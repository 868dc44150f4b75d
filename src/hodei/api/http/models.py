"""REST request and response bodies. Field names match the gRPC messages (hodei.v1)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hodei.api.grpc.convert import SECRET_MASK
from hodei.domain.jobs import Job
from hodei.domain.logs import LogRecord
from hodei.domain.workers import Worker
from hodei.services.providers import ProviderView

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
    notice: str = Field(
        default="",
        description="what the submitter should know, e.g. that the job's image was not applied",
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
            notice=job.notice,
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
    cpu_percent: float | None = Field(description="the worker host's CPU use, last heartbeat")
    memory_used_mb: int | None = Field(description="the worker host's memory use, last heartbeat")

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
            cpu_percent=worker.cpu_percent,
            memory_used_mb=worker.memory_used_mb,
        )


class EventOut(BaseModel):
    id: int
    occurred_at: datetime
    event_type: str
    actor: str
    payload: dict[str, Any]


class SampleOut(BaseModel):
    at: datetime
    attempt: int
    cpu_percent: float = Field(description="of the job's processes; 100 is one core")
    memory_mb: float


class ResourcesOut(BaseModel):
    samples: list[SampleOut]
    job_finished: bool


class HostOut(BaseModel):
    cpu_count: int
    load_1: float
    load_5: float
    load_15: float
    cpu_percent: float
    memory_total_mb: int
    memory_used_mb: int


class SystemOut(BaseModel):
    host: HostOut = Field(description="the machine this server runs on")
    workers_by_state: dict[str, int]


class ProviderUseOut(BaseModel):
    name: str
    type: str
    enabled: bool
    workers: int
    cpu_cores: float
    used_cpu_cores: float
    memory_mb: int
    used_memory_mb: int
    running_jobs: int


class TrendOut(BaseModel):
    bucket_start: datetime
    jobs: int = Field(description="jobs that finished in the bucket")
    succeeded: int
    failed: int = Field(description="FAILED or TIMEOUT")
    avg_duration_ms: float | None


class MetricsOut(BaseModel):
    window: Literal["day", "week"]
    jobs_by_state: dict[str, int]
    total_jobs: int
    finished_jobs: int = Field(description="in the window")
    avg_duration_ms: float | None = Field(description="of the jobs that finished in the window")
    providers: list[ProviderUseOut]
    trend: list[TrendOut] = Field(description="hourly for a day, 6-hourly for a week")


ProviderTypeName = Literal["local", "docker", "kubernetes", "firecracker"]


class ProviderIn(BaseModel):
    """A provider's settings. ``config`` holds the type's own: local: cpu_cores, memory_mb,
    region; docker: default_image, network (none|host|bridge), keep_containers, cpu_cores and
    memory_mb (per worker), docker_host, region; kubernetes: namespace, kubeconfig, region;
    firecracker: kernel_path, rootfs_path, vcpus, memory_mb, region."""

    model_config = ConfigDict(extra="forbid")
    name: str
    type: ProviderTypeName
    enabled: bool = True
    priority: int = 0
    min_workers: int = 0
    max_workers: int = 2
    idle_timeout_s: int = 300
    config: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


class WorkerCountsOut(BaseModel):
    total: int
    ready: int = Field(description="ready and idle")
    busy: int = Field(description="running at least one job")


class ProviderOut(BaseModel):
    id: str
    name: str
    type: ProviderTypeName
    enabled: bool
    status: Literal["ACTIVE", "DISABLED"]
    priority: int
    min_workers: int
    max_workers: int
    idle_timeout_s: int
    config: dict[str, Any]
    workers: WorkerCountsOut
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_view(cls, view: ProviderView) -> ProviderOut:
        config, counts = view.stored.config, view.workers
        return cls(
            id=config.id,
            name=config.name,
            type=config.type.value,
            enabled=config.enabled,
            status="ACTIVE" if config.enabled else "DISABLED",
            priority=config.priority,
            min_workers=config.min_workers,
            max_workers=config.max_workers,
            idle_timeout_s=int(config.idle_timeout.total_seconds()),
            config=dict(config.config),
            workers=WorkerCountsOut(total=counts.total, ready=counts.ready, busy=counts.busy),
            created_at=view.stored.created_at,
            updated_at=view.stored.updated_at,
        )


class Problem(BaseModel):
    """An error: what went wrong, in one line."""

    detail: str
