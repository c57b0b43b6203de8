// The status page's script (src/admin/status.html), served as /status.js: the admin
// Content-Security-Policy allows only the server's own scripts, never inline code. Markup is
// built from escaped text and data attributes only; what a button does is read from its data
// attributes by the one click listener below (no inline event handlers: inside one, the
// browser decodes `&#39;` back to a quote, and a name could end the string it sits in).
// The charts are inline SVG drawn here from /api/v1/history (no library, nothing fetched from
// elsewhere: the page works offline).
"use strict";
let token = localStorage.getItem("fulcrum-token") || "";
let historyDoc = null;
const SAMPLES = 600;
const esc = s => String(s ?? "").replace(/[&<>"']/g, c =>
  ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const headers = () => token ? {Authorization: "Bearer " + token} : {};
function ago(t) {
  if (!t) return "";
  const s = Math.max(0, Date.now() / 1000 - t);
  if (s < 60) return Math.round(s) + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  if (s < 86400) return Math.round(s / 3600) + " h ago";
  return Math.round(s / 86400) + " d ago";
}
function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : Math.round(n)) + " " + units[i];
}
function uptime(s) {
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
  return (d ? d + "d " : "") + (h ? h + "h " : "") + m + "m " + Math.floor(s % 60) + "s";
}
const num = (v, digits) => v == null ? "–" : v.toFixed(digits);
const latest = vs => { for (let i = (vs || []).length - 1; i >= 0; i--) if (vs[i] != null) return vs[i]; return null; };
// The mean of the last `n` samples (nulls skipped): what a row shows as "now".
function recent(vs, n) {
  const tail = (vs || []).slice(-n).filter(v => v != null);
  return tail.length ? tail.reduce((a, b) => a + b, 0) / tail.length : null;
}
async function api(method, path) {
  const r = await fetch(path, {method, headers: headers()});
  if (r.status === 401) {
    const t = prompt("Fulcrum admin token:");
    if (t) { token = t.trim(); localStorage.setItem("fulcrum-token", token); }
    throw new Error("unauthorized");
  }
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(method + " " + path + ": " + r.status + " " + (body.error || r.statusText));
  return body;
}
// A button's request: its failure is shown on the page, never swallowed.
async function send(method, path) {
  const box = document.getElementById("action-error");
  try {
    await api(method, path);
    box.textContent = "";
    box.hidden = true;
  } catch (e) {
    box.textContent = e.message;
    box.hidden = false;
  }
  refresh();
}
function act(pool, backend, action) {
  return send("POST", "/api/v1/pools/" + encodeURIComponent(pool) + "/backends/" +
              encodeURIComponent(backend) + "/" + action);
}
function demoAct(name, action) {
  return send("POST", "/api/v1/demo/backends/" + encodeURIComponent(name) + "/" + action);
}

// One small chart: `lines` = [{values, cls, label}], the newest value on the right edge, one
// step per second over the ten minutes the history holds.
function chart(key, title, lines, fmt) {
  const W = 600, H = 60, step = W / (SAMPLES - 1);
  let max = 0;
  for (const l of lines) for (const v of l.values || []) if (v != null && v > max) max = v;
  const top = max > 0 ? max * 1.15 : 1;
  const paths = lines.map(l => {
    const vs = l.values || [], n = vs.length;
    let d = "", pen = false;
    for (let i = 0; i < n; i++) {
      const v = vs[i];
      if (v == null) { pen = false; continue; }
      const x = W - (n - 1 - i) * step, y = H - 1 - (v / top) * (H - 2);
      d += (pen ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1);
      pen = true;
    }
    return d ? '<path class="line ' + l.cls + '" vector-effect="non-scaling-stroke" d="' + d + '"/>' : "";
  }).join("");
  const now = lines.map(l => '<span class="' + l.cls + '">' + (l.label ? esc(l.label) + " " : "") +
    esc(fmt(latest(l.values))) + "</span>").join(" ");
  return '<figure class="chart" data-chart="' + esc(key) + '"><figcaption><span class="t">' + esc(title) +
    '</span><span class="v">' + now + '</span></figcaption>' +
    '<svg viewBox="0 0 ' + W + " " + H + '" preserveAspectRatio="none" role="img" aria-label="' +
    esc(title) + ', last 10 minutes"><line class="grid" x1="0" x2="' + W + '" y1="' + (H / 2) + '" y2="' +
    (H / 2) + '" vector-effect="non-scaling-stroke"/>' + paths + "</svg>" +
    '<div class="scale"><span>10 min</span><span>max ' + esc(fmt(max)) + "</span><span>now</span></div></figure>";
}
// The charts of one listener or pool series of the history.
function charts(kind, name, h) {
  if (!h) return '<div class="charts empty">no samples yet</div>';
  const key = kind + ":" + name + ":";
  const out = h.protocol === "tcp" ? [
    chart(key + "open", "Open connections", [{values: h.open, cls: "c0"}], v => num(v, 0)),
    chart(key + "conns", "Connections/s", [{values: h.conns_per_s, cls: "c0"}], v => num(v, 1)),
    chart(key + "bytes", "Bytes/s", [{values: h.bytes_in_per_s, cls: "c0", label: "in"},
                                     {values: h.bytes_out_per_s, cls: "c1", label: "out"}],
          v => v == null ? "–" : bytes(v)),
  ] : [
    chart(key + "rps", "Requests/s", [{values: h.rps, cls: "c0"}], v => num(v, 1)),
    chart(key + "errors", "Error rate (5xx)", [{values: (h.error_rate || []).map(v => v == null ? null : v * 100),
                                              cls: "c-err"}], v => v == null ? "–" : v.toFixed(1) + " %"),
    chart(key + "latency", "Latency", [{values: h.p50_ms, cls: "c0", label: "p50"},
                                       {values: h.p99_ms, cls: "c1", label: "p99"}],
          v => v == null ? "–" : (v < 10 ? v.toFixed(2) : v.toFixed(0)) + " ms"),
  ];
  return '<div class="charts">' + out.join("") + "</div>";
}
const byName = list => Object.fromEntries((list || []).map(x => [x.name, x]));

function renderListeners(s, hist) {
  return s.listeners.map(l => {
    const tls = !l.tls ? "" : '<div class="kv"><span class="k">TLS</span><span>' + l.tls.certs.map(c =>
      '<span class="cert' + (c.days_left < 14 ? " err" : "") + '">' + esc(c.names.join(", ")) +
      " · expires " + esc(c.expires.slice(0, 10)) + " (" + c.days_left + " d)</span>").join("") +
      (l.tls.acme ? '<span class="cert">ACME: ' + esc(l.tls.acme.state) +
        (l.tls.acme.last_error ? ' · <span class="err">' + esc(l.tls.acme.last_error) + "</span>" : "") + "</span>" : "") +
      "</span></div>";
    const tcp = l.protocol === "tcp" ? '<div class="kv"><span class="k">Bytes</span><span>↑ ' +
      bytes(l.bytes_up) + " ↓ " + bytes(l.bytes_down) + "</span></div>" : "";
    return '<section class="card" data-listener="' + esc(l.name) + '"><h2><span class="name">' + esc(l.name) +
      '</span><span class="pill">' + esc(l.protocol) + (l.tls ? " + TLS" : "") + "</span>" +
      '<span class="sub addr">' + esc(l.bind) + '</span><span class="sub right">' + l.connections +
      " open</span></h2>" + tls + tcp + charts("listener", l.name, hist[l.name]) + "</section>";
  }).join("");
}

// Client region -> served region: a stacked bar of the last seconds' rates per client region,
// and a chart of each served region's share over the ten minutes.
function renderFlows(h) {
  const pairs = (h && h.regions) || [];
  if (!pairs.length) return '<div class="empty">no region traffic yet (no [[region]], or no requests)</div>';
  const clients = [...new Set(pairs.map(p => p.client))];
  const served = [...new Set(pairs.map(p => p.served))].sort();
  const cls = r => "c" + Math.max(0, served.indexOf(r)) % 4;
  return clients.map(c => {
    const mine = pairs.filter(p => p.client === c);
    const now = mine.map(p => ({served: p.served, rps: recent(p.rps, 5) || 0}));
    const total = now.reduce((a, p) => a + p.rps, 0);
    const bar = now.filter(p => p.rps > 0).map(p => '<span class="seg ' + cls(p.served) +
      '" data-width="' + (p.rps / total * 100).toFixed(1) + '"></span>').join("");
    const legend = now.map(p => '<span class="flow ' + cls(p.served) + '" data-client="' + esc(c) +
      '" data-served="' + esc(p.served) + '" data-rps="' + p.rps.toFixed(2) + '">→ ' + esc(p.served) +
      " " + p.rps.toFixed(1) + "/s</span>").join("");
    return '<div class="flowrow" data-client="' + esc(c) + '"><div class="from"><span class="name">' +
      esc(c) + '</span><span class="sub">' + total.toFixed(1) + ' req/s</span></div><div class="bar">' + bar +
      '</div><div class="legend">' + legend + "</div>" +
      chart("flow:" + c, "Served from, requests/s", mine.map(p => ({values: p.rps, cls: cls(p.served),
        label: p.served})), v => num(v, 1)) + "</div>";
  }).join("");
}

function renderPools(s, hist) {
  return s.pools.map(p => {
    const up = p.backends.filter(b => b.state === "up").length;
    const standby = p.backends.filter(b => b.state === "standby").length;
    const h = hist[p.name];
    const rates = Object.fromEntries(((h && h.backends) || []).map(b => [b.address, b]));
    // A tcp pool's traffic is connections: open ones, a rate and a total.
    const tcp = p.protocol === "tcp";
    const rows = p.backends.map(b => {
      const r = rates[b.address];
      const rate = !r ? "–" : (tcp ? r.conns_per_s : r.rps).toFixed(1);
      const count = tcp ? b.connections : b.requests;
      const check = b.last_check ? (b.last_check.ok
        ? "ok · " + b.last_check.latency_ms.toFixed(1) + " ms"
        : '<span class="err">' + esc(b.last_check.error || "failed") + "</span>") +
        '<div class="why">' + esc(ago(b.last_check.at)) + "</div>" : "–";
      const action = b.state === "draining" ? "enable" : "drain";
      const demo = (s.demo || []).find(d => d.address === b.address);
      const demoAction = demo && (demo.alive ? "kill" : "revive");
      const demoButton = !demo ? "" : ' <button data-demo="' + esc(demo.name) + '" data-action="' +
        demoAction + '">' + demoAction + " " + esc(demo.name) + "</button>";
      const named = b.name && b.name !== b.address;
      return '<tr data-backend="' + esc(b.address) + '" data-state="' + esc(b.state) + '">' +
        '<td><div class="name" title="' + esc(b.address) + '">' + esc(b.name || b.address) + "</div>" +
        (named ? '<div class="why addr">' + esc(b.address) + "</div>" : "") + "</td>" +
        '<td><span class="state s-' + esc(b.state) + '"><span class="dot"></span>' + esc(b.state) + "</span>" +
        (b.role ? ' <span class="role" data-role="' + esc(b.role) + '">' + esc(b.role) + "</span>" : "") +
        '<div class="why" title="' + esc(b.why || "") + '">' + (b.since ? esc(ago(b.since)) + " · " : "") + esc(b.why || "") + "</div></td>" +
        "<td>" + esc(b.region || "–") + "</td>" +
        '<td class="num">' + b.weight + "</td>" +
        '<td class="num">' + b.inflight + "</td>" +
        '<td class="num">' + rate + "</td>" +
        '<td class="num">' + count + "</td>" +
        (tcp ? "" : '<td class="num' + (b.errors ? " err" : "") + '">' + b.errors + "</td>") +
        "<td>" + check + "</td>" +
        '<td class="actions"><button data-pool="' + esc(p.name) + '" data-address="' + esc(b.address) +
        '" data-action="' + action + '">' + action + "</button>" + demoButton + "</td></tr>";
    }).join("");
    return '<section class="pool" data-pool="' + esc(p.name) + '"><h2>' + esc(p.name) + '<span class="sub">' + up + " of " +
      p.backends.length + " up" + (standby ? " · " + standby + " standby" : "") +
      (tcp ? " · tcp" : "") + (p.health_check ? " · active checks" : "") + (p.role ? " · wants " + esc(p.role) : "") +
      (p.fail_open_active ? ' · <span class="err">FAIL-OPEN</span>' : "") + "</span></h2>" + dnsNames(p) +
      charts("pool", p.name, h) +
      '<div class="scroll"><table><thead><tr><th>Backend</th><th>State</th><th>Region</th><th class=num>Weight</th>' +
      (tcp ? "<th class=num>Open</th><th class=num>Conn/s</th><th class=num>Connections</th>"
           : "<th class=num>In flight</th><th class=num>Req/s</th><th class=num>Requests</th><th class=num>5xx</th>") +
      "<th>Last check</th><th></th></tr></thead><tbody>" + rows +
      "</tbody></table></div></section>";
  }).join("");
}

function renderReloads(s) {
  const all = s.reloads || (s.last_reload ? [s.last_reload] : []);
  if (!all.length) return '<div class="empty">no reload since start</div>';
  return '<div class="scroll"><table class="reloads"><thead><tr><th>When</th><th>Trigger</th><th>Result</th>' +
    "<th>Changes</th><th class=num>Took</th></tr></thead><tbody>" + all.map(r =>
    '<tr data-reload-ok="' + r.ok + '"><td>' + esc(ago(r.at)) + "</td><td>" + esc(r.trigger) + "</td><td>" +
    (r.ok ? '<span class="s-up">ok</span>' : '<span class="err">failed</span>') +
    '</td><td><div class="msg">' + esc(r.message) + '</div></td><td class="num">' + r.took_ms.toFixed(1) +
    " ms</td></tr>").join("") + "</tbody></table></div>";
}

function render(s) {
  const hist = {listeners: byName(historyDoc && historyDoc.listeners), pools: byName(historyDoc && historyDoc.pools)};
  document.getElementById("meta").textContent =
    "v" + s.version + " · up " + uptime(s.uptime_seconds);
  const r = s.last_reload;
  document.getElementById("reload").innerHTML = !r || r.ok ? ""
    : '<div class="banner error"><b>Last reload failed</b> ' + esc(ago(r.at)) + " (" + esc(r.trigger) +
      "); the previous config keeps serving.\n" + esc(r.message) + "</div>";
  document.getElementById("listeners").innerHTML = renderListeners(s, hist.listeners);
  document.getElementById("flows").innerHTML = renderFlows(historyDoc);
  document.getElementById("pools").innerHTML = renderPools(s, hist.pools);
  document.getElementById("reloads").innerHTML = renderReloads(s);
  // Widths from data attributes: the policy allows no inline style markup, but the CSSOM may.
  for (const seg of document.querySelectorAll(".seg[data-width]")) seg.style.width = seg.dataset.width + "%";
}
// A pool's DNS names (dns / srv backends): each with its current addresses and last error.
function dnsNames(p) {
  return (p.dns || []).map(n => '<div class="why" data-dns="' + esc(n.name) + '">' + esc(n.kind) + " " +
    esc(n.name) + " → " + esc(n.addresses.join(", ") || "no addresses yet") +
    (n.resolved_at ? " · resolved " + esc(ago(n.resolved_at)) : "") +
    (n.error ? ' · <span class="err">' + esc(n.error) + "</span>" : "") + "</div>").join("");
}
// Every button of the pools, drawn and redrawn, through one listener.
document.getElementById("pools").addEventListener("click", e => {
  const button = e.target.closest("button[data-action]");
  if (!button) return;
  const d = button.dataset;
  if (d.demo !== undefined) demoAct(d.demo, d.action);
  else act(d.pool, d.address, d.action);
});
async function refresh() {
  try {
    const [s, h] = await Promise.all([api("GET", "/api/v1/status"),
                                      api("GET", "/api/v1/history").catch(() => null)]);
    if (h) historyDoc = h;
    render(s);
    document.getElementById("foot").textContent = "Updated " + new Date().toLocaleTimeString() +
      " · refreshes every 2 s";
  } catch (e) {
    document.getElementById("meta").innerHTML = '<span class="err">cannot reach Fulcrum: ' + esc(e.message) + "</span>";
  }
}
refresh();
setInterval(refresh, 2000);
