// A small fetch wrapper: JSON in and out, and every failure turned into an ApiError that says
// what went wrong (HTTP status and the server's detail, or why the server could not be reached).

import { csrfHeaders } from "./csrf";

const REQUEST_TIMEOUT_MS = 15_000;
const SESSION_PATH = "/api/v1/session";

let onUnauthorized: (() => void) | undefined;

/** What to do when the server answers 401 (no session, or it ended): show the login page. The
 * session routes themselves are left to their callers (a refused login says why). */
export function setUnauthorizedHandler(handler: (() => void) | undefined): void {
  onUnauthorized = handler;
}

/** One rule a field breaks, as the server names it ("resources.cpu_cores"). */
export interface FieldError {
  field: string;
  message: string;
}

export class ApiError extends Error {
  /** HTTP status, or 0 when no answer came back. */
  readonly status: number;
  /** The server's one-line detail, or a description of the transport failure. */
  readonly detail: string;
  /** For a 422: each field at fault. */
  readonly fieldErrors: FieldError[];

  constructor(status: number, detail: string, fieldErrors: FieldError[] = []) {
    super(status ? `HTTP ${status}: ${detail}` : detail);
    this.name = "ApiError";
    this.status = status;
    this.detail = detail;
    this.fieldErrors = fieldErrors;
  }
}

interface ValidationItem {
  loc?: unknown;
  msg?: unknown;
}

/** The field path of a FastAPI-style error location: its leading "body"/"query" dropped. */
export function fieldPath(loc: unknown): string {
  if (!Array.isArray(loc)) return "";
  const parts = loc.map(String);
  if (parts[0] === "body" || parts[0] === "query" || parts[0] === "path") parts.shift();
  return parts.join(".");
}

function problemFrom(status: number, statusText: string, body: unknown): ApiError {
  const detail = (body as { detail?: unknown } | null)?.detail;
  if (typeof detail === "string" && detail) return new ApiError(status, detail);
  if (Array.isArray(detail)) {
    const fieldErrors = (detail as ValidationItem[]).map((item) => ({
      field: fieldPath(item.loc),
      message: typeof item.msg === "string" ? item.msg : "is not valid",
    }));
    const summary = fieldErrors
      .map((e) => (e.field ? `${e.field}: ${e.message}` : e.message))
      .join("; ");
    return new ApiError(status, summary || "the request was not valid", fieldErrors);
  }
  return new ApiError(status, statusText || "the request failed");
}

/** Aborts when the caller's signal does, or after the request timeout. */
function timeoutSignal(outer?: AbortSignal): { signal: AbortSignal; done: () => void } {
  const controller = new AbortController();
  const timer = window.setTimeout(
    () => controller.abort(new DOMException("timed out", "TimeoutError")),
    REQUEST_TIMEOUT_MS,
  );
  const onAbort = () => controller.abort(outer?.reason);
  if (outer?.aborted) controller.abort(outer.reason);
  outer?.addEventListener("abort", onAbort);
  return {
    signal: controller.signal,
    done: () => {
      window.clearTimeout(timer);
      outer?.removeEventListener("abort", onAbort);
    },
  };
}

export function isAbort(error: unknown): boolean {
  return error instanceof DOMException && error.name === "AbortError";
}

async function request<T>(
  method: string,
  path: string,
  body?: unknown,
  outer?: AbortSignal,
): Promise<T> {
  const { signal, done } = timeoutSignal(outer);
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      signal,
      credentials: "same-origin",
      headers: {
        Accept: "application/json",
        ...(body === undefined ? {} : { "Content-Type": "application/json" }),
        ...csrfHeaders(method, document.cookie),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    done();
    if (outer?.aborted) throw new DOMException("aborted", "AbortError");
    if (signal.aborted) {
      throw new ApiError(0, `the server did not answer within ${REQUEST_TIMEOUT_MS / 1000} s`);
    }
    throw new ApiError(0, "the server could not be reached");
  }
  if (response.status === 401 && !path.startsWith(SESSION_PATH)) onUnauthorized?.();
  try {
    if (response.status === 204) return undefined as T;
    const text = await response.text();
    let parsed: unknown = null;
    let isJson = false;
    if (text) {
      try {
        parsed = JSON.parse(text);
        isJson = true;
      } catch {
        isJson = false;
      }
    }
    if (!response.ok) throw problemFrom(response.status, response.statusText, parsed);
    if (!isJson) {
      throw new ApiError(0, `the answer (HTTP ${response.status}) was not JSON; is the API there?`);
    }
    return parsed as T;
  } catch (error) {
    if (outer?.aborted) throw new DOMException("aborted", "AbortError");
    if (error instanceof ApiError) throw error;
    throw new ApiError(response.status, "the answer could not be read");
  } finally {
    done();
  }
}

export function apiGet<T>(path: string, signal?: AbortSignal): Promise<T> {
  return request<T>("GET", path, undefined, signal);
}

export function apiSend<T>(method: "POST" | "PUT" | "DELETE", path: string, body?: unknown) {
  return request<T>(method, path, body);
}

/** "HTTP 404: No such job" or "the server could not be reached". */
export function describeError(error: unknown): string {
  if (error instanceof ApiError) return error.message;
  if (error instanceof Error) return error.message;
  return String(error);
}
