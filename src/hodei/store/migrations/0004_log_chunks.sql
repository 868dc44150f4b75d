-- Logs are stored a chunk of consecutive lines per row, as the worker sent them: one row and one
-- index entry per thousand lines instead of per line, which is what lets PostgreSQL keep up with
-- 100,000 lines a second. `job_logs` stays, as a view with one row per line, for SQL readers.

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

-- lz4 compresses several times faster than the default pglz, where PostgreSQL was built with it.
DO $$
BEGIN
    ALTER TABLE job_log_chunks ALTER COLUMN body SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
    NULL;
END
$$;

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

INSERT INTO job_log_chunks (job_id, first_sequence, last_sequence, attempt, body, kinds, ts,
                            stored_at)
SELECT job_id, sequence, sequence, attempt, line,
       set_byte('\x00'::bytea, 0,
                (CASE WHEN stream = 'stderr' THEN 1 ELSE 0 END)
                | (CASE level WHEN 'WARN' THEN 1 WHEN 'ERROR' THEN 2 ELSE 0 END) << 1
                | (CASE WHEN invalid_utf8 THEN 8 ELSE 0 END)),
       decode(lpad(to_hex((extract(epoch FROM ts) * 1000000)::bigint), 16, '0'), 'hex'),
       ts
FROM job_logs;

DROP TABLE job_logs;

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
