-- Logs: a job whose log hit its size cap says so; old lines are found by time for retention.

ALTER TABLE jobs ADD COLUMN log_truncated boolean NOT NULL DEFAULT false;

-- BRIN: lines arrive in time order, so a tiny index finds the old ones without slowing appends.
CREATE INDEX job_logs_ts ON job_logs USING brin (ts);
