// The dashboard's script: one event stream per tab, control calls, the playground's form.
// No library: EventSource and fetch are enough, and nothing is loaded from elsewhere.
"use strict";

const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content ?? "";
const PREFIX = meta("emulator-prefix");
const TOKEN = meta("emulator-token");
const CLOCK = meta("emulator-clock");

function toast(message, isError = false) {
  const box = document.getElementById("toast");
  if (!box) return;
  box.textContent = message;
  box.className = isError ? "show error" : "show";
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.className = ""; }, 4000);
}

// Every state change goes through the control API, marked as the dashboard's own call.
async function control(path, body) {
  const headers = { "Content-Type": "application/json", "X-Emulator-UI": "1" };
  if (TOKEN) headers["X-Emulator-Token"] = TOKEN;
  const response = await fetch(`/_emulator${path}`, {
    method: "POST", headers, body: JSON.stringify(body ?? {}), credentials: "same-origin",
  });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { detail: text }; }
  if (!response.ok) {
    const detail = data && data.detail !== undefined ? data.detail : response.statusText;
    throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return data;
}

function badge(text, style) {
  const span = document.createElement("span");
  span.className = `badge ${style}`;
  span.textContent = text;
  return span;
}

function replaceRow(id, html) {
  const tbody = document.getElementById("rows");
  if (!tbody) return;
  const old = document.getElementById(`r-${id}`);
  if (!html) { old?.remove(); return; }
  const holder = document.createElement("tbody");
  holder.innerHTML = html.trim();
  const fresh = holder.firstElementChild;
  if (old) { old.replaceWith(fresh); return; }
  tbody.prepend(fresh);  // a new request: newest first
  const limit = Number(tbody.dataset.limit || 0);
  while (limit && tbody.rows.length > limit) tbody.lastElementChild.remove();
}

// Server time as of the last event, and when it arrived, so waiting rows can count up.
const clockState = { now: 0, at: 0 };

function readClock() {
  const el = document.getElementById("clock-now");
  if (el) { clockState.now = Number(el.dataset.now); clockState.at = performance.now(); }
}

function formatDuration(seconds) {
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 120) return `${seconds.toFixed(2)} s`;
  return `${(seconds / 60).toFixed(1)} min`;
}

function tick() {
  // A manual clock only moves when told to: the server's numbers stand as sent.
  if (CLOCK !== "system" || !clockState.at) return;
  const now = clockState.now + (performance.now() - clockState.at) / 1000;
  for (const cell of document.querySelectorAll("[data-tick]")) {
    cell.textContent = formatDuration(Math.max(0, now - Number(cell.dataset.tick)));
  }
}

function openStream() {
  const url = meta("emulator-stream");
  if (!url) return;
  const source = new EventSource(url);
  const on = (name, handler) => source.addEventListener(name, (event) => handler(JSON.parse(event.data)));
  on("row", (data) => replaceRow(data.id, data.html));
  on("table", (data) => { const tbody = document.getElementById("rows"); if (tbody) tbody.innerHTML = data.html; });
  on("positions", (data) => {
    for (const [id, position] of Object.entries(data)) {
      const cell = document.querySelector(`#r-${CSS.escape(id)} .pos`);
      if (cell) cell.textContent = position;
    }
  });
  on("summary", (data) => { document.getElementById("summary").innerHTML = data.html; readClock(); });
  on("sections", (data) => {
    for (const [name, html] of Object.entries(data)) {
      const section = document.getElementById(`sec-${name}`);
      if (section) section.innerHTML = html;
    }
  });
  on("text", (data) => {
    const pre = document.getElementById("stream-text");
    if (pre) pre.textContent += data.append;
  });
  on("gone", (data) => { toast(data.detail, true); source.close(); });
  on("live", () => { document.documentElement.dataset.live = "true"; });
  source.addEventListener("error", () => { delete document.documentElement.dataset.live; });
  window.addEventListener("pagehide", () => source.close());
  return source;
}

// -- controls --------------------------------------------------------------------------

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-control], button[data-action], button[data-copy]");
  if (!button) return;
  try {
    if (button.dataset.copy) {
      const text = document.getElementById(button.dataset.copy).textContent;
      await navigator.clipboard.writeText(text);
      toast("Copied.");
      return;
    }
    if (button.dataset.action) {
      const box = document.getElementById("request");
      const action = button.dataset.action;
      const body = { namespace: box.dataset.namespace };
      const answer = await control(`/requests/${encodeURIComponent(box.dataset.request)}/${action}`, body);
      toast(`${action}: ${answer.status}${answer.held ? " (held)" : ""}`);
      // A hold of a queued request changes no record, so no event comes: show it from the answer.
      if (action === "hold" || action === "release") {
        const line = document.querySelector("#sec-state .state-line");
        line.replaceChildren(badge(answer.status, `s-${answer.status}`));
        if (answer.held) line.append(" ", badge("HELD", "held"));
        const controls = document.querySelector("#sec-state .controls");
        const toggle = controls?.querySelector("[data-action=hold], [data-action=release]");
        if (toggle) { toggle.dataset.action = answer.held ? "release" : "hold"; toggle.textContent = answer.held ? "Release" : "Hold"; }
      }
      return;
    }
    const which = button.dataset.control;
    const namespace = button.dataset.namespace || undefined;
    if (which === "pause" || which === "resume") {
      const answer = await control(`/${which}`);
      toast(answer.paused ? "The queue is paused." : "The queue runs.");
      const badge = document.getElementById("queue-state");
      if (badge) { badge.textContent = answer.paused ? "PAUSED" : "RUNNING"; badge.className = `badge ${answer.paused ? "paused" : "running"}`; }
    } else if (which === "reset") {
      if (!confirm(namespace ? `Forget every request of key ${namespace}?` : "Forget every request of every key?")) return;
      await control("/reset", namespace ? { namespace } : {});
      toast("Reset.");
    } else if (which === "clear-faults") {
      const headers = { "X-Emulator-UI": "1" };
      if (TOKEN) headers["X-Emulator-Token"] = TOKEN;
      const query = namespace ? `?namespace=${encodeURIComponent(namespace)}` : "";
      const response = await fetch(`/_emulator/faults${query}`, { method: "DELETE", headers });
      if (!response.ok) throw new Error(await response.text());
      toast("Fault rules cleared.");
    }
  } catch (error) {
    toast(error.message, true);
  }
});

function formNumber(value) {
  return value === "" ? undefined : Number(value);
}

document.getElementById("clock-form")?.addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const seconds = Number(new FormData(event.target).get("seconds"));
    const answer = await control("/clock/advance", { seconds });
    toast(`Clock advanced; ${answer.timers_fired} timer(s) fired.`);
  } catch (error) { toast(error.message, true); }
});

document.getElementById("fault-form")?.addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = new FormData(event.target);
  const fault = { kind: data.get("kind") };
  const status = formNumber(data.get("status"));
  if (status !== undefined) fault.status = status;
  if (data.get("error_type")) fault.error_type = data.get("error_type");
  const seconds = formNumber(data.get("seconds"));
  if (seconds !== undefined) fault.seconds = seconds;
  if (data.get("stage")) fault.stage = data.get("stage");
  const rule = { fault };
  const actions = String(data.get("actions") || "").split(/[\s,]+/).filter(Boolean);
  if (actions.length) rule.actions = actions;
  if (data.get("endpoint")) rule.endpoint = data.get("endpoint");
  const times = formNumber(data.get("times"));
  if (times !== undefined) rule.times = times;
  if (data.get("namespace")) rule.namespace = data.get("namespace");
  try {
    const added = await control("/faults", rule);
    toast(`Fault rule ${added.id} added.`);
  } catch (error) { toast(error.message, true); }
});

// -- the playground ----------------------------------------------------------------------

function fieldValue(field) {
  const kind = field.dataset.kind;
  const input = field.querySelector("[name]");
  if (kind === "boolean") return input.checked;
  const raw = input.value.trim();
  if (raw === "") return undefined;
  if (kind === "integer" || kind === "number") return Number(raw);
  if (kind === "files") return raw.split(/\n+/).map((line) => line.trim()).filter(Boolean);
  if (kind === "json") {
    try { return JSON.parse(raw); } catch { throw new Error(`${field.dataset.name} is not valid JSON`); }
  }
  return raw;
}

function playgroundInput(form) {
  const input = {};
  for (const field of form.querySelectorAll(".field[data-name]")) {
    const value = fieldValue(field);
    if (value !== undefined) input[field.dataset.name] = value;
  }
  return input;
}

async function upload(file, key) {
  const response = await fetch("/cdn/files/upload", {
    method: "POST",
    headers: { Authorization: `Key ${key}:dashboard`, "Content-Type": file.type || "application/octet-stream", "X-Fal-File-Name": file.name },
    body: file,
  });
  const data = await response.json();
  if (!response.ok) throw new Error(data.detail || response.statusText);
  return data.access_url;
}

function setUpPlayground(form) {
  const error = document.getElementById("pg-error");
  for (const picker of form.querySelectorAll("input[type=file][data-upload-for]")) {
    picker.addEventListener("change", async () => {
      const target = document.getElementById(picker.dataset.uploadFor);
      const key = form.elements.__key.value.trim() || "dashboard";
      try {
        const urls = [];
        for (const file of picker.files) urls.push(await upload(file, key));
        target.value = picker.multiple ? [target.value.trim(), ...urls].filter(Boolean).join("\n") : urls[0];
        toast(`Uploaded ${urls.length} file(s).`);
      } catch (err) { error.textContent = `Upload failed: ${err.message}`; }
    });
  }
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const mode = event.submitter?.value || "queue";
    const endpoint = form.dataset.endpoint;
    const key = form.elements.__key.value.trim() || "dashboard";
    const headers = { Authorization: `Key ${key}:dashboard`, "Content-Type": "application/json" };
    let input;
    try { input = playgroundInput(form); } catch (err) { error.textContent = err.message; return; }
    const webhook = form.elements.__webhook.value.trim();
    const query = webhook ? `?fal_webhook=${encodeURIComponent(webhook)}` : "";
    const path = mode === "stream" ? `/run/${endpoint}/stream` : `/${endpoint}${query}`;
    let response;
    try {
      response = await fetch(path, { method: "POST", headers, body: JSON.stringify(input) });
    } catch (err) { error.textContent = err.message; return; }
    const requestId = response.headers.get("x-fal-request-id");
    const page = requestId ? `${PREFIX}/requests/${requestId}?namespace=${encodeURIComponent(key)}` : "";
    if (!response.ok) {
      const text = await response.text();
      let detail = text;
      try { detail = JSON.stringify(JSON.parse(text).detail, null, 2); } catch { /* not JSON */ }
      error.textContent = `${response.status}: ${detail}`;
      return;
    }
    if (mode === "queue") { window.location.assign(page); return; }
    // A stream: show each event's text as it comes, beside a link to the request's page.
    const result = document.getElementById("pg-result");
    const out = document.getElementById("pg-stream");
    result.hidden = false;
    out.textContent = "";
    const link = document.getElementById("pg-link");
    link.replaceChildren();
    if (page) {
      const anchor = document.createElement("a");
      anchor.href = page;
      anchor.textContent = "The request's page";
      link.append(anchor);
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const chunk = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const line = chunk.split("\n").find((l) => l.startsWith("data:"));
        if (!line) continue;
        const data = JSON.parse(line.slice(5));
        if (typeof data.output === "string") out.textContent = data.output;
        if (data.error) error.textContent = data.error;
      }
    }
  });
}

readClock();
setInterval(tick, 250);
const form = document.getElementById("playground");
if (form) setUpPlayground(form);
openStream();
