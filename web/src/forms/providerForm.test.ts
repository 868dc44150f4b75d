import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { NEW_PROVIDER, checkProviderForm } from "./providerForm";

describe("checkProviderForm", () => {
  it("sends only the settings of the chosen type, numbers as numbers", () => {
    const { errors, provider } = checkProviderForm({
      ...NEW_PROVIDER,
      name: "fc-1",
      type: "firecracker",
      settings: { network: "none", vcpus: "2", memory_mb: "", kernel_path: "/k", default_image: "x" },
    });
    assert.deepEqual(errors, {});
    assert.deepEqual(provider.config, { kernel_path: "/k", vcpus: 2 });
    assert.equal(provider.max_workers, 2);
    assert.equal(provider.idle_timeout_s, 300);
  });

  it("applies the server's rules", () => {
    const { errors } = checkProviderForm({
      ...NEW_PROVIDER,
      name: "Bad Name",
      minWorkers: "3",
      maxWorkers: "2",
      priority: "5000",
      idleTimeout: "1.5",
      settings: { cpu_cores: "-1" },
    });
    assert.deepEqual(Object.keys(errors).sort(), ["config.cpu_cores", "idle_timeout_s", "max_workers", "name", "priority"]);
  });

  it("allows only none or host as a Docker network", () => {
    const { errors } = checkProviderForm({ ...NEW_PROVIDER, name: "d", type: "docker", settings: { network: "bridge" } });
    assert.ok(errors["config.network"]);
  });
});
