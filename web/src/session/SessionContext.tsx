import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from "react";
import { ApiError, setUnauthorizedHandler } from "../api/client";
import { getSession, logOut, type Session } from "../api/session";
import { can, type Action } from "./access";

/** Asking the server; logged in (or dev mode); not logged in; or the server could not say. */
export type SessionState =
  | { status: "checking" }
  | { status: "in"; session: Session }
  | { status: "out" }
  | { status: "error"; error: unknown };

interface SessionValue {
  state: SessionState;
  /** Ask the server again who we are. */
  check: () => void;
  /** A login succeeded. */
  loggedIn: (session: Session) => void;
  logOut: () => Promise<void>;
}

const SessionContext = createContext<SessionValue | undefined>(undefined);

/** Who is using the UI: asked of the server on load, and forgotten on any 401. */
export function SessionProvider({ children }: { children: ReactNode }) {
  const [state, setState] = useState<SessionState>({ status: "checking" });

  const check = useCallback(() => {
    const controller = new AbortController();
    setState({ status: "checking" });
    getSession(controller.signal).then(
      (session) => setState({ status: "in", session }),
      (error: unknown) => {
        if (controller.signal.aborted) return;
        setState(error instanceof ApiError && error.status === 401 ? { status: "out" } : { status: "error", error });
      },
    );
    return () => controller.abort();
  }, []);

  useEffect(() => check(), [check]);

  useEffect(() => {
    // A dev-mode server never asks for a token: a 401 there is not about the session.
    setUnauthorizedHandler(() =>
      setState((current) => (current.status === "in" && current.session.dev_mode ? current : { status: "out" })),
    );
    return () => setUnauthorizedHandler(undefined);
  }, []);

  const value = useMemo<SessionValue>(
    () => ({
      state,
      check: () => {
        check();
      },
      loggedIn: (session) => setState({ status: "in", session }),
      logOut: async () => {
        await logOut();
        setState({ status: "out" });
      },
    }),
    [state, check],
  );
  return <SessionContext.Provider value={value}>{children}</SessionContext.Provider>;
}

export function useSession(): SessionValue {
  const value = useContext(SessionContext);
  if (!value) throw new Error("useSession outside SessionProvider");
  return value;
}

/** Whether the logged-in user's role allows an action (false while unknown). */
export function useCan(action: Action): boolean {
  const { state } = useSession();
  return state.status === "in" && can(state.session.role, action);
}
