/** A job, worker or provider state as a coloured pill; the text is the state itself. */
export function StateBadge({ state, testId }: { state: string; testId?: string }) {
  return (
    <span className={`badge badge-${state.toLowerCase()}`} data-testid={testId}>
      {state}
    </span>
  );
}
