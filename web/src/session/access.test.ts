import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { can, loginPath, safeNext } from "./access";

describe("can", () => {
  it("lets viewers take none of the actions", () => {
    assert.equal(can("viewer", "submit-jobs"), false);
    assert.equal(can("viewer", "cancel-jobs"), false);
    assert.equal(can("viewer", "manage-providers"), false);
  });
  it("lets operators submit and cancel jobs but not manage providers", () => {
    assert.equal(can("operator", "submit-jobs"), true);
    assert.equal(can("operator", "cancel-jobs"), true);
    assert.equal(can("operator", "manage-providers"), false);
  });
  it("lets admins do everything", () => {
    assert.equal(can("admin", "submit-jobs"), true);
    assert.equal(can("admin", "cancel-jobs"), true);
    assert.equal(can("admin", "manage-providers"), true);
  });
  it("refuses an unknown or missing role", () => {
    assert.equal(can("root", "submit-jobs"), false);
    assert.equal(can(undefined, "submit-jobs"), false);
  });
});

describe("safeNext", () => {
  it("keeps a path of this site with its query", () => {
    assert.equal(safeNext("/jobs/1?tab=config"), "/jobs/1?tab=config");
  });
  it("falls back to the dashboard for other sites, nothing, or the login page", () => {
    assert.equal(safeNext("https://evil.example/"), "/");
    assert.equal(safeNext("//evil.example/"), "/");
    assert.equal(safeNext("/\\evil.example/"), "/");
    assert.equal(safeNext(null), "/");
    assert.equal(safeNext(""), "/");
    assert.equal(safeNext("/login"), "/");
    assert.equal(safeNext("/login?next=/jobs"), "/");
  });
});

describe("loginPath", () => {
  it("remembers where the user was", () => {
    assert.equal(loginPath("/jobs/new"), "/login?next=%2Fjobs%2Fnew");
  });
  it("is plain for the dashboard", () => {
    assert.equal(loginPath("/"), "/login");
  });
});
