import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { LogLevel, LogLineOut } from "../api/types";
import { FilteredView, LogStore } from "./logStore";

function line(sequence: number, level: LogLevel = "INFO", text = `line ${sequence}`): LogLineOut {
  return {
    sequence,
    timestamp: "2025-01-01T00:00:00Z",
    stream: "STDOUT",
    level,
    line: text,
    attempt: 1,
    invalid_utf8: false,
  };
}

describe("LogStore", () => {
  it("drops lines it already has, so a resumed stream leaves no duplicates", () => {
    const store = new LogStore();
    assert.equal(store.append([line(1), line(2), line(3)]), 3);
    assert.equal(store.append([line(2), line(3), line(4)]), 1);
    assert.deepEqual(store.sequences, [1, 2, 3, 4]);
    assert.equal(store.lastSequence, 4);
  });

  it("keeps the last sequence across a clear, and takes later lines", () => {
    const store = new LogStore();
    store.append([line(1), line(2)]);
    store.clear();
    assert.equal(store.length, 0);
    store.append([line(2), line(3)]);
    assert.deepEqual(store.sequences, [3]);
  });

  it("records level and stream", () => {
    const store = new LogStore();
    store.append([{ ...line(1, "ERROR"), stream: "STDERR" }]);
    assert.equal(store.level(0), "ERROR");
    assert.equal(store.flags[0], 1);
  });
});

describe("FilteredView", () => {
  it("lets everything through without a filter", () => {
    const store = new LogStore();
    store.append([line(1)]);
    assert.equal(new FilteredView().update(store, { level: "", text: "" }, store.length), null);
  });

  it("filters by level and case-insensitive text, scanning only new lines", () => {
    const store = new LogStore();
    const view = new FilteredView();
    store.append([line(1, "INFO", "Disk OK"), line(2, "WARN", "disk low"), line(3, "ERROR", "Disk full")]);
    assert.deepEqual(view.update(store, { level: "", text: "DISK" }, store.length), [0, 1, 2]);
    assert.deepEqual(view.update(store, { level: "WARN", text: "disk" }, store.length), [1]);
    store.append([line(4, "WARN", "disk lower")]);
    assert.deepEqual(view.update(store, { level: "WARN", text: "disk" }, store.length), [1, 3]);
  });

  it("treats search text literally", () => {
    const store = new LogStore();
    store.append([line(1, "INFO", "a.b"), line(2, "INFO", "axb")]);
    assert.deepEqual(new FilteredView().update(store, { level: "", text: "a.b" }, store.length), [0]);
  });

  it("stops at the limit (a paused view) and starts over after a clear", () => {
    const store = new LogStore();
    const view = new FilteredView();
    store.append([line(1, "ERROR"), line(2, "ERROR"), line(3, "ERROR")]);
    assert.deepEqual(view.update(store, { level: "ERROR", text: "" }, 2), [0, 1]);
    store.clear();
    store.append([line(4, "ERROR")]);
    assert.deepEqual(view.update(store, { level: "ERROR", text: "" }, store.length), [0]);
  });
});
