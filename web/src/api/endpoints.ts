// One function per REST endpoint the UI uses.

import { apiGet, apiSend } from "./client";
import type {
  JobDefinition,
  JobEvent,
  JobList,
  JobOut,
  JobResources,
  JobState,
  LogPage,
  MetricsOut,
  MetricsWindow,
  ProviderIn,
  ProviderOut,
  QueueOut,
  SystemOut,
  WorkerOut,
} from "./types";

const V1 = "/api/v1";
const enc = encodeURIComponent;

export interface JobQuery {
  states?: JobState[];
  name?: string;
  createdAfter?: string;
  createdBefore?: string;
  pageSize?: number;
  pageToken?: string;
}

export function listJobs(query: JobQuery, signal?: AbortSignal): Promise<JobList> {
  const params = new URLSearchParams();
  for (const state of query.states ?? []) params.append("state", state);
  if (query.name) params.set("name", query.name);
  if (query.createdAfter) params.set("created_after", query.createdAfter);
  if (query.createdBefore) params.set("created_before", query.createdBefore);
  params.set("page_size", String(query.pageSize ?? 50));
  if (query.pageToken) params.set("page_token", query.pageToken);
  return apiGet(`${V1}/jobs?${params.toString()}`, signal);
}

export const getJob = (id: string, signal?: AbortSignal) =>
  apiGet<JobOut>(`${V1}/jobs/${enc(id)}`, signal);

export const createJob = (definition: JobDefinition) =>
  apiSend<{ job_id: string }>("POST", `${V1}/jobs`, definition);

export const cancelJob = (id: string) => apiSend<JobOut>("POST", `${V1}/jobs/${enc(id)}/cancel`);

export const getJobEvents = (id: string, signal?: AbortSignal) =>
  apiGet<JobEvent[]>(`${V1}/jobs/${enc(id)}/events`, signal);

export const getJobResources = (id: string, signal?: AbortSignal) =>
  apiGet<JobResources>(`${V1}/jobs/${enc(id)}/resources`, signal);

export const getJobLogs = (id: string, after: number, limit: number, signal?: AbortSignal) =>
  apiGet<LogPage>(`${V1}/jobs/${enc(id)}/logs?after=${after}&limit=${limit}`, signal);

export const logDownloadUrl = (id: string) => `${V1}/jobs/${enc(id)}/logs.txt`;

/** ws:// or wss:// on this page's host. */
export function logStreamUrl(id: string, fromSequence: number): string {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${window.location.host}${V1}/jobs/${enc(id)}/logs/stream?from_sequence=${fromSequence}`;
}

export const getQueue = (signal?: AbortSignal) => apiGet<QueueOut>(`${V1}/queue`, signal);
export const getWorkers = (signal?: AbortSignal) => apiGet<WorkerOut[]>(`${V1}/workers`, signal);
export const getSystem = (signal?: AbortSignal) => apiGet<SystemOut>(`${V1}/system`, signal);

export const getMetrics = (window: MetricsWindow, signal?: AbortSignal) =>
  apiGet<MetricsOut>(`${V1}/metrics?window=${window}`, signal);

export const listProviders = (signal?: AbortSignal) =>
  apiGet<ProviderOut[]>(`${V1}/providers`, signal);
export const getProvider = (name: string, signal?: AbortSignal) =>
  apiGet<ProviderOut>(`${V1}/providers/${enc(name)}`, signal);
export const createProvider = (provider: ProviderIn) =>
  apiSend<ProviderOut>("POST", `${V1}/providers`, provider);
export const updateProvider = (name: string, provider: ProviderIn) =>
  apiSend<ProviderOut>("PUT", `${V1}/providers/${enc(name)}`, provider);
export const setProviderEnabled = (name: string, enabled: boolean) =>
  apiSend<ProviderOut>("POST", `${V1}/providers/${enc(name)}/${enabled ? "enable" : "disable"}`);
export const deleteProvider = (name: string) =>
  apiSend<void>("DELETE", `${V1}/providers/${enc(name)}`);
