import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { INITIAL_FORM, checkJobForm, envVariable, formField, type JobForm } from "./jobForm";

const valid: JobForm = { ...INITIAL_FORM, name: "Hello", script: "echo hi" };

describe("checkJobForm", () => {
  it("accepts a filled form and builds the definition", () => {
    const { errors, definition } = checkJobForm({
      ...valid,
      name: "  Hello  ",
      env: [
        { key: 1, name: "A", value: "1", secret: false },
        { key: 2, name: "TOKEN", value: "s", secret: true },
        { key: 3, name: "", value: "", secret: false },
      ],
      priority: "HIGH",
      allowRetry: true,
    });
    assert.deepEqual(errors, {});
    assert.equal(definition.name, "Hello");
    assert.deepEqual(definition.env, { A: "1" });
    assert.deepEqual(definition.secret_env, { TOKEN: "s" });
    assert.equal(definition.resources.cpu_cores, 1);
    assert.equal(definition.resources.memory_mb, 512);
    assert.equal(definition.preferences.priority, "HIGH");
    assert.equal(definition.preferences.allow_retry, true);
  });

  it("requires a name and a script, under the server's field names", () => {
    const { errors } = checkJobForm({ ...INITIAL_FORM, name: "   " });
    assert.ok(errors.name);
    assert.ok(errors.script);
  });

  it("needs an image but no script for Docker Exec", () => {
    const { errors } = checkJobForm({ ...valid, script: "", commandType: "DOCKER_EXEC" });
    assert.equal(errors.script, undefined);
    assert.ok(errors.image);
  });

  it("rejects bad image references and overlong names", () => {
    assert.ok(checkJobForm({ ...valid, image: "Alpine:Latest" }).errors.image);
    assert.ok(checkJobForm({ ...valid, name: "x".repeat(201) }).errors.name);
  });

  it("checks environment variable names and duplicates", () => {
    const { errors, rowErrors } = checkJobForm({
      ...valid,
      env: [
        { key: 1, name: "1BAD", value: "", secret: false },
        { key: 2, name: "OK", value: "", secret: false },
        { key: 3, name: "OK", value: "", secret: true },
      ],
    });
    assert.ok(errors.env);
    assert.deepEqual(Object.keys(rowErrors).map(Number), [1, 3]);
  });

  it("keeps resources within the form's limits", () => {
    const at = (change: Partial<JobForm>) => checkJobForm({ ...valid, ...change }).errors;
    assert.ok(at({ cpuCores: "0.5" })["resources.cpu_cores"]);
    assert.ok(at({ cpuCores: "17" })["resources.cpu_cores"]);
    assert.equal(at({ cpuCores: "2.5" })["resources.cpu_cores"], undefined);
    assert.ok(at({ memoryMb: "0" })["resources.memory_mb"]);
    assert.ok(at({ memoryMb: "1.5" })["resources.memory_mb"]);
    assert.ok(at({ storageMb: "-1" })["resources.storage_mb"]);
    assert.ok(at({ timeoutMs: "2592000001" })["resources.timeout_ms"]);
    assert.equal(at({ timeoutMs: "" })["resources.timeout_ms"], undefined);
  });
});

describe("server field paths", () => {
  it("puts env and secret_env entries under the env field", () => {
    assert.equal(formField("env.FOO"), "env");
    assert.equal(formField("secret_env.FOO"), "env");
    assert.equal(formField("resources.cpu_cores"), "resources.cpu_cores");
    assert.equal(envVariable("secret_env.FOO"), "FOO");
    assert.equal(envVariable("env"), null);
  });
});
