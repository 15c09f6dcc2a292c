// The dashboard's one page: HTML, CSS and JavaScript in one string, served by
// `meshbus dashboard` (dashboard.cpp). Nothing is fetched from elsewhere: it polls the
// JSON API of docs/observability.md and draws the mesh with SVG.
#pragma once

#include <string_view>

namespace meshbus_tool {

inline constexpr std::string_view dashboard_page = R"PAGE(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>meshbus dashboard</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#222}
header{background:#1f2937;color:#fff;padding:10px 18px;display:flex;gap:24px;align-items:baseline}
header h1{font-size:18px;margin:0}#summary{opacity:.85}
main{display:grid;grid-template-columns:minmax(420px,1fr) 1fr;gap:14px;padding:14px}
section{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:10px 12px;overflow:auto}
h2{font-size:15px;margin:0 0 8px}table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #eef0f3;white-space:nowrap}
th{font-weight:600;color:#555}.num{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:#b42318;font-weight:600}.ok{color:#067647}svg{width:100%;height:380px}
.node circle{fill:#2563eb}.node text{font-size:12px}.edge{stroke:#94a3b8;stroke-width:1.5}
.edgelabel{font-size:10px;fill:#475569}button{cursor:pointer}
#trace-tree ul{list-style:none;padding-left:18px;margin:0}#trace-tree li{margin:2px 0}
.muted{color:#777}
</style></head><body>
<header><h1>meshbus</h1><span id="summary">connecting…</span><span id="updated" class="muted"></span></header>
<main>
<section><h2>Mesh</h2><svg id="graph" viewBox="0 0 600 380"></svg></section>
<section><h2>Nodes</h2><table id="nodes"><thead><tr><th>name</th><th>id</th><th class="num">peers</th>
<th class="num">out/s</th><th class="num">in/s</th><th class="num">p99 delivery</th><th class="num">faults</th>
<th>up</th></tr></thead><tbody></tbody></table></section>
<section><h2>Topics</h2><table id="topics"><thead><tr><th>topic</th><th>publisher</th><th class="num">events/s</th>
<th class="num">last seq</th><th class="num">subscribers</th></tr></thead><tbody></tbody></table></section>
<section><h2>Lag</h2><table id="lag"><thead><tr><th>publisher</th><th>subscriber</th><th class="num">events</th>
<th class="num">lag</th></tr></thead><tbody></tbody></table><p id="lag-none" class="muted">No subscriber is behind.</p></section>
<section><h2>Faults</h2><table id="faults"><thead><tr><th>node</th><th>counter</th><th class="num">count</th></tr></thead>
<tbody></tbody></table><p id="faults-none" class="muted">No faults counted.</p></section>
<section><h2>Dead letters</h2><table id="dlq"><thead><tr><th>node</th><th class="num">id</th><th>topic</th>
<th class="num">attempts</th><th>reason</th><th></th></tr></thead><tbody></tbody></table>
<p id="dlq-status" class="muted">Loading…</p></section>
<section style="grid-column:1/-1"><h2>Trace</h2>
<form id="trace-form"><input id="trace-id" size="60" placeholder="correlation id (or the first event's id)">
<button type="submit">Trace</button></form><div id="trace-tree" class="muted"></div></section>
</main>
<script>
"use strict";
const $ = (s) => document.querySelector(s);
const text = (v) => document.createTextNode(String(v));
function cell(row, value, cls) { const td = document.createElement("td"); if (cls) td.className = cls;
  td.appendChild(value instanceof Node ? value : text(value)); row.appendChild(td); return td; }
function fill(tbody, rows) { tbody.replaceChildren(...rows); }
function rate(v) { return v >= 1e6 ? (v / 1e6).toFixed(2) + "M" : v >= 1e4 ? (v / 1e3).toFixed(1) + "k" : v.toFixed(v < 10 ? 1 : 0); }
function ns(v) { return v >= 1e9 ? (v / 1e9).toFixed(1) + " s" : v >= 1e6 ? (v / 1e6).toFixed(1) + " ms" : (v / 1e3).toFixed(0) + " µs"; }
function dur(ms) { const s = ms / 1000; return s < 60 ? s.toFixed(0) + "s" : s < 3600 ? (s / 60).toFixed(0) + "m" : (s / 3600).toFixed(1) + "h"; }
const names = new Map();

function drawGraph(mesh) {
  const svg = $("#graph"), W = 600, H = 380, R = Math.min(W, H) / 2 - 50;
  const nodes = mesh.nodes, pos = new Map();
  nodes.forEach((n, i) => { const a = 2 * Math.PI * i / Math.max(1, nodes.length) - Math.PI / 2;
    pos.set(n.id, [W / 2 + R * Math.cos(a), H / 2 + R * Math.sin(a)]); });
  const parts = [];
  const ns_ = "http://www.w3.org/2000/svg";
  const el = (tag, attrs) => { const e = document.createElementNS(ns_, tag); for (const k in attrs) e.setAttribute(k, attrs[k]); return e; };
  const defs = el("defs", {}); const marker = el("marker", {id: "arrow", viewBox: "0 0 10 10", refX: 20, refY: 5, markerWidth: 6, markerHeight: 6, orient: "auto"});
  marker.appendChild(el("path", {d: "M0,0L10,5L0,10z", fill: "#94a3b8"})); defs.appendChild(marker); parts.push(defs);
  for (const l of mesh.links) {
    const a = pos.get(l.from), b = pos.get(l.to); if (!a || !b) continue;
    const line = el("line", {x1: a[0], y1: a[1], x2: b[0], y2: b[1], class: "edge", "marker-end": "url(#arrow)"});
    line.dataset.from = l.from; line.dataset.to = l.to; parts.push(line);
    const label = el("text", {x: (a[0] + b[0]) / 2, y: (a[1] + b[1]) / 2 - 4, class: "edgelabel", "text-anchor": "middle"});
    label.textContent = l.topics.join(", ") + " " + rate(l.events_per_second) + "/s"; parts.push(label);
  }
  for (const n of nodes) {
    const [x, y] = pos.get(n.id); const g = el("g", {class: "node", "data-id": n.id});
    g.appendChild(el("circle", {cx: x, cy: y, r: 10}));
    const t = el("text", {x: x, y: y - 15, "text-anchor": "middle"}); t.textContent = n.name; g.appendChild(t);
    parts.push(g);
  }
  svg.replaceChildren(...parts);
}

function render(mesh) {
  names.clear(); for (const n of mesh.nodes) names.set(n.id, n.name);
  const who = (id) => names.get(id) || id.slice(0, 8);
  let faults = 0, out = 0;
  fill($("#nodes tbody"), mesh.nodes.map((n) => { const r = document.createElement("tr"); r.dataset.node = n.name;
    const o = n.published.reduce((s, x) => s + x.events_per_second, 0), i = n.received.reduce((s, x) => s + x.events_per_second, 0);
    faults += n.faults; out += o;
    cell(r, n.name); cell(r, n.short_id); cell(r, n.peers.length, "num"); cell(r, rate(o), "num"); cell(r, rate(i), "num");
    cell(r, n.delivery_latency.count ? ns(n.delivery_latency.p99_ns) : "-", "num"); cell(r, n.faults, "num" + (n.faults ? " bad" : ""));
    cell(r, dur(n.uptime_ms)); return r; }).concat(mesh.unanswered.map((p) => { const r = document.createElement("tr");
    cell(r, p.name); cell(r, p.id.slice(0, 8)); cell(r, "silent", "bad"); return r; })));
  const subscribers = new Map();
  for (const n of mesh.nodes) for (const s of n.received) { const k = s.publisher + "/" + s.topic; subscribers.set(k, (subscribers.get(k) || 0) + 1); }
  const topics = [];
  for (const n of mesh.nodes) for (const s of n.published) if (!s.topic.startsWith("$")) topics.push([n, s]);
  topics.sort((a, b) => b[1].events_per_second - a[1].events_per_second);
  fill($("#topics tbody"), topics.map(([n, s]) => { const r = document.createElement("tr"); r.dataset.topic = s.topic;
    cell(r, s.topic); cell(r, n.name); cell(r, rate(s.events_per_second), "num"); cell(r, s.last_seq, "num");
    cell(r, subscribers.get(n.id + "/" + s.topic) || 0, "num"); return r; }));
  const lag = [];
  for (const n of mesh.nodes) for (const l of n.lagging) lag.push([n, l]);
  fill($("#lag tbody"), lag.map(([n, l]) => { const r = document.createElement("tr");
    cell(r, n.name); cell(r, l.name || l.node.slice(0, 8)); cell(r, l.events, "num"); cell(r, l.lag_ms + " ms", "num"); return r; }));
  $("#lag-none").hidden = lag.length > 0;
  const faultRows = [];
  for (const n of mesh.nodes) for (const [k, v] of Object.entries(n.fault_counters)) if (v) faultRows.push([n.name, k, v]);
  fill($("#faults tbody"), faultRows.map(([n, k, v]) => { const r = document.createElement("tr"); cell(r, n); cell(r, k); cell(r, v, "num bad"); return r; }));
  $("#faults-none").hidden = faultRows.length > 0;
  drawGraph(mesh);
  $("#summary").textContent = `${mesh.nodes.length} nodes, ${mesh.unanswered.length} silent, publishing ${rate(out)}/s, faults ${faults}`;
  $("#updated").textContent = "updated " + new Date(mesh.time).toLocaleTimeString();
}

async function poll() {
  try { const r = await fetch("api/mesh"); if (r.ok) render(await r.json()); else $("#summary").textContent = "error " + r.status; }
  catch (e) { $("#summary").textContent = "dashboard unreachable"; }
  setTimeout(poll, 1000);
}

async function loadDeadLetters() {
  try {
    const r = await fetch("api/dead-letters"); const body = await r.json();
    if (!r.ok) { $("#dlq-status").textContent = body.error || ("error " + r.status); }
    else {
      fill($("#dlq tbody"), body.map((d) => { const row = document.createElement("tr"); row.dataset.letter = d.id;
        cell(row, d.node_name || d.node_short_id); cell(row, d.id, "num"); cell(row, d.topic); cell(row, d.attempts, "num"); cell(row, d.reason);
        const b = document.createElement("button"); b.textContent = "Replay"; b.className = "replay";
        b.onclick = () => replay(d.node, d.id, b); cell(row, b); return row; }));
      $("#dlq-status").textContent = body.length ? "" : "No dead letters.";
    }
  } catch (e) { $("#dlq-status").textContent = "could not load dead letters"; }
  setTimeout(loadDeadLetters, 5000);
}

async function replay(node, id, button) {
  button.disabled = true; button.textContent = "Replaying…";
  const r = await fetch(`api/dead-letters/replay?node=${encodeURIComponent(node)}&id=${encodeURIComponent(id)}`,
    {method: "POST", headers: {"X-Meshbus-Dashboard": "1"}});
  const body = await r.json();
  button.textContent = body.ok ? "Replayed" : "Failed"; button.title = body.message || "";
  button.closest("tr").dataset.replayed = body.ok ? "yes" : "no";
}

function tree(nodes) {
  const ul = document.createElement("ul");
  for (const n of nodes) {
    const li = document.createElement("li");
    li.appendChild(text(n.not_held ? `(not held: ${n.not_held})` :
      `${n.timestamp} ${n.node_name} ${n.topic}${n.type_name ? " " + n.type_name + "/" + n.type_version : ""} id=${n.id}`));
    if (n.children && n.children.length) li.appendChild(tree(n.children));
    ul.appendChild(li);
  }
  return ul;
}

$("#trace-form").onsubmit = async (ev) => {
  ev.preventDefault();
  const id = $("#trace-id").value.trim(); if (!id) return;
  const out = $("#trace-tree"); out.textContent = "Asking every node…";
  const r = await fetch("api/trace?id=" + encodeURIComponent(id)); const body = await r.json();
  if (!r.ok) { out.textContent = body.error || ("error " + r.status); return; }
  out.replaceChildren(text(`${body.events} events`), tree(body.tree));
};

poll();
loadDeadLetters();
</script></body></html>
)PAGE";

}  // namespace meshbus_tool
