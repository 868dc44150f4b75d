// Wire types of the REST API under /api/v1 (see the API contract the server implements).

export const JOB_STATES = [
  "PENDING",
  "ASSIGNED",
  "RUNNING",
  "SUCCEEDED",
  "FAILED",
  "CANCELLED",
  "TIMEOUT",
] as const;
export type JobState = (typeof JOB_STATES)[number];

export const FINAL_STATES: readonly JobState[] = ["SUCCEEDED", "FAILED", "CANCELLED", "TIMEOUT"];

export function isFinal(state: string): boolean {
  return (FINAL_STATES as readonly string[]).includes(state);
}

export type CommandType = "SHELL" | "DOCKER_EXEC" | "PYTHON" | "NODE";
export type Priority = "LOW" | "NORMAL" | "HIGH";
export type Arch = "" | "x86_64" | "arm64";
export type LogLevel = "INFO" | "WARN" | "ERROR";

export interface Resources {
  cpu_cores: number;
  memory_mb: number;
  storage_mb: number;
  timeout_ms: number;
  gpu_required: boolean;
  arch: Arch;
}

export interface Preferences {
  provider: string;
  region: string;
  priority: Priority;
  allow_retry: boolean;
  max_attempts: number;
}

export interface JobDefinition {
  name: string;
  command_type: CommandType;
  script: string;
  image: string;
  env: Record<string, string>;
  secret_env: Record<string, string>;
  resources: Resources;
  preferences: Preferences;
  labels: Record<string, string>;
}

export interface JobOut {
  id: string;
  definition: JobDefinition;
  state: JobState;
  attempt: number;
  worker_id: string | null;
  created_at: string;
  assigned_at: string | null;
  started_at: string | null;
  finished_at: string | null;
  exit_code: number | null;
  error_message: string;
  log_truncated: boolean;
  /** What the submitter should know, e.g. that the job's image was not applied; "" if nothing. */
  notice: string;
}

export interface JobList {
  jobs: JobOut[];
  next_page_token: string;
}

export interface JobEvent {
  id: number;
  occurred_at: string;
  event_type: string;
  actor: string;
  payload: Record<string, unknown>;
}

export interface ResourceSample {
  at: string;
  attempt: number;
  cpu_percent: number;
  memory_mb: number;
}

export interface JobResources {
  samples: ResourceSample[];
  job_finished: boolean;
}

export interface LogLineOut {
  sequence: number;
  timestamp: string;
  stream: "STDOUT" | "STDERR";
  level: LogLevel;
  line: string;
  attempt: number;
  invalid_utf8: boolean;
}

export interface LogPage {
  lines: LogLineOut[];
  last_sequence: number;
  job_finished: boolean;
}

export type LogStreamMessage =
  | { type: "lines"; lines: LogLineOut[] }
  | { type: "end"; state: string };

export interface WorkerOut {
  id: string;
  hostname: string;
  provider: string;
  state: "READY" | "DRAINING" | "DISCONNECTED" | "TERMINATED";
  arch: string;
  region: string;
  runtime: string;
  cpu_cores: number;
  memory_mb: number;
  gpus: number;
  used_cpu_cores: number;
  used_memory_mb: number;
  running_jobs: number;
  labels: Record<string, string>;
  registered_at: string;
  last_heartbeat_at: string;
  cpu_percent?: number | null;
  memory_used_mb?: number | null;
}

export interface SystemOut {
  host: {
    cpu_count: number;
    load_1: number;
    load_5: number;
    load_15: number;
    cpu_percent: number;
    memory_total_mb: number;
    memory_used_mb: number;
  };
  workers_by_state: Record<string, number>;
}

export interface QueueOut {
  jobs_by_state: Record<string, number>;
  queue_depth: number;
  delayed: number;
  ready_workers: number;
}

export type ProviderType = "local" | "docker" | "kubernetes" | "firecracker";
export type ConfigValue = string | number | boolean;

export interface ProviderIn {
  name: string;
  type: ProviderType;
  enabled: boolean;
  priority: number;
  min_workers: number;
  max_workers: number;
  idle_timeout_s: number;
  config: Record<string, ConfigValue>;
}

export interface ProviderOut extends ProviderIn {
  id: string;
  status: "ACTIVE" | "DISABLED";
  workers: { total: number; ready: number; busy: number };
  created_at: string;
  updated_at: string;
}

export interface ProviderMetrics {
  name: string;
  type: ProviderType;
  enabled: boolean;
  workers: number;
  cpu_cores: number;
  used_cpu_cores: number;
  memory_mb: number;
  used_memory_mb: number;
  running_jobs: number;
}

export interface TrendBucket {
  bucket_start: string;
  jobs: number;
  succeeded: number;
  failed: number;
  avg_duration_ms: number | null;
}

export type MetricsWindow = "day" | "week";

export interface MetricsOut {
  window: MetricsWindow;
  jobs_by_state: Record<string, number>;
  total_jobs: number;
  finished_jobs: number;
  avg_duration_ms: number | null;
  providers: ProviderMetrics[];
  trend: TrendBucket[];
}
