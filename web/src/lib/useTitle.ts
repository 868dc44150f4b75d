import { useEffect } from "react";

/** Sets the browser tab's title for the page. */
export function useTitle(title: string): void {
  useEffect(() => {
    document.title = title ? `${title} · Hodei Jobs` : "Hodei Jobs";
  }, [title]);
}
