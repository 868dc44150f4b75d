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
      {hint && (
        <p className="hint" id={`${id}-hint`}>
          {hint}
        </p>
      )}
      {error && <FieldError path={path}>{fieldMessage(label, error)}</FieldError>}
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
      {hint && (
        <p className="hint" id={`${id}-hint`}>
          {hint}
        </p>
      )}
      {error && <FieldError path={path}>{fieldMessage(label, error)}</FieldError>}
    </div>
  );
}
