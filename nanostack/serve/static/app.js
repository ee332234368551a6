// nanostack serve: the page. Playground (streamed generation, tokens coloured by probability),
// dashboard (runs' metrics as SVG charts, updated live) and data explorer (examples by loss).
// Plain JS, no build step. Text is only ever inserted with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const state = { model: null, controller: null, runs: new Map(), selected: new Set(), poll: null };

// ---- talking to the server -----------------------------------------------------------------------
function headers(json) {
  const h = {};
  const token = sessionStorage.getItem("nanostack-token");
  if (token) h["Authorization"] = "Bearer " + token;
  if (json) h["Content-Type"] = "application/json";
  return h;
}

async function getJSON(path) {
  const r = await fetch(path, { headers: headers(false) });
  if (!r.ok) throw new Error(await errorText(r));
  return r.json();
}

async function errorText(r) {
  try { const b = await r.json(); return (b.error && b.error.message) || r.statusText; }
  catch (e) { return r.status + " " + r.statusText; }
}

// Server-sent events over fetch (EventSource cannot POST): yields each data payload.
async function* sse(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (line.startsWith("data: ")) yield line.slice(6);
      }
    }
  }
}

function setStatus(text, error) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("error", !!error);
}

// ---- tokens as coloured spans ----------------------------------------------------------------------
function colour(p) { return "hsl(" + Math.round(120 * p) + ", 75%, 82%)"; }

function tokenSpan(text, logprob, alternatives, extra) {
  const span = document.createElement("span");
  span.className = "tok" + (extra ? " " + extra : "");
  const partial = text.startsWith("bytes:");
  if (partial) span.classList.add("partial");
  span.textContent = text;
  if (logprob !== null && logprob !== undefined) {
    span.dataset.logprob = String(logprob);
    span.style.backgroundColor = colour(Math.exp(logprob));
  }
  span._alternatives = alternatives || [];
  return span;
}

function showTip(event) {
  const span = event.target.closest(".tok");
  const tip = $("tip");
  if (!span || span.dataset.logprob === undefined) { tip.classList.add("hidden"); return; }
  const lp = Number(span.dataset.logprob);
  const lines = ["p = " + Math.exp(lp).toFixed(4) + "   loss = " + (-lp).toFixed(3)];
  for (const [tok, alp] of span._alternatives.slice(0, 5)) {
    lines.push(JSON.stringify(tok).padEnd(12) + " " + Math.exp(alp).toFixed(4));
  }
  tip.textContent = lines.join("\n");
  tip.style.left = (event.clientX + 12) + "px";
  tip.style.top = (event.clientY + 14) + "px";
  tip.classList.remove("hidden");
}

function completionTokens(logprobs) {  // text_completion logprobs -> [[text, logprob, [[alt, lp]]]]
  const out = [];
  for (let i = 0; i < logprobs.tokens.length; i++) {
    const top = logprobs.top_logprobs && logprobs.top_logprobs[i];
    out.push([logprobs.tokens[i], logprobs.token_logprobs[i], top ? Object.entries(top) : []]);
  }
  return out;
}

function chatTokens(logprobs) {
  return (logprobs.content || []).map((t) => [t.token, t.logprob, t.top_logprobs.map((a) => [a.token, a.logprob])]);
}

// ---- playground --------------------------------------------------------------------------------------
function numberField(id) {
  const v = $(id).value.trim();
  return v === "" ? null : Number(v);
}

function requestBody(mode) {
  const body = { model: state.model, stream: true, stream_options: { include_usage: true } };
  const prompt = $("prompt").value;
  const maxTokens = numberField("max_tokens");
  if (mode === "chat") {
    body.messages = [{ role: "user", content: prompt }];
    body.logprobs = true;
    body.top_logprobs = 5;
    if (maxTokens !== null) body.max_completion_tokens = maxTokens;
  } else {
    body.prompt = prompt;
    body.logprobs = 5;
    if (maxTokens !== null) body.max_tokens = maxTokens;
  }
  for (const key of ["temperature", "top_p", "top_k", "seed"]) {
    const v = numberField(key);
    if (v !== null) body[key] = v;
  }
  const stop = $("stop").value;
  if (stop) body.stop = [stop.replace(/\\n/g, "\n")];
  return body;
}

async function generate() {
  const mode = $("mode").value;
  const out = $("output");
  out.replaceChildren();
  if (mode === "completion") {  // the prompt, plain, before the generated tokens
    const prompt = document.createElement("span");
    prompt.className = "prompt";
    prompt.textContent = $("prompt").value;
    out.appendChild(prompt);
  }
  $("stats").textContent = "";
  setStatus("waiting…");
  const controller = new AbortController();
  state.controller = controller;
  $("generate").disabled = true;
  $("stop-button").disabled = false;
  const started = performance.now();
  let first = null, count = 0;
  try {
    const path = mode === "chat" ? "/v1/chat/completions" : "/v1/completions";
    const r = await fetch(path, { method: "POST", headers: headers(true), body: JSON.stringify(requestBody(mode)),
                                  signal: controller.signal });
    if (!r.ok) throw new Error(await errorText(r));
    setStatus("generating…");
    for await (const data of sse(r)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      for (const choice of chunk.choices) {
        if (!choice.logprobs) continue;
        const tokens = mode === "chat" ? chatTokens(choice.logprobs) : completionTokens(choice.logprobs);
        for (const [text, lp, alts] of tokens) {
          if (first === null) first = performance.now();
          out.appendChild(tokenSpan(text, lp, alts));
          count++;
        }
      }
      const seconds = (performance.now() - (first || started)) / 1000;
      $("stats").textContent = count + " tokens · time to first token " +
        (first === null ? "–" : Math.round(first - started) + " ms") +
        " · " + (seconds > 0 ? (count / seconds).toFixed(1) : "–") + " tok/s";
    }
    setStatus("done");
  } catch (e) {
    if (e.name === "AbortError") setStatus("stopped");
    else setStatus(e.message, true);
  } finally {
    state.controller = null;
    $("generate").disabled = false;
    $("stop-button").disabled = true;
  }
}

function stop() {
  if (state.controller) state.controller.abort();
}

async function scoreText(text) {
  const out = $("output");
  out.replaceChildren();
  setStatus("scoring…");
  try {
    const r = await fetch("/v1/completions", { method: "POST", headers: headers(true), body: JSON.stringify(
      { model: state.model, prompt: text, max_tokens: 0, echo: true, logprobs: 5 }) });
    if (!r.ok) throw new Error(await errorText(r));
    const body = await r.json();
    const tokens = completionTokens(body.choices[0].logprobs);
    let sum = 0, n = 0;
    tokens.forEach(([tok, lp, alts], i) => {
      out.appendChild(tokenSpan(tok, lp, alts, i === 0 ? "prompt-first" : ""));
      if (lp !== null) { sum -= lp; n++; }
    });
    $("stats").textContent = n ? "mean loss " + (sum / n).toFixed(4) + " nats/token over " + n + " tokens" : "nothing to score";
    setStatus("scored");
  } catch (e) {
    setStatus(e.message, true);
  }
}

// ---- dashboard ---------------------------------------------------------------------------------------
const COLOURS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563", "#ca8a04"];

function el(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (parent) parent.appendChild(node);
  return node;
}

// series: [{colour, points: [[x, y]], hollow}]; one circle per point
function drawChart(svg, series, logY) {
  svg.replaceChildren();
  const W = 640, H = 260, L = 56, R = 12, T = 10, B = 28;
  const all = series.flatMap((s) => s.points).filter(([x, y]) => isFinite(x) && isFinite(y) && (!logY || y > 0));
  if (!all.length) {
    const t = el("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, svg);
    t.textContent = "no data yet";
    return;
  }
  const f = logY ? Math.log10 : (v) => v;
  let [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...all.map((p) => f(p[1]))), Math.max(...all.map((p) => f(p[1])))];
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
  const sx = (x) => L + (x - x0) / (x1 - x0) * (W - L - R);
  const sy = (y) => T + (1 - (f(y) - y0) / (y1 - y0)) * (H - T - B);
  for (let i = 0; i <= 4; i++) {
    const v = y0 + (y1 - y0) * i / 4, y = T + (1 - i / 4) * (H - T - B);
    el("line", { x1: L, x2: W - R, y1: y, y2: y, class: "grid" }, svg);
    const label = el("text", { x: L - 4, y: y + 4, "text-anchor": "end" }, svg);
    const value = logY ? Math.pow(10, v) : v;
    label.textContent = Math.abs(value) >= 1000 || (Math.abs(value) < 0.01 && value !== 0) ? value.toExponential(1) : value.toFixed(3);
  }
  el("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }, svg);
  el("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }, svg);
  for (const x of [x0, x1]) {
    const label = el("text", { x: sx(x), y: H - 8, "text-anchor": "middle" }, svg);
    label.textContent = String(Math.round(x));
  }
  for (const s of series) {
    const pts = s.points.filter(([x, y]) => isFinite(x) && isFinite(y) && (!logY || y > 0));
    if (pts.length > 1) {
      el("polyline", { points: pts.map(([x, y]) => sx(x).toFixed(1) + "," + sy(y).toFixed(1)).join(" "),
                       class: "series", stroke: s.colour, "stroke-dasharray": s.hollow ? "4 3" : "none" }, svg);
    }
    for (const [x, y] of pts) {
      el("circle", { cx: sx(x).toFixed(1), cy: sy(y).toFixed(1), r: s.hollow ? 3.5 : 2.2,
                     class: "pt" + (s.hollow ? " val" : ""), fill: s.hollow ? "#fff" : s.colour, stroke: s.colour,
                     "data-run": s.run, "data-step": x }, svg);
    }
  }
}

function redraw() {
  const loss = [], lr = [], tps = [];
  let i = 0;
  for (const name of state.selected) {
    const run = state.runs.get(name);
    if (!run) continue;
    const colour = COLOURS[i++ % COLOURS.length];
    const train = run.records.filter((r) => r.kind !== "eval");
    const evals = run.records.filter((r) => r.kind === "eval");
    loss.push({ run: name, colour, points: train.map((r) => [r.step, r.loss]) });
    loss.push({ run: name, colour, hollow: true, points: evals.map((r) => [r.step, r.val_loss]) });
    lr.push({ run: name, colour, points: train.filter((r) => r.lr !== undefined).map((r) => [r.step, r.lr]) });
    tps.push({ run: name, colour, points: train.filter((r) => r.tokens_per_s !== undefined).map((r) => [r.step, r.tokens_per_s]) });
  }
  drawChart($("chart-loss"), loss, true);
  drawChart($("chart-lr"), lr, false);
  drawChart($("chart-tps"), tps, false);
}

async function pollMetrics() {
  for (const name of state.selected) {
    const run = state.runs.get(name);
    try {
      const body = await getJSON("/api/runs/" + encodeURIComponent(name) + "/metrics?since=" + run.next);
      run.records.push(...body.records);
      run.next = body.next;
    } catch (e) { setStatus(e.message, true); }
  }
  redraw();
}

async function showConfig(name) {
  $("config-run").textContent = name;
  const table = $("config");
  table.replaceChildren();
  try {
    const info = await getJSON("/api/runs/" + encodeURIComponent(name));
    const rows = Object.entries(info.config.train || {}).concat(Object.entries(info.config.model || {}).map(([k, v]) => ["model." + k, v]));
    for (const [k, v] of rows) {
      const tr = table.insertRow();
      tr.insertCell().textContent = k;
      tr.insertCell().textContent = typeof v === "object" ? JSON.stringify(v) : String(v);
    }
    const link = $("report-link");
    link.classList.toggle("hidden", !info.report);
    link.href = "/api/runs/" + encodeURIComponent(name) + "/report";
  } catch (e) { setStatus(e.message, true); }
}

async function loadRuns() {
  const box = $("runs");
  box.replaceChildren();
  let body;
  try { body = await getJSON("/api/runs"); } catch (e) { box.textContent = e.message; return; }
  if (!body.runs.length) { box.textContent = "no runs under the runs root"; return; }
  if (!state.selected.size) {
    const served = body.runs.find((r) => r.served) || body.runs[0];
    state.selected.add(served.name);
  }
  body.runs.forEach((run, i) => {
    if (!state.runs.has(run.name)) state.runs.set(run.name, { records: [], next: 0 });
    const label = document.createElement("label");
    const box2 = document.createElement("input");
    box2.type = "checkbox";
    box2.checked = state.selected.has(run.name);
    box2.addEventListener("change", () => {
      if (box2.checked) state.selected.add(run.name); else state.selected.delete(run.name);
      pollMetrics();
      if (box2.checked) showConfig(run.name);
    });
    const name = document.createElement("span");
    name.textContent = run.name + (run.served ? " (served)" : "");
    label.append(box2, name);
    box.appendChild(label);
  });
  showConfig([...state.selected][0]);
  await pollMetrics();
  if (!state.poll) state.poll = setInterval(pollMetrics, 5000);
}

// ---- data explorer -------------------------------------------------------------------------------------
async function loadExamples(name) {
  const body = await getJSON("/api/runs/" + encodeURIComponent(name) + "/examples?sort=loss&order=desc&limit=200");
  const tbody = $("examples").tBodies[0];
  tbody.replaceChildren();
  for (const ex of body.examples) {
    const tr = tbody.insertRow();
    tr.insertCell().textContent = ex.loss === null ? "–" : ex.loss.toFixed(3);
    tr.insertCell().textContent = ex.n_tokens === null ? "–" : String(ex.n_tokens);
    const text = tr.insertCell();
    text.className = "text";
    text.textContent = ex.text;
    tr.insertCell().textContent = ex.source || "";
    tr.addEventListener("click", () => {
      showTab("playground");
      $("prompt").value = ex.text;
      scoreText(ex.text);
    });
  }
}

// ---- start -------------------------------------------------------------------------------------------
function showTab(name) {
  for (const b of document.querySelectorAll(".tab")) b.classList.toggle("active", b.dataset.tab === name);
  for (const p of document.querySelectorAll(".panel")) p.classList.toggle("hidden", p.id !== name);
  if (name === "dashboard") loadRuns();
}

async function start() {
  try {
    const models = await getJSON("/v1/models");
    state.model = models.data[0].id;
    $("model-name").textContent = state.model;
    setStatus("");
  } catch (e) {
    $("model-name").textContent = "(enter the API token)";
    setStatus(e.message, true);
    return;
  }
  try {
    const info = await getJSON("/api/runs/" + encodeURIComponent(state.model));
    if (info.examples) {
      $("explorer-tab").classList.remove("hidden");
      await loadExamples(state.model);
    }
  } catch (e) { /* the served run may live outside the runs root: no explorer then */ }
}

document.addEventListener("DOMContentLoaded", () => {
  $("token").value = sessionStorage.getItem("nanostack-token") || "";
  $("token").addEventListener("change", () => { sessionStorage.setItem("nanostack-token", $("token").value.trim()); start(); });
  for (const b of document.querySelectorAll(".tab")) b.addEventListener("click", () => showTab(b.dataset.tab));
  $("generate").addEventListener("click", generate);
  $("stop-button").addEventListener("click", stop);
  $("score").addEventListener("click", () => scoreText($("prompt").value));
  $("output").addEventListener("mouseover", showTip);
  $("output").addEventListener("mouseleave", () => $("tip").classList.add("hidden"));
  start();
});
