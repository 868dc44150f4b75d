// Where a job's log ends, without reading all of it: the API pages forward from a sequence, so
// a gallop then a binary search over `after` (one line per probe) finds the last sequence.

import type { LogLineOut, LogPage } from "../api/types";

const FIRST_PAGE = 1000;

export interface Tail {
  /** The last lines, oldest first (at most `keep`). */
  lines: LogLineOut[];
  /** The last sequence seen, or -1 when the log is empty so far. */
  lastSequence: number;
}

/** Reads up to `limit` lines after sequence `after` (GET /jobs/{id}/logs). */
export type PageReader = (after: number, limit: number) => Promise<LogPage>;

/** The last `keep` lines of a job's log and the sequence to follow it from. */
export async function fetchTail(read: PageReader, keep: number): Promise<Tail> {
  const first = await read(0, FIRST_PAGE);
  if (first.lines.length < FIRST_PAGE) {
    const lines = first.lines.slice(-keep);
    return { lines, lastSequence: lines.length ? lines[lines.length - 1]!.sequence : -1 };
  }
  const hasLineAfter = async (after: number) =>
    (await read(after, 1)).lines.length > 0;
  // Invariant: a line exists after `low`; none after `high`.
  let low = first.lines[first.lines.length - 1]!.sequence;
  let step = FIRST_PAGE;
  let high = low + step;
  while (await hasLineAfter(high)) {
    low = high;
    step *= 2;
    high = low + step;
  }
  if (!(await hasLineAfter(low))) high = low;
  while (high - low > 1) {
    const middle = Math.floor((low + high) / 2);
    if (await hasLineAfter(middle)) low = middle;
    else high = middle;
  }
  const page = await read(Math.max(high - keep, 0), keep);
  const lines = page.lines.slice(-keep);
  return { lines, lastSequence: lines.length ? lines[lines.length - 1]!.sequence : high };
}
