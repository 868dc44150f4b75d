import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { LogLineOut, LogPage } from "../api/types";
import { fetchTail } from "./tail";

/** A log of `count` lines numbered from 1, read like GET /jobs/{id}/logs. */
function fakeLog(count: number) {
  let reads = 0;
  const read = async (after: number, limit: number): Promise<LogPage> => {
    reads++;
    const lines: LogLineOut[] = [];
    for (let s = after + 1; s <= Math.min(count, after + limit); s++) {
      lines.push({ sequence: s, timestamp: "", stream: "STDOUT", level: "INFO", line: `${s}`, attempt: 1, invalid_utf8: false });
    }
    return { lines, last_sequence: lines.length ? lines[lines.length - 1]!.sequence : after, job_finished: true };
  };
  return { read, reads: () => reads };
}

describe("fetchTail", () => {
  for (const count of [0, 5, 999, 1000, 1001, 4096, 1_000_000]) {
    it(`finds the last lines of a ${count}-line log`, async () => {
      const log = fakeLog(count);
      const tail = await fetchTail(log.read, 20);
      assert.equal(tail.lastSequence, count === 0 ? -1 : count);
      const expected = Array.from({ length: Math.min(count, 20) }, (_, i) => count - Math.min(count, 20) + i + 1);
      assert.deepEqual(tail.lines.map((l) => l.sequence), expected);
    });
  }

  it("reads a short log once and a long one in a few dozen requests", async () => {
    const short = fakeLog(300);
    await fetchTail(short.read, 20);
    assert.equal(short.reads(), 1);
    const long = fakeLog(1_000_000);
    await fetchTail(long.read, 20);
    assert.ok(long.reads() < 45, `${long.reads()} reads`);
  });
});
