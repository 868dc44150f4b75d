import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { cookieValue, csrfHeaders } from "./csrf";

describe("cookieValue", () => {
  it("finds a cookie among others", () => {
    assert.equal(cookieValue("a=1; hodei_csrf=abc-_1; b=2", "hodei_csrf"), "abc-_1");
  });
  it("does not match a cookie whose name only ends the same", () => {
    assert.equal(cookieValue("xhodei_csrf=no", "hodei_csrf"), "");
  });
  it("keeps '=' inside the value and decodes it", () => {
    assert.equal(cookieValue("k=a%20b=c", "k"), "a b=c");
  });
  it("is empty when the cookie is missing", () => {
    assert.equal(cookieValue("", "hodei_csrf"), "");
  });
});

describe("csrfHeaders", () => {
  it("sends the token on changes", () => {
    for (const method of ["POST", "PUT", "PATCH", "DELETE"]) {
      assert.deepEqual(csrfHeaders(method, "hodei_csrf=t"), { "X-CSRF-Token": "t" });
    }
  });
  it("sends nothing on reads, or without the cookie (dev mode)", () => {
    assert.deepEqual(csrfHeaders("GET", "hodei_csrf=t"), {});
    assert.deepEqual(csrfHeaders("POST", ""), {});
  });
});
