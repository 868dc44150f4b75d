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

  it("allows only none, host or bridge as a Docker network", () => {
    for (const network of ["none", "host", "bridge"]) {
      const { errors } = checkProviderForm({ ...NEW_PROVIDER, name: "d", type: "docker", settings: { network } });
      assert.deepEqual(errors, {}, network);
    }
    const { errors } = checkProviderForm({ ...NEW_PROVIDER, name: "d", type: "docker", settings: { network: "overlay" } });
    assert.equal(errors["config.network"], "must be one of none, host, bridge");
  });

  it("sends a Docker provider's settings with their types", () => {
    const { errors, provider } = checkProviderForm({
      ...NEW_PROVIDER,
      name: "d",
      type: "docker",
      settings: {
        default_image: "alpine:latest",
        network: "bridge",
        keep_containers: "true",
        cpu_cores: "1.5",
        memory_mb: "512",
        docker_host: "unix:///var/run/docker.sock",
        region: "eu-west",
      },
    });
    assert.deepEqual(errors, {});
    assert.deepEqual(provider.config, {
      default_image: "alpine:latest",
      network: "bridge",
      keep_containers: true,
      cpu_cores: 1.5,
      memory_mb: 512,
      docker_host: "unix:///var/run/docker.sock",
      region: "eu-west",
    });
  });

  it("sends an unticked Keep containers as false, and leaves it out when never set", () => {
    const docker = { ...NEW_PROVIDER, name: "d", type: "docker" as const };
    assert.equal(checkProviderForm({ ...docker, settings: { keep_containers: "false" } }).provider.config.keep_containers, false);
    assert.ok(!("keep_containers" in checkProviderForm({ ...docker, settings: {} }).provider.config));
  });

  it("wants positive per-worker resources of a Docker provider", () => {
    const { errors } = checkProviderForm({
      ...NEW_PROVIDER,
      name: "d",
      type: "docker",
      settings: { cpu_cores: "0", memory_mb: "1.5" },
    });
    assert.deepEqual(Object.keys(errors).sort(), ["config.cpu_cores", "config.memory_mb"]);
  });
});
