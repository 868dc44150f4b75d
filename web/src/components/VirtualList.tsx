import {
  forwardRef,
  useCallback,
  useEffect,
  useImperativeHandle,
  useLayoutEffect,
  useRef,
  useState,
  type CSSProperties,
  type ReactNode,
} from "react";

/** Browsers cap an element's height (Firefox near 17.9 million px): past this, scroll is scaled. */
const MAX_SCROLL_HEIGHT = 8_000_000;
const OVERSCAN = 8;
const BOTTOM_SLACK_PX = 4;

export interface VirtualListHandle {
  scrollToBottom: () => void;
}

interface VirtualListProps {
  count: number;
  rowHeight: number;
  /** Render row `index`; put `style` on its outermost element. */
  renderRow: (index: number, style: CSSProperties) => ReactNode;
  /** Called after every scroll with whether the view is at the bottom. */
  onScrolled?: (atBottom: boolean) => void;
  className?: string;
  label: string;
  testId?: string;
}

/**
 * A list that renders only the rows in view (fixed row height), so a million rows cost what
 * forty do. Taller than a browser allows, the scroll position maps onto the rows proportionally.
 */
export const VirtualList = forwardRef<VirtualListHandle, VirtualListProps>(function VirtualList(
  { count, rowHeight, renderRow, onScrolled, className, label, testId },
  ref,
) {
  const scrollerRef = useRef<HTMLDivElement>(null);
  const [scrollTop, setScrollTop] = useState(0);
  const [viewport, setViewport] = useState(400);

  useLayoutEffect(() => {
    const element = scrollerRef.current;
    if (!element) return undefined;
    setViewport(element.clientHeight || 400);
    if (typeof ResizeObserver === "undefined") return undefined;
    const observer = new ResizeObserver(() => setViewport(element.clientHeight || 400));
    observer.observe(element);
    return () => observer.disconnect();
  }, []);

  const scrollToBottom = useCallback(() => {
    const element = scrollerRef.current;
    if (!element) return;
    element.scrollTop = element.scrollHeight;
    setScrollTop(element.scrollTop);
  }, []);
  useImperativeHandle(ref, () => ({ scrollToBottom }), [scrollToBottom]);

  // When rows go away (a clear or a narrower filter), the browser clamps scrollTop silently.
  useEffect(() => {
    const element = scrollerRef.current;
    if (element && element.scrollTop !== scrollTop) setScrollTop(element.scrollTop);
  }, [count, scrollTop]);

  const virtualHeight = count * rowHeight;
  const physicalHeight = Math.min(virtualHeight, MAX_SCROLL_HEIGHT);
  const physicalRange = Math.max(physicalHeight - viewport, 0);
  const virtualRange = Math.max(virtualHeight - viewport, 0);
  const clampedTop = Math.min(scrollTop, physicalRange);
  const virtualTop = physicalRange > 0 ? (clampedTop * virtualRange) / physicalRange : 0;
  const first = Math.max(Math.floor(virtualTop / rowHeight) - OVERSCAN, 0);
  const last = Math.min(Math.ceil((virtualTop + viewport) / rowHeight) + OVERSCAN, count);

  const rows: ReactNode[] = [];
  for (let index = first; index < last; index++) {
    rows.push(
      renderRow(index, {
        position: "absolute",
        top: index * rowHeight - virtualTop,
        height: rowHeight,
        left: 0,
        right: 0,
      }),
    );
  }

  return (
    <div
      ref={scrollerRef}
      className={className}
      data-testid={testId}
      role="log"
      aria-label={label}
      aria-live="off"
      tabIndex={0}
      style={{ overflowY: "auto", position: "relative" }}
      onScroll={(event) => {
        const element = event.currentTarget;
        setScrollTop(element.scrollTop);
        const atBottom =
          element.scrollTop + element.clientHeight >= element.scrollHeight - BOTTOM_SLACK_PX;
        onScrolled?.(atBottom);
      }}
    >
      <div style={{ height: physicalHeight, position: "relative", overflow: "hidden" }}>
        <div style={{ position: "absolute", top: clampedTop, left: 0, right: 0, height: 0 }}>{rows}</div>
      </div>
    </div>
  );
});
