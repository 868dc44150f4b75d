// Log lines kept as parallel arrays (not one object, let alone one React element, per line), so
// a million lines stay cheap, plus a filtered view over them that is extended incrementally.

import type { LogLevel, LogLineOut } from "../api/types";

export const LEVELS: readonly LogLevel[] = ["INFO", "WARN", "ERROR"];
const LEVEL_CODE: Record<string, number> = { INFO: 0, WARN: 1, ERROR: 2 };

export const FLAG_STDERR = 1;
export const FLAG_INVALID_UTF8 = 2;

/** Every line received, in sequence order, without duplicates. */
export class LogStore {
  sequences: number[] = [];
  times: number[] = [];
  levels: number[] = [];
  flags: number[] = [];
  lines: string[] = [];
  /** The highest sequence ever received; a clear keeps it so lines are never taken twice. */
  lastSequence = -1;
  /** Bumped by clear(), so views know to start over. */
  generation = 0;

  get length(): number {
    return this.lines.length;
  }

  /** Appends the lines newer than any seen; returns how many were new. */
  append(batch: readonly LogLineOut[]): number {
    let added = 0;
    for (const line of batch) {
      if (line.sequence <= this.lastSequence) continue;
      this.lastSequence = line.sequence;
      this.sequences.push(line.sequence);
      const at = Date.parse(line.timestamp);
      this.times.push(Number.isNaN(at) ? 0 : at);
      this.levels.push(LEVEL_CODE[line.level] ?? 0);
      this.flags.push((line.stream === "STDERR" ? FLAG_STDERR : 0) | (line.invalid_utf8 ? FLAG_INVALID_UTF8 : 0));
      this.lines.push(line.line);
      added++;
    }
    return added;
  }

  /** Forgets the lines held so far; later lines still arrive. */
  clear(): void {
    this.sequences = [];
    this.times = [];
    this.levels = [];
    this.flags = [];
    this.lines = [];
    this.generation++;
  }

  level(index: number): LogLevel {
    return LEVELS[this.levels[index] ?? 0] ?? "INFO";
  }
}

export interface LogFilter {
  /** "" for all levels. */
  level: "" | LogLevel;
  /** Case-insensitive text to look for; "" for all lines. */
  text: string;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

export function searchPattern(text: string): RegExp | null {
  return text ? new RegExp(escapeRegExp(text), "i") : null;
}

/**
 * The store indices of the lines that pass a filter, among the first `limit` lines. Asking again
 * after more lines arrived only scans the new ones; a new filter or a clear starts over.
 */
export class FilteredView {
  private matches: number[] = [];
  private scanned = 0;
  private key = "";
  private generation = -1;

  /** The matching indices, or null when the filter lets every line through. */
  update(store: LogStore, filter: LogFilter, limit: number): number[] | null {
    if (!filter.level && !filter.text) return null;
    const key = `${filter.level}\u0000${filter.text}`;
    if (key !== this.key || store.generation !== this.generation || limit < this.scanned) {
      this.key = key;
      this.generation = store.generation;
      this.matches = [];
      this.scanned = 0;
    }
    const wantLevel = filter.level ? LEVELS.indexOf(filter.level) : -1;
    const pattern = searchPattern(filter.text);
    const { levels, lines } = store;
    const end = Math.min(limit, store.length);
    for (let i = this.scanned; i < end; i++) {
      if (wantLevel >= 0 && levels[i] !== wantLevel) continue;
      if (pattern && !pattern.test(lines[i]!)) continue;
      this.matches.push(i);
    }
    this.scanned = Math.max(this.scanned, end);
    return this.matches;
  }
}
