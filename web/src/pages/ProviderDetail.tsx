import { useState } from "react";
import { Link, useNavigate, useParams } from "react-router-dom";
import { deleteProvider, getProvider, getWorkers, updateProvider } from "../api/endpoints";
import type { ProviderOut, WorkerOut } from "../api/types";
import { ConfirmDialog } from "../components/ConfirmDialog";
import { DefinitionList } from "../components/DefinitionList";
import { StateBadge } from "../components/StateBadge";
import { ActionError, LoadError, Loading } from "../components/Status";
import { SETTINGS, formFromProvider, typeLabel } from "../forms/providerForm";
import { formatAgo, formatDateTime, formatDuration, formatMb, formatNumber } from "../lib/format";
import { usePolled } from "../lib/usePolled";
import { useTitle } from "../lib/useTitle";
import { ProviderFormView } from "../providers/ProviderFormView";
import { useProviderToggle } from "../providers/useToggle";
import { useCan } from "../session/SessionContext";

function Settings({ provider }: { provider: ProviderOut }) {
  const labels = new Map(SETTINGS[provider.type]?.map((s) => [s.key, s.label]) ?? []);
  const items: [string, string][] = [
    ["Type", typeLabel(provider.type)],
    ["Status", provider.status],
    ["Priority", String(provider.priority)],
    ["Workers", `${provider.min_workers} to ${provider.max_workers}`],
    ["Idle timeout", formatDuration(provider.idle_timeout_s * 1000)],
    ...Object.entries(provider.config ?? {}).map(([k, v]): [string, string] => [
      labels.get(k) ?? k,
      typeof v === "boolean" ? (v ? "yes" : "no") : String(v),
    ]),
    ["Created", formatDateTime(provider.created_at)],
    ["Updated", formatDateTime(provider.updated_at)],
  ];
  return <DefinitionList items={items} />;
}

function Workers({ workers }: { workers: WorkerOut[] }) {
  if (workers.length === 0) return <p className="muted">This provider has no workers right now.</p>;
  return (
    <div className="table-wrap">
      <table className="table compact">
        <caption className="sr-only">Workers of this provider</caption>
        <thead>
          <tr>
            <th scope="col">Worker</th>
            <th scope="col">State</th>
            <th scope="col">Region</th>
            <th scope="col">Jobs</th>
            <th scope="col">CPU</th>
            <th scope="col">Memory</th>
            <th scope="col">Heartbeat</th>
          </tr>
        </thead>
        <tbody>
          {workers.map((w) => (
            <tr key={w.id}>
              <td data-label="Worker" title={w.id}>{w.hostname || w.id}</td>
              <td data-label="State">
                <StateBadge state={w.state} />
              </td>
              <td data-label="Region">{w.region || "—"}</td>
              <td data-label="Jobs">{w.running_jobs}</td>
              <td data-label="CPU">
                {formatNumber(w.used_cpu_cores, 2)} of {formatNumber(w.cpu_cores, 2)} cores
              </td>
              <td data-label="Memory">
                {formatMb(w.used_memory_mb)} of {formatMb(w.memory_mb)}
              </td>
              <td data-label="Heartbeat">{formatAgo(w.last_heartbeat_at)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** One provider: its settings and workers, enable/disable, edit and delete. */
export function ProviderDetail() {
  const { name = "" } = useParams();
  useTitle(`Provider ${name}`);
  const navigate = useNavigate();
  const provider = usePolled((signal) => getProvider(name, signal), name);
  const workers = usePolled(getWorkers, "workers", 3000);
  const { busy, error: toggleError, toggle } = useProviderToggle(provider.reload);
  const [confirmDelete, setConfirmDelete] = useState(false);
  const [deleting, setDeleting] = useState(false);
  const [deleteError, setDeleteError] = useState<unknown>(undefined);
  const mayManage = useCan("manage-providers");

  if (!provider.data) {
    return (
      <div className="page">
        <h1>Provider {name}</h1>
        {provider.error !== undefined && <LoadError what="the provider" error={provider.error} />}
        {provider.loading && <Loading what="the provider" />}
        <p>
          <Link to="/providers">All providers</Link>
        </p>
      </div>
    );
  }
  const p = provider.data;

  const onDelete = async () => {
    setDeleting(true);
    setDeleteError(undefined);
    try {
      await deleteProvider(p.name);
      navigate("/providers");
    } catch (error) {
      setDeleteError(error);
      setDeleting(false);
      setConfirmDelete(false);
    }
  };

  return (
    <div className="page">
      <div className="page-head">
        <div>
          <h1>{p.name}</h1>
          <p className="small">
            <Link to="/providers">All providers</Link>
          </p>
        </div>
        <div className="head-actions">
          <StateBadge state={p.status} />
          {mayManage && (
            <>
              <button type="button" className="button" disabled={busy === p.name} onClick={() => toggle(p.name, !p.enabled)}>
                {p.enabled ? "Disable" : "Enable"}
              </button>
              <button type="button" className="button button-danger" onClick={() => setConfirmDelete(true)}>
                Delete
              </button>
            </>
          )}
        </div>
      </div>
      {provider.error !== undefined && <LoadError what="the provider's latest settings" error={provider.error} />}
      {toggleError && <ActionError action={`${toggleError.enable ? "enable" : "disable"} ${p.name}`} error={toggleError.error} />}
      {deleteError !== undefined && <ActionError action={`delete ${p.name}`} error={deleteError} />}

      <div className="grid-2">
        <section className="card" aria-labelledby="settings-heading">
          <h2 id="settings-heading">Settings</h2>
          <Settings provider={p} />
        </section>
        <section className="card" aria-labelledby="workers-heading">
          <h2 id="workers-heading">Workers</h2>
          <p className="muted small">
            {p.workers.total} total · {p.workers.ready} ready · {p.workers.busy} busy
          </p>
          {workers.error !== undefined && <LoadError what="the workers" error={workers.error} />}
          {workers.data ? (
            <Workers workers={workers.data.filter((w) => w.provider === p.name)} />
          ) : (
            workers.loading && <Loading what="workers" />
          )}
        </section>
      </div>

      {mayManage && (
        <section className="card" aria-labelledby="edit-heading">
          <h2 id="edit-heading">Edit</h2>
          <ProviderFormView
            key={String(p.enabled)}
            mode="edit"
            initial={formFromProvider(p)}
            onSubmit={async (changed) => {
              await updateProvider(p.name, changed);
              provider.reload();
            }}
          />
        </section>
      )}

      {confirmDelete && (
        <ConfirmDialog
          title={`Delete provider ${p.name}?`}
          confirmLabel="Delete provider"
          dismissLabel="Keep it"
          busy={deleting}
          onConfirm={onDelete}
          onDismiss={() => setConfirmDelete(false)}
        >
          <p>This removes the provider and its settings. Jobs keep their history.</p>
        </ConfirmDialog>
      )}
    </div>
  );
}
