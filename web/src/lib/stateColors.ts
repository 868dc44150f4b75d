/** One colour per job state, shared by every chart (CSS variables defined in base.css). */
export const STATE_COLORS: Record<string, string> = {
  PENDING: "var(--state-pending)",
  ASSIGNED: "var(--state-assigned)",
  RUNNING: "var(--state-running)",
  SUCCEEDED: "var(--state-succeeded)",
  FAILED: "var(--state-failed)",
  CANCELLED: "var(--state-cancelled)",
  TIMEOUT: "var(--state-timeout)",
};
