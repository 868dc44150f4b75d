export interface LegendItem {
  name: string;
  color: string;
  value?: string;
}

/** The key of a chart: a swatch and a name (and a value) per series. */
export function Legend({ items }: { items: LegendItem[] }) {
  return (
    <ul className="legend">
      {items.map((item) => (
        <li key={item.name}>
          <span className="swatch" style={{ background: item.color }} aria-hidden="true" />
          {item.name}
          {item.value !== undefined && <strong> {item.value}</strong>}
        </li>
      ))}
    </ul>
  );
}

/** The legend of a chart of series: only when there are several to tell apart. */
export function SeriesLegend({ series }: { series: { name: string; color: string }[] }) {
  return series.length > 1 ? <Legend items={series.map((s) => ({ name: s.name, color: s.color }))} /> : null;
}
