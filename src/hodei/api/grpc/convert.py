"""Between wire types (hodei.v1 protobuf) and the domain. The one place that knows both."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2

from hodei.domain.errors import ValidationError
from hodei.domain.jobs import Job
from hodei.domain.logs import LogChunk, LogLevel, LogRecord, LogStream
from hodei.domain.states import JobState
from hodei.domain.workers import Worker, WorkerInfo
from hodei.store.jobs import AuditEvent
from hodei.v1 import jobs_pb2, logs_pb2, scheduler_pb2, worker_pb2

SECRET_MASK = "***"


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def from_timestamp(ts: timestamp_pb2.Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


def optional_timestamp(message: Any, field: str) -> datetime | None:
    """The datetime in a Timestamp field, or None when the field is unset."""
    if not message.HasField(field):
        return None
    try:
        return from_timestamp(getattr(message, field))
    except (ValueError, OverflowError):  # beyond what a datetime holds (years 1-9999)
        raise ValidationError.single(field, "is not a valid timestamp") from None


def _enum_name(enum: Any, value: int) -> str | int:
    """The name of an enum value; an unknown value as it came, for the domain to refuse."""
    try:
        name: str = enum.Name(value)
    except ValueError:
        return value
    return name


def definition_to_dict(definition: jobs_pb2.JobDefinition) -> dict[str, Any]:
    """A JobDefinition as plain data for the domain's validation (enums by name)."""
    res, prefs = definition.resources, definition.preferences
    return {
        "name": definition.name,
        "command_type": _enum_name(jobs_pb2.CommandType, definition.command_type),
        "script": definition.script,
        "image": definition.image,
        "env": dict(definition.env),
        "secret_env": dict(definition.secret_env),
        "labels": dict(definition.labels),
        "resources": {
            "cpu_cores": res.cpu_cores,
            "memory_mb": res.memory_mb,
            "storage_mb": res.storage_mb,
            "timeout_ms": res.timeout_ms,
            "gpu_required": res.gpu_required,
            "arch": res.arch,
        },
        "preferences": {
            "provider": prefs.provider,
            "region": prefs.region,
            "priority": _enum_name(jobs_pb2.Priority, prefs.priority),
            "allow_retry": prefs.allow_retry,
            "max_attempts": prefs.max_attempts,
        },
    }


def definition_to_proto(job: Job, *, reveal_secrets: bool) -> jobs_pb2.JobDefinition:
    """The job's definition on the wire; secret values only for the worker that runs it."""
    spec = job.spec
    res, prefs = spec.resources, spec.preferences
    secrets = (
        dict(spec.secret_env) if reveal_secrets else dict.fromkeys(spec.secret_env, SECRET_MASK)
    )
    return jobs_pb2.JobDefinition(
        name=spec.name,
        command_type=jobs_pb2.CommandType.Value(spec.command_type.value),
        script=spec.script,
        image=spec.image,
        env=dict(spec.env),
        secret_env=secrets,
        labels=dict(spec.labels),
        resources=jobs_pb2.ResourceRequirements(
            cpu_cores=res.cpu_cores,
            memory_mb=res.memory_mb,
            storage_mb=res.storage_mb,
            timeout_ms=res.timeout_ms,
            gpu_required=res.gpu_required,
            arch=res.arch,
        ),
        preferences=jobs_pb2.Preferences(
            provider=prefs.provider,
            region=prefs.region,
            priority=jobs_pb2.Priority.Value(prefs.priority.name),
            allow_retry=prefs.allow_retry,
            max_attempts=prefs.max_attempts,
        ),
    )


def job_to_proto(job: Job) -> jobs_pb2.Job:
    message = jobs_pb2.Job(
        id=job.id,
        definition=definition_to_proto(job, reveal_secrets=False),
        state=jobs_pb2.JobState.Value(job.state.value),
        attempt=job.attempt,
        worker_id=job.worker_id or "",
        created_at=timestamp(job.created_at),
        assigned_at=timestamp(job.assigned_at),
        started_at=timestamp(job.started_at),
        finished_at=timestamp(job.finished_at),
        error_message=job.error_message,
        log_truncated=job.log_truncated,
        notice=job.notice,
    )
    if job.exit_code is not None:
        message.exit_code = job.exit_code
    return message


def job_state_from_proto(value: int) -> JobState:
    """Raises ValidationError for a value that is not a job state."""
    try:
        return JobState(jobs_pb2.JobState.Name(value))  # type: ignore[arg-type]
    except ValueError:
        raise ValidationError.single("states", f"not a job state: {value}") from None


def job_state_to_proto(state: JobState) -> jobs_pb2.JobState.ValueType:
    return jobs_pb2.JobState.Value(state.value)


def event_to_proto(event: AuditEvent, state: JobState | None) -> jobs_pb2.JobEvent:
    payload = struct_pb2.Struct()
    payload.update(event.payload)
    return jobs_pb2.JobEvent(
        id=event.id,
        occurred_at=timestamp(event.occurred_at),
        event_type=event.event_type,
        actor=event.actor,
        payload=payload,
        state=job_state_to_proto(state) if state else jobs_pb2.JOB_STATE_UNSPECIFIED,
    )


_NS = 1_000_000_000


def log_line_to_proto(record: LogRecord) -> logs_pb2.LogLine:
    # On the hot path of every log line: no datetime in between.
    return logs_pb2.LogLine(
        sequence=record.sequence,
        timestamp=timestamp_pb2.Timestamp(
            seconds=record.epoch_ns // _NS, nanos=record.epoch_ns % _NS
        ),
        stream=record.stream,  # type: ignore[arg-type]
        level=record.level,  # type: ignore[arg-type]
        line=record.line,
        attempt=record.attempt,
        invalid_utf8=record.invalid_utf8,
    )


def chunk_to_proto(chunk: LogChunk) -> logs_pb2.LogChunk:
    return logs_pb2.LogChunk(
        first_sequence=chunk.first_sequence,
        attempt=chunk.attempt,
        body=chunk.body,
        kinds=chunk.kinds,
        timestamps=chunk.timestamps,
    )


def chunk_from_proto(chunk: logs_pb2.LogChunk, attempt: int) -> LogChunk:
    """A chunk a worker sent for ``attempt``, checked.

    Raises:
        ValidationError: its columns do not agree.
    """
    parsed = LogChunk(chunk.first_sequence, attempt, chunk.body, chunk.kinds, chunk.timestamps)
    parsed.check()
    return parsed


_STREAMS = {s.value: s for s in LogStream}
_LEVELS = {v.value: v for v in LogLevel}


def log_line_from_proto(line: logs_pb2.LogLine, attempt: int) -> LogRecord:
    ts = line.timestamp
    return LogRecord(
        line.sequence,
        ts.seconds * _NS + ts.nanos,
        _STREAMS.get(line.stream, LogStream.STDOUT),
        _LEVELS.get(line.level, LogLevel.INFO),
        line.line,
        attempt,
        line.invalid_utf8,
    )


def worker_info_from_proto(info: worker_pb2.WorkerInfo) -> WorkerInfo:
    return WorkerInfo(
        hostname=info.hostname,
        arch=info.arch,
        runtime=info.runtime,
        cpu_cores=info.cpu_cores,
        memory_mb=info.memory_mb,
        region=info.region,
        gpus=info.gpus,
        labels=dict(info.labels),
        version=info.version,
    )


def worker_to_proto(worker: Worker) -> scheduler_pb2.Worker:
    info = worker.info
    return scheduler_pb2.Worker(
        id=worker.id,
        hostname=info.hostname,
        provider=worker.provider,
        state=scheduler_pb2.WorkerState.Value(f"WORKER_{worker.state.value}"),
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
        registered_at=timestamp(worker.registered_at),
        last_heartbeat_at=timestamp(worker.last_heartbeat_at),
    )
