-- What workers say about their load, and each running job's CPU and memory, sampled by its
-- worker every second, for the live and historical charts.

ALTER TABLE workers ADD COLUMN cpu_percent double precision;
ALTER TABLE workers ADD COLUMN memory_used_mb bigint;

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
