import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { fieldPath } from "./client";

describe("fieldPath", () => {
  it("drops the leading body and joins the rest with dots", () => {
    assert.equal(fieldPath(["body", "resources", "cpu_cores"]), "resources.cpu_cores");
    assert.equal(fieldPath(["body", "name"]), "name");
    assert.equal(fieldPath(["query", "page_size"]), "page_size");
    assert.equal(fieldPath("nonsense"), "");
  });
});
