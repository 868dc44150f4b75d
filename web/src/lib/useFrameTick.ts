import { useCallback, useEffect, useRef, useState } from "react";

/**
 * A render counter and a bump() that asks for at most one render per animation frame, however
 * many times it is called (log batches can arrive far faster than frames).
 */
export function useFrameTick(): [number, () => void] {
  const [tick, setTick] = useState(0);
  const frame = useRef<number | null>(null);
  const bump = useCallback(() => {
    if (frame.current !== null) return;
    frame.current = window.requestAnimationFrame(() => {
      frame.current = null;
      setTick((t) => t + 1);
    });
  }, []);
  useEffect(
    () => () => {
      if (frame.current !== null) window.cancelAnimationFrame(frame.current);
    },
    [],
  );
  return [tick, bump];
}
