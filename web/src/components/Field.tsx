import type { ReactNode } from "react";

export interface ControlProps {
  id: string;
  "aria-invalid"?: true;
  "aria-describedby"?: string;
}

/** "Job Name is required"; "CPU Cores: Input should be a valid number". */
export function fieldMessage(label: string, message: string): string {
  const first = message.charAt(0);
  return first && first === first.toLowerCase() && first !== first.toUpperCase()
    ? `${label} ${message}`
    : `${label}: ${message}`;
}

/** The error under a field: `error-<path>`, where path is the server's name for the field. */
export function FieldError({ path, children }: { path: string; children: ReactNode }) {
  return (
    <p className="field-error" role="alert" id={`error-${path}`}>
      {children}
    </p>
  );
}

/** The attributes that tie a control to its hint and error. */
function controlProps(id: string, path: string, error?: string, hint?: string): ControlProps {
  const describedBy = [error ? `error-${path}` : "", hint ? `${id}-hint` : ""].filter(Boolean).join(" ");
  return {
    id,
    ...(error ? { "aria-invalid": true as const } : {}),
    ...(describedBy ? { "aria-describedby": describedBy } : {}),
  };
}

/** The hint and the error under a control. */
function FieldNotes({ id, label, path, error, hint }: { id: string; label: string; path: string; error?: string; hint?: string }) {
  return (
    <>
      {hint && (
        <p className="hint" id={`${id}-hint`}>
          {hint}
        </p>
      )}
      {error && <FieldError path={path}>{fieldMessage(label, error)}</FieldError>}
    </>
  );
}

interface FieldProps {
  id: string;
  label: string;
  /** The server's name for the field, e.g. "resources.cpu_cores". */
  path: string;
  error?: string;
  hint?: string;
  className?: string;
  children: (control: ControlProps) => ReactNode;
}

/** A labelled control with an optional hint and error. */
export function Field({ id, label, path, error, hint, className, children }: FieldProps) {
  return (
    <div className={`field ${className ?? ""}`}>
      <label htmlFor={id}>{label}</label>
      {children(controlProps(id, path, error, hint))}
      <FieldNotes id={id} label={label} path={path} error={error} hint={hint} />
    </div>
  );
}

interface CheckboxFieldProps {
  id: string;
  label: string;
  path: string;
  checked: boolean;
  onChange: (checked: boolean) => void;
  error?: string;
  hint?: string;
}

/** A checkbox with its label after it. */
export function CheckboxField({ id, label, path, checked, onChange, error, hint }: CheckboxFieldProps) {
  return (
    <div className="field field-check">
      <div className="check">
        <input
          type="checkbox"
          checked={checked}
          onChange={(event) => onChange(event.target.checked)}
          {...controlProps(id, path, error, hint)}
        />
        <label htmlFor={id}>{label}</label>
      </div>
      <FieldNotes id={id} label={label} path={path} error={error} hint={hint} />
    </div>
  );
}

interface NumberFieldProps extends Omit<FieldProps, "children" | "className"> {
  value: string;
  onChange: (value: string) => void;
  min?: number;
  max?: number;
  /** 1 (the default) for whole numbers, "any" for decimals. */
  step?: number | "any";
  inputMode?: "numeric" | "decimal";
}

/** A labelled number input; the value stays the text typed, for the form's own check. */
export function NumberField({ value, onChange, min, max, step = 1, inputMode = "numeric", ...field }: NumberFieldProps) {
  return (
    <Field {...field}>
      {(control) => (
        <input
          {...control}
          type="number"
          inputMode={inputMode}
          min={min}
          max={max}
          step={step}
          value={value}
          onChange={(e) => onChange(e.target.value)}
        />
      )}
    </Field>
  );
}

/** A select's options, from values or from value/label pairs. */
export function Options({ options }: { options: readonly (string | { value: string; label: string })[] }) {
  return (
    <>
      {options.map((option) => {
        const { value, label } = typeof option === "string" ? { value: option, label: option } : option;
        return (
          <option key={value} value={value}>
            {label}
          </option>
        );
      })}
    </>
  );
}

/** A form's errors that belong to none of its fields, one alert each. */
export function FormErrors({ messages }: { messages: string[] }) {
  return (
    <>
      {messages.map((message) => (
        <p key={message} role="alert" className="alert alert-error">
          {message}
        </p>
      ))}
    </>
  );
}
