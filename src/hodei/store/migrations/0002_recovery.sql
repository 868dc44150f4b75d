-- Recovery: cancel requests that survive restarts, a lease index for the reaper, and the one
-- function that decides what follows an attempt (retry, end, or cancel).

ALTER TABLE jobs ADD COLUMN cancel_requested_at timestamptz;

CREATE INDEX jobs_leases ON jobs (lease_expires_at) WHERE state IN ('ASSIGNED', 'RUNNING');

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
