import { useEffect, useRef, useState, type FormEvent } from "react";
import { useNavigate } from "react-router-dom";
import { ApiError } from "../api/client";
import { createJob, getWorkers, listProviders } from "../api/endpoints";
import type { CommandType, Priority } from "../api/types";
import { CodeEditor } from "../components/CodeEditor";
import { CheckboxField, Field, FieldError, FormErrors, NumberField, Options, fieldMessage } from "../components/Field";
import { ActionError, LoadError } from "../components/Status";
import {
  ARCHES,
  COMMAND_TYPES,
  INITIAL_FORM,
  LIMITS,
  PRIORITIES,
  checkJobForm,
  envVariable,
  formField,
  type EnvRowErrors,
  type FieldErrors,
  type JobForm,
} from "../forms/jobForm";
import { usePolled } from "../lib/usePolled";
import { useTitle } from "../lib/useTitle";

const PLACEHOLDERS: Record<CommandType, string> = {
  SHELL: 'echo "Hello from Hodei!" && date',
  DOCKER_EXEC: "python -c 'print(42)'   (runs inside the container image)",
  PYTHON: 'print("Processing data...")',
  NODE: 'console.log("Hello from Node.js");',
};

/** The form's fields in page order, to focus the first one at fault. */
const FIELD_IDS: [string, string][] = [
  ["name", "job-name"],
  ["command_type", "command-type"],
  ["script", "script"],
  ["image", "image"],
  ["env", "add-variable"],
  ["resources.cpu_cores", "cpu-cores"],
  ["resources.memory_mb", "memory-mb"],
  ["resources.storage_mb", "storage-mb"],
  ["resources.timeout_ms", "timeout-ms"],
  ["resources.gpu_required", "gpu-required"],
  ["resources.arch", "arch"],
  ["preferences.provider", "provider"],
  ["preferences.region", "region"],
  ["preferences.priority", "priority"],
  ["preferences.allow_retry", "allow-retry"],
  ["preferences.max_attempts", "allow-retry"],
];
const KNOWN_FIELDS = new Set(FIELD_IDS.map(([path]) => path));

/** Labels of the fields, for messages of errors that have no field in the form. */
const LABELS: Record<string, string> = {
  labels: "Labels",
};

function usePreferenceOptions() {
  const providers = usePolled(listProviders, "providers");
  const workers = usePolled(getWorkers, "workers");
  const providerNames = (providers.data ?? []).filter((p) => p.enabled).map((p) => p.name);
  const regions = [...new Set((workers.data ?? []).map((w) => w.region).filter(Boolean))].sort();
  const arches = (workers.data ?? []).map((w) => w.arch);
  return { providers, workers, providerNames, regions, arches };
}

/** The new-job form: checks the server's rules first, then shows the server's verdict per field. */
export function NewJob() {
  useTitle("New Job");
  const navigate = useNavigate();
  const [form, setForm] = useState<JobForm>(INITIAL_FORM);
  const [errors, setErrors] = useState<FieldErrors>({});
  const [rowErrors, setRowErrors] = useState<EnvRowErrors>({});
  const [otherErrors, setOtherErrors] = useState<string[]>([]);
  const [submitError, setSubmitError] = useState<unknown>(undefined);
  const [submitting, setSubmitting] = useState(false);
  const [archTouched, setArchTouched] = useState(false);
  const nextRowKey = useRef(1);
  const options = usePreferenceOptions();

  // Until the user picks one, ask for the architecture the workers have.
  const workerArch = options.arches.find((a) => a === "x86_64" || a === "arm64");
  useEffect(() => {
    if (!archTouched && workerArch && workerArch !== form.arch) {
      setForm((f) => ({ ...f, arch: workerArch }));
    }
  }, [archTouched, workerArch, form.arch]);

  const update = <K extends keyof JobForm>(key: K, value: JobForm[K], path?: string) => {
    setForm((f) => ({ ...f, [key]: value }));
    if (path && errors[path]) {
      setErrors(({ [path]: _dropped, ...rest }) => rest);
    }
  };

  const updateRow = (key: number, change: Partial<JobForm["env"][number]>) => {
    setForm((f) => ({ ...f, env: f.env.map((row) => (row.key === key ? { ...row, ...change } : row)) }));
  };
  const addRow = () => {
    const key = nextRowKey.current++;
    setForm((f) => ({ ...f, env: [...f.env, { key, name: "", value: "", secret: false }] }));
    window.setTimeout(() => document.getElementById(`env-name-${key}`)?.focus(), 0);
  };
  const removeRow = (key: number) => {
    setForm((f) => ({ ...f, env: f.env.filter((row) => row.key !== key) }));
    setRowErrors(({ [key]: _dropped, ...rest }) => rest);
  };

  const focusFirstError = (fieldErrors: FieldErrors) => {
    const first = FIELD_IDS.find(([path]) => fieldErrors[path]);
    if (first) document.getElementById(first[1])?.focus();
  };

  const showServerErrors = (error: ApiError) => {
    const fieldErrors: FieldErrors = {};
    const envErrors: string[] = [];
    const rows: EnvRowErrors = {};
    const unplaced: string[] = [];
    for (const { field, message } of error.fieldErrors) {
      const where = formField(field);
      if (where === "env") {
        const variable = envVariable(field);
        envErrors.push(variable ? `${variable}: ${message}` : message);
        const row = form.env.find((r) => r.name.trim() === variable);
        if (row) rows[row.key] = message;
      } else if (KNOWN_FIELDS.has(where)) {
        fieldErrors[where] = fieldErrors[where] ? `${fieldErrors[where]}; ${message}` : message;
      } else {
        unplaced.push(fieldMessage(LABELS[where] ?? (where || "The job"), message));
      }
    }
    if (envErrors.length) fieldErrors.env = envErrors.join("; ");
    setErrors(fieldErrors);
    setRowErrors(rows);
    setOtherErrors(unplaced);
    focusFirstError(fieldErrors);
  };

  const onSubmit = async (event: FormEvent) => {
    event.preventDefault();
    if (submitting) return;
    const checked = checkJobForm(form);
    setErrors(checked.errors);
    setRowErrors(checked.rowErrors);
    setOtherErrors([]);
    setSubmitError(undefined);
    if (Object.keys(checked.errors).length) {
      focusFirstError(checked.errors);
      return;
    }
    setSubmitting(true);
    try {
      const { job_id } = await createJob(checked.definition);
      navigate(`/jobs/${encodeURIComponent(job_id)}`);
    } catch (error) {
      setSubmitting(false);
      if (error instanceof ApiError && error.status === 422 && error.fieldErrors.length) {
        showServerErrors(error);
      } else {
        setSubmitError(error);
      }
    }
  };

  /** The props a numeric resource field takes from the form, its errors and its updates. */
  const resource = (key: "cpuCores" | "memoryMb" | "storageMb" | "timeoutMs", path: string) => ({
    path,
    error: errors[path],
    value: form[key],
    onChange: (value: string) => update(key, value, path),
  });

  const envDescribedBy = errors.env ? "error-env" : undefined;

  return (
    <div className="page narrow">
      <h1>New Job</h1>
      <form className="form" onSubmit={onSubmit} noValidate aria-label="New job">
        <fieldset>
          <legend>Basic Info</legend>
          <Field id="job-name" label="Job Name" path="name" error={errors.name}>
            {(control) => (
              <input
                {...control}
                type="text"
                value={form.name}
                maxLength={LIMITS.nameLength + 50}
                placeholder="Data Processing Pipeline"
                autoComplete="off"
                onChange={(e) => update("name", e.target.value, "name")}
              />
            )}
          </Field>
        </fieldset>

        <fieldset>
          <legend>Core Execution</legend>
          <Field id="command-type" label="Command Type" path="command_type" error={errors.command_type}>
            {(control) => (
              <select
                {...control}
                value={form.commandType}
                onChange={(e) => update("commandType", e.target.value as CommandType, "command_type")}
              >
                <Options options={COMMAND_TYPES} />
              </select>
            )}
          </Field>
          <Field
            id="script"
            label="Command / Script Content"
            path="script"
            error={errors.script}
            hint={form.commandType === "DOCKER_EXEC" ? "Optional for Docker Exec: runs inside the container image." : undefined}
          >
            {(control) => (
              <CodeEditor
                {...control}
                value={form.script}
                placeholder={PLACEHOLDERS[form.commandType]}
                onChange={(value) => update("script", value, "script")}
              />
            )}
          </Field>
        </fieldset>

        <fieldset>
          <legend>Environment &amp; Image</legend>
          <Field
            id="image"
            label="Container Image"
            path="image"
            error={errors.image}
            hint={form.commandType === "DOCKER_EXEC" ? "Required for Docker Exec." : "Optional, e.g. alpine:latest."}
          >
            {(control) => (
              <input
                {...control}
                type="text"
                value={form.image}
                placeholder="alpine:latest"
                autoComplete="off"
                autoCapitalize="off"
                spellCheck={false}
                onChange={(e) => update("image", e.target.value, "image")}
              />
            )}
          </Field>
          <div className="field" role="group" aria-labelledby="env-heading" aria-describedby={envDescribedBy}>
            <span className="group-label" id="env-heading">
              Environment Variables
            </span>
            {form.env.length === 0 && <p className="hint">No variables.</p>}
            <ul className="env-rows">
              {form.env.map((row, index) => {
                const rowError = rowErrors[row.key];
                const invalid = rowError ? ({ "aria-invalid": true, "aria-describedby": "error-env" } as const) : {};
                return (
                  <li key={row.key} className="env-row">
                    <div className="env-cell">
                      <label htmlFor={`env-name-${row.key}`}>Variable name</label>
                      <input
                        id={`env-name-${row.key}`}
                        type="text"
                        value={row.name}
                        placeholder="API_URL"
                        autoComplete="off"
                        autoCapitalize="off"
                        spellCheck={false}
                        {...invalid}
                        onChange={(e) => updateRow(row.key, { name: e.target.value })}
                      />
                    </div>
                    <div className="env-cell env-value">
                      <label htmlFor={`env-value-${row.key}`}>Variable value</label>
                      <input
                        id={`env-value-${row.key}`}
                        type={row.secret ? "password" : "text"}
                        value={row.value}
                        autoComplete="off"
                        spellCheck={false}
                        {...invalid}
                        onChange={(e) => updateRow(row.key, { value: e.target.value })}
                      />
                    </div>
                    <div className="check env-secret">
                      <input
                        id={`env-secret-${row.key}`}
                        type="checkbox"
                        checked={row.secret}
                        onChange={(e) => updateRow(row.key, { secret: e.target.checked })}
                      />
                      <label htmlFor={`env-secret-${row.key}`}>Secret</label>
                    </div>
                    <button
                      type="button"
                      className="button button-ghost"
                      aria-label={`Remove variable ${index + 1}`}
                      onClick={() => removeRow(row.key)}
                    >
                      Remove
                    </button>
                  </li>
                );
              })}
            </ul>
            <button type="button" id="add-variable" className="button" onClick={addRow}>
              Add variable
            </button>
            {errors.env && <FieldError path="env">{fieldMessage("Environment Variables", errors.env)}</FieldError>}
          </div>
        </fieldset>

        <fieldset>
          <legend>Resources</legend>
          <div className="grid-fields">
            <NumberField
              id="cpu-cores"
              label="CPU Cores"
              hint="1 to 16"
              inputMode="decimal"
              min={LIMITS.cpuMin}
              max={LIMITS.cpuMax}
              step="any"
              {...resource("cpuCores", "resources.cpu_cores")}
            />
            <NumberField
              id="memory-mb"
              label="Memory (MB)"
              min={1}
              max={LIMITS.memoryMax}
              {...resource("memoryMb", "resources.memory_mb")}
            />
            <NumberField
              id="storage-mb"
              label="Storage (MB)"
              hint="0 for none"
              min={0}
              max={LIMITS.storageMax}
              {...resource("storageMb", "resources.storage_mb")}
            />
            <NumberField
              id="timeout-ms"
              label="Timeout (ms)"
              hint="0 for no limit"
              min={0}
              max={LIMITS.timeoutMax}
              {...resource("timeoutMs", "resources.timeout_ms")}
            />
            <Field id="arch" label="Architecture" path="resources.arch" error={errors["resources.arch"]}>
              {(control) => (
                <select
                  {...control}
                  value={form.arch}
                  onChange={(e) => {
                    setArchTouched(true);
                    update("arch", e.target.value as JobForm["arch"], "resources.arch");
                  }}
                >
                  <Options options={ARCHES} />
                </select>
              )}
            </Field>
            <CheckboxField
              id="gpu-required"
              label="GPU Required"
              path="resources.gpu_required"
              checked={form.gpuRequired}
              error={errors["resources.gpu_required"]}
              onChange={(checked) => update("gpuRequired", checked, "resources.gpu_required")}
            />
          </div>
        </fieldset>

        <fieldset>
          <legend>Preferences</legend>
          {options.providers.error !== undefined && <LoadError what="providers" error={options.providers.error} />}
          {options.workers.error !== undefined && <LoadError what="regions" error={options.workers.error} />}
          <div className="grid-fields">
            <Field id="provider" label="Provider" path="preferences.provider" error={errors["preferences.provider"]}>
              {(control) => (
                <select {...control} value={form.provider} onChange={(e) => update("provider", e.target.value, "preferences.provider")}>
                  <option value="">Any</option>
                  <Options options={options.providerNames} />
                </select>
              )}
            </Field>
            <Field id="region" label="Region" path="preferences.region" error={errors["preferences.region"]}>
              {(control) => (
                <select {...control} value={form.region} onChange={(e) => update("region", e.target.value, "preferences.region")}>
                  <option value="">Auto</option>
                  <Options options={options.regions} />
                </select>
              )}
            </Field>
            <Field id="priority" label="Job Priority" path="preferences.priority" error={errors["preferences.priority"]}>
              {(control) => (
                <select {...control} value={form.priority} onChange={(e) => update("priority", e.target.value as Priority, "preferences.priority")}>
                  <Options options={PRIORITIES} />
                </select>
              )}
            </Field>
            <CheckboxField
              id="allow-retry"
              label="Allow Retry"
              path="preferences.allow_retry"
              checked={form.allowRetry}
              error={errors["preferences.allow_retry"]}
              hint="Retry up to 3 attempts if it fails"
              onChange={(checked) => update("allowRetry", checked, "preferences.allow_retry")}
            />
            {errors["preferences.max_attempts"] && (
              <FieldError path="preferences.max_attempts">
                {fieldMessage("Attempts", errors["preferences.max_attempts"])}
              </FieldError>
            )}
          </div>
        </fieldset>

        <FormErrors messages={otherErrors} />
        {submitError !== undefined && <ActionError action="schedule the job" error={submitError} />}
        <div className="form-actions">
          <button type="submit" className="button button-primary" aria-busy={submitting} disabled={submitting}>
            Schedule Job
          </button>
        </div>
      </form>
    </div>
  );
}
