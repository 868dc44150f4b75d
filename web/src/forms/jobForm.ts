// The new-job form: its state, the server's rules checked before sending, and the payload.

import type { Arch, CommandType, JobDefinition, Priority } from "../api/types";

export const COMMAND_TYPES: { value: CommandType; label: string }[] = [
  { value: "SHELL", label: "Shell Command" },
  { value: "DOCKER_EXEC", label: "Docker Exec" },
  { value: "PYTHON", label: "Python Script" },
  { value: "NODE", label: "Node.js Script" },
];

export const PRIORITIES: { value: Priority; label: string }[] = [
  { value: "LOW", label: "Low" },
  { value: "NORMAL", label: "Normal" },
  { value: "HIGH", label: "High" },
];

export const ARCHES: Exclude<Arch, "">[] = ["x86_64", "arm64"];

// The server's limits (hodei.domain.jobs); CPU cores are narrower in the form than the API allows.
export const LIMITS = {
  nameLength: 200,
  scriptBytes: 1024 * 1024,
  imageLength: 512,
  envEntries: 256,
  envValueBytes: 32 * 1024,
  cpuMin: 1,
  cpuMax: 16,
  memoryMax: 4 * 1024 * 1024,
  storageMax: 16 * 1024 * 1024,
  timeoutMax: 30 * 24 * 3600 * 1000,
} as const;

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const IMAGE = /^[a-z0-9][a-z0-9._/:@-]*$/;

export interface EnvRow {
  key: number;
  name: string;
  value: string;
  secret: boolean;
}

export interface JobForm {
  name: string;
  commandType: CommandType;
  script: string;
  image: string;
  env: EnvRow[];
  cpuCores: string;
  memoryMb: string;
  storageMb: string;
  timeoutMs: string;
  gpuRequired: boolean;
  arch: Exclude<Arch, "">;
  provider: string;
  region: string;
  priority: Priority;
  allowRetry: boolean;
}

export const INITIAL_FORM: JobForm = {
  name: "",
  commandType: "SHELL",
  script: "",
  image: "",
  env: [],
  cpuCores: "1",
  memoryMb: "512",
  storageMb: "0",
  timeoutMs: "0",
  gpuRequired: false,
  arch: "x86_64",
  provider: "",
  region: "",
  priority: "NORMAL",
  allowRetry: false,
};

/** Field path (as the server names it) -> what is wrong with it. */
export type FieldErrors = Record<string, string>;

/** Row key -> what is wrong with that environment variable. */
export type EnvRowErrors = Record<number, string>;

const byteLength = (text: string) => new TextEncoder().encode(text).length;

/** The env rows that say something: a row with neither name nor value is ignored. */
function filledRows(rows: EnvRow[]): EnvRow[] {
  return rows.filter((row) => row.name.trim() !== "" || row.value !== "");
}

function parseNumber(
  raw: string,
  field: string,
  errors: FieldErrors,
  { min, max, whole, empty }: { min: number; max: number; whole: boolean; empty?: number },
): number {
  const text = raw.trim();
  if (text === "") {
    if (empty !== undefined) return empty;
    errors[field] = "is required";
    return 0;
  }
  const value = Number(text);
  if (!Number.isFinite(value)) {
    errors[field] = "must be a number";
  } else if (whole && !Number.isInteger(value)) {
    errors[field] = "must be a whole number";
  } else if (value < min || value > max) {
    errors[field] = `must be between ${min} and ${max}`;
  }
  return value;
}

export interface Checked {
  errors: FieldErrors;
  rowErrors: EnvRowErrors;
  definition: JobDefinition;
}

/** Checks the form against the server's rules and builds the definition to send. */
export function checkJobForm(form: JobForm): Checked {
  const errors: FieldErrors = {};
  const rowErrors: EnvRowErrors = {};

  const name = form.name.trim();
  if (!name) errors.name = "is required";
  else if (name.length > LIMITS.nameLength) errors.name = `must be at most ${LIMITS.nameLength} characters`;

  const dockerExec = form.commandType === "DOCKER_EXEC";
  if (!form.script.trim()) {
    if (!dockerExec) errors.script = "is required";
  } else if (form.script.includes("\u0000")) {
    errors.script = "must not contain a NUL character";
  } else if (byteLength(form.script) > LIMITS.scriptBytes) {
    errors.script = `must be at most ${LIMITS.scriptBytes} bytes`;
  }

  const image = form.image.trim();
  if (image.length > LIMITS.imageLength || (image && !IMAGE.test(image))) {
    errors.image = "is not a valid image reference (e.g. alpine:latest)";
  } else if (dockerExec && !image) {
    errors.image = "is required for Docker Exec";
  }

  const env: Record<string, string> = {};
  const secretEnv: Record<string, string> = {};
  const rows = filledRows(form.env);
  const seen = new Set<string>();
  for (const row of rows) {
    const varName = row.name.trim();
    if (!ENV_NAME.test(varName)) {
      rowErrors[row.key] = `${varName || "(empty)"}: a variable name is letters, digits and _, not starting with a digit`;
    } else if (seen.has(varName)) {
      rowErrors[row.key] = `${varName}: is given more than once`;
    } else if (row.value.includes("\u0000")) {
      rowErrors[row.key] = `${varName}: the value must not contain a NUL character`;
    } else if (byteLength(row.value) > LIMITS.envValueBytes) {
      rowErrors[row.key] = `${varName}: the value is longer than ${LIMITS.envValueBytes} bytes`;
    }
    seen.add(varName);
    (row.secret ? secretEnv : env)[varName] = row.value;
  }
  if (rows.length > LIMITS.envEntries) {
    errors.env = `at most ${LIMITS.envEntries} variables, got ${rows.length}`;
  } else if (Object.keys(rowErrors).length) {
    errors.env = Object.values(rowErrors).join("; ");
  }

  const cpuCores = parseNumber(form.cpuCores, "resources.cpu_cores", errors, {
    min: LIMITS.cpuMin,
    max: LIMITS.cpuMax,
    whole: false,
  });
  const memoryMb = parseNumber(form.memoryMb, "resources.memory_mb", errors, {
    min: 1,
    max: LIMITS.memoryMax,
    whole: true,
  });
  const storageMb = parseNumber(form.storageMb, "resources.storage_mb", errors, {
    min: 0,
    max: LIMITS.storageMax,
    whole: true,
    empty: 0,
  });
  const timeoutMs = parseNumber(form.timeoutMs, "resources.timeout_ms", errors, {
    min: 0,
    max: LIMITS.timeoutMax,
    whole: true,
    empty: 0,
  });

  const definition: JobDefinition = {
    name,
    command_type: form.commandType,
    script: form.script,
    image,
    env,
    secret_env: secretEnv,
    resources: {
      cpu_cores: cpuCores,
      memory_mb: memoryMb,
      storage_mb: storageMb,
      timeout_ms: timeoutMs,
      gpu_required: form.gpuRequired,
      arch: form.arch,
    },
    preferences: {
      provider: form.provider,
      region: form.region,
      priority: form.priority,
      allow_retry: form.allowRetry,
      max_attempts: 0,
    },
    labels: {},
  };
  return { errors, rowErrors, definition };
}

/** Where a server field path shows in the form: env and secret_env entries under "env". */
export function formField(path: string): string {
  if (path === "env" || path.startsWith("env.") || path === "secret_env" || path.startsWith("secret_env.")) {
    return "env";
  }
  return path;
}

/** The variable a server path like "env.FOO" or "secret_env.FOO" names, if any. */
export function envVariable(path: string): string | null {
  const match = /^(?:secret_)?env\.(.+)$/.exec(path);
  return match ? match[1]! : null;
}
