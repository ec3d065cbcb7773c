// @fal-ai/client against today's fal: current model names, client-side tokens, realtime refused fast.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { ApiError, createFalClient } from "@fal-ai/client";
import { WebSocket as NodeWebSocket } from "ws";

import { KEY, PNG, startEmulator } from "./harness.js";

const APP = "fal-ai/any-llm";
const IMAGE = `data:image/png;base64,${PNG.toString("base64")}`;
let emulator;
let open;
let fal;

before(async () => {
  [emulator, open] = await Promise.all([
    startEmulator(["--profile", "instant"]),
    startEmulator(["--profile", "instant", "--proxy", "open"]),
  ]);
  fal = createFalClient({ credentials: KEY, proxyUrl: { url: emulator.proxyUrl, when: "always" } });
});

after(async () => {
  await Promise.all([emulator?.stop(), open?.stop()]);
});

/** A fetch that sends what the client addresses to https://fal.run straight to the emulator's run surface. */
function fetchVia(server) {
  return (url, init) => fetch(String(url).replace("https://fal.run/", `${server.url}/run/`), init);
}

/** What a server-side token provider does: trade the key for a token at /tokens/ (here, the emulator's). */
function tokenProviderFor(server) {
  return async (app) => {
    const response = await fetch(`${server.url}/rest/tokens/`, {
      method: "POST",
      headers: { authorization: `Key ${KEY}`, "content-type": "application/json" },
      body: JSON.stringify({ allowed_apps: [app.split("/")[1]], token_expiration: 120 }),
    });
    assert.equal(response.status, 200);
    return await response.json();
  };
}

describe("today's model names", () => {
  for (const endpoint of [APP, `${APP}/vision`, `${APP}/enterprise`]) {
    test(`google/gemini-2.5-flash runs on ${endpoint}`, async () => {
      const input = { prompt: "echo: current model", model: "google/gemini-2.5-flash" };
      if (endpoint.endsWith("/vision")) input.image_urls = [IMAGE];
      const updates = [];
      const result = await fal.subscribe(endpoint, { input, logs: true, onQueueUpdate: (u) => updates.push(u) });
      assert.equal(result.data.output, "echo: current model");
      const lines = updates.at(-1).logs.map((line) => line.message);
      assert.ok(lines.includes("Running google/gemini-2.5-flash through OpenRouter"), lines.join("\n"));
    });
  }
});

describe("client-side tokens", () => {
  test('fal.stream with connectionMode "client" streams with a token from /tokens/', async () => {
    const client = createFalClient({
      credentials: KEY,
      proxyUrl: { url: emulator.proxyUrl, when: "always" },
      fetch: fetchVia(emulator),
    });
    const stream = await client.stream(APP, {
      input: { prompt: "What is the meaning of life?" },
      connectionMode: "client",
      tokenProvider: tokenProviderFor(emulator),
    });
    const events = [];
    for await (const event of stream) events.push(event);
    const final = await stream.done();
    assert.ok(events.length > 2);
    assert.equal(final.partial, false);
    assert.match(final.output, /^The meaning of life is subjective/);
  });

  test("the default token provider gets its token through an open proxy", async () => {
    const client = createFalClient({
      credentials: KEY,
      proxyUrl: { url: open.proxyUrl, when: "always" },
      fetch: fetchVia(open),
    });
    const stream = await client.stream(APP, { input: { prompt: "echo: default provider" }, connectionMode: "client" });
    const final = await stream.done();
    assert.equal(final.output, "echo: default provider");
  });

  test("a stream with a token for another app is refused with 401", async () => {
    const client = createFalClient({ credentials: KEY, fetch: fetchVia(emulator) });
    const stream = await client.stream(APP, {
      input: { prompt: "hi" },
      connectionMode: "client",
      tokenProvider: () => tokenProviderFor(emulator)("fal-ai/another-app"),
    });
    await assert.rejects(stream.done(), (error) => {
      assert.ok(error instanceof ApiError);
      assert.equal(error.status, 401);
      assert.match(error.body.detail, /valid for another-app, not for any-llm/);
      return true;
    });
  });
});

describe("realtime", () => {
  let saved;
  before(() => {
    saved = globalThis.WebSocket;
    // The client opens wss://fal.run/... itself; this socket goes to the emulator's run surface instead.
    globalThis.WebSocket = class extends NodeWebSocket {
      constructor(url, protocols) {
        super(String(url).replace("wss://fal.run/", `${emulator.url.replace("http", "ws")}/run/`), protocols);
      }
    };
  });
  after(() => {
    globalThis.WebSocket = saved;
  });

  test("fal.realtime.connect reports the emulator's refusal through onError", { timeout: 15_000 }, async () => {
    const error = await new Promise((resolve) => {
      const connection = fal.realtime.connect(APP, {
        tokenProvider: tokenProviderFor(emulator),
        onResult: () => resolve(new Error("a result arrived from a refused connection")),
        onError: (failure) => {
          connection.close();
          resolve(failure);
        },
      });
      connection.send({ prompt: "hi" });
    });
    assert.ok(error instanceof ApiError, String(error));
    assert.equal(error.status, 1008);
    assert.match(error.message, /Realtime \(WebSocket\) apps are not emulated/);
  });
});
