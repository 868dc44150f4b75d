import type { JobOut } from "../api/types";
import { DefinitionList } from "../components/DefinitionList";
import { COMMAND_TYPES } from "../forms/jobForm";
import { formatDuration, formatMb } from "../lib/format";

/** What the job was asked to run and with what: command, image, environment, limits. */
export function JobConfig({ job }: { job: JobOut }) {
  const d = job.definition;
  const commandType = COMMAND_TYPES.find((t) => t.value === d.command_type)?.label ?? d.command_type;
  const env = [
    ...Object.entries(d.env).map(([name, value]) => ({ name, value, secret: false })),
    ...Object.keys(d.secret_env).map((name) => ({ name, value: "", secret: true })),
  ].sort((a, b) => a.name.localeCompare(b.name));
  const r = d.resources;
  const p = d.preferences;
  return (
    <div className="config">
      <section className="card" aria-labelledby="command-heading">
        <h2 id="command-heading">Command</h2>
        <DefinitionList items={[["Command type", commandType], ["Container image", d.image || "none"]]} />
        <pre className="code-block" aria-label="Command / script">
          {d.script || "(none: the image's own command)"}
        </pre>
      </section>
      <section className="card" aria-labelledby="env-heading">
        <h2 id="env-heading">Environment</h2>
        {env.length === 0 ? (
          <p className="muted">No environment variables.</p>
        ) : (
          <div className="table-wrap">
            <table className="table compact">
              <thead>
                <tr>
                  <th scope="col">Variable</th>
                  <th scope="col">Value</th>
                </tr>
              </thead>
              <tbody>
                {env.map((v) => (
                  <tr key={v.name}>
                    <td className="mono" data-label="Variable">{v.name}</td>
                    <td className="mono" data-label="Value">
                      {v.secret ? (
                        <span className="secret" aria-label="secret, hidden">
                          ••••••••<span className="tag">secret</span>
                        </span>
                      ) : (
                        v.value
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>
      <section className="card" aria-labelledby="limits-heading">
        <h2 id="limits-heading">Limits</h2>
        <DefinitionList
          items={[
            ["CPU cores", String(r.cpu_cores || 1)],
            ["Memory", formatMb(r.memory_mb || 512)],
            ["Storage", r.storage_mb ? formatMb(r.storage_mb) : "none"],
            ["Timeout", r.timeout_ms ? formatDuration(r.timeout_ms) : "no limit"],
            ["GPU required", r.gpu_required ? "yes" : "no"],
            ["Architecture", r.arch || "any"],
          ]}
        />
      </section>
      <section className="card" aria-labelledby="prefs-heading">
        <h2 id="prefs-heading">Preferences</h2>
        <DefinitionList
          items={[
            ["Provider", p.provider || "Any"],
            ["Region", p.region || "Auto"],
            ["Priority", p.priority],
            ["Allow retry", p.allow_retry ? `yes, up to ${p.max_attempts || 3} attempts` : "no"],
            ...Object.entries(d.labels).map(([k, v]): [string, string] => [`Label ${k}`, v]),
          ]}
        />
      </section>
    </div>
  );
}
