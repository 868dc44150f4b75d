-- The picture of the database as the migrations leave it. Keep it equal to applying every
-- migration in order (a test checks this).

CREATE TABLE providers (
    id uuid PRIMARY KEY,
    name text NOT NULL UNIQUE,
    type text NOT NULL CHECK (type IN ('local', 'docker', 'kubernetes', 'firecracker')),
    enabled boolean NOT NULL DEFAULT true,
    priority integer NOT NULL DEFAULT 0,
    min_workers integer NOT NULL DEFAULT 0 CHECK (min_workers >= 0),
    max_workers integer NOT NULL DEFAULT 2 CHECK (max_workers >= min_workers),
    idle_timeout_s integer NOT NULL DEFAULT 300 CHECK (idle_timeout_s >= 0),
    config jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE workers (
    id uuid PRIMARY KEY,
    provider text NOT NULL,
    hostname text NOT NULL,
    arch text NOT NULL,
    region text NOT NULL DEFAULT '',
    runtime text NOT NULL,
    cpu_cores double precision NOT NULL CHECK (cpu_cores >= 0),
    memory_mb bigint NOT NULL CHECK (memory_mb >= 0),
    gpus integer NOT NULL DEFAULT 0,
    labels jsonb NOT NULL DEFAULT '{}',
    version text NOT NULL DEFAULT '',
    state text NOT NULL CHECK (state IN ('READY', 'DRAINING', 'DISCONNECTED', 'TERMINATED')),
    session_token_hash bytea NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_heartbeat_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_audited_heartbeat_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    terminated_at timestamptz,
    cpu_percent double precision,
    memory_used_mb bigint
);

CREATE INDEX workers_live ON workers (state) WHERE state <> 'TERMINATED';

CREATE TABLE worker_bootstrap_tokens (
    token_hash bytea PRIMARY KEY,
    provider text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    worker_id uuid
);

CREATE TABLE jobs (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    state text NOT NULL CHECK (
        state IN ('PENDING', 'ASSIGNED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED', 'TIMEOUT')
    ),
    command_type text NOT NULL CHECK (command_type IN ('SHELL', 'DOCKER_EXEC', 'PYTHON', 'NODE')),
    script text NOT NULL,
    image text NOT NULL DEFAULT '',
    env jsonb NOT NULL DEFAULT '{}',
    secret_env jsonb NOT NULL DEFAULT '{}',
    cpu_cores double precision NOT NULL,
    memory_mb bigint NOT NULL,
    storage_mb bigint NOT NULL DEFAULT 0,
    timeout_ms bigint NOT NULL DEFAULT 0,
    gpu_required boolean NOT NULL DEFAULT false,
    arch text NOT NULL DEFAULT '',
    provider text NOT NULL DEFAULT '',
    region text NOT NULL DEFAULT '',
    priority smallint NOT NULL CHECK (priority BETWEEN 1 AND 3),
    allow_retry boolean NOT NULL DEFAULT false,
    max_attempts integer NOT NULL DEFAULT 1 CHECK (max_attempts >= 1),
    labels jsonb NOT NULL DEFAULT '{}',
    attempt integer NOT NULL DEFAULT 0,
    worker_id uuid,
    lease_expires_at timestamptz,
    run_after timestamptz NOT NULL DEFAULT clock_timestamp(),
    exit_code integer,
    error_message text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    assigned_at timestamptz,
    started_at timestamptz,
    finished_at timestamptz,
    cancel_requested_at timestamptz,
    log_truncated boolean NOT NULL DEFAULT false,
    notice text NOT NULL DEFAULT ''
);

-- The claim walks this index: highest priority first, then oldest.
CREATE INDEX jobs_pending ON jobs (priority DESC, created_at, id) WHERE state = 'PENDING';
-- What each worker holds, to compute its free capacity.
CREATE INDEX jobs_active_by_worker ON jobs (worker_id) WHERE state IN ('ASSIGNED', 'RUNNING');
-- History pages: newest first, keyset by (created_at, id).
CREATE INDEX jobs_created ON jobs (created_at DESC, id DESC);
CREATE INDEX jobs_state_created ON jobs (state, created_at DESC, id DESC);
-- The reaper looks for attempts whose lease ran out.
CREATE INDEX jobs_leases ON jobs (lease_expires_at) WHERE state IN ('ASSIGNED', 'RUNNING');

CREATE TABLE job_attempts (
    job_id uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt integer NOT NULL,
    worker_id uuid NOT NULL,
    state text NOT NULL,
    assigned_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at timestamptz,
    finished_at timestamptz,
    exit_code integer,
    error_message text NOT NULL DEFAULT '',
    PRIMARY KEY (job_id, attempt)
);

CREATE TABLE job_log_chunks (
    job_id uuid NOT NULL,
    first_sequence bigint NOT NULL CHECK (first_sequence >= 1),
    last_sequence bigint NOT NULL CHECK (last_sequence >= first_sequence),
    attempt integer NOT NULL,
    -- The lines joined by "\n" (a line never holds a newline).
    body text NOT NULL,
    -- One byte per line: bit 0 stderr; bits 1-2 the level (0 INFO, 1 WARN, 2 ERROR); bit 3 the
    -- raw bytes were not UTF-8.
    kinds bytea NOT NULL CHECK (length(kinds) = last_sequence - first_sequence + 1),
    -- One big-endian int64 per line: microseconds since the Unix epoch.
    ts bytea NOT NULL CHECK (length(ts) = 8 * (last_sequence - first_sequence + 1)),
    stored_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (job_id, first_sequence)
);

ALTER TABLE job_log_chunks ALTER COLUMN body SET COMPRESSION lz4;

-- BRIN: chunks arrive in time order, so a tiny index finds the old ones without slowing appends.
CREATE INDEX job_log_chunks_stored_at ON job_log_chunks USING brin (stored_at);

-- The lines of a chunk's body ('' is one empty line, not none).
CREATE FUNCTION hodei_log_lines(body text) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN body = '' THEN ARRAY[''] ELSE string_to_array(body, E'\n') END;

-- The timestamp of line `i` (from 0) of a chunk.
CREATE FUNCTION hodei_log_ts(ts bytea, i integer) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN timestamptz 'epoch'
    + ('x' || encode(substring(ts FROM 8 * i + 1 FOR 8), 'hex'))::bit(64)::bigint
      * interval '1 microsecond';

CREATE VIEW job_logs AS
SELECT c.job_id,
       c.first_sequence + u.n - 1 AS sequence,
       c.attempt,
       hodei_log_ts(c.ts, u.n::integer - 1) AS ts,
       CASE WHEN get_byte(c.kinds, u.n::integer - 1) & 1 = 1 THEN 'stderr' ELSE 'stdout' END
           AS stream,
       (ARRAY['INFO', 'WARN', 'ERROR'])[(get_byte(c.kinds, u.n::integer - 1) >> 1 & 3) + 1]
           AS level,
       u.line,
       get_byte(c.kinds, u.n::integer - 1) & 8 <> 0 AS invalid_utf8
FROM job_log_chunks c
CROSS JOIN LATERAL unnest(hodei_log_lines(c.body)) WITH ORDINALITY AS u (line, n);

CREATE TABLE job_resource_samples (
    job_id uuid NOT NULL,
    attempt integer NOT NULL,
    sampled_at timestamptz NOT NULL,
    -- Of the job's whole process group: 100 is one core busy.
    cpu_percent real NOT NULL CHECK (cpu_percent >= 0),
    memory_mb real NOT NULL CHECK (memory_mb >= 0),
    PRIMARY KEY (job_id, sampled_at, attempt)
);

-- BRIN: samples arrive in time order; retention finds the old ones cheaply.
CREATE INDEX job_resource_samples_sampled_at ON job_resource_samples USING brin (sampled_at);

-- Finished jobs by when they finished, for the metrics' trends.
CREATE INDEX jobs_finished_at ON jobs (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE audit_logs (
    id bigserial PRIMARY KEY,
    occurred_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    event_type text NOT NULL,
    actor text NOT NULL,
    correlation_id text,
    payload jsonb NOT NULL DEFAULT '{}'
);

CREATE INDEX audit_logs_correlation ON audit_logs (correlation_id, id);
CREATE INDEX audit_logs_occurred ON audit_logs (occurred_at DESC);
CREATE INDEX audit_logs_event_type ON audit_logs (event_type, occurred_at);

-- What a job becomes when one of its attempts ends with `outcome`:
--   SUCCEEDED, FAILED, TIMEOUT, CANCELLED (reported by the worker), LOST (its lease ran out) or
--   RELEASED (handed back by a draining worker, not counted as an attempt).
-- A cancel request wins over any retry; a failed, timed-out or lost attempt is retried while
-- allow_retry is set and fewer than max_attempts attempts were counted. Mirrors
-- hodei.domain.retries.state_after_attempt (a test checks that both agree).
CREATE FUNCTION hodei_state_after_attempt(
    outcome text,
    allow_retry boolean,
    max_attempts integer,
    counted_attempts bigint,
    cancel_requested boolean
) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN outcome IN ('SUCCEEDED', 'CANCELLED') THEN outcome
        WHEN cancel_requested THEN 'CANCELLED'
        WHEN outcome = 'RELEASED' THEN 'PENDING'
        WHEN allow_retry AND counted_attempts < max_attempts THEN 'PENDING'
        WHEN outcome = 'LOST' THEN 'FAILED'
        ELSE outcome
    END
$$;

-- When a retry may start: base * 2^(attempt - 1) seconds, at most cap, with +-25% jitter.
CREATE FUNCTION hodei_retry_delay(attempt integer, base_s double precision, cap_s double precision)
RETURNS interval LANGUAGE sql VOLATILE AS $$
    SELECT make_interval(secs => least(cap_s, base_s * power(2, greatest(attempt, 1) - 1))
                                 * (0.75 + random() * 0.5))
$$;

CREATE TABLE api_tokens (
    id uuid PRIMARY KEY,
    name text NOT NULL UNIQUE,
    role text NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    token_hash text NOT NULL UNIQUE,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at timestamptz,
    revoked_at timestamptz,
    last_used_at timestamptz
);
