// What each role may do in the UI (the server checks it again), and where to go after login.

export type Role = "viewer" | "operator" | "admin";

/** The actions the UI offers only to some roles. */
export type Action = "submit-jobs" | "cancel-jobs" | "manage-providers";

const RANK: Record<Role, number> = { viewer: 1, operator: 2, admin: 3 };

const NEEDS: Record<Action, Role> = {
  "submit-jobs": "operator",
  "cancel-jobs": "operator",
  "manage-providers": "admin",
};

/** Whether a role (as the server names it) may take an action; an unknown role may not. */
export function can(role: string | undefined, action: Action): boolean {
  const rank = RANK[role as Role];
  return rank !== undefined && rank >= RANK[NEEDS[action]];
}

export const LOGIN_PATH = "/login";

/** The login page's address, remembering the page to come back to. */
export function loginPath(from: string): string {
  const back = safeNext(from);
  return back === "/" ? LOGIN_PATH : `${LOGIN_PATH}?next=${encodeURIComponent(back)}`;
}

/** Where to go after logging in: a path of this site (never another site, never the login
 * page itself), else the dashboard. */
export function safeNext(next: string | null | undefined): string {
  if (!next || !next.startsWith("/") || next.startsWith("//") || next.startsWith("/\\")) return "/";
  if (next === LOGIN_PATH || next.startsWith(`${LOGIN_PATH}?`) || next.startsWith(`${LOGIN_PATH}/`)) {
    return "/";
  }
  return next;
}
