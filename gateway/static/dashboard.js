// DiLaServe dashboard: polls /v1/cluster once a second and follows up to MAX_FOLLOW running
// requests over their event streams (/v1/requests/{id}/events), re-reading a request after each
// step so its canvas fills in as the workers commit tokens. An API key, when the gateway needs
// one, comes from the page's fragment: /dashboard#key=<key>.
"use strict";

const POLL_MS = 1000;
const MAX_FOLLOW = 3; // event streams open at once (browsers allow ~6 connections per host)
const KEEP_DONE_MS = 15000; // a followed request stays in the in-flight list this long after it ends
const MASK = "_"; // the partial text's glyph for a still-masked position (workers/text.py)

const state = {
  key: readKey(),
  followed: new Map(), // id → AbortController
  cards: new Map(), // id → {el, data, refreshing, dirty, endedAt}
  classesFilled: false,
};
window.dilaTrace = []; // [{id, status, steps, tokens_committed, partial}] for tests and curious eyes

function readKey() {
  const m = location.hash.match(/key=([^&]+)/);
  if (m) sessionStorage.setItem("dilaKey", decodeURIComponent(m[1]));
  return sessionStorage.getItem("dilaKey");
}

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (state.key) h.Authorization = "Bearer " + state.key;
  return h;
}

async function getJSON(path) {
  const r = await fetch(path, { headers: headers(), cache: "no-store" });
  if (!r.ok) throw new Error(path + " → HTTP " + r.status);
  return r.json();
}

// ---------------------------------------------------------------- small DOM helpers

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  for (const c of children) node.append(c);
  return node;
}

function fmt(v, digits) {
  if (v === null || v === undefined) return "–";
  return typeof v === "number" && digits !== undefined ? v.toFixed(digits) : String(v);
}

function pct(v) {
  return v === null || v === undefined ? "–" : (100 * v).toFixed(1) + "%";
}

function fillTable(id, rows) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren(...rows.map((cells) => el("tr", {}, ...cells.map((c) =>
    typeof c === "object" ? el("td", { className: c.cls || "", textContent: c.text }) :
      el("td", { textContent: c })))));
}

// ---------------------------------------------------------------- cluster tables

function renderHeader(v) {
  const p = v.plan;
  const parts = p ? [`plan v${fmt(p.version)}`, p.source && `from ${p.source}`,
    p.status, p.solve_ms != null && `solve ${fmt(p.solve_ms, 0)} ms`,
    p.age_s !== null && p.age_s !== undefined && `changed ${fmt(p.age_s, 0)} s ago`] : [];
  document.getElementById("plan").textContent = p ?
    parts.filter(Boolean).join(" · ") : "no plan published (static pools)";
  document.getElementById("clock").textContent = new Date(v.ts_ms).toLocaleTimeString();
}

function renderPools(v) {
  fillTable("pools", v.pools.map((p) => [p.name, fmt(p.tp_degree), fmt(p.tau), fmt(p.tau_floor),
    p.queue_len, { text: fmt(p.oldest_slack_s, 1), cls: p.oldest_slack_s < 0 ? "bad" : "" },
    p.num_running, p.num_workers]));
}

function renderClasses(v) {
  const names = Object.keys(v.classes).sort();
  fillTable("classes", names.map((c) => {
    const w1 = v.classes[c]["60s"] || {}, w5 = v.classes[c]["300s"] || {};
    const cell = (a) => ({ text: pct(a.attainment), cls: a.attainment < 0.9 ? "bad" : "ok" });
    return [c, cell(w1), cell(w5), w5.finished || 0];
  }));
  if (!state.classesFilled && names.length) {
    const sel = document.getElementById("slo-class");
    sel.replaceChildren(...names.map((c) => el("option", { value: c, textContent: c })));
    if (names.includes("standard")) sel.value = "standard";
    state.classesFilled = true;
  }
}

function renderWorkers(v) {
  document.getElementById("gone").textContent =
    v.num_workers_gone ? `(${v.num_workers_gone} gone)` : "";
  fillTable("workers", v.workers.map((w) => [w.id, w.pool, `${w.tp_rank}/${w.tp_degree}`,
    { text: fmt(w.heartbeat_age_s, 1) + " s", cls: w.heartbeat_age_s > 3 ? "bad" : "" },
    w.batch_size, w.held, pct(w.utilisation), w.num_steps, fmt(w.tau),
    w.claiming ? "serving" : { text: "draining", cls: "bad" }]));
}

// ---------------------------------------------------------------- request cards

function canvasCells(d) {
  // The partial text runs up to the first end-of-text token: past it, positions are padding
  // ("end"), unless nothing was committed yet (all masked).
  const cells = [];
  const text = d.partial || "";
  const started = isEnded(d.status) || (d.tokens_committed || 0) > 0;
  for (let i = 0; i < d.tokens_total; i++) {
    const ch = text[i];
    let cls = "";
    if (ch === undefined) cls = started ? "end" : "mask";
    else if (ch === MASK) cls = "mask";
    if (d.block_length && i > 0 && i % d.block_length === 0) cls += " block-start";
    cells.push(el("span", { className: cls.trim(), textContent: ch === undefined ? "·" : ch }));
  }
  return cells;
}

function cardBody(d) {
  const share = d.tokens_total ? (100 * d.tokens_committed) / d.tokens_total : 0;
  const tau = d.tau !== undefined ? d.tau : d.tau_min;
  const meta = el("div", { className: "meta" },
    el("span", { className: "id", textContent: d.id }),
    el("span", { className: "status", textContent: d.status }),
    el("span", { textContent: d.slo_class || "" }), el("span", { textContent: d.pool || "" }),
    el("span", { className: "steps", textContent: `step ${d.steps || 0}` }),
    el("span", { className: "tokens", textContent: `${d.tokens_committed || 0}/${d.tokens_total} tokens` }),
    el("span", { textContent: `τ ${fmt(tau)}` }),
    el("span", { textContent: `slack ${fmt(d.slack_s, 1)} s` }));
  const bar = el("div", { className: "bar" }, el("div", { style: `width:${share}%` }));
  return [meta, bar, el("div", { className: "canvas" }, ...canvasCells(d))];
}

function drawCard(node, d) {
  node.dataset.id = d.id;
  node.dataset.status = d.status;
  node.replaceChildren(...cardBody(d));
}

function upsertCard(d) {
  let card = state.cards.get(d.id);
  if (!card) {
    card = { el: el("div", { className: "req" }), data: {}, refreshing: false, dirty: false };
    state.cards.set(d.id, card);
    document.getElementById("inflight").prepend(card.el);
  }
  Object.assign(card.data, d);
  if (isEnded(card.data.status) && !card.endedAt) card.endedAt = Date.now();
  drawCard(card.el, card.data);
  window.dilaTrace.push({ id: d.id, status: card.data.status, steps: card.data.steps,
    tokens_committed: card.data.tokens_committed, partial: card.data.partial });
  return card;
}

function isEnded(status) {
  return ["done", "failed", "cancelled", "expired", "rejected"].includes(status);
}

function fromPoll(r) {
  // GET /v1/requests/{id} → the card's shape (the cluster view's request shape)
  return { id: r.id, status: r.status, slo_class: r.slo_class, pool: r.pool,
    steps: r.progress.steps, tokens_committed: r.progress.tokens_committed,
    tokens_total: r.progress.tokens_total, partial: r.partial_text || r.text || "",
    slack_s: ((r.deadline_ms - (r.status === "done" ? r.arrival_ms + r.timings.e2e_ms :
      Date.now())) / 1000) };
}

async function refreshCard(id) {
  const card = state.cards.get(id);
  if (!card) return;
  if (card.refreshing) { card.dirty = true; return; }
  card.refreshing = true;
  try {
    do {
      card.dirty = false;
      upsertCard(fromPoll(await getJSON("/v1/requests/" + encodeURIComponent(id))));
    } while (card.dirty);
  } catch (e) {
    // gone or unreachable: the next cluster poll decides what to show
  } finally {
    card.refreshing = false;
  }
}

function renderInflight(v) {
  const listed = new Set(v.requests.map((r) => r.id));
  for (const r of v.requests) {
    // a followed request moves with its event stream; the poll adds only what that lacks
    if (!state.followed.has(r.id)) upsertCard(r);
    else upsertCard({ id: r.id, pool: r.pool, block_length: r.block_length });
    if (r.status === "running" && state.followed.size < MAX_FOLLOW) follow(r.id);
  }
  for (const [id, card] of state.cards) {
    const stale = !listed.has(id) && !state.followed.has(id);
    const expired = card.endedAt && Date.now() - card.endedAt > KEEP_DONE_MS;
    if ((stale && !card.endedAt) || expired) {
      card.el.remove();
      state.cards.delete(id);
    }
  }
  document.getElementById("inflight-count").textContent = `(${v.requests.length} listed)`;
}

function renderRecent(v) {
  const box = document.getElementById("recent");
  box.replaceChildren(...v.recent.map((d) => {
    const node = el("div", { className: "req" });
    drawCard(node, d);
    return node;
  }));
}

// ---------------------------------------------------------------- event streams

function parseSse(chunk) {
  const ev = { type: "message", data: "" };
  for (const line of chunk.split("\n")) {
    if (line.startsWith("event: ")) ev.type = line.slice(7);
    else if (line.startsWith("data: ")) ev.data += line.slice(6);
  }
  try { ev.data = ev.data ? JSON.parse(ev.data) : {}; } catch (e) { ev.data = {}; }
  return ev;
}

function onEvent(id, ev) {
  const card = state.cards.get(id);
  if (!card) return;
  if (ev.type === "progress") {
    upsertCard({ id, status: "running", steps: ev.data.steps, tau: ev.data.tau,
      tokens_committed: ev.data.tokens_committed, tokens_total: ev.data.tokens_total });
  } else if (ev.type === "claimed") {
    upsertCard({ id, status: "running" });
  }
  if (ev.type === "progress" || ev.type === "final") refreshCard(id);
}

async function follow(id) {
  if (state.followed.has(id)) return;
  const ctl = new AbortController();
  state.followed.set(id, ctl);
  try {
    const r = await fetch("/v1/requests/" + encodeURIComponent(id) + "/events",
      { headers: headers({ Accept: "text/event-stream" }), signal: ctl.signal });
    if (!r.ok) return;
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        onEvent(id, parseSse(buf.slice(0, i)));
        buf = buf.slice(i + 2);
      }
    }
  } catch (e) {
    // aborted, or the gateway went away: the cluster poll keeps showing the request
  } finally {
    state.followed.delete(id);
  }
}

// ---------------------------------------------------------------- submit form and the loop

async function submit(ev) {
  ev.preventDefault();
  const msg = document.getElementById("submit-msg");
  const body = { prompt: document.getElementById("prompt").value,
    max_tokens: Number(document.getElementById("max-tokens").value),
    block_length: Number(document.getElementById("block-length").value) || undefined,
    slo_class: document.getElementById("slo-class").value || undefined };
  try {
    const r = await fetch("/v1/requests", { method: "POST", body: JSON.stringify(body),
      headers: headers({ "Content-Type": "application/json" }) });
    const j = await r.json();
    if (!r.ok) { msg.textContent = (j.error && j.error.message) || "HTTP " + r.status; return; }
    msg.textContent = "submitted " + j.id;
    upsertCard({ id: j.id, status: j.status, slo_class: body.slo_class, pool: "",
      tokens_total: body.max_tokens, block_length: body.block_length, tokens_committed: 0,
      steps: 0, partial: "" });
    follow(j.id);
  } catch (e) {
    msg.textContent = "submit failed: " + e.message;
  }
}

function setConn(ok, why) {
  const c = document.getElementById("conn");
  c.className = "pill " + (ok ? "ok" : "bad");
  c.textContent = ok ? "live" : "offline: " + why;
}

async function poll() {
  try {
    const v = await getJSON("/v1/cluster");
    setConn(true);
    renderHeader(v); renderPools(v); renderClasses(v); renderWorkers(v);
    renderInflight(v); renderRecent(v);
  } catch (e) {
    setConn(false, e.message);
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

document.getElementById("submit").addEventListener("submit", submit);
poll();
