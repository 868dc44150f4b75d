// The live log WebSocket: history from a sequence, then live lines, resumed after a dropped
// connection from the last sequence seen + 1 (the store drops anything it already has).

import { logStreamUrl } from "../api/endpoints";
import type { LogLineOut, LogStreamMessage } from "../api/types";

export type StreamStatus =
  | { kind: "connecting" }
  | { kind: "live" }
  | { kind: "reconnecting"; delayMs: number; reason: string; failures: number }
  | { kind: "ended"; state: string }
  | { kind: "stopped" };

export interface StreamHandlers {
  onLines: (lines: LogLineOut[]) => void;
  onStatus: (status: StreamStatus) => void;
  /** The next sequence wanted: the last one seen + 1. */
  nextSequence: () => number;
}

const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 5000;

function closeReason(event: CloseEvent): string {
  if (event.reason) return `${event.reason} (code ${event.code})`;
  return `the connection closed (code ${event.code})`;
}

export class LogStream {
  private socket: WebSocket | null = null;
  private timer: number | undefined;
  private failures = 0;
  private stopped = false;
  private ended = false;

  constructor(
    private readonly jobId: string,
    private readonly handlers: StreamHandlers,
  ) {}

  start(): void {
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    window.clearTimeout(this.timer);
    const socket = this.socket;
    this.socket = null;
    if (socket && socket.readyState <= WebSocket.OPEN) socket.close(1000, "leaving");
    this.handlers.onStatus({ kind: "stopped" });
  }

  private connect(): void {
    if (this.stopped) return;
    // While reconnecting, the status keeps saying why until the new connection opens.
    if (this.failures === 0) this.handlers.onStatus({ kind: "connecting" });
    let socket: WebSocket;
    try {
      socket = new WebSocket(logStreamUrl(this.jobId, this.handlers.nextSequence()));
    } catch (error) {
      this.retry(error instanceof Error ? error.message : String(error));
      return;
    }
    this.socket = socket;
    socket.onopen = () => {
      if (this.socket === socket) this.handlers.onStatus({ kind: "live" });
    };
    socket.onmessage = (event: MessageEvent) => {
      if (this.socket !== socket) return;
      let message: LogStreamMessage;
      try {
        message = JSON.parse(String(event.data)) as LogStreamMessage;
      } catch {
        return;
      }
      this.failures = 0;
      if (message.type === "lines" && Array.isArray(message.lines)) {
        this.handlers.onLines(message.lines);
      } else if (message.type === "end") {
        this.ended = true;
        this.handlers.onStatus({ kind: "ended", state: String(message.state) });
      }
    };
    socket.onclose = (event: CloseEvent) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.ended || this.stopped) return;
      this.retry(closeReason(event));
    };
  }

  private retry(reason: string): void {
    if (this.stopped) return;
    const delayMs = Math.min(FIRST_RETRY_MS * 2 ** this.failures, MAX_RETRY_MS);
    this.failures++;
    this.handlers.onStatus({ kind: "reconnecting", delayMs, reason, failures: this.failures });
    this.timer = window.setTimeout(() => this.connect(), delayMs);
  }
}
