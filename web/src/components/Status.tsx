import { Component, type ErrorInfo, type ReactNode } from "react";
import { describeError } from "../api/client";

/** What could not be loaded and why: "Could not load the job: HTTP 404: No such job". */
export function LoadError({ what, error }: { what: string; error: unknown }) {
  return (
    <div role="alert" className="alert alert-error">
      Could not load {what}: {describeError(error)}
    </div>
  );
}

/** An action that failed: "Could not cancel the job: HTTP 409: …". */
export function ActionError({ action, error }: { action: string; error: unknown }) {
  return (
    <div role="alert" className="alert alert-error">
      Could not {action}: {describeError(error)}
    </div>
  );
}

export function Loading({ what }: { what?: string }) {
  return (
    <p className="loading" role="status">
      Loading{what ? ` ${what}` : ""}…
    </p>
  );
}

interface BoundaryState {
  error: unknown;
}

/** Shows a page that broke while rendering (e.g. an answer of an unexpected shape) as an alert. */
export class PageBoundary extends Component<{ children: ReactNode; resetKey: string }, BoundaryState> {
  state: BoundaryState = { error: null };

  static getDerivedStateFromError(error: unknown): BoundaryState {
    return { error };
  }

  componentDidUpdate(previous: { resetKey: string }) {
    if (previous.resetKey !== this.props.resetKey && this.state.error) this.setState({ error: null });
  }

  componentDidCatch(error: unknown, info: ErrorInfo) {
    console.error("page failed to render", error, info.componentStack);
  }

  render() {
    if (this.state.error) {
      return (
        <div role="alert" className="alert alert-error">
          Could not load this page: {describeError(this.state.error)}
        </div>
      );
    }
    return this.props.children;
  }
}
