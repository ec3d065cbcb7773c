// @fal-ai/client, unmodified, against endpoints loaded from fal's documents (--endpoints): files and all.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { createFalClient } from "@fal-ai/client";

import { KEY, PNG, startEmulator } from "./harness.js";

let emulator;
let fal;

before(async () => {
  emulator = await startEmulator(["--profile", "instant", "--endpoints", "tests/data/fal-openapi"]);
  fal = createFalClient({ credentials: KEY, proxyUrl: { url: emulator.proxyUrl, when: "always" } });
});

after(async () => {
  await emulator?.stop();
});

// A PNG's width and height, from its IHDR chunk (bytes 16-23).
function pngSize(bytes) {
  assert.deepEqual([...bytes.subarray(1, 4)], [0x50, 0x4e, 0x47]);
  const view = new DataView(bytes.buffer, bytes.byteOffset);
  return [view.getUint32(16), view.getUint32(20)];
}

async function download(file) {
  assert.ok(file.url.startsWith(`${emulator.url}/cdn/files/`), file.url);
  const response = await fetch(file.url);
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), file.content_type);
  const bytes = new Uint8Array(await response.arrayBuffer());
  if (file.file_size !== undefined) assert.equal(bytes.length, file.file_size);
  return bytes;
}

test("fal.subscribe on flux/schnell returns a PNG of the asked size that downloads", async () => {
  const result = await fal.subscribe("fal-ai/flux/schnell", {
    input: { prompt: "a lighthouse at dusk", image_size: "square", output_format: "png" },
    logs: true,
  });
  const [image] = result.data.images;
  assert.equal(image.content_type, "image/png");
  assert.deepEqual(pngSize(await download(image)), [512, 512]);
});

test("fal.queue.submit and result on esrgan upscale an uploaded image", async () => {
  const imageUrl = await fal.storage.upload(new Blob([PNG], { type: "image/png" }));
  const submitted = await fal.queue.submit("fal-ai/esrgan", { input: { image_url: imageUrl, scale: 2 } });
  assert.equal(submitted.status, "IN_QUEUE");
  const done = await fal.queue.subscribeToStatus("fal-ai/esrgan", { requestId: submitted.request_id, pollInterval: 20 });
  assert.equal(done.status, "COMPLETED");
  const result = await fal.queue.result("fal-ai/esrgan", { requestId: submitted.request_id });
  const { image } = result.data;
  assert.deepEqual(pngSize(await download(image)), [image.width, image.height]);
});

test("fal.subscribe on a kling image-to-video takes a Blob input (auto-uploaded) and returns an MP4", async () => {
  const result = await fal.subscribe("fal-ai/kling-video/v1.6/pro/image-to-video", {
    input: { prompt: "waves on a shore", image_url: new Blob([PNG], { type: "image/png" }) },
  });
  const { video } = result.data;
  assert.equal(video.content_type, "video/mp4");
  const bytes = await download(video);
  // An MP4 starts with its ftyp box.
  assert.equal(Buffer.from(bytes.subarray(4, 8)).toString("latin1"), "ftyp");
});
