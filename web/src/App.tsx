import type { ReactNode } from "react";
import { Navigate, Route, Routes, useLocation, useSearchParams } from "react-router-dom";
import { NavBar } from "./components/NavBar";
import { LoadError, Loading, PageBoundary } from "./components/Status";
import { Dashboard } from "./pages/Dashboard";
import { History } from "./pages/History";
import { JobPage } from "./pages/JobPage";
import { Login } from "./pages/Login";
import { LogsViewer } from "./pages/LogsViewer";
import { Metrics } from "./pages/Metrics";
import { NewJob } from "./pages/NewJob";
import { NewProvider } from "./pages/NewProvider";
import { NotFound } from "./pages/NotFound";
import { ProviderDetail } from "./pages/ProviderDetail";
import { Providers } from "./pages/Providers";
import { LOGIN_PATH, loginPath, safeNext, type Action } from "./session/access";
import { SessionProvider, useCan, useSession } from "./session/SessionContext";

export function App() {
  return (
    <SessionProvider>
      <Shell />
    </SessionProvider>
  );
}

/** The login page when there is no session, else the app (back where the user was). */
function Shell() {
  const location = useLocation();
  const [params] = useSearchParams();
  const { state, check } = useSession();
  const onLogin = location.pathname === LOGIN_PATH;

  if (state.status === "out" && !onLogin) {
    return <Navigate to={loginPath(location.pathname + location.search)} replace />;
  }
  if (state.status === "in" && onLogin) return <Navigate to={safeNext(params.get("next"))} replace />;
  return (
    <div className="app">
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <NavBar />
      <main id="main" className="main" tabIndex={-1}>
        {state.status === "checking" && <Loading />}
        {state.status === "error" && (
          <div className="page">
            <LoadError what="who you are" error={state.error} />
            <button type="button" className="button" onClick={check}>
              Try again
            </button>
          </div>
        )}
        {state.status === "out" && <Login />}
        {state.status === "in" && (
          <PageBoundary resetKey={location.pathname}>
            <Routes>
              <Route path="/" element={<Dashboard />} />
              <Route path="/jobs" element={<History />} />
              <Route
                path="/jobs/new"
                element={
                  <Allowed action="submit-jobs" what="submit jobs">
                    <NewJob />
                  </Allowed>
                }
              />
              <Route path="/jobs/:jobId" element={<JobPage />} />
              <Route path="/jobs/:jobId/logs" element={<LogsViewer />} />
              <Route path="/providers" element={<Providers />} />
              <Route
                path="/providers/new"
                element={
                  <Allowed action="manage-providers" what="add providers">
                    <NewProvider />
                  </Allowed>
                }
              />
              <Route path="/providers/:name" element={<ProviderDetail />} />
              <Route path="/metrics" element={<Metrics />} />
              <Route path="*" element={<NotFound />} />
            </Routes>
          </PageBoundary>
        )}
      </main>
    </div>
  );
}

/** A page only some roles may use: for the others, a line saying so instead of a form that
 * the server would refuse. */
function Allowed({ action, what, children }: { action: Action; what: string; children: ReactNode }) {
  const allowed = useCan(action);
  const { state } = useSession();
  if (allowed) return <>{children}</>;
  const role = state.status === "in" ? state.session.role : "unknown";
  return (
    <div className="page">
      <h1>Not allowed</h1>
      <p role="alert" className="alert alert-warn">
        Your role ({role}) may not {what}.
      </p>
    </div>
  );
}
