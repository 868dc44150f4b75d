import { useState } from "react";
import { setProviderEnabled } from "../api/endpoints";

/** Enable or disable a provider; remembers which one is in flight and what went wrong. */
export function useProviderToggle(onDone: () => void) {
  const [busy, setBusy] = useState<string | null>(null);
  const [error, setError] = useState<{ name: string; enable: boolean; error: unknown } | null>(null);
  const toggle = async (name: string, enable: boolean) => {
    setBusy(name);
    setError(null);
    try {
      await setProviderEnabled(name, enable);
    } catch (e) {
      setError({ name, enable, error: e });
    } finally {
      setBusy(null);
      onDone();
    }
  };
  return { busy, error, toggle };
}
