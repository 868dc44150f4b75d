import { Link } from "react-router-dom";
import { listProviders } from "../api/endpoints";
import type { ProviderOut } from "../api/types";
import { StateBadge } from "../components/StateBadge";
import { ActionError, LoadError, Loading } from "../components/Status";
import { typeLabel } from "../forms/providerForm";
import { usePolled } from "../lib/usePolled";
import { useTitle } from "../lib/useTitle";
import { useProviderToggle } from "../providers/useToggle";
import { useCan } from "../session/SessionContext";

const REFRESH_MS = 5000;

/** The provider's workers against its maximum, busy ones first. */
function WorkerBar({ provider }: { provider: ProviderOut }) {
  const { total, ready, busy } = provider.workers;
  const max = Math.max(total, provider.max_workers, 1);
  const share = (n: number) => (Math.min(Math.max(n, 0), max) / max) * 100;
  const label = `${total} workers of at most ${provider.max_workers}: ${ready} ready, ${busy} busy`;
  return (
    <span className="worker-bar">
      <svg role="img" aria-label={label} width="100%" height="10" preserveAspectRatio="none" viewBox="0 0 100 10">
        <title>{label}</title>
        <rect x="0" y="0" width="100" height="10" rx="3" className="meter-track" />
        <rect x="0" y="0" width={share(total)} height="10" fill="var(--chart-3)" />
        <rect x="0" y="0" width={share(Math.min(busy, total))} height="10" fill="var(--chart-1)" />
      </svg>
      <span className="small">
        {total} total · {ready} ready · {busy} busy
      </span>
    </span>
  );
}

/** Every provider with its type, status and workers, and a switch to enable or disable it. */
export function Providers() {
  useTitle("Providers");
  const providers = usePolled(listProviders, "providers", REFRESH_MS);
  const { busy, error, toggle } = useProviderToggle(providers.reload);
  const mayManage = useCan("manage-providers");

  return (
    <div className="page">
      <div className="page-head">
        <h1>Providers</h1>
        {mayManage && (
          <Link to="/providers/new" className="button button-primary">
            Add provider
          </Link>
        )}
      </div>
      {providers.error !== undefined && <LoadError what="the providers" error={providers.error} />}
      {error && <ActionError action={`${error.enable ? "enable" : "disable"} ${error.name}`} error={error.error} />}
      {providers.loading && !providers.data && <Loading what="providers" />}
      {providers.data && providers.data.length === 0 && <p className="muted">No providers yet.</p>}
      {providers.data && providers.data.length > 0 && (
        <div className="table-wrap">
          <table className="table">
            <caption className="sr-only">Providers</caption>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Type</th>
                <th scope="col">Status</th>
                <th scope="col">Workers</th>
                <th scope="col">Priority</th>
                {mayManage && (
                  <th scope="col">
                    <span className="sr-only">Action</span>
                  </th>
                )}
              </tr>
            </thead>
            <tbody>
              {providers.data.map((p) => (
                <tr key={p.name} data-testid="provider-row" data-provider={p.name}>
                  <td data-label="Name">
                    <Link to={`/providers/${encodeURIComponent(p.name)}`}>{p.name}</Link>
                  </td>
                  <td data-label="Type">{typeLabel(p.type)}</td>
                  <td data-label="Status">
                    <StateBadge state={p.status} />
                  </td>
                  <td data-label="Workers">
                    <WorkerBar provider={p} />
                  </td>
                  <td data-label="Priority">{p.priority}</td>
                  {mayManage && (
                    <td data-label="Action">
                      <button
                        type="button"
                        className="button"
                        disabled={busy === p.name}
                        onClick={() => toggle(p.name, !p.enabled)}
                      >
                        {p.enabled ? "Disable" : "Enable"}
                      </button>
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}
