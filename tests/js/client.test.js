// @fal-ai/client, unmodified, through the emulator's proxy path: queue, run, streams and errors.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { ApiError, ValidationError, createFalClient, fal } from "@fal-ai/client";

import { KEY, startEmulator } from "./harness.js";

const APP = "fal-ai/any-llm";
let emulator;
// A second emulator whose clock never moves: its requests stay queued until cancelled.
let paused;
let pausedFal;

before(async () => {
  [emulator, paused] = await Promise.all([
    startEmulator(["--profile", "instant"]),
    startEmulator(["--profile", "instant", "--clock", "manual"]),
  ]);
  // What a user pastes: every request goes to the proxy URL with the fal URL in x-fal-target-url.
  fal.config({ credentials: KEY, proxyUrl: { url: emulator.proxyUrl, when: "always" } });
  pausedFal = createFalClient({ credentials: KEY, proxyUrl: { url: paused.proxyUrl, when: "always" } });
});

after(async () => {
  await Promise.all([emulator?.stop(), paused?.stop()]);
});

describe("queue", () => {
  test("fal.subscribe returns the output and reports queue updates with logs", async () => {
    const updates = [];
    const result = await fal.subscribe(APP, {
      input: { prompt: "What is the meaning of life?" },
      logs: true,
      onQueueUpdate: (update) => updates.push(update),
    });
    assert.match(result.data.output, /^The meaning of life is subjective/);
    assert.equal(result.data.partial, false);
    assert.ok(result.requestId);
    const last = updates.at(-1);
    assert.equal(last.status, "COMPLETED");
    assert.ok(last.logs.some((line) => line.message === "Looking up a thoughtful answer"));
  });

  test("fal.queue.submit, status and result follow one request", async () => {
    const submitted = await fal.queue.submit(APP, { input: { prompt: "echo: queued" } });
    assert.equal(submitted.status, "IN_QUEUE");
    // Reached through the proxy, the envelope names fal's host, so the client re-targets it.
    assert.equal(
      submitted.status_url,
      `https://queue.fal.run/${APP}/requests/${submitted.request_id}/status`,
    );
    const status = await fal.queue.status(APP, { requestId: submitted.request_id, logs: true });
    assert.ok(["IN_QUEUE", "IN_PROGRESS", "COMPLETED"].includes(status.status));
    const completed = await fal.queue.subscribeToStatus(APP, { requestId: submitted.request_id, pollInterval: 20 });
    assert.equal(completed.status, "COMPLETED");
    const result = await fal.queue.result(APP, { requestId: submitted.request_id });
    assert.deepEqual(result.data, { output: "echo: queued", partial: false, error: null });
    assert.equal(result.requestId, submitted.request_id);
  });

  test("an envelope's status_url leads back through the proxy", async () => {
    const submitted = await fal.queue.submit(APP, { input: { prompt: "echo: follow me" } });
    const status = await fal.run(submitted.status_url, { method: "get" });
    assert.equal(status.data.request_id, submitted.request_id);
  });

  test("fal.queue.cancel stops a queued request, whose result then answers 499 with a message", async () => {
    const submitted = await pausedFal.queue.submit(APP, { input: { prompt: "never runs" } });
    await pausedFal.queue.cancel(APP, { requestId: submitted.request_id });
    const status = await pausedFal.queue.status(APP, { requestId: submitted.request_id });
    assert.equal(status.status, "COMPLETED");
    assert.equal(status.error_type, "request_cancelled");
    await assert.rejects(pausedFal.queue.result(APP, { requestId: submitted.request_id }), (error) => {
      assert.ok(error instanceof ApiError);
      assert.equal(error.status, 499);
      assert.equal(error.message, "Request cancelled by the client");
      assert.equal(error.body.detail, "Request cancelled by the client");
      return true;
    });
  });

  test("fal.queue.streamStatus streams until COMPLETED", async () => {
    const submitted = await fal.queue.submit(APP, { input: { prompt: "echo: streamed status" } });
    const stream = await fal.queue.streamStatus(APP, { requestId: submitted.request_id, logs: true });
    const events = [];
    stream.on("data", (event) => events.push(event));
    const done = await stream.done();
    assert.equal(done.status, "COMPLETED");
    assert.equal(events.at(-1).status, "COMPLETED");
    assert.ok(events.every((event) => event.request_id === submitted.request_id));
  });
});

describe("run and stream", () => {
  test("fal.run returns the output and the request id", async () => {
    const result = await fal.run(APP, { input: { prompt: "echo: run" } });
    assert.deepEqual(result.data, { output: "echo: run", partial: false, error: null });
    assert.ok(result.requestId);
  });

  test("fal.stream yields cumulative partial outputs, then the final one", async () => {
    const stream = await fal.stream(APP, { input: { prompt: "What is the meaning of life?" } });
    const outputs = [];
    for await (const event of stream) outputs.push(event);
    const final = await stream.done();
    assert.ok(outputs.length > 2);
    for (let i = 1; i < outputs.length; i++) assert.ok(outputs[i].output.startsWith(outputs[i - 1].output));
    assert.equal(final.partial, false);
    assert.match(final.output, /^The meaning of life is subjective/);
  });
});

describe("errors", () => {
  test("invalid input is accepted by the queue, and its result is a ValidationError with the field errors", async () => {
    const { request_id: requestId, status } = await fal.queue.submit(APP, { input: { temperature: 3 } });
    assert.equal(status, "IN_QUEUE");
    await fal.queue.subscribeToStatus(APP, { requestId, mode: "polling", pollInterval: 20 });
    await assert.rejects(fal.queue.result(APP, { requestId }), (error) => {
      assert.ok(error instanceof ValidationError);
      assert.equal(error.status, 422);
      assert.deepEqual(error.getFieldErrors("prompt").map((e) => e.type), ["missing"]);
      assert.deepEqual(error.getFieldErrors("temperature").map((e) => e.type), ["less_than_equal"]);
      return true;
    });
  });

  test("invalid input to a sync run is a ValidationError at once", async () => {
    await assert.rejects(fal.run(APP, { input: { temperature: 3 } }), (error) => {
      assert.ok(error instanceof ValidationError);
      assert.equal(error.status, 422);
      assert.deepEqual(error.getFieldErrors("prompt").map((e) => e.type), ["missing"]);
      return true;
    });
  });

  test("an image that does not load is a ValidationError when the request runs", async () => {
    const input = { prompt: "What is this?", image_urls: ["https://example.com/cat.png", "data:image/png;base64,AAAA"] };
    await assert.rejects(fal.subscribe(`${APP}/vision`, { input }), (error) => {
      assert.ok(error instanceof ValidationError);
      assert.equal(error.status, 422);
      assert.deepEqual(
        error.fieldErrors.map((e) => [e.loc, e.type]),
        [
          [["body", "image_urls", 0], "file_download_error"],
          [["body", "image_urls", 1], "image_load_error"],
        ],
      );
      return true;
    });
  });

  test("a fixture's app error surfaces with its status and body", async () => {
    await assert.rejects(fal.run(APP, { input: { prompt: "[emulator:fail-422] please" } }), (error) => {
      assert.ok(error instanceof ValidationError);
      assert.equal(error.body.error_type, "validation_error");
      assert.equal(error.fieldErrors[0].msg, "The prompt was rejected by the model provider");
      return true;
    });
  });
});

describe("fal's queue", () => {
  const control = (path, init) => fetch(`${emulator.url}/_emulator${path}`, init);
  const loseRunners = (count) =>
    control("/next", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        namespace: "js-test",
        count,
        actions: ["submit"],
        fault: { kind: "complete_with_error", error_type: "runner_disconnected" },
      }),
    });
  const retries = async (requestId) => {
    const journal = await (await control(`/journal?namespace=js-test&method=RETRY&request_id=${requestId}`)).json();
    return journal.entries;
  };

  test("a runner lost twice is retried by the queue, each try with its own gateway request id", async () => {
    assert.equal((await loseRunners(2)).status, 201);
    const { request_id: requestId } = await fal.queue.submit(APP, { input: { prompt: "echo: third runner" } });
    await fal.queue.subscribeToStatus(APP, { requestId, mode: "polling", pollInterval: 20 });
    const result = await fal.queue.result(APP, { requestId });
    assert.equal(result.data.output, "echo: third runner");
    const entries = await retries(requestId);
    assert.deepEqual(entries.map((entry) => entry.status), [503, 503]);
    const gateways = new Set([requestId, ...entries.map((entry) => JSON.parse(entry.body).next_gateway_request_id)]);
    assert.equal(gateways.size, 3);
  });

  test("x-fal-no-retry makes the first lost runner the request's error", async () => {
    assert.equal((await loseRunners(2)).status, 201);
    const { request_id: requestId } = await fal.queue.submit(APP, {
      input: { prompt: "x" },
      headers: { "x-fal-no-retry": "1" },
    });
    await fal.queue.subscribeToStatus(APP, { requestId, mode: "polling", pollInterval: 20 });
    await assert.rejects(fal.queue.result(APP, { requestId }), (error) => {
      assert.ok(error instanceof ApiError);
      assert.equal(error.status, 503);
      return true;
    });
    assert.deepEqual(await retries(requestId), []);
  });
});

