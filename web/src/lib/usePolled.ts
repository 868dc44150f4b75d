import { useCallback, useEffect, useRef, useState } from "react";
import { isAbort } from "../api/client";

export interface Polled<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
  /** Load again now (after an action changed what the server holds). */
  reload: () => void;
}

const IDLE_CHECK_MS = 1000;

/**
 * Loads once when `key` changes, then again every `intervalMs` while it is not null.
 *
 * Requests never overlap: the next one is scheduled when the previous one has settled. A failed
 * poll keeps the last data it had (it was real) and sets `error`, which the page shows. While the
 * tab is hidden, polls are skipped.
 */
export function usePolled<T>(
  load: (signal: AbortSignal) => Promise<T>,
  key: string,
  intervalMs: number | null = null,
): Polled<T> {
  const [state, setState] = useState<{ data?: T; error?: unknown; loading: boolean }>({
    loading: true,
  });
  const loadRef = useRef(load);
  loadRef.current = load;
  const intervalRef = useRef(intervalMs);
  intervalRef.current = intervalMs;
  const kickRef = useRef<() => void>(() => undefined);

  useEffect(() => {
    let stopped = false;
    let timer: number | undefined;
    let inFlight = false;
    let again = false;
    const controller = new AbortController();
    setState({ loading: true });

    const schedule = () => {
      if (stopped) return;
      const ms = intervalRef.current;
      timer = window.setTimeout(ms === null ? idle : tick, ms ?? IDLE_CHECK_MS);
    };
    const idle = () => (intervalRef.current === null ? schedule() : void tick());
    const tick = async () => {
      if (stopped) return;
      if (inFlight) {
        again = true;
        return;
      }
      if (document.hidden && intervalRef.current !== null) {
        schedule();
        return;
      }
      inFlight = true;
      try {
        const data = await loadRef.current(controller.signal);
        if (!stopped) setState({ data, loading: false });
      } catch (error) {
        if (stopped || isAbort(error)) return;
        setState((previous) => ({ data: previous.data, error, loading: false }));
      } finally {
        inFlight = false;
      }
      if (again) {
        again = false;
        void tick();
      } else {
        schedule();
      }
    };
    kickRef.current = () => {
      window.clearTimeout(timer);
      void tick();
    };
    void tick();
    return () => {
      stopped = true;
      controller.abort();
      window.clearTimeout(timer);
    };
  }, [key]);

  const reload = useCallback(() => kickRef.current(), []);
  return { data: state.data, error: state.error, loading: state.loading, reload };
}
