// The official openai package, unmodified, against fal's OpenAI-compatible surface; and
// @fal-ai/client on the openrouter/router endpoints it replaces any-llm with.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { createFalClient } from "@fal-ai/client";
import OpenAI from "openai";

import { KEY, PNG, startEmulator } from "./harness.js";

const MEANING = "What is the meaning of life?";
let emulator;
let client;

before(async () => {
  emulator = await startEmulator(["--profile", "instant"]);
  client = new OpenAI({
    baseURL: `${emulator.url}/run/openrouter/router/openai/v1`,
    apiKey: "unused",
    defaultHeaders: { Authorization: `Key ${KEY}` },
  });
});

after(async () => {
  await emulator?.stop();
});

describe("the openai package", () => {
  test("a chat completion answers the fixture for the last user message", async () => {
    const completion = await client.chat.completions.create({
      model: "openai/gpt-4o",
      messages: [
        { role: "system", content: "Be kind." },
        { role: "user", content: MEANING },
      ],
    });
    assert.match(completion.choices[0].message.content, /^The meaning of life is subjective/);
    const { prompt_tokens, completion_tokens, total_tokens } = completion.usage;
    assert.equal(total_tokens, prompt_tokens + completion_tokens);
  });

  test("streamed deltas join to the whole answer, with a usage chunk when asked", async () => {
    const messages = [{ role: "user", content: MEANING }];
    const whole = await client.chat.completions.create({ model: "openai/gpt-4o", messages });
    const stream = await client.chat.completions.create({
      model: "openai/gpt-4o",
      messages,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let last;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? "";
      last = chunk;
    }
    assert.equal(text, whole.choices[0].message.content);
    assert.deepEqual(last.choices, []);
    assert.deepEqual(last.usage, whole.usage);
  });

  test("the responses API answers whole, and streamed as response events that add up to it", async () => {
    const whole = await client.responses.create({ model: "openai/gpt-4o", input: MEANING, instructions: "Be kind." });
    assert.match(whole.output_text, /^The meaning of life is subjective/);
    const stream = await client.responses.create({ model: "openai/gpt-4o", input: MEANING, stream: true });
    const kinds = [];
    let text = "";
    let completed;
    for await (const event of stream) {
      kinds.push(event.type);
      if (event.type === "response.output_text.delta") text += event.delta;
      if (event.type === "response.completed") completed = event.response;
    }
    assert.equal(kinds[0], "response.created");
    assert.equal(kinds.at(-1), "response.completed");
    assert.equal(text, whole.output_text);
    assert.equal(completed.output[0].content[0].text, whole.output_text);
    const helper = client.responses.stream({ model: "openai/gpt-4o", input: MEANING });
    const final = await helper.finalResponse();
    assert.equal(final.output_text, whole.output_text);
  });

  test("a json_schema response format answers JSON that fits the schema", async () => {
    const schema = {
      type: "object",
      properties: { city: { type: "string" }, days: { type: "integer", minimum: 1, maximum: 7 } },
      required: ["city", "days"],
      additionalProperties: false,
    };
    const completion = await client.chat.completions.create({
      model: "openai/gpt-4o",
      messages: [{ role: "user", content: "Plan a trip" }],
      response_format: { type: "json_schema", json_schema: { name: "trip", schema, strict: true } },
    });
    const trip = JSON.parse(completion.choices[0].message.content);
    assert.equal(typeof trip.city, "string");
    assert.ok(Number.isInteger(trip.days) && trip.days >= 1 && trip.days <= 7);
  });

  test("embeddings are unit vectors of 1536 floats", async () => {
    const result = await client.embeddings.create({ model: "openai/text-embedding-3-small", input: ["a", "b"] });
    assert.equal(result.data.length, 2);
    for (const { embedding } of result.data) {
      assert.equal(embedding.length, 1536);
      const norm = Math.sqrt(embedding.reduce((sum, x) => sum + x * x, 0));
      assert.ok(Math.abs(norm - 1) < 1e-4);
    }
  });

  test("an injected 429 is retried by the client", async () => {
    const rule = { count: 1, actions: ["openai"], fault: { kind: "http_error", status: 429, retry_after: 0 } };
    const injected = await fetch(`${emulator.url}/_emulator/next`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(rule),
    });
    assert.equal(injected.status, 201);
    const { data, response } = await client.chat.completions
      .create({ model: "openai/gpt-4o", messages: [{ role: "user", content: "echo: retried" }] })
      .withResponse();
    assert.equal(response.status, 200);
    assert.equal(data.choices[0].message.content, "echo: retried");
  });

  test("a call without a key is refused with AuthenticationError", async () => {
    const keyless = new OpenAI({
      baseURL: `${emulator.url}/run/openrouter/router/openai/v1`,
      apiKey: "unused",
      defaultHeaders: { Authorization: null },
      maxRetries: 0,
    });
    await assert.rejects(
      keyless.chat.completions.create({ model: "a/b", messages: [{ role: "user", content: "hi" }] }),
      OpenAI.AuthenticationError,
    );
  });
});

describe("@fal-ai/client on openrouter/router", () => {
  test("fal.stream grows the output and ends with consistent usage", async () => {
    const fal = createFalClient({ credentials: KEY, proxyUrl: { url: emulator.proxyUrl, when: "always" } });
    const stream = await fal.stream("openrouter/router", {
      input: { prompt: MEANING, model: "anthropic/claude-sonnet-4.5" },
    });
    const partials = [];
    for await (const event of stream) partials.push(event.output);
    const done = await stream.done();
    assert.ok(partials.length > 3);
    assert.ok(done.output.startsWith(partials[0]));
    const { prompt_tokens, completion_tokens, total_tokens, cost } = done.usage;
    assert.equal(total_tokens, prompt_tokens + completion_tokens);
    assert.ok(cost > 0);
  });

  test("vision reads an uploaded image", async () => {
    const fal = createFalClient({ credentials: KEY, proxyUrl: { url: emulator.proxyUrl, when: "always" } });
    const url = await fal.storage.upload(new Blob([PNG], { type: "image/png" }));
    const result = await fal.subscribe("openrouter/router/vision", {
      input: { prompt: "echo: seen", model: "google/gemini-2.5-flash", image_urls: [url] },
    });
    assert.equal(result.data.output, "echo: seen");
    assert.equal(result.data.usage.completion_tokens, 3);
  });
});

describe("@fal-ai/client on the OpenAI-compatible ids, through the queue", () => {
  test("fal.subscribe on openai/v1/chat/completions returns the chat.completion", async () => {
    const fal = createFalClient({ credentials: KEY, proxyUrl: { url: emulator.proxyUrl, when: "always" } });
    const updates = [];
    const result = await fal.subscribe("openrouter/router/openai/v1/chat/completions", {
      input: { model: "openai/gpt-4o", messages: [{ role: "user", content: "echo: from the JS client" }] },
      logs: true,
      onQueueUpdate: (update) => updates.push(update),
    });
    assert.equal(result.data.object, "chat.completion");
    assert.equal(result.data.choices[0].message.content, "echo: from the JS client");
    assert.equal(result.data.usage.total_tokens, result.data.usage.prompt_tokens + result.data.usage.completion_tokens);
    assert.equal(updates.at(-1).status, "COMPLETED");
    assert.match(result.requestId, /^[0-9a-f-]{36}$/);
  });

  test("fal.subscribe on openai/v1/embeddings returns the list of vectors", async () => {
    const fal = createFalClient({ credentials: KEY, proxyUrl: { url: emulator.proxyUrl, when: "always" } });
    const result = await fal.subscribe("openrouter/router/openai/v1/embeddings", {
      input: { model: "openai/text-embedding-3-small", input: ["a", "b"], dimensions: 8 },
    });
    assert.equal(result.data.object, "list");
    assert.deepEqual(
      result.data.data.map((item) => item.embedding.length),
      [8, 8],
    );
  });
});
