/** Terms and their values, as a summary list: [["Created", "…"], ["Attempt", "1"]]. */
export function DefinitionList({ items }: { items: [string, string][] }) {
  return (
    <dl className="summary">
      {items.map(([term, value]) => (
        <div key={term}>
          <dt>{term}</dt>
          <dd>{value}</dd>
        </div>
      ))}
    </dl>
  );
}
