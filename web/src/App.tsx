import { Route, Routes, useLocation } from "react-router-dom";
import { NavBar } from "./components/NavBar";
import { PageBoundary } from "./components/Status";
import { Dashboard } from "./pages/Dashboard";
import { History } from "./pages/History";
import { JobPage } from "./pages/JobPage";
import { LogsViewer } from "./pages/LogsViewer";
import { Metrics } from "./pages/Metrics";
import { NewJob } from "./pages/NewJob";
import { NewProvider } from "./pages/NewProvider";
import { NotFound } from "./pages/NotFound";
import { ProviderDetail } from "./pages/ProviderDetail";
import { Providers } from "./pages/Providers";

export function App() {
  const location = useLocation();
  return (
    <div className="app">
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <NavBar />
      <main id="main" className="main" tabIndex={-1}>
        <PageBoundary resetKey={location.pathname}>
          <Routes>
            <Route path="/" element={<Dashboard />} />
            <Route path="/jobs" element={<History />} />
            <Route path="/jobs/new" element={<NewJob />} />
            <Route path="/jobs/:jobId" element={<JobPage />} />
            <Route path="/jobs/:jobId/logs" element={<LogsViewer />} />
            <Route path="/providers" element={<Providers />} />
            <Route path="/providers/new" element={<NewProvider />} />
            <Route path="/providers/:name" element={<ProviderDetail />} />
            <Route path="/metrics" element={<Metrics />} />
            <Route path="*" element={<NotFound />} />
          </Routes>
        </PageBoundary>
      </main>
    </div>
  );
}
