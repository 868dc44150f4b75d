"""``hodei job …`` and ``hodei logs``: submit, follow, list, inspect and cancel jobs over gRPC."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import grpc
import typer
from rich.table import Column, Table
from rich.text import Text

from hodei.cli_output import err, out, print_error, print_status
from hodei.cli_tokens import cli_token
from hodei.client import HodeiClient
from hodei.domain.logs import LogChunk, LogLevel, LogStream
from hodei.tls import ClientTls
from hodei.v1 import jobs_pb2

job_app = typer.Typer(help="Submit, follow, list, inspect and cancel jobs.", no_args_is_help=True)

ServerOption = Annotated[
    str,
    typer.Option("--server", envvar="HODEI_SERVER_ADDRESS", help="The server's gRPC address."),
]
COMMAND_TYPES = {"shell": "SHELL", "python": "PYTHON", "node": "NODE", "docker-exec": "DOCKER_EXEC"}
# Exit statuses for jobs that ended without an exit code of their own, as `timeout` and shells do.
EXIT_TIMEOUT = 124
EXIT_CANCELLED = 130
EXIT_FAILED = 1

T = TypeVar("T")


def run_client(address: str, action: Callable[[HodeiClient], Awaitable[T]]) -> T:
    """Run one client action; a gRPC error becomes one clear line and exit status 1."""

    async def runner() -> T:
        async with HodeiClient(address, token=cli_token(), tls=ClientTls.from_env()) as client:
            return await action(client)

    try:
        return asyncio.run(runner())
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.UNAVAILABLE:
            print_error(
                f"cannot reach the Hodei server at {address} "
                "(is it running? start it with `hodei up`)"
            )
        elif error.code() == grpc.StatusCode.UNAUTHENTICATED:
            print_error(
                f"{error.details()} (set HODEI_TOKEN or run `hodei login TOKEN`; "
                "`hodei token create` makes one)"
            )
        else:
            print_error(error.details() or error.code().name)
        raise typer.Exit(1) from None


def _pairs(values: list[str], option: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {value!r}", param_hint=option)
        result[key] = val
    return result


def build_definition(
    script: str | None,
    file: Path | None,
    name: str | None,
    command_type: str,
    image: str,
    env: list[str],
    secret_env: list[str],
    cpu: float,
    memory_mb: int,
    timeout_ms: int,
    priority: str,
    retry: bool,
    max_attempts: int,
    provider: str,
    label: list[str],
) -> jobs_pb2.JobDefinition:
    """A JobDefinition from the command-line options."""
    if file is not None:
        script = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
    if not script:
        raise typer.BadParameter(
            "give the script as an argument or with --file", param_hint="SCRIPT"
        )
    kind = COMMAND_TYPES.get(command_type.lower())
    if kind is None:
        raise typer.BadParameter(f"must be one of {', '.join(COMMAND_TYPES)}", param_hint="--type")
    return jobs_pb2.JobDefinition(
        name=name or script.strip().splitlines()[0][:80],
        command_type=jobs_pb2.CommandType.Value(kind),
        script=script,
        image=image,
        env=_pairs(env, "--env"),
        secret_env=_pairs(secret_env, "--secret-env"),
        labels=_pairs(label, "--label"),
        resources=jobs_pb2.ResourceRequirements(
            cpu_cores=cpu, memory_mb=memory_mb, timeout_ms=timeout_ms
        ),
        preferences=jobs_pb2.Preferences(
            provider=provider,
            priority=jobs_pb2.Priority.Value(priority.upper())
            if priority.upper() in ("LOW", "NORMAL", "HIGH")
            else jobs_pb2.PRIORITY_UNSPECIFIED,
            allow_retry=retry,
            max_attempts=max_attempts,
        ),
    )


ScriptArg = Annotated[str | None, typer.Argument(help="The command or script to run.")]
FileOpt = Annotated[
    Path | None, typer.Option("--file", "-f", help="Read the script from a file (- for stdin).")
]
NameOpt = Annotated[
    str | None, typer.Option("--name", "-n", help="Job name (default: the script's first line).")
]
TypeOpt = Annotated[str, typer.Option("--type", "-t", help="shell, python, node or docker-exec.")]
ImageOpt = Annotated[str, typer.Option("--image", help="Container image (e.g. alpine:latest).")]
EnvOpt = Annotated[list[str], typer.Option("--env", "-e", help="KEY=VALUE, repeatable.")]
SecretOpt = Annotated[
    list[str],
    typer.Option("--secret-env", help="KEY=VALUE kept secret: masked in logs, never shown."),
]
CpuOpt = Annotated[float, typer.Option("--cpu", help="CPU cores (default 1).")]
MemOpt = Annotated[int, typer.Option("--memory", help="Memory in MB (default 512).")]
TimeoutOpt = Annotated[int, typer.Option("--timeout", help="Time limit in ms (default none).")]
PriorityOpt = Annotated[str, typer.Option("--priority", help="low, normal or high.")]
RetryOpt = Annotated[bool, typer.Option("--retry", help="Allow retries.")]
AttemptsOpt = Annotated[
    int, typer.Option("--max-attempts", help="Attempts with --retry (default 3).")
]
ProviderOpt = Annotated[str, typer.Option("--provider", help="Run on this provider only.")]
LabelOpt = Annotated[list[str], typer.Option("--label", "-l", help="KEY=VALUE, repeatable.")]


def _job_command(*, follow: bool) -> Callable[..., None]:
    """``job submit`` (follow=False) and ``job run`` (follow=True) take the same options."""

    def command(
        script: ScriptArg = None,
        file: FileOpt = None,
        name: NameOpt = None,
        command_type: TypeOpt = "shell",
        image: ImageOpt = "",
        env: EnvOpt = [],  # noqa: B006 - typer reads the default, never mutates it
        secret_env: SecretOpt = [],  # noqa: B006
        cpu: CpuOpt = 0,
        memory: MemOpt = 0,
        timeout: TimeoutOpt = 0,
        priority: PriorityOpt = "normal",
        retry: RetryOpt = False,
        max_attempts: AttemptsOpt = 0,
        provider: ProviderOpt = "",
        label: LabelOpt = [],  # noqa: B006
        server: ServerOption = "localhost:50051",
    ) -> None:
        definition = build_definition(
            script, file, name, command_type, image, env, secret_env, cpu, memory, timeout,
            priority, retry, max_attempts, provider, label,
        )  # fmt: skip
        if not follow:
            out.print(run_client(server, lambda c: c.queue(definition)))
            return

        async def action(client: HodeiClient) -> jobs_pb2.Job:
            job_id = await client.queue(definition)
            print_status(f"job {job_id} queued", style="dim")
            await stream_logs(client, job_id, follow=True, waiting="waiting for a worker…")
            return await client.get(job_id)

        raise typer.Exit(report_end(run_client(server, action)))

    command.__doc__ = (
        "Queue a job, stream its logs to the end, and exit with the job's exit status."
        if follow
        else "Queue a job and print its id."
    )
    return command


job_app.command("submit")(_job_command(follow=False))
job_app.command("run")(_job_command(follow=True))


def report_end(job: jobs_pb2.Job) -> int:
    """Print one line about how the job ended; return the exit status for the CLI."""
    state = jobs_pb2.JobState.Name(job.state)
    colour = "green" if state == "SUCCEEDED" else "red"
    detail = f": {job.error_message}" if job.error_message else ""
    if job.notice:
        print_status(f"note: {job.notice}", style="yellow")
    print_status(f"job {job.id} {state}{detail}", style=colour)
    if state == "TIMEOUT":
        return EXIT_TIMEOUT
    if state == "CANCELLED":
        return EXIT_CANCELLED
    if job.HasField("exit_code"):
        return job.exit_code
    return 0 if state == "SUCCEEDED" else EXIT_FAILED


_LEVEL_STYLE = {LogLevel.WARN: "yellow", LogLevel.ERROR: "red"}


def print_chunk(chunk: LogChunk) -> None:
    """Lines to stdout or stderr as the job wrote them; coloured by level on a terminal."""
    if not out.is_terminal and chunk.all_stdout:
        sys.stdout.write(chunk.body + "\n")  # all stdout, to a file or pipe: as it is
        sys.stdout.flush()
        return
    for line in chunk.records():
        target = err if line.stream == LogStream.STDERR else out
        if target.is_terminal:
            target.print(line.line, style=_LEVEL_STYLE.get(line.level), markup=False)
        else:
            target.file.write(line.line + "\n")
            target.file.flush()


async def stream_logs(client: HodeiClient, job_id: str, *, follow: bool, waiting: str) -> None:
    """Print the job's log lines as they come; a spinner shows until the first one."""
    status = err.status(waiting) if follow and err.is_terminal else None
    if status is not None:
        status.start()
    try:
        async for chunk in client.follow_chunks(job_id, follow=follow):
            if status is not None:
                status.stop()
                status = None
            print_chunk(chunk)
    finally:
        if status is not None:
            status.stop()


def logs(
    job_id: Annotated[str, typer.Argument(help="The job's id.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep streaming until the job ends.")
    ] = False,
    server: ServerOption = "localhost:50051",
) -> None:
    """Print a job's log (and with --follow, new lines until the job ends)."""
    run_client(
        server, lambda c: stream_logs(c, job_id, follow=follow, waiting="waiting for output…")
    )


@job_app.command("get")
def get(
    job_id: Annotated[str, typer.Argument(help="The job's id.")],
    server: ServerOption = "localhost:50051",
) -> None:
    """Show one job."""
    job = run_client(server, lambda c: c.get(job_id))
    table = Table(show_header=False, box=None)
    d = job.definition
    rows = [
        ("id", job.id),
        ("name", d.name),
        ("state", jobs_pb2.JobState.Name(job.state)),
        ("type", jobs_pb2.CommandType.Name(d.command_type)),
        ("script", d.script),
        ("image", d.image or "-"),
        ("attempt", str(job.attempt)),
        ("worker", job.worker_id or "-"),
        ("created", _when(job, "created_at")),
        ("started", _when(job, "started_at")),
        ("finished", _when(job, "finished_at")),
        ("exit code", str(job.exit_code) if job.HasField("exit_code") else "-"),
        ("error", job.error_message or "-"),
    ]
    if job.notice:
        rows.append(("note", job.notice))
    for key, value in rows:
        table.add_row(Text(key, style="bold"), Text(value))
    out.print(table)


def _when(job: jobs_pb2.Job, field: str) -> str:
    if not job.HasField(field):  # type: ignore[arg-type]
        return "-"
    return str(getattr(job, field).ToDatetime().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3])


def _duration(job: jobs_pb2.Job) -> str:
    if not job.HasField("started_at"):
        return "-"
    end = job.finished_at if job.HasField("finished_at") else None
    if end is None:
        return "running"
    seconds = (end.ToDatetime() - job.started_at.ToDatetime()).total_seconds()
    return f"{seconds:.2f}s"


@job_app.command("list")
def list_jobs(
    state: Annotated[
        list[str], typer.Option("--state", "-s", help="Only jobs in this state (repeatable).")
    ] = [],  # noqa: B006
    name: Annotated[str, typer.Option("--name", help="Only jobs whose name contains this.")] = "",
    limit: Annotated[int, typer.Option("--limit", help="How many (newest first).")] = 20,
    server: ServerOption = "localhost:50051",
) -> None:
    """List jobs, newest first."""
    states = []
    for value in state:
        if value.upper() not in jobs_pb2.JobState.keys()[1:]:
            raise typer.BadParameter(f"unknown state {value!r}", param_hint="--state")
        states.append(jobs_pb2.JobState.Value(value.upper()))
    request = jobs_pb2.ListJobsRequest(states=states, name=name, page_size=limit)
    response = run_client(server, lambda c: c.list(request))
    # The id is what people copy into other commands: never cut it.
    table = Table(Column("ID", no_wrap=True, min_width=36), "NAME", "STATE", "DURATION", "CREATED")
    for job in response.jobs:
        table.add_row(
            job.id,
            Text(job.definition.name),
            jobs_pb2.JobState.Name(job.state),
            _duration(job),
            _when(job, "created_at"),
        )
    out.print(table)


@job_app.command("cancel")
def cancel(
    job_id: Annotated[str, typer.Argument(help="The job's id.")],
    server: ServerOption = "localhost:50051",
) -> None:
    """Cancel a job."""
    job = run_client(server, lambda c: c.cancel(job_id))
    print_status(f"job {job.id}: cancel requested ({jobs_pb2.JobState.Name(job.state)})")
