import { useState, type FormEvent } from "react";
import { ApiError } from "../api/client";
import type { ProviderIn, ProviderType } from "../api/types";
import { CheckboxField, Field, FormErrors, NumberField, Options, fieldMessage } from "../components/Field";
import { ActionError } from "../components/Status";
import { PROVIDER_TYPES, SETTINGS, checkProviderForm, type ProviderForm } from "../forms/providerForm";

interface ProviderFormViewProps {
  initial: ProviderForm;
  mode: "create" | "edit";
  onSubmit: (provider: ProviderIn) => Promise<void>;
}

const COMMON_FIELDS = new Set(["name", "type", "enabled", "min_workers", "max_workers", "priority", "idle_timeout_s"]);

/** The provider's settings: common ones, then the ones its type takes. */
export function ProviderFormView({ initial, mode, onSubmit }: ProviderFormViewProps) {
  const [form, setForm] = useState<ProviderForm>(initial);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [otherErrors, setOtherErrors] = useState<string[]>([]);
  const [submitError, setSubmitError] = useState<unknown>(undefined);
  const [busy, setBusy] = useState(false);
  const [saved, setSaved] = useState(false);
  const idPrefix = `provider-${mode}`;

  const set = <K extends keyof ProviderForm>(key: K, value: ProviderForm[K], path: string) => {
    setForm((f) => ({ ...f, [key]: value }));
    setSaved(false);
    if (errors[path]) setErrors(({ [path]: _dropped, ...rest }) => rest);
  };
  const setSetting = (key: string, value: string) => {
    setForm((f) => ({ ...f, settings: { ...f.settings, [key]: value } }));
    setSaved(false);
    const path = `config.${key}`;
    if (errors[path]) setErrors(({ [path]: _dropped, ...rest }) => rest);
  };

  const settingIds = new Map(SETTINGS[form.type].map((s) => [`config.${s.key}`, `${idPrefix}-setting-${s.key}`]));
  const focusFirst = (found: Record<string, string>) => {
    const order = ["name", "type", "enabled", "min_workers", "max_workers", "priority", "idle_timeout_s", ...settingIds.keys()];
    const first = order.find((path) => found[path]);
    if (!first) return;
    const id = settingIds.get(first) ?? `${idPrefix}-${first.replace(/_/g, "-")}`;
    document.getElementById(id)?.focus();
  };

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    if (busy) return;
    const checked = checkProviderForm(form);
    setErrors(checked.errors);
    setOtherErrors([]);
    setSubmitError(undefined);
    setSaved(false);
    if (Object.keys(checked.errors).length) {
      focusFirst(checked.errors);
      return;
    }
    setBusy(true);
    try {
      await onSubmit(checked.provider);
      setSaved(true);
    } catch (error) {
      if (error instanceof ApiError && error.status === 422 && error.fieldErrors.length) {
        const placed: Record<string, string> = {};
        const unplaced: string[] = [];
        for (const { field, message } of error.fieldErrors) {
          if (COMMON_FIELDS.has(field) || settingIds.has(field)) placed[field] = message;
          else unplaced.push(fieldMessage(field || "The provider", message));
        }
        setErrors(placed);
        setOtherErrors(unplaced);
        focusFirst(placed);
      } else {
        setSubmitError(error);
      }
    } finally {
      setBusy(false);
    }
  };

  const numberField = (key: "minWorkers" | "maxWorkers" | "priority" | "idleTimeout", path: string, label: string, min: number) => (
    <NumberField
      id={`${idPrefix}-${path.replace(/_/g, "-")}`}
      label={label}
      path={path}
      error={errors[path]}
      min={min}
      value={form[key]}
      onChange={(value) => set(key, value, path)}
    />
  );

  return (
    <form className="form" onSubmit={submit} noValidate aria-label={mode === "create" ? "New provider" : "Edit provider"}>
      <fieldset>
        <legend>Provider</legend>
        <div className="grid-fields">
          <Field
            id={`${idPrefix}-name`}
            label="Name"
            path="name"
            error={errors.name}
            hint={mode === "edit" ? "The name cannot be changed." : "Lowercase letters, digits and '-'."}
          >
            {(control) => (
              <input
                {...control}
                type="text"
                value={form.name}
                readOnly={mode === "edit"}
                autoComplete="off"
                autoCapitalize="off"
                spellCheck={false}
                onChange={(e) => set("name", e.target.value, "name")}
              />
            )}
          </Field>
          <Field
            id={`${idPrefix}-type`}
            label="Type"
            path="type"
            error={errors.type}
            hint={mode === "edit" ? "The type cannot be changed." : undefined}
          >
            {(control) => (
              <select
                {...control}
                value={form.type}
                disabled={mode === "edit"}
                onChange={(e) => set("type", e.target.value as ProviderType, "type")}
              >
                <Options options={PROVIDER_TYPES} />
              </select>
            )}
          </Field>
          <CheckboxField
            id={`${idPrefix}-enabled`}
            label="Enabled"
            path="enabled"
            checked={form.enabled}
            error={errors.enabled}
            onChange={(checked) => set("enabled", checked, "enabled")}
          />
        </div>
      </fieldset>
      <fieldset>
        <legend>Scaling</legend>
        <div className="grid-fields">
          {numberField("minWorkers", "min_workers", "Min workers", 0)}
          {numberField("maxWorkers", "max_workers", "Max workers", 0)}
          {numberField("priority", "priority", "Priority", -1000)}
          {numberField("idleTimeout", "idle_timeout_s", "Idle timeout (s)", 0)}
        </div>
      </fieldset>
      <fieldset>
        <legend>{PROVIDER_TYPES.find((t) => t.value === form.type)?.label} settings</legend>
        <p className="hint">Leave a field empty for its default.</p>
        <div className="grid-fields">
          {SETTINGS[form.type].map((spec) => {
            const path = `config.${spec.key}`;
            const id = settingIds.get(path)!;
            const value = form.settings[spec.key] ?? "";
            if (spec.kind === "boolean") {
              return (
                <CheckboxField
                  key={`${form.type}-${spec.key}`}
                  id={id}
                  label={spec.label}
                  path={path}
                  checked={value === "true"}
                  error={errors[path]}
                  hint={spec.hint}
                  onChange={(checked) => setSetting(spec.key, String(checked))}
                />
              );
            }
            return (
              <Field
                key={`${form.type}-${spec.key}`}
                id={id}
                label={spec.label}
                path={path}
                error={errors[path]}
                hint={spec.hint}
              >
                {(control) =>
                  spec.kind === "choice" ? (
                    <select {...control} value={value || spec.choices![0]} onChange={(e) => setSetting(spec.key, e.target.value)}>
                      <Options options={spec.choices!} />
                    </select>
                  ) : (
                    <input
                      {...control}
                      type={spec.kind === "text" ? "text" : "number"}
                      inputMode={spec.kind === "integer" ? "numeric" : spec.kind === "number" ? "decimal" : undefined}
                      step={spec.kind === "number" ? "any" : spec.kind === "integer" ? 1 : undefined}
                      value={value}
                      placeholder={spec.placeholder}
                      autoComplete="off"
                      spellCheck={false}
                      onChange={(e) => setSetting(spec.key, e.target.value)}
                    />
                  )
                }
              </Field>
            );
          })}
        </div>
      </fieldset>
      <FormErrors messages={otherErrors} />
      {submitError !== undefined && (
        <ActionError action={mode === "create" ? "create the provider" : "save the provider"} error={submitError} />
      )}
      {saved && mode === "edit" && (
        <p className="alert alert-ok" role="status">
          Saved.
        </p>
      )}
      <div className="form-actions">
        <button type="submit" className="button button-primary" disabled={busy} aria-busy={busy}>
          {mode === "create" ? "Create provider" : "Save"}
        </button>
      </div>
    </form>
  );
}
