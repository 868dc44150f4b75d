// The provider form: common fields, the settings each type takes, the server's rules, the payload.

import type { ConfigValue, ProviderIn, ProviderOut, ProviderType } from "../api/types";

export const PROVIDER_TYPES: { value: ProviderType; label: string }[] = [
  { value: "local", label: "Local" },
  { value: "docker", label: "Docker" },
  { value: "kubernetes", label: "Kubernetes" },
  { value: "firecracker", label: "Firecracker" },
];

export const typeLabel = (type: string) => PROVIDER_TYPES.find((t) => t.value === type)?.label ?? type;

export interface SettingSpec {
  key: string;
  label: string;
  /** "boolean" is a checkbox: its text in the form is "true", "false" or "" (not set). */
  kind: "text" | "number" | "integer" | "choice" | "boolean";
  choices?: string[];
  placeholder?: string;
  hint?: string;
}

const REGION: SettingSpec = { key: "region", label: "Region", kind: "text", placeholder: "e.g. local" };

/** The type-specific settings (hodei.domain.providers.CONFIG_FIELDS), in form order. */
export const SETTINGS: Record<ProviderType, SettingSpec[]> = {
  local: [
    { key: "cpu_cores", label: "CPU cores", kind: "number", placeholder: "default: the host's" },
    { key: "memory_mb", label: "Memory (MB)", kind: "integer", placeholder: "default: the host's" },
    REGION,
  ],
  docker: [
    { key: "default_image", label: "Default image", kind: "text", placeholder: "e.g. alpine:latest", hint: "For jobs that name no image." },
    { key: "network", label: "Network", kind: "choice", choices: ["none", "host", "bridge"] },
    { key: "cpu_cores", label: "CPU cores", kind: "number", placeholder: "default: the host's", hint: "Per worker." },
    { key: "memory_mb", label: "Memory (MB)", kind: "integer", placeholder: "default: the host's", hint: "Per worker." },
    { key: "docker_host", label: "Docker host", kind: "text", placeholder: "e.g. unix:///var/run/docker.sock" },
    { key: "keep_containers", label: "Keep containers after their job ends", kind: "boolean" },
    REGION,
  ],
  kubernetes: [
    { key: "namespace", label: "Namespace", kind: "text", placeholder: "default" },
    { key: "kubeconfig", label: "Kubeconfig path", kind: "text", placeholder: "~/.kube/config" },
    REGION,
  ],
  firecracker: [
    { key: "kernel_path", label: "Kernel path", kind: "text", placeholder: "/var/lib/hodei/vmlinux" },
    { key: "rootfs_path", label: "Root filesystem path", kind: "text", placeholder: "/var/lib/hodei/rootfs.ext4" },
    { key: "vcpus", label: "vCPUs", kind: "integer", placeholder: "1" },
    { key: "memory_mb", label: "Memory (MB)", kind: "integer", placeholder: "512" },
    REGION,
  ],
};

export interface ProviderForm {
  name: string;
  type: ProviderType;
  enabled: boolean;
  minWorkers: string;
  maxWorkers: string;
  priority: string;
  idleTimeout: string;
  /** Setting key -> its text in the form, for every type (switching type keeps what was typed). */
  settings: Record<string, string>;
}

export const NEW_PROVIDER: ProviderForm = {
  name: "",
  type: "local",
  enabled: true,
  minWorkers: "0",
  maxWorkers: "2",
  priority: "0",
  idleTimeout: "300",
  settings: { network: "none" },
};

export function formFromProvider(provider: ProviderOut): ProviderForm {
  const settings: Record<string, string> = { network: "none" };
  for (const [key, value] of Object.entries(provider.config ?? {})) settings[key] = String(value);
  return {
    name: provider.name,
    type: provider.type,
    enabled: provider.enabled,
    minWorkers: String(provider.min_workers),
    maxWorkers: String(provider.max_workers),
    priority: String(provider.priority),
    idleTimeout: String(provider.idle_timeout_s),
    settings,
  };
}

const NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
const MAX_WORKERS = 1000;
const MAX_IDLE_S = 7 * 24 * 3600;
const MAX_TEXT = 1024;

/** "must be none or host"; "must be one of none, host, bridge". */
function choiceMessage(choices: string[]): string {
  return choices.length > 2 ? `must be one of ${choices.join(", ")}` : `must be ${choices.join(" or ")}`;
}

function wholeNumber(raw: string, path: string, low: number, high: number, errors: Record<string, string>): number {
  const text = raw.trim();
  const value = Number(text);
  if (text === "" || !Number.isFinite(value) || !Number.isInteger(value)) {
    errors[path] = "must be a whole number";
  } else if (value < low || value > high) {
    errors[path] = `must be between ${low} and ${high}`;
  }
  return value;
}

/** Checks the form against the server's rules and builds the provider to send. */
export function checkProviderForm(form: ProviderForm): { errors: Record<string, string>; provider: ProviderIn } {
  const errors: Record<string, string> = {};
  const name = form.name.trim();
  if (!NAME.test(name)) errors.name = "is 1-63 lowercase letters, digits or '-', starting with a letter or digit";
  const priority = wholeNumber(form.priority, "priority", -1000, 1000, errors);
  const minWorkers = wholeNumber(form.minWorkers, "min_workers", 0, MAX_WORKERS, errors);
  const maxWorkers = wholeNumber(form.maxWorkers, "max_workers", 0, MAX_WORKERS, errors);
  if (!errors.min_workers && !errors.max_workers && minWorkers > maxWorkers) {
    errors.max_workers = "must be at least Min workers";
  }
  const idle = wholeNumber(form.idleTimeout, "idle_timeout_s", 0, MAX_IDLE_S, errors);

  const config: Record<string, ConfigValue> = {};
  for (const spec of SETTINGS[form.type]) {
    const text = (form.settings[spec.key] ?? "").trim();
    if (!text) continue; // empty means the provider's default
    const path = `config.${spec.key}`;
    if (spec.kind === "boolean") {
      if (text !== "true" && text !== "false") errors[path] = "must be true or false";
      config[spec.key] = text === "true";
    } else if (spec.kind === "text" || spec.kind === "choice") {
      if (text.length > MAX_TEXT) errors[path] = `must be at most ${MAX_TEXT} characters`;
      else if (spec.choices && !spec.choices.includes(text)) errors[path] = choiceMessage(spec.choices);
      config[spec.key] = text;
    } else {
      const value = Number(text);
      if (!Number.isFinite(value) || value <= 0) errors[path] = "must be a positive number";
      else if (spec.kind === "integer" && !Number.isInteger(value)) errors[path] = "must be a whole number";
      config[spec.key] = value;
    }
  }
  return {
    errors,
    provider: {
      name,
      type: form.type,
      enabled: form.enabled,
      priority,
      min_workers: minWorkers,
      max_workers: maxWorkers,
      idle_timeout_s: idle,
      config,
    },
  };
}
