import { useState, type FormEvent } from "react";
import { ApiError, describeError } from "../api/client";
import { logIn } from "../api/session";
import { useTitle } from "../lib/useTitle";
import { useSession } from "../session/SessionContext";

/** The message for a refused login: the server's reason, or why it could not be asked. */
function refusal(error: unknown): string {
  if (error instanceof ApiError && error.status === 401) return `Login refused: ${error.detail}`;
  return `Could not log in: ${describeError(error)}`;
}

/** Log in with an API token; the app then goes back to the page the user came from. */
export function Login() {
  useTitle("Log in");
  const { loggedIn } = useSession();
  const [token, setToken] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);

  const onSubmit = async (event: FormEvent) => {
    event.preventDefault();
    if (!token.trim()) {
      setError("Enter your API token.");
      return;
    }
    setBusy(true);
    setError("");
    try {
      loggedIn(await logIn(token.trim()));
    } catch (failure) {
      setError(refusal(failure));
      setBusy(false);
    }
  };

  return (
    <div className="login">
      <form className="card login-card form" onSubmit={onSubmit} noValidate aria-labelledby="login-heading">
        <h1 id="login-heading">Log in</h1>
        <p className="muted">
          Enter an API token. An administrator creates one with <code>hodei token create</code>.
        </p>
        <div className="field">
          <label htmlFor="token">API token</label>
          <input
            id="token"
            name="token"
            type="password"
            autoComplete="current-password"
            spellCheck={false}
            value={token}
            onChange={(event) => setToken(event.target.value)}
            aria-invalid={error ? true : undefined}
            aria-describedby={error ? "login-error" : undefined}
          />
          {error && (
            <p className="field-error" role="alert" id="login-error">
              {error}
            </p>
          )}
        </div>
        <button type="submit" className="button button-primary" aria-busy={busy} disabled={busy}>
          {busy ? "Logging in…" : "Log in"}
        </button>
      </form>
    </div>
  );
}
