// The web UI's session: log in with a token (kept in an HttpOnly cookie), who am I, log out.

import { apiGet, apiSend } from "./client";

export interface Session {
  actor: string;
  role: string;
  /** The server needs no token at all (a developer's loopback server). */
  dev_mode: boolean;
}

const SESSION = "/api/v1/session";

export const getSession = (signal?: AbortSignal) => apiGet<Session>(SESSION, signal);
export const logIn = (token: string) => apiSend<Session>("POST", SESSION, { token });
export const logOut = () => apiSend<void>("DELETE", SESSION);
