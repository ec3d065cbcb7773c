// @fal-ai/client's storage against the emulator: uploads (single and multipart), auto-upload, limits.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { ApiError, createFalClient } from "@fal-ai/client";

import { KEY, PNG, startEmulator } from "./harness.js";

const LIMIT = 200 * 1024 * 1024;
let emulator;
let fal;
let small;
let smallFal;
// The proxy path opened to every fal host (--proxy open), as a custom proxy would forward.
let open;
let openFal;

before(async () => {
  [emulator, small, open] = await Promise.all([
    startEmulator(["--profile", "instant", "--max-upload-bytes", String(LIMIT)]),
    startEmulator(["--profile", "instant", "--max-upload-bytes", "1024"]),
    startEmulator(["--profile", "instant", "--max-upload-bytes", String(LIMIT), "--proxy", "open"]),
  ]);
  fal = createFalClient({ credentials: KEY, proxyUrl: { url: emulator.proxyUrl, when: "always" } });
  smallFal = createFalClient({ credentials: KEY, proxyUrl: { url: small.proxyUrl, when: "always" } });
  openFal = createFalClient({ credentials: KEY, proxyUrl: { url: open.proxyUrl, when: "always" } });
});

after(async () => {
  await Promise.all([emulator?.stop(), small?.stop(), open?.stop()]);
});

test("fal.storage.upload returns a URL that serves the bytes with their content type", async () => {
  const url = await fal.storage.upload(new File(["hello, storage"], "notes.txt", { type: "text/plain" }));
  assert.match(url, new RegExp(`^${emulator.url}/cdn/files/[a-z]+/[0-9a-f]+\\.txt$`));
  const response = await fetch(url);
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "text/plain; charset=utf-8");
  assert.equal(await response.text(), "hello, storage");
});

describe("a file over 90 MB (the client uploads it in parts)", () => {
  const size = 91 * 1024 * 1024;
  const bytes = new Uint8Array(size);
  bytes[size - 1] = 7;
  const big = new Blob([bytes], { type: "application/octet-stream" });

  test("fails through the default proxy, as through @fal-ai/server-proxy: initiate-multipart is off its list", async () => {
    await assert.rejects(fal.storage.upload(big), (error) => {
      assert.ok(error instanceof ApiError);
      assert.equal(error.status, 400);
      assert.equal(error.body, "Invalid request");
      return true;
    });
  });

  test("goes up through the open proxy and comes back whole", async () => {
    const url = await openFal.storage.upload(big);
    const response = await fetch(url);
    const body = new Uint8Array(await response.arrayBuffer());
    assert.equal(body.length, size);
    assert.equal(body[size - 1], 7);
  });
});

test("a Blob in the input is uploaded and the vision endpoint reads it", async () => {
  const image = new Blob([PNG], { type: "image/png" });
  const result = await fal.subscribe("fal-ai/any-llm/vision", {
    input: { prompt: "echo: what is in the picture?", image_urls: [image] },
  });
  assert.equal(result.data.output, "echo: what is in the picture?");
});

test("an upload over the limit is refused with 413", async () => {
  await assert.rejects(smallFal.storage.upload(new Blob([new Uint8Array(4096)], { type: "image/png" })), (error) => {
    assert.ok(error instanceof ApiError);
    assert.equal(error.status, 413);
    assert.match(error.body.detail, /larger than the upload limit of 1024 bytes/);
    return true;
  });
});
