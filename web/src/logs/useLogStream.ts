import { useEffect, useRef, useState } from "react";
import type { LogLineOut } from "../api/types";
import { LogStream, type StreamStatus } from "./logStream";

/**
 * Follows a job's log over the WebSocket while `enabled`. `onLines` receives every batch;
 * `nextSequence` says where to resume after a dropped connection.
 */
export function useLogStream(
  jobId: string,
  onLines: (lines: LogLineOut[]) => void,
  nextSequence: () => number,
  enabled = true,
): StreamStatus {
  const [status, setStatus] = useState<StreamStatus>({ kind: "connecting" });
  const handlers = useRef({ onLines, nextSequence });
  handlers.current = { onLines, nextSequence };

  useEffect(() => {
    if (!enabled) return undefined;
    const stream = new LogStream(jobId, {
      onLines: (lines) => handlers.current.onLines(lines),
      nextSequence: () => handlers.current.nextSequence(),
      onStatus: setStatus,
    });
    stream.start();
    return () => stream.stop();
  }, [jobId, enabled]);

  return status;
}

/** "live", "reconnecting…", "ended: SUCCEEDED" */
export function describeStatus(status: StreamStatus): string {
  switch (status.kind) {
    case "connecting":
      return "connecting…";
    case "live":
      return "live";
    case "reconnecting":
      return "reconnecting…";
    case "ended":
      return `ended: ${status.state}`;
    case "stopped":
      return "stopped";
  }
}
