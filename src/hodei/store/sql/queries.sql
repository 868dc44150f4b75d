-- insert_job --
-- Store a new PENDING job, its JobCreated audit event and a wake-up for dispatchers, atomically.
WITH job AS (
    INSERT INTO jobs (
        id, name, state, command_type, script, image, env, secret_env, cpu_cores, memory_mb,
        storage_mb, timeout_ms, gpu_required, arch, provider, region, priority, allow_retry,
        max_attempts, labels
    ) VALUES (
        %(id)s, %(name)s, 'PENDING', %(command_type)s, %(script)s, %(image)s, %(env)s,
        %(secret_env)s, %(cpu_cores)s, %(memory_mb)s, %(storage_mb)s, %(timeout_ms)s,
        %(gpu_required)s, %(arch)s, %(provider)s, %(region)s, %(priority)s, %(allow_retry)s,
        %(max_attempts)s, %(labels)s
    )
    RETURNING id, created_at
), audit AS (
    INSERT INTO audit_logs (occurred_at, event_type, actor, correlation_id, payload)
    SELECT created_at, 'JobCreated', %(actor)s, id::text, %(audit_payload)s FROM job
)
SELECT created_at, pg_notify('hodei_jobs', %(origin)s) FROM job;

-- get_job --
-- One job by id.
SELECT * FROM jobs WHERE id = %(id)s;

-- list_jobs --
-- A page of jobs, newest first, keyset-paginated by (created_at, id), with optional filters.
SELECT * FROM jobs
WHERE (%(states)s::text[] IS NULL OR state = ANY (%(states)s::text[]))
  AND (%(name)s::text IS NULL OR name ILIKE '%%' || %(name)s || '%%')
  AND (%(created_after)s::timestamptz IS NULL OR created_at >= %(created_after)s)
  AND (%(created_before)s::timestamptz IS NULL OR created_at < %(created_before)s)
  AND (%(after_created_at)s::timestamptz IS NULL
       OR (created_at, id) < (%(after_created_at)s::timestamptz, %(after_id)s::uuid))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s;

-- end_pending_job --
-- Move a PENDING job to an end state (cancelled by a person, or failed as unschedulable).
WITH ended AS (
    UPDATE jobs SET state = %(to)s, error_message = %(error_message)s,
                    finished_at = clock_timestamp()
    WHERE id = %(id)s AND state = 'PENDING'
    RETURNING id, finished_at
), audit AS (
    -- The request (e.g. JobCancelled), if any, then the change, in that order.
    INSERT INTO audit_logs (event_type, actor, correlation_id, payload)
    SELECT event.type, %(actor)s, ended.id::text, event.payload
    FROM ended, (VALUES
        (1, %(request_event)s::text, %(request_payload)s::jsonb),
        (2, 'JobStatusChanged', jsonb_strip_nulls(jsonb_build_object(
            'from', 'PENDING', 'to', %(to)s::text,
            'reason', NULLIF(%(error_message)s::text, ''))))
    ) AS event (n, type, payload)
    WHERE event.type IS NOT NULL
    ORDER BY event.n
)
SELECT id, pg_notify('hodei_job_events', id::text) FROM ended;

-- claim_jobs --
-- Assign the best PENDING jobs that fit the worker's free capacity together (at most `limit`,
-- a prefix of the queue order), each with a lease, an attempt row and JobAssigned, in one step.
-- MATERIALIZED: computed once, not again for every PENDING row the scan looks at.
WITH worker AS MATERIALIZED (
    SELECT w.id, w.provider, w.runtime, w.arch, w.region, w.gpus,
           w.cpu_cores - COALESCE(used.cpu, 0) AS free_cpu,
           w.memory_mb - COALESCE(used.memory, 0) AS free_memory
    FROM workers w
    LEFT JOIN LATERAL (
        SELECT sum(j.cpu_cores) AS cpu, sum(j.memory_mb) AS memory
        FROM jobs j
        WHERE j.worker_id = w.id AND j.state IN ('ASSIGNED', 'RUNNING')
    ) used ON true
    WHERE w.id = %(worker_id)s AND w.state = 'READY'
      -- Silent for a whole lease (frozen, cut off): it would lose whatever it is given.
      AND w.last_heartbeat_at > clock_timestamp() - %(lease_ttl)s
), candidate AS (
    SELECT j.id, j.cpu_cores, j.memory_mb, j.priority, j.created_at FROM jobs j, worker w
    WHERE j.state = 'PENDING'
      AND j.run_after <= clock_timestamp()
      AND j.cpu_cores <= w.free_cpu + 1e-9
      AND j.memory_mb <= w.free_memory
      AND (NOT j.gpu_required OR w.gpus > 0)
      AND (j.arch = '' OR j.arch = w.arch)
      AND (j.provider = '' OR j.provider = w.provider)
      AND (j.region = '' OR j.region = w.region)
      AND (j.command_type <> 'DOCKER_EXEC' OR w.runtime <> 'process')
      -- A job with an image runs in a container wherever some worker or provider offers them,
      -- one without on a host process wherever one of those fits it (placement.py
      -- eligible_profiles says the same), unless it named the provider.
      AND (j.provider <> '' OR CASE WHEN w.runtime = 'process'
                                    THEN j.image = '' OR NOT %(containers_exist)s
                                    ELSE j.image <> '' OR j.command_type = 'DOCKER_EXEC'
                                         OR NOT EXISTS (
                                             SELECT 1 FROM jsonb_to_recordset(%(process_shapes)s)
                                                 AS p (cpu_cores float8, memory_mb bigint,
                                                       gpus integer, arch text, region text)
                                             WHERE j.cpu_cores <= p.cpu_cores + 1e-9
                                               AND j.memory_mb <= p.memory_mb
                                               AND (NOT j.gpu_required OR p.gpus > 0)
                                               AND (j.arch = '' OR j.arch = p.arch)
                                               AND (j.region = '' OR j.region = p.region)) END)
    ORDER BY j.priority DESC, j.created_at, j.id
    LIMIT %(limit)s
    FOR UPDATE OF j SKIP LOCKED
), fitting AS (
    -- The longest prefix whose running totals still fit (each job alone fits by the filter).
    SELECT c.id FROM (
        SELECT id, sum(cpu_cores) OVER queue AS cpu, sum(memory_mb) OVER queue AS memory
        FROM candidate
        WINDOW queue AS (ORDER BY priority DESC, created_at, id)
    ) c, worker w
    WHERE c.cpu <= w.free_cpu + 1e-9 AND c.memory <= w.free_memory
), assigned AS (
    UPDATE jobs SET state = 'ASSIGNED', attempt = jobs.attempt + 1, worker_id = %(worker_id)s,
                    assigned_at = clock_timestamp(), started_at = NULL,
                    lease_expires_at = clock_timestamp() + %(lease_ttl)s
    FROM fitting WHERE jobs.id = fitting.id
    RETURNING jobs.*
), attempt_row AS (
    INSERT INTO job_attempts (job_id, attempt, worker_id, state, assigned_at)
    SELECT id, attempt, worker_id, 'ASSIGNED', assigned_at FROM assigned
), audit AS (
    INSERT INTO audit_logs (occurred_at, event_type, actor, correlation_id, payload)
    SELECT assigned_at, 'JobAssigned', 'system', id::text,
           jsonb_build_object('worker_id', worker_id::text, 'attempt', attempt)
    FROM assigned
)
SELECT assigned.*,
       COALESCE((SELECT l.last_sequence FROM job_log_chunks l WHERE l.job_id = assigned.id
                 ORDER BY l.first_sequence DESC LIMIT 1), 0)
           AS last_log_sequence,
       pg_notify('hodei_job_events', assigned.id::text) AS notified
FROM assigned
ORDER BY assigned.priority DESC, assigned.created_at, assigned.id;

-- mark_job_running --
-- ASSIGNED -> RUNNING for the current attempt held by this worker. JobImagePulled comes first
-- when the worker pulled the job's image; when it ran the job on its host instead, the
-- JobStatusChanged payload says why the image was not applied (and so does the job's notice).
WITH running AS (
    UPDATE jobs SET state = 'RUNNING', started_at = %(started_at)s,
                    lease_expires_at = clock_timestamp() + %(lease_ttl)s,
                    notice = CASE WHEN %(image_not_applied)s::text = '' THEN ''
                                  ELSE 'image ' || image || ' was not applied: '
                                       || %(image_not_applied)s::text END
    WHERE id = %(job_id)s AND attempt = %(attempt)s AND worker_id = %(worker_id)s
      AND state = 'ASSIGNED'
    RETURNING id, attempt, started_at
), attempt_row AS (
    UPDATE job_attempts SET state = 'RUNNING', started_at = running.started_at
    FROM running WHERE job_attempts.job_id = running.id AND job_attempts.attempt = running.attempt
), audit AS (
    INSERT INTO audit_logs (event_type, actor, correlation_id, payload)
    SELECT e.event_type, %(actor)s, running.id::text, e.payload
    FROM running, LATERAL (VALUES
        (1, 'JobImagePulled',
         jsonb_build_object('image', %(image_pulled)s::text, 'attempt', running.attempt,
                            'duration_ms', %(pull_ms)s::bigint)),
        (2, 'JobStatusChanged',
         jsonb_build_object('from', 'ASSIGNED', 'to', 'RUNNING', 'attempt', running.attempt,
                            'pid', %(pid)s::integer)
         || CASE WHEN %(image_not_applied)s::text = '' THEN '{}'::jsonb
                 ELSE jsonb_build_object('image_not_applied', %(image_not_applied)s::text) END)
    ) AS e (ord, event_type, payload)
    WHERE e.ord = 2 OR %(image_pulled)s::text <> ''
    ORDER BY e.ord
)
SELECT id, pg_notify('hodei_job_events', id::text) FROM running;

-- finish_job --
-- The end of the current attempt held by this worker: retried (back to PENDING after a backoff),
-- handed back, or an end state, as hodei_state_after_attempt decides; audited.
WITH previous AS (
    SELECT id, state, attempt, allow_retry, max_attempts,
           cancel_requested_at IS NOT NULL AS cancel_requested,
           (SELECT count(*) FROM job_attempts a
            WHERE a.job_id = jobs.id AND a.state <> 'RELEASED') AS counted
    FROM jobs
    WHERE id = %(job_id)s AND attempt = %(attempt)s AND worker_id = %(worker_id)s
      AND state IN ('ASSIGNED', 'RUNNING')
    FOR UPDATE
), decided AS (
    SELECT previous.*, hodei_state_after_attempt(%(outcome)s, allow_retry, max_attempts,
                                                 counted, cancel_requested) AS next_state
    FROM previous
), finished AS (
    UPDATE jobs SET
        state = d.next_state,
        exit_code = CASE WHEN d.next_state = 'PENDING' THEN NULL ELSE %(exit_code)s::integer END,
        error_message = %(error_message)s,
        log_truncated = jobs.log_truncated OR %(log_truncated)s,
        finished_at = CASE WHEN d.next_state = 'PENDING' THEN NULL ELSE %(finished_at)s END,
        started_at = CASE WHEN d.next_state = 'PENDING' THEN NULL ELSE jobs.started_at END,
        worker_id = CASE WHEN d.next_state = 'PENDING' THEN NULL ELSE jobs.worker_id END,
        lease_expires_at = NULL,
        run_after = CASE
            WHEN d.next_state = 'PENDING' AND %(outcome)s <> 'RELEASED'
            THEN clock_timestamp() + hodei_retry_delay(d.attempt, %(retry_base_s)s, %(retry_cap_s)s)
            ELSE clock_timestamp() END
    FROM decided d WHERE jobs.id = d.id
    RETURNING jobs.id, jobs.attempt, jobs.state, jobs.run_after, d.state AS from_state
), attempt_row AS (
    UPDATE job_attempts SET state = %(outcome)s, finished_at = %(finished_at)s,
                            exit_code = %(exit_code)s, error_message = %(error_message)s
    FROM finished
    WHERE job_attempts.job_id = finished.id AND job_attempts.attempt = finished.attempt
), audit AS (
    INSERT INTO audit_logs (event_type, actor, correlation_id, payload)
    SELECT CASE WHEN state = 'PENDING' THEN 'JobRetried' ELSE 'JobStatusChanged' END,
           %(actor)s, id::text,
           jsonb_strip_nulls(jsonb_build_object(
               'from', from_state, 'to', state, 'attempt', attempt,
               'outcome', CASE WHEN state <> %(outcome)s THEN %(outcome)s::text END,
               'exit_code', %(exit_code)s::integer,
               'error', NULLIF(%(error_message)s::text, ''),
               'run_after', CASE WHEN state = 'PENDING' THEN run_after END))
    FROM finished
)
SELECT id, state, pg_notify('hodei_job_events', id::text) AS notified,
       CASE WHEN state = 'PENDING' THEN pg_notify('hodei_jobs', %(origin)s) END AS requeued
FROM finished;

-- job_fencing_state --
-- The job now and the attempt a worker talks about, to explain why its message was not applied.
SELECT j.state, j.attempt, j.worker_id, a.worker_id AS attempt_worker_id, a.state AS attempt_state
FROM jobs j
LEFT JOIN job_attempts a ON a.job_id = j.id AND a.attempt = %(attempt)s
WHERE j.id = %(job_id)s;

-- reap_attempts --
-- Attempts whose lease ran out (the worker is lost) or whose deadline passed with no result:
-- retried, failed or timed out as hodei_state_after_attempt decides; audited.
WITH expired AS (
    SELECT id, attempt, state, worker_id, allow_retry, max_attempts,
           cancel_requested_at IS NOT NULL AS cancel_requested,
           CASE WHEN lease_expires_at < clock_timestamp() THEN 'LOST' ELSE 'TIMEOUT' END
               AS outcome,
           (SELECT count(*) FROM job_attempts a
            WHERE a.job_id = jobs.id AND a.state <> 'RELEASED') AS counted
    FROM jobs
    WHERE state IN ('ASSIGNED', 'RUNNING')
      AND (lease_expires_at < clock_timestamp()
           OR (timeout_ms > 0 AND started_at + make_interval(
                   secs => (timeout_ms + %(timeout_grace_ms)s) / 1000.0) < clock_timestamp()))
    ORDER BY lease_expires_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), decided AS (
    SELECT expired.*,
           hodei_state_after_attempt(outcome, allow_retry, max_attempts, counted,
                                     cancel_requested) AS next_state,
           CASE WHEN outcome = 'LOST' THEN 'worker lost: its lease ran out'
                ELSE 'timed out: no result from the worker by the deadline' END AS reason
    FROM expired
), ended AS (
    UPDATE jobs SET
        state = d.next_state,
        error_message = d.reason,
        finished_at = CASE WHEN d.next_state = 'PENDING' THEN NULL ELSE clock_timestamp() END,
        started_at = CASE WHEN d.next_state = 'PENDING' THEN NULL ELSE jobs.started_at END,
        worker_id = CASE WHEN d.next_state = 'PENDING' THEN NULL ELSE jobs.worker_id END,
        lease_expires_at = NULL,
        run_after = CASE WHEN d.next_state = 'PENDING'
            THEN clock_timestamp() + hodei_retry_delay(d.attempt, %(retry_base_s)s, %(retry_cap_s)s)
            ELSE jobs.run_after END
    FROM decided d WHERE jobs.id = d.id
    RETURNING jobs.id, jobs.attempt, jobs.state, jobs.run_after, d.state AS from_state,
              d.worker_id AS lost_worker_id, d.outcome, d.reason
), attempt_rows AS (
    UPDATE job_attempts SET state = ended.outcome, finished_at = clock_timestamp(),
                            error_message = ended.reason
    FROM ended
    WHERE job_attempts.job_id = ended.id AND job_attempts.attempt = ended.attempt
), audit AS (
    INSERT INTO audit_logs (event_type, actor, correlation_id, payload)
    SELECT CASE WHEN state = 'PENDING' THEN 'JobRetried' ELSE 'JobStatusChanged' END,
           'system', id::text,
           jsonb_strip_nulls(jsonb_build_object(
               'from', from_state, 'to', state, 'attempt', attempt, 'outcome', outcome,
               'error', reason, 'worker_id', lost_worker_id::text,
               'run_after', CASE WHEN state = 'PENDING' THEN run_after END))
    FROM ended
)
SELECT id, attempt, state, lost_worker_id, outcome,
       pg_notify('hodei_job_events', id::text) AS notified,
       CASE WHEN state = 'PENDING' THEN pg_notify('hodei_jobs', %(origin)s) END AS requeued
FROM ended;

-- extend_leases --
-- Give every active attempt a full lease again: after this server started or PostgreSQL came
-- back, no worker could renew its leases, and none should be declared lost for that.
UPDATE jobs SET lease_expires_at = greatest(lease_expires_at, clock_timestamp() + %(lease_ttl)s)
WHERE state IN ('ASSIGNED', 'RUNNING');

-- request_cancel --
-- Record a cancel request for an active job (it outlives restarts) and tell every server.
WITH requested AS (
    UPDATE jobs SET cancel_requested_at = COALESCE(cancel_requested_at, clock_timestamp())
    WHERE id = %(id)s AND state IN ('ASSIGNED', 'RUNNING')
    RETURNING id, attempt, worker_id, state
), audit AS (
    INSERT INTO audit_logs (event_type, actor, correlation_id, payload)
    SELECT 'JobCancelled', %(actor)s, id::text,
           jsonb_build_object('state', state, 'attempt', attempt)
    FROM requested
)
SELECT id, attempt, worker_id,
       pg_notify('hodei_cancels', id::text || ':' || attempt || ':' || worker_id::text)
           AS notified
FROM requested;

-- append_log_chunk --
-- Store a chunk of lines for the current attempt, unless lines from its first one on are stored
-- already (a chunk sent again after a reconnect): then `stored_through` says up to where, and
-- nothing is written. Chunks of a job arrive in order, so the newest chunk tells.
WITH current_attempt AS (
    SELECT id FROM jobs
    WHERE id = %(job_id)s AND attempt = %(attempt)s AND worker_id = %(worker_id)s
), newest AS (
    SELECT last_sequence FROM job_log_chunks WHERE job_id = %(job_id)s
    ORDER BY first_sequence DESC LIMIT 1
), stored AS (
    INSERT INTO job_log_chunks (job_id, first_sequence, last_sequence, attempt, body, kinds, ts)
    SELECT id, %(first_sequence)s, %(last_sequence)s, %(attempt)s, %(body)s, %(kinds)s, %(ts)s
    FROM current_attempt
    WHERE NOT EXISTS (SELECT 1 FROM newest WHERE last_sequence >= %(first_sequence)s)
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM current_attempt) AS fenced_ok,
       (SELECT count(*) FROM stored) AS stored,
       (SELECT last_sequence FROM newest) AS stored_through,
       pg_notify('hodei_logs', %(notice)s) AS notified;

-- delete_old_logs --
-- Up to `batch` chunks stored before `age` ago: one short statement at a time, so that appends
-- never wait behind a long delete. Chunks are never updated, so their ctid is stable.
WITH doomed AS (
    SELECT ctid FROM job_log_chunks WHERE stored_at < clock_timestamp() - %(age)s
    LIMIT %(batch)s
), deleted AS (
    DELETE FROM job_log_chunks WHERE ctid = ANY (ARRAY(SELECT ctid FROM doomed))
    RETURNING last_sequence - first_sequence + 1 AS lines
)
SELECT count(*) AS chunks, coalesce(sum(lines), 0)::bigint AS lines FROM deleted;

-- read_log_chunks --
-- The chunks that hold lines `after_sequence` + 1 to `after_sequence` + `limit`, in order: one
-- index range scan, however many lines each chunk holds.
SELECT first_sequence, attempt, body, kinds, ts FROM job_log_chunks
WHERE job_id = %(job_id)s
  AND first_sequence >= coalesce(
      (SELECT max(first_sequence) FROM job_log_chunks
       WHERE job_id = %(job_id)s AND first_sequence <= %(after_sequence)s + 1), 1)
  AND first_sequence <= %(after_sequence)s + %(limit)s
ORDER BY first_sequence;

-- get_logs_filtered --
-- A page of a job's log, by sequence, filtered by level and text, line by line.
SELECT c.first_sequence + u.n - 1 AS sequence, c.attempt,
       (extract(epoch FROM hodei_log_ts(c.ts, u.n::integer - 1)) * 1000000)::bigint * 1000
           AS epoch_ns,
       get_byte(c.kinds, u.n::integer - 1) AS kind, u.line
FROM job_log_chunks c
CROSS JOIN LATERAL unnest(hodei_log_lines(c.body)) WITH ORDINALITY AS u (line, n)
WHERE c.job_id = %(job_id)s AND c.last_sequence > %(after_sequence)s
  AND c.first_sequence + u.n - 1 > %(after_sequence)s
  AND (%(levels)s::integer[] IS NULL
       OR (get_byte(c.kinds, u.n::integer - 1) >> 1 & 3) = ANY (%(levels)s::integer[]))
  AND (%(contains)s::text IS NULL OR strpos(lower(u.line), lower(%(contains)s)) > 0)
ORDER BY c.first_sequence, u.n
LIMIT %(limit)s;

-- job_events --
-- A job's audit trail after a given event id, oldest first.
SELECT id, occurred_at, event_type, actor, payload FROM audit_logs
WHERE correlation_id = %(job_id)s AND id > %(after_id)s
ORDER BY id;

-- queue_status --
-- How many jobs are in each state, how many may run now, and how many workers are ready.
SELECT
    (SELECT coalesce(jsonb_object_agg(state, n), '{}') FROM (
        SELECT state, count(*) AS n FROM jobs GROUP BY state) s) AS by_state,
    (SELECT count(*) FROM jobs WHERE state = 'PENDING' AND run_after <= clock_timestamp())
        AS queue_depth,
    (SELECT count(*) FROM jobs WHERE state = 'PENDING' AND run_after > clock_timestamp())
        AS delayed,
    (SELECT count(*) FROM workers WHERE state = 'READY') AS ready_workers;

-- list_workers --
-- Workers with what they hold right now.
SELECT w.*, COALESCE(used.cpu, 0) AS used_cpu_cores, COALESCE(used.memory, 0) AS used_memory_mb,
       COALESCE(used.jobs, 0) AS running_jobs
FROM workers w
LEFT JOIN LATERAL (
    SELECT sum(j.cpu_cores) AS cpu, sum(j.memory_mb) AS memory, count(*) AS jobs
    FROM jobs j WHERE j.worker_id = w.id AND j.state IN ('ASSIGNED', 'RUNNING')
) used ON true
WHERE %(include_terminated)s OR w.state <> 'TERMINATED'
ORDER BY w.registered_at;

-- create_bootstrap_token --
-- A one-time token a provider hands to the worker it starts.
INSERT INTO worker_bootstrap_tokens (token_hash, provider, worker_id, expires_at)
VALUES (%(token_hash)s, %(provider)s, %(worker_id)s, clock_timestamp() + %(ttl)s);

-- consume_bootstrap_token --
-- Use a one-time token: it must exist, be unused and unexpired. Returns its provider and the
-- worker id it was made for (or the one given, when it was made for none).
UPDATE worker_bootstrap_tokens SET used_at = clock_timestamp(),
                                   worker_id = COALESCE(worker_id, %(worker_id)s)
WHERE token_hash = %(token_hash)s AND used_at IS NULL AND expires_at > clock_timestamp()
RETURNING provider, worker_id;

-- bootstrap_token_state --
-- Why a one-time token was refused: unknown, used or expired.
SELECT used_at IS NOT NULL AS used, expires_at <= clock_timestamp() AS expired
FROM worker_bootstrap_tokens WHERE token_hash = %(token_hash)s;

-- insert_worker --
-- A newly registered worker and its WorkerRegistered audit event.
WITH worker AS (
    INSERT INTO workers (id, provider, hostname, arch, region, runtime, cpu_cores, memory_mb,
                         gpus, labels, version, state, session_token_hash)
    VALUES (%(id)s, %(provider)s, %(hostname)s, %(arch)s, %(region)s, %(runtime)s,
            %(cpu_cores)s, %(memory_mb)s, %(gpus)s, %(labels)s, %(version)s, 'DISCONNECTED',
            %(session_token_hash)s)
    RETURNING id, registered_at
)
INSERT INTO audit_logs (occurred_at, event_type, actor, correlation_id, payload)
SELECT registered_at, 'WorkerRegistered', 'worker:' || id::text, id::text, %(audit_payload)s
FROM worker;

-- worker_session --
-- The worker a session token belongs to, unless it was terminated.
SELECT id, provider, state, cpu_cores, memory_mb FROM workers
WHERE id = %(id)s AND session_token_hash = %(session_token_hash)s AND state <> 'TERMINATED';

-- worker_assigned_jobs --
-- Attempts given to a worker that it has not reported started: sent again when it reconnects.
SELECT jobs.*,
       COALESCE((SELECT l.last_sequence FROM job_log_chunks l WHERE l.job_id = jobs.id
                 ORDER BY l.first_sequence DESC LIMIT 1), 0)
           AS last_log_sequence
FROM jobs WHERE worker_id = %(id)s AND state = 'ASSIGNED';

-- worker_active_jobs --
-- The attempts a worker holds (ASSIGNED or RUNNING), with what they reserve.
SELECT id, attempt, cpu_cores, memory_mb, cancel_requested_at IS NOT NULL AS cancel_requested
FROM jobs
WHERE worker_id = %(id)s AND state IN ('ASSIGNED', 'RUNNING');

-- set_worker_state --
-- Change a worker's state and audit it with the given event.
WITH changed AS (
    UPDATE workers SET state = %(state)s, last_heartbeat_at = clock_timestamp(),
                       last_audited_heartbeat_at = clock_timestamp(),
                       terminated_at = CASE WHEN %(state)s = 'TERMINATED'
                                            THEN clock_timestamp() END
    WHERE id = %(id)s AND state <> 'TERMINATED'
    RETURNING id
)
INSERT INTO audit_logs (event_type, actor, correlation_id, payload)
SELECT %(event_type)s, %(actor)s, id::text,
       jsonb_build_object('state', %(state)s::text, 'reason', %(reason)s::text)
FROM changed;

-- worker_heartbeat --
-- Record a heartbeat, renew the leases of the attempts the worker says it holds, and audit at
-- most once a minute. Returns the attempts it named that are no longer its to run (reaped,
-- retried elsewhere, ended): it must stop any of them that still runs.
WITH beat AS (
    UPDATE workers SET last_heartbeat_at = clock_timestamp(),
        cpu_percent = %(cpu_percent)s, memory_used_mb = %(memory_used_mb)s,
        last_audited_heartbeat_at = CASE
            WHEN last_audited_heartbeat_at < clock_timestamp() - interval '1 minute'
            THEN clock_timestamp() ELSE last_audited_heartbeat_at END
    WHERE id = %(id)s AND state <> 'TERMINATED'
    RETURNING id, last_audited_heartbeat_at = last_heartbeat_at AS audit_now
), said AS (
    SELECT * FROM unnest(%(job_ids)s::uuid[], %(attempts)s::integer[]) AS s (job_id, attempt)
), leases AS (
    -- Only what the worker says it holds, or was given too recently to say: an attempt it
    -- never got must run out of lease rather than be kept alive forever.
    UPDATE jobs SET lease_expires_at = clock_timestamp() + %(lease_ttl)s
    WHERE worker_id = %(id)s AND state IN ('ASSIGNED', 'RUNNING')
      AND ((id, attempt) IN (SELECT job_id, attempt FROM said)
           OR assigned_at > clock_timestamp() - %(lease_ttl)s)
    RETURNING id, attempt
), audit AS (
    INSERT INTO audit_logs (event_type, actor, correlation_id, payload)
    SELECT 'WorkerHeartbeat', 'worker:' || id::text, id::text,
           jsonb_build_object('cpu_percent', %(cpu_percent)s::double precision,
                              'memory_used_mb', %(memory_used_mb)s::bigint,
                              'running_jobs', %(running_jobs)s::integer)
    FROM beat WHERE audit_now
)
SELECT said.job_id::text AS job_id, said.attempt FROM said
WHERE NOT EXISTS (SELECT 1 FROM leases WHERE leases.id = said.job_id
                                         AND leases.attempt = said.attempt);

-- live_worker_profiles --
-- The shape of every worker that is not terminated and was heard from within `fresh` (a row a
-- dead worker or a crashed server left says nothing), for the "could this job ever run" check
-- and for which kinds of worker exist.
SELECT id, provider, runtime, arch, region, cpu_cores, memory_mb, gpus FROM workers
WHERE state <> 'TERMINATED' AND last_heartbeat_at > clock_timestamp() - %(fresh)s;

-- upsert_provider --
-- Create a provider, or update it when one of that name exists; audited.
WITH existing AS (
    SELECT id FROM providers WHERE name = %(name)s
), saved AS (
    INSERT INTO providers (id, name, type, enabled, priority, min_workers, max_workers,
                           idle_timeout_s, config)
    VALUES (%(id)s, %(name)s, %(type)s, %(enabled)s, %(priority)s, %(min_workers)s,
            %(max_workers)s, %(idle_timeout_s)s, %(config)s)
    ON CONFLICT (name) DO UPDATE SET
        type = excluded.type, enabled = excluded.enabled, priority = excluded.priority,
        min_workers = excluded.min_workers, max_workers = excluded.max_workers,
        idle_timeout_s = excluded.idle_timeout_s, config = excluded.config,
        updated_at = clock_timestamp()
    RETURNING *
), audit AS (
    INSERT INTO audit_logs (event_type, actor, correlation_id, payload)
    SELECT CASE WHEN EXISTS (SELECT 1 FROM existing) THEN 'ProviderUpdated'
                ELSE 'ProviderCreated' END,
           %(actor)s, saved.id::text,
           jsonb_build_object('name', saved.name, 'type', saved.type, 'enabled', saved.enabled,
                              'min_workers', saved.min_workers, 'max_workers', saved.max_workers)
    FROM saved
)
SELECT * FROM saved;

-- list_providers --
-- Every provider, highest priority first.
SELECT * FROM providers ORDER BY priority DESC, name;

-- get_provider --
SELECT * FROM providers WHERE name = %(name)s;

-- insert_provider --
-- Create a provider unless one of that name exists; audited.
WITH saved AS (
    INSERT INTO providers (id, name, type, enabled, priority, min_workers, max_workers,
                           idle_timeout_s, config)
    VALUES (%(id)s, %(name)s, %(type)s, %(enabled)s, %(priority)s, %(min_workers)s,
            %(max_workers)s, %(idle_timeout_s)s, %(config)s)
    ON CONFLICT (name) DO NOTHING
    RETURNING *
), audit AS (
    INSERT INTO audit_logs (event_type, actor, correlation_id, payload)
    SELECT 'ProviderCreated', %(actor)s, saved.id::text,
           jsonb_build_object('name', saved.name, 'type', saved.type, 'enabled', saved.enabled,
                              'min_workers', saved.min_workers, 'max_workers', saved.max_workers)
    FROM saved
)
SELECT * FROM saved;

-- update_provider --
-- Change a provider's settings (not its name or type's identity); audited.
WITH saved AS (
    UPDATE providers SET type = %(type)s, enabled = %(enabled)s, priority = %(priority)s,
        min_workers = %(min_workers)s, max_workers = %(max_workers)s,
        idle_timeout_s = %(idle_timeout_s)s, config = %(config)s, updated_at = clock_timestamp()
    WHERE name = %(name)s
    RETURNING *
), audit AS (
    INSERT INTO audit_logs (event_type, actor, correlation_id, payload)
    SELECT 'ProviderUpdated', %(actor)s, saved.id::text,
           jsonb_build_object('name', saved.name, 'type', saved.type, 'enabled', saved.enabled,
                              'min_workers', saved.min_workers, 'max_workers', saved.max_workers,
                              'config', saved.config)
    FROM saved
)
SELECT * FROM saved;

-- set_provider_enabled --
-- Enable or disable a provider; audited (only when it changes).
WITH before AS (
    SELECT id, enabled FROM providers WHERE name = %(name)s FOR UPDATE
), saved AS (
    UPDATE providers SET enabled = %(enabled)s, updated_at = clock_timestamp()
    FROM before WHERE providers.id = before.id AND before.enabled <> %(enabled)s
    RETURNING providers.*
), audit AS (
    INSERT INTO audit_logs (event_type, actor, correlation_id, payload)
    SELECT CASE WHEN saved.enabled THEN 'ProviderEnabled' ELSE 'ProviderDisabled' END,
           %(actor)s, saved.id::text, jsonb_build_object('name', saved.name)
    FROM saved
)
SELECT * FROM saved
UNION ALL
SELECT providers.* FROM providers, before
WHERE providers.id = before.id AND before.enabled = %(enabled)s;

-- delete_provider --
-- Remove a provider; audited.
WITH gone AS (
    DELETE FROM providers WHERE name = %(name)s RETURNING id, name, type
), audit AS (
    INSERT INTO audit_logs (event_type, actor, correlation_id, payload)
    SELECT 'ProviderDeleted', %(actor)s, gone.id::text,
           jsonb_build_object('name', gone.name, 'type', gone.type)
    FROM gone
)
SELECT * FROM gone;

-- provider_worker_counts --
-- Live workers of each provider: all of them, the idle ready ones, the ones running a job.
SELECT w.provider,
       count(*) AS total,
       count(*) FILTER (WHERE w.state = 'READY' AND NOT busy) AS ready,
       count(*) FILTER (WHERE busy) AS busy
FROM (
    SELECT id, provider, state,
           EXISTS (SELECT 1 FROM jobs j
                   WHERE j.worker_id = workers.id AND j.state IN ('ASSIGNED', 'RUNNING')) AS busy
    FROM workers WHERE state <> 'TERMINATED'
) w
GROUP BY w.provider;

-- store_resource_samples --
-- CPU and memory samples of running attempts, from the worker that runs them.
INSERT INTO job_resource_samples (job_id, attempt, sampled_at, cpu_percent, memory_mb)
SELECT s.job_id, s.attempt, s.sampled_at, s.cpu_percent, s.memory_mb
FROM unnest(%(job_ids)s::uuid[], %(attempts)s::integer[], %(sampled_at)s::timestamptz[],
            %(cpu_percent)s::real[], %(memory_mb)s::real[])
     AS s (job_id, attempt, sampled_at, cpu_percent, memory_mb)
JOIN jobs j ON j.id = s.job_id AND j.attempt = s.attempt AND j.worker_id = %(worker_id)s
ON CONFLICT DO NOTHING;

-- job_resource_samples --
-- A job's samples, oldest first (the newest `limit` of them).
SELECT sampled_at, attempt, cpu_percent, memory_mb FROM (
    SELECT * FROM job_resource_samples WHERE job_id = %(job_id)s
    ORDER BY sampled_at DESC LIMIT %(limit)s
) newest ORDER BY sampled_at;

-- metrics_overview --
-- Jobs by state (all of them), and how many finished since `since` and how long they ran.
SELECT
    (SELECT coalesce(jsonb_object_agg(state, n), '{}') FROM (
        SELECT state, count(*) AS n FROM jobs GROUP BY state) s) AS jobs_by_state,
    finished.jobs AS finished_jobs, finished.avg_duration_ms
FROM (
    SELECT count(*) AS jobs,
           avg(extract(epoch FROM finished_at - started_at) * 1000)::double precision
               AS avg_duration_ms
    FROM jobs WHERE finished_at >= %(since)s
) finished;

-- metrics_trend --
-- Jobs that finished in each `step` since `since` (a bucket boundary), empty buckets included,
-- oldest first: one index range scan.
WITH finished AS (
    SELECT date_bin(%(step)s, finished_at, %(since)s) AS bucket_start, count(*) AS jobs,
           count(*) FILTER (WHERE state = 'SUCCEEDED') AS succeeded,
           count(*) FILTER (WHERE state IN ('FAILED', 'TIMEOUT')) AS failed,
           avg(extract(epoch FROM finished_at - started_at) * 1000)::double precision
               AS avg_duration_ms
    FROM jobs WHERE finished_at >= %(since)s
    GROUP BY 1
)
SELECT b.bucket_start, coalesce(f.jobs, 0) AS jobs, coalesce(f.succeeded, 0) AS succeeded,
       coalesce(f.failed, 0) AS failed, f.avg_duration_ms
FROM generate_series(%(since)s::timestamptz,
                     %(since)s::timestamptz + %(step)s * (%(buckets)s - 1), %(step)s)
     AS b (bucket_start)
LEFT JOIN finished f USING (bucket_start)
ORDER BY b.bucket_start;

-- notify_providers --
-- Tell every server that the providers table changed.
SELECT pg_notify('hodei_providers', '') AS notified;

-- delete_old_samples --
-- Up to `batch` resource samples taken before `age` ago.
WITH doomed AS (
    SELECT ctid FROM job_resource_samples WHERE sampled_at < clock_timestamp() - %(age)s
    LIMIT %(batch)s
), deleted AS (
    DELETE FROM job_resource_samples WHERE ctid = ANY (ARRAY(SELECT ctid FROM doomed))
    RETURNING 1
)
SELECT count(*) AS deleted FROM deleted;

-- provider_load --
-- For a provider's autoscaler: the runnable PENDING jobs that waited at least `settle`, that a
-- worker of its shape could run and that only its kind of worker takes (first row, worker_id
-- NULL), then each of its workers with its state and how many jobs it holds.
SELECT NULL::uuid AS worker_id, NULL::text AS state, count(*)::integer AS jobs
FROM jobs j
WHERE j.state = 'PENDING'
  AND j.run_after <= clock_timestamp() - %(settle)s
  AND j.created_at <= clock_timestamp() - %(settle)s
  AND j.cpu_cores <= %(cpu_cores)s + 1e-9 AND j.memory_mb <= %(memory_mb)s
  AND (NOT j.gpu_required OR %(gpus)s > 0)
  AND (j.arch = '' OR j.arch = %(arch)s)
  AND (j.region = '' OR j.region = %(region)s)
  AND (j.provider = %(provider)s
       OR (j.provider = '' AND (j.image <> '' OR j.command_type = 'DOCKER_EXEC' OR NOT EXISTS (
               SELECT 1 FROM jsonb_to_recordset(%(process_shapes)s)
                   AS p (cpu_cores float8, memory_mb bigint, gpus integer, arch text, region text)
               WHERE j.cpu_cores <= p.cpu_cores + 1e-9 AND j.memory_mb <= p.memory_mb
                 AND (NOT j.gpu_required OR p.gpus > 0) AND (j.arch = '' OR j.arch = p.arch)
                 AND (j.region = '' OR j.region = p.region)))))
UNION ALL
SELECT w.id, w.state,
       (SELECT count(*) FROM jobs j
        WHERE j.worker_id = w.id AND j.state IN ('ASSIGNED', 'RUNNING'))::integer
FROM workers w
WHERE w.id = ANY(%(ids)s::uuid[]);

-- release_idle_worker --
-- A provider lets an idle worker go: READY -> DRAINING with WorkerReleased, only if it holds no
-- job at this moment (otherwise nothing changes and it is not released).
WITH released AS (
    UPDATE workers SET state = 'DRAINING'
    WHERE id = %(id)s AND state = 'READY'
      AND NOT EXISTS (SELECT 1 FROM jobs j
                      WHERE j.worker_id = workers.id AND j.state IN ('ASSIGNED', 'RUNNING'))
    RETURNING id
)
INSERT INTO audit_logs (event_type, actor, correlation_id, payload)
SELECT 'WorkerReleased', 'system', id::text,
       jsonb_build_object('state', 'DRAINING', 'reason', %(reason)s::text)
FROM released
RETURNING correlation_id;

-- create_api_token --
-- A new API token (its hash) and TokenCreated; nothing when the name is taken.
WITH created AS (
    INSERT INTO api_tokens (id, name, role, token_hash, created_by, expires_at)
    VALUES (%(id)s, %(name)s, %(role)s, %(token_hash)s, %(actor)s, %(expires_at)s)
    ON CONFLICT (name) DO NOTHING
    RETURNING *
), audit AS (
    INSERT INTO audit_logs (event_type, actor, correlation_id, payload)
    SELECT 'TokenCreated', %(actor)s, id::text,
           jsonb_build_object('name', name, 'role', role, 'expires_at', expires_at)
    FROM created
)
SELECT * FROM created;

-- list_api_tokens --
SELECT * FROM api_tokens ORDER BY created_at, name;

-- find_api_token --
-- The token with this hash, marked as used (at most once a minute, to spare the writes).
WITH found AS (
    SELECT * FROM api_tokens WHERE token_hash = %(token_hash)s
), used AS (
    UPDATE api_tokens SET last_used_at = clock_timestamp()
    WHERE id = (SELECT id FROM found)
      AND (last_used_at IS NULL OR last_used_at < clock_timestamp() - interval '1 minute')
)
SELECT found.*, clock_timestamp() AS now FROM found;

-- revoke_api_token --
-- Revoke a token by name; TokenRevoked. Nothing when it does not exist or was revoked already.
WITH revoked AS (
    UPDATE api_tokens SET revoked_at = clock_timestamp()
    WHERE name = %(name)s AND revoked_at IS NULL
    RETURNING *
), audit AS (
    INSERT INTO audit_logs (event_type, actor, correlation_id, payload)
    SELECT 'TokenRevoked', %(actor)s, id::text, jsonb_build_object('name', name)
    FROM revoked
)
SELECT revoked.*, pg_notify('hodei_tokens', revoked.id::text) AS notified FROM revoked;

-- database_now --
SELECT clock_timestamp() AS now;

-- audit_worker_refusal --
-- A worker reported on an attempt that is not its own (or no longer): refused, and recorded.
INSERT INTO audit_logs (event_type, actor, correlation_id, payload)
VALUES ('WorkerReportRefused', 'worker:' || %(worker_id)s::text, %(job_id)s::text,
        jsonb_build_object('worker_id', %(worker_id)s::text, 'attempt', %(attempt)s::integer,
                           'message', %(kind)s::text, 'reason', %(reason)s::text));
