import type { ReactNode, Ref } from "react";

interface ChartFrameProps {
  /** What the chart shows, for people who cannot see it: the SVG's aria-label and title. */
  label: string;
  testId?: string;
  width: number;
  height: number;
  className?: string;
  /** The figure, for useWidth to measure. */
  frameRef?: Ref<HTMLElement>;
  /** What follows the SVG inside the figure, e.g. a legend. */
  after?: ReactNode;
  children: ReactNode;
}

/** A chart's figure and labelled SVG; the marks go inside. */
export function ChartFrame({ label, testId, width, height, className = "chart", frameRef, after, children }: ChartFrameProps) {
  return (
    <figure className={className} ref={frameRef}>
      <svg
        role="img"
        aria-label={label}
        data-testid={testId}
        width={width}
        height={height}
        viewBox={`0 0 ${width} ${height}`}
      >
        <title>{label}</title>
        {children}
      </svg>
      {after}
    </figure>
  );
}

interface ValueGridProps {
  ticks: number[];
  /** Where the plot starts and how wide it is. */
  left: number;
  width: number;
  y: (value: number) => number;
  format: (value: number) => string;
}

/** The value axis: a grid line and a label at each tick. */
export function ValueGrid({ ticks, left, width, y, format }: ValueGridProps) {
  return (
    <>
      {ticks.map((t) => (
        <g key={t}>
          <line className="grid" x1={left} x2={left + width} y1={y(t)} y2={y(t)} />
          <text className="tick" x={left - 6} y={y(t)} dy="0.32em" textAnchor="end">
            {format(t)}
          </text>
        </g>
      ))}
    </>
  );
}
