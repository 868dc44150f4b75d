import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { linearScale, niceMax, niceTicks } from "./scale";

describe("chart scales", () => {
  it("maps a domain onto a range", () => {
    const y = linearScale([0, 100], [200, 0]);
    assert.equal(y(0), 200);
    assert.equal(y(50), 100);
  });

  it("picks round ticks that cover the data", () => {
    assert.deepEqual(niceTicks(0, 100, 4), [0, 50, 100]);
    assert.deepEqual(niceTicks(0, 7, 4), [0, 2, 4, 6, 8]);
    assert.equal(niceMax(0), 1);
    assert.equal(niceMax(101), 150);
  });
});
