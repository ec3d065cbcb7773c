// Starts a real emulator process for the JS suite: free port, temporary data dir,
// readiness by probing the health endpoint (no sleeps), stopped by its own pid.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
// make test passes the venv's interpreter; run by hand, the worktree's .venv is the default.
const PYTHON = process.env.EMULATOR_PYTHON ?? join(ROOT, ".venv", "bin", "python");
const READY_MS = 30_000;

export const KEY = "js-test:secret";

// A 1x1 PNG: the smallest image the vision endpoint accepts.
export const PNG = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==",
  "base64",
);

async function freePort() {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address();
  server.close();
  await once(server, "close");
  return port;
}

async function waitReady(url, child, output) {
  const deadline = Date.now() + READY_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      throw new Error(`emulator pid ${child.pid} exited with ${child.exitCode}:\n${output()}`);
    }
    try {
      const response = await fetch(`${url}/_emulator/health`);
      if (response.ok) return;
    } catch {
      // Not listening yet: probe again until the deadline.
    }
  }
  throw new Error(`emulator at ${url} not ready after ${READY_MS} ms:\n${output()}`);
}

/** Start `python -m emulator serve` (plain http, no TLS) with extra options; returns its URLs and stop(). */
export async function startEmulator(options = []) {
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), "any-llm-emulator-js-"));
  const args = ["-m", "emulator", "serve", "--host", "127.0.0.1", "--port", String(port), "--tls-port", "0"];
  const child = spawn(PYTHON, [...args, "--data-dir", dataDir, ...options], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (chunk) => (output += chunk));
  child.stderr.on("data", (chunk) => (output += chunk));
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitReady(url, child, () => output);
  } catch (error) {
    child.kill("SIGKILL");
    throw error;
  }
  return {
    url,
    proxyUrl: `${url}/api/fal/proxy`,
    async stop() {
      // Only the process this harness started, by its pid.
      if (child.exitCode === null) {
        const exited = once(child, "exit");
        process.kill(child.pid, "SIGTERM");
        await exited;
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
