// Compiles the unit tests (pure logic: no DOM, no React) to CommonJS and runs them with node:test.
import { spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const out = "node_modules/.cache/web-tests";
rmSync(out, { recursive: true, force: true });
const compiled = spawnSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.test.json"], {
  stdio: "inherit",
});
if (compiled.status !== 0) process.exit(compiled.status ?? 1);
mkdirSync(out, { recursive: true });
// The package is ESM; the compiled tests are CommonJS.
writeFileSync(join(out, "package.json"), '{ "type": "commonjs" }\n');

const tests = [];
const walk = (dir) => {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else if (name.endsWith(".test.js")) tests.push(path);
  }
};
walk(out);
const result = spawnSync(process.execPath, ["--test", ...tests], { stdio: "inherit" });
process.exit(result.status ?? 1);
