// kit's dashboard page: one websocket, frames pushed by the server (kit/dashboard/server.py).
// A frame holds the sections that changed (overview, functions, workers, actors, drivers),
// the task rows changed since the last frame and the new task-stream bars. Plain JS, no build.
"use strict";

const params = new URLSearchParams(location.search);
const TOKEN = params.get("token");  // the view token of a ?token= link (the cookie is set too)
const PANEL = params.get("panel");  // show one panel alone (JupyterLab tabs, %cluster dashboard)
if (TOKEN) {  // keep it out of the address bar and history; the cookie carries on
  params.delete("token");
  const rest = params.toString();
  history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
}
const PANELS = ["overview", "stream", "tasks", "actors", "workers", "drivers"];
const MAX_BARS = 20000;  // task-stream runs kept (the server's model keeps as many)
const withToken = (path) => TOKEN ? path + (path.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(TOKEN) : path;

const state = {
  t: 0, offset: 0, view: {}, rows: new Map(), bars: [], window: 300, connected: false,
};
window.kitDashboard = state;  // for people poking at it from the console, and for tests

// ---- small helpers ---------------------------------------------------------------------------
const $ = (sel) => document.querySelector(sel);
function esc(s) {
  return String(s == null ? "" : s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}
function mib(b) { return b == null ? "" : (b / 1048576).toFixed(b < 10 * 1048576 ? 1 : 0); }
function gib(b) { return (b / 1073741824).toFixed(1); }
function ago(t) {
  if (!t) return "";
  const s = Math.max(0, state.t - t);
  return s < 90 ? s.toFixed(0) + " s" : s < 5400 ? (s / 60).toFixed(0) + " min" : (s / 3600).toFixed(1) + " h";
}
function dur(a, b) { return a && b ? ((b - a) < 1 ? ((b - a) * 1000).toFixed(0) + " ms" : (b - a).toFixed(2) + " s") : ""; }
const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#edc948", "#76b7b2", "#ff9da7",
  "#9c755f", "#bab0ac", "#1f77b4", "#8c564b", "#17becf", "#bcbd22", "#7f7f7f", "#e377c2", "#2ca02c"];
const colours = new Map();  // function -> colour, in the order functions were first seen
function colour(label) {
  let c = colours.get(label);
  if (!c) {
    const n = colours.size;
    c = n < PALETTE.length ? PALETTE[n] : "hsl(" + ((n * 137.5) % 360).toFixed(0) + ",60%,50%)";
    colours.set(label, c);
  }
  return c;
}
const short = (id) => id ? "…" + id.slice(-8) : "";  // a task's counter, not its client's prefix
function cell(node, col, text, cls) {
  return '<td class="' + (cls || "") + '" data-node="' + esc(node) + '" data-col="' + col + '">' + text + "</td>";
}
function setRows(tbody, html) { if (tbody.innerHTML !== html) tbody.innerHTML = html; }

// ---- panels ------------------------------------------------------------------------------------
function showPanel(name) {
  if (!PANELS.includes(name)) name = "overview";
  for (const p of PANELS) document.getElementById(p).classList.toggle("active", p === name);
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.panel === name);
  state.panel = name;
  tellPanel();
  if (name === "stream") drawStream();
  if (name === "tasks") renderTasks();
}

function renderOverview(ov) {
  $("#cluster").textContent = ov.cluster ? "cluster " + ov.cluster : "";
  const t = ov.totals, k = ov.tasks || {};
  $("#totals").innerHTML = [
    ["nodes alive", t.alive + "/" + t.nodes, "alive"], ["CPU busy", (+t.cpu_busy).toFixed(0) + "/" + (+t.cpu_total).toFixed(0), "cpu"],
    ["waiting for a node", ov.waiting, "waiting"], ["queued", t.queued, "queued"], ["running", t.running, "running"],
    ["done", t.done, "done"], ["failed", t.failed, "failed"],
    ["object store MiB", mib(t.store_used) + "/" + mib(t.store_limit), "store"],
    ["submitted (seen)", k.submitted || 0, "submitted"],
  ].map(([name, v, col]) => '<span data-col="' + col + '">' + name + ": <b>" + esc(v) + "</b></span>").join("");
  let html = "";
  for (const n of ov.nodes) {
    const m = n.machine, p = n.procs;
    html += '<tr class="' + (n.alive ? "" : "dead") + '" data-node="' + esc(n.tag) + '">' +
      cell(n.tag, "node", "<b>" + esc(n.tag) + "</b>") + cell(n.tag, "address", esc(n.address)) +
      cell(n.tag, "state", n.alive ? "alive" : "dead") +
      cell(n.tag, "cpu", (+n.cpu_busy).toFixed(0) + "/" + (+n.cpu_total).toFixed(0), "num") +
      cell(n.tag, "queued", n.queued, "num") + cell(n.tag, "running", n.running, "num") +
      cell(n.tag, "done", n.done, "num") + cell(n.tag, "failed", n.failed, "num") +
      cell(n.tag, "store", mib(n.store_used) + " / " + mib(n.store_limit) + " MiB", "num") +
      cell(n.tag, "machine_cpu", m ? m.cpu_percent.toFixed(0) + "% of " + m.cpu_count : "—", "num") +
      cell(n.tag, "machine_mem", m ? gib(m.mem_used) + " / " + gib(m.mem_total) + " GiB" : "—", "num") +
      cell(n.tag, "procs", p ? p.procs + " procs, " + p.cpu_percent.toFixed(0) + "% CPU, " + mib(p.rss) + " MiB" : "—", "num") +
      "</tr>";
  }
  setRows($("#nodes tbody"), html);
  const sc = ov.scaling || [];  // the autoscaler's decisions, newest first
  $("#scaling").innerHTML = sc.length ? "<h3>Autoscaler</h3><ul>" + sc.map(([t, text]) =>
    "<li>" + esc(new Date(t * 1000).toLocaleTimeString()) + " " + esc(text) + "</li>").join("") + "</ul>" : "";
}

function renderProgress(fns) {
  let html = "";
  for (const [label, submitted, running, done, failed, cancelled] of fns) {
    const total = Math.max(1, submitted);
    const w = (x) => (100 * x / total).toFixed(2) + "%";
    html += '<div class="progress-row" data-function="' + esc(label) + '"><span class="label" title="' + esc(label) + '">' +
      '<i style="display:inline-block;width:9px;height:9px;background:' + colour(label) + '"></i> ' + esc(label) + "</span>" +
      '<span class="track"><i class="done" style="width:' + w(done) + '"></i><i class="fail" style="width:' + w(failed + cancelled) +
      '"></i><i class="run" style="width:' + w(running) + '"></i></span>' +
      '<span class="count" data-done="' + done + '" data-submitted="' + submitted + '" data-failed="' + failed + '">' +
      done + " / " + submitted + " done" + (failed ? ", " + failed + " failed" : "") + (running ? ", " + running + " running" : "") + "</span></div>";
  }
  const box = $("#progress");
  if (box.innerHTML !== html) box.innerHTML = html;
  const legend = fns.map(([label]) => '<span><i style="background:' + colour(label) + '"></i>' + esc(label) + "</span>").join("");
  if ($("#legend").innerHTML !== legend) $("#legend").innerHTML = legend;
}

// ---- task stream: a lane per worker, grouped by node; bars coloured by function -----------------
function lanes() {
  const byNode = new Map();
  const add = (node, worker) => {
    if (!worker) return;
    if (!byNode.has(node)) byNode.set(node, new Map());
    const ws = byNode.get(node);
    if (!ws.has(worker)) ws.set(worker, {worker, bars: 0});
  };
  for (const w of state.view.workers || []) add(w.node, w.id);
  for (const b of state.bars) add(b[5], b[4]);
  const nodes = [...byNode.keys()].sort((a, b) => String(a).localeCompare(String(b), undefined, {numeric: true}));
  const out = [];
  for (const n of nodes) {
    out.push({head: n});
    for (const l of [...byNode.get(n).values()]) out.push({node: n, worker: l.worker});
  }
  return out;
}

function drawStream() {
  if (state.panel !== "stream" && !document.body.classList.contains("all")) return;
  const canvas = $("#stream-canvas");
  const rows = lanes();
  const H = 16, height = (rows.length + 1) * H;  // a row more for the time axis
  const width = canvas.clientWidth || 800;
  const dpr = window.devicePixelRatio || 1;
  if (canvas.width !== width * dpr || canvas.height !== height * dpr) {
    canvas.width = width * dpr; canvas.height = height * dpr; canvas.style.height = height + "px";
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const span = +$("#window").value, now = state.t, t0 = now - span;
  const x = (t) => Math.max(0, (t - t0) / span * width);
  const laneOf = new Map();
  const counts = new Map();
  rows.forEach((r, i) => {
    if (r.head !== undefined) { ctx.fillStyle = "#f8fafc"; ctx.fillRect(0, i * H, width, H); }
    else laneOf.set(r.node + "|" + r.worker, i);
  });
  // Bars of one colour that touch on a lane's pixels are drawn as one rectangle: at
  // thousands of tasks a second a pixel holds hundreds of them, and drawing each one
  // took the browser's CPU from the cluster it watches.
  const open = new Map();  // lane -> [fill, x0, x1] not drawn yet
  const flush = (i, run) => { ctx.fillStyle = run[0]; ctx.fillRect(run[1], i * H + 2, Math.max(1, run[2] - run[1]), H - 4); };
  let drawn = 0;
  for (const [, a, b, label, worker, node, st] of state.bars) {
    const i = laneOf.get(node + "|" + worker);
    if (i === undefined) continue;
    counts.set(i, (counts.get(i) || 0) + 1);
    if (b < t0) continue;
    const fill = st === "failed" ? "#dc2626" : colour(label), xa = x(a), xb = x(b);
    const run = open.get(i);
    if (run && run[0] === fill && xa <= run[2] + 1) { run[2] = Math.max(run[2], xb); continue; }
    if (run) { flush(i, run); drawn++; }
    open.set(i, [fill, xa, xb]);
  }
  for (const [i, run] of open) { flush(i, run); drawn++; }
  for (const w of state.view.workers || []) {  // what runs now grows to the right edge
    if (!w.task || !w.task.since) continue;
    const i = laneOf.get(w.node + "|" + w.id);
    if (i === undefined) continue;
    ctx.globalAlpha = 0.55; ctx.fillStyle = colour(w.task.label);
    ctx.fillRect(x(w.task.since), i * H + 2, Math.max(1, x(now) - x(w.task.since)), H - 4);
    ctx.globalAlpha = 1;
  }
  ctx.fillStyle = "#9ca3af"; ctx.font = "10px sans-serif";
  for (let s = 0; s <= span; s += span / 6) ctx.fillText("-" + (span - s).toFixed(0) + "s", x(t0 + s) + 2, height - 3);
  let html = "";
  rows.forEach((r, i) => {
    html += r.head !== undefined
      ? '<div class="node-head" data-node="' + esc(r.head) + '">' + esc(r.head) + "</div>"
      : '<div class="lane" data-node="' + esc(r.node) + '" data-worker="' + esc(r.worker) + '" data-bars="' + (counts.get(i) || 0) + '">' +
        esc(r.node) + " · " + esc(String(r.worker).slice(0, 8)) + "</div>";
  });
  if ($("#lanes").innerHTML !== html) $("#lanes").innerHTML = html;
  $("#stream-summary").textContent = state.bars.length + " runs kept, drawn as " + drawn + " bars, " + (rows.length - new Set(rows.filter(r => r.head === undefined).map(r => r.node)).size) + " lanes";
  $("#stream-summary").dataset.bars = state.bars.length;
}

// ---- tasks -----------------------------------------------------------------------------------------
function renderTasks() {
  if (state.panel !== "tasks" && !document.body.classList.contains("all")) return;
  const want = new Set([...document.querySelectorAll('input[name=state]:checked')].map((i) => i.value));
  const q = $("#search").value.trim().toLowerCase();
  const rows = [...state.rows.values()].reverse();
  let html = "", shown = 0, matched = 0;
  for (const r of rows) {
    const [id, label, st, node, worker, submitted, started, finished, owner, , error] = r;
    if (!want.has(st)) continue;
    if (q && !(label.toLowerCase().includes(q) || id.startsWith(q) || String(node).toLowerCase() === q)) continue;
    matched++;
    if (shown >= 500) continue;
    shown++;
    html += '<tr class="' + esc(st) + '" data-task="' + esc(id) + '"><td>' + esc(short(id)) + "</td><td>" + esc(label) +
      '</td><td class="state state-' + esc(st) + '">' + esc(st) + "</td><td>" + esc(node || "") + "</td><td>" +
      esc(worker ? worker.slice(0, 8) : "") + "</td><td>" + esc(ago(submitted)) + " ago</td><td>" + esc(dur(started, finished)) +
      "</td><td>" + esc(owner || "") + "</td></tr>";
    if (error) html += '<tr class="tb" data-traceback="' + esc(id) + '"><td colspan="8">' + esc(error) + "</td></tr>";
    else if (st === "failed") html += '<tr class="tb" data-traceback="' + esc(id) + '"><td colspan="8">(no traceback at the head: ' +
      "the task ran on the direct path; its driver holds the error)</td></tr>";
  }
  setRows($("#task-table tbody"), html);
  $("#tasks-count").textContent = matched + " match" + (matched > 500 ? " (newest 500 shown)" : "") + ", " + state.rows.size + " kept";
}

// ---- actors, workers, drivers --------------------------------------------------------------------------
function renderActors(actors) {
  setRows($("#actor-table tbody"), actors.map((a) =>
    '<tr class="' + (a.state === "DEAD" ? "dead" : "") + '" data-actor="' + esc(a.id) + '">' +
    "<td>" + esc(short(a.id)) + '</td><td data-col="class">' + esc(a.class) + "</td><td>" + esc(a.name || "") +
    '</td><td data-col="state">' + esc(a.state) + "</td><td>" + esc(a.node || "") + "</td><td>" + esc(a.pid || "") +
    '</td><td class="num">' + esc(a.restarts == null ? "∞" : a.restarts) + '</td><td class="num" data-col="calls">' + a.calls +
    '</td><td class="num">' + a.queued + "</td><td>" + esc(a.cause || "") + "</td></tr>").join(""));
}

function renderWorkers(workers) {
  setRows($("#worker-table tbody"), workers.map((w) => {
    const task = w.task ? esc(w.task.label) + " <span class=muted>" + esc(short(w.task.id)) + (w.task.since ? " · " + esc(ago(w.task.since)) : "") + "</span>" : "";
    const last = w.logs.length ? w.logs[w.logs.length - 1][2] : "";
    const logs = w.logs.map((l) => l[2]).join("\n");
    return '<tr data-worker="' + esc(w.id) + '"><td>' + esc(w.id.slice(0, 8)) + (w.actor ? " <span class=muted>actor</span>" : "") +
      "</td><td>" + esc(w.node) + "</td><td>" + esc(w.pid) + "</td><td>" + esc(w.state) + "</td><td>" + task +
      '</td><td class="num">' + w.calls + '</td><td class="num" data-col="cpu">' + (w.cpu_rss ? w.cpu_rss[0].toFixed(0) + "%" : "—") +
      '</td><td class="num" data-col="rss">' + (w.cpu_rss ? mib(w.cpu_rss[1]) : "—") +
      '</td><td class="logs" title="' + esc(logs) + '">' + esc(last) + "</td><td>" +
      '<button data-stack="' + esc(w.id) + '">stack</button></td></tr>';
  }).join(""));
}

function renderDrivers(drivers) {
  setRows($("#driver-table tbody"), drivers.map((d) =>
    '<tr data-driver="' + esc(d.id) + '"><td>' + esc(d.id) + "</td><td>" + esc(d.name || "") + "</td><td>" + esc(d.host) + "</td><td>" +
    esc(d.pid) + "</td><td>" + esc(ago(d.since)) + ' ago</td><td class="num" data-col="submitted">' + d.submitted +
    '</td><td class="num" data-col="done">' + d.done + '</td><td class="num" data-col="failed">' + d.failed + "</td><td>" +
    d.functions.map(([label, s, dn, f]) => esc(label) + " " + dn + "/" + s + (f ? " (" + f + " failed)" : "")).join(", ") +
    "</td></tr>").join(""));
}

async function showStack(id) {
  const out = $("#stack-out");
  out.hidden = false;
  out.textContent = "reading the stack of worker " + id.slice(0, 8) + " ...";
  try {
    const r = await fetch(withToken("api/stack/" + id), {credentials: "same-origin"});
    const body = r.ok ? await r.json() : {stack: "the dashboard answered " + r.status};
    out.textContent = "worker " + id.slice(0, 8) + " (pid " + (body.pid || "?") + ")\n\n" + body.stack;
  } catch (e) {
    out.textContent = "could not read the stack: " + e;
  }
}

// ---- the feed ----------------------------------------------------------------------------------------
function apply(frame) {
  state.t = frame.t || state.t;
  if (frame.window) state.window = frame.window;
  for (const k of ["overview", "functions", "workers", "actors", "drivers"]) if (frame[k] !== undefined) state.view[k] = frame[k];
  if (frame.rows) {
    if (frame.rows.length && frame.rows[0][9] <= (state.lastRow || 0)) state.rows.clear();
    state.lastRow = frame.rows[frame.rows.length - 1][9];
    for (const r of frame.rows) { state.rows.delete(r[0]); state.rows.set(r[0], r); }
    while (state.rows.size > 5000) state.rows.delete(state.rows.keys().next().value);
  }
  if (frame.bars) {
    if (frame.bars.length && state.bars.length && frame.bars[0][0] <= state.bars[state.bars.length - 1][0]) state.bars = [];
    for (const b of frame.bars) state.bars.push(b);
    const oldest = state.t - state.window;
    let i = 0;
    while (i < state.bars.length && state.bars[i][2] < oldest) i++;
    i = Math.max(i, state.bars.length - MAX_BARS);  // as the server keeps: bounded
    if (i > 0) state.bars.splice(0, i);
  }
  if (frame.overview) renderOverview(frame.overview);
  if (frame.functions) renderProgress(frame.functions);
  if (frame.actors) renderActors(frame.actors);
  if (frame.workers) renderWorkers(frame.workers);
  if (frame.drivers) renderDrivers(frame.drivers);
  if (frame.rows) renderTasks();
  drawStream();
  state.frames = (state.frames || 0) + 1;
  document.body.dataset.frames = state.frames;
}

function tellPanel() {  // the server sends task rows and bars only to the panel showing them
  if (state.ws && state.ws.readyState === 1) state.ws.send(JSON.stringify({panel: state.panel}));
}

function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const base = location.pathname.replace(/[^/]*$/, "");
  const ws = new WebSocket(withToken(proto + "//" + location.host + base + "ws"));
  state.ws = ws;
  ws.onopen = () => { tellPanel(); state.connected = true; $("#status").textContent = "live"; $("#status").className = "status on"; };
  ws.onmessage = (ev) => apply(JSON.parse(ev.data));
  ws.onclose = () => {
    state.connected = false;
    $("#status").textContent = "disconnected: retrying";
    $("#status").className = "status off";
    setTimeout(connect, 2000);
  };
}

function init() {
  if (PANEL) {
    document.body.classList.add("single");
    showPanel(PANEL);
  } else {
    window.addEventListener("hashchange", () => showPanel(location.hash.slice(1)));
    showPanel(location.hash.slice(1) || "overview");
  }
  $("#timeline-link").href = withToken("timeline.json");
  $("#metrics-link").href = withToken("metrics");
  for (const el of document.querySelectorAll("input[name=state]")) el.addEventListener("change", renderTasks);
  $("#search").addEventListener("input", renderTasks);
  $("#window").addEventListener("change", drawStream);
  window.addEventListener("resize", drawStream);
  document.addEventListener("click", (ev) => {
    const id = ev.target && ev.target.dataset && ev.target.dataset.stack;
    if (id) showStack(id);
  });
  connect();
}
init();
