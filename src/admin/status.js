// The status page's script (src/admin/status.html), served as /status.js: the admin
// Content-Security-Policy allows only the server's own scripts, never inline code. Markup is
// built from escaped text and data attributes only; what a button does is read from its data
// attributes by the one click listener below (no inline event handlers: inside one, the
// browser decodes `&#39;` back to a quote, and a name could end the string it sits in).
"use strict";
let token = localStorage.getItem("fulcrum-token") || "";
let previous = null;
const esc = s => String(s ?? "").replace(/[&<>"']/g, c =>
  ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const headers = () => token ? {Authorization: "Bearer " + token} : {};
function ago(t) {
  if (!t) return "";
  const s = Math.max(0, Date.now() / 1000 - t);
  if (s < 60) return Math.round(s) + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  return Math.round(s / 3600) + " h ago";
}
function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}
function uptime(s) {
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
  return (d ? d + "d " : "") + (h ? h + "h " : "") + m + "m " + Math.floor(s % 60) + "s";
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
function render(s) {
  const now = performance.now();
  const rates = {};
  if (previous) {
    const dt = (now - previous.at) / 1000;
    for (const p of previous.data.pools) for (const b of p.backends)
      rates[p.name + "|" + b.address] = {requests: b.requests, connections: b.connections, dt};
  }
  document.getElementById("meta").textContent =
    "v" + s.version + " · up " + uptime(s.uptime_seconds);
  document.getElementById("listeners").innerHTML = s.listeners.map(l =>
    '<span class="pill">' + esc(l.name) + " " + esc(l.bind) + " · " + l.connections + " conn" +
    (l.protocol === "tcp" ? " · tcp · ↑ " + bytes(l.bytes_up) + " ↓ " + bytes(l.bytes_down) : "") +
    (l.tls ? " · TLS: " + l.tls.certs.map(c =>
      esc(c.names.join(", ")) + " (expires " + esc(c.expires.slice(0, 10)) + ", " + c.days_left + " d)").join("; ") : "") +
    "</span>").join(" ");
  const r = s.last_reload;
  document.getElementById("reload").innerHTML = !r ? "" : r.ok
    ? '<div class="banner ok">Last reload ' + esc(ago(r.at)) + " (" + esc(r.trigger) + "): " + esc(r.message) + "</div>"
    : '<div class="banner error"><b>Last reload failed</b> ' + esc(ago(r.at)) + " (" + esc(r.trigger) +
      "); the previous config keeps serving.\n" + esc(r.message) + "</div>";
  document.getElementById("pools").innerHTML = s.pools.map(p => {
    const up = p.backends.filter(b => b.state === "up").length;
    const standby = p.backends.filter(b => b.state === "standby").length;
    // A tcp pool's traffic is connections: open ones, a rate and a total.
    const tcp = p.protocol === "tcp";
    const rows = p.backends.map(b => {
      const prev = rates[p.name + "|" + b.address];
      const count = tcp ? b.connections : b.requests;
      const was = prev && (tcp ? prev.connections : prev.requests);
      const rate = prev && prev.dt > 0 ? ((count - was) / prev.dt).toFixed(1) : "–";
      const check = b.last_check ? (b.last_check.ok
        ? "ok · " + b.last_check.latency_ms.toFixed(1) + " ms"
        : '<span class="err">' + esc(b.last_check.error || "failed") + "</span>") : "–";
      const action = b.state === "draining" ? "enable" : "drain";
      const demo = (s.demo || []).find(d => d.address === b.address);
      const demoAction = demo && (demo.alive ? "kill" : "revive");
      const demoButton = !demo ? "" : ' <button data-demo="' + esc(demo.name) + '" data-action="' +
        demoAction + '">' + demoAction + " " + esc(demo.name) + "</button>";
      return '<tr data-backend="' + esc(b.address) + '" data-state="' + esc(b.state) + '">' +
        '<td class="addr">' + esc(b.address) + "</td>" +
        '<td><span class="state s-' + esc(b.state) + '"><span class="dot"></span>' + esc(b.state) + "</span>" +
        '<div class="why">' + esc(b.why || "") + (b.since ? " · " + esc(ago(b.since)) : "") + "</div></td>" +
        "<td>" + esc(b.region || "–") + "</td>" +
        '<td class="num">' + b.weight + "</td>" +
        '<td class="num">' + b.inflight + "</td>" +
        '<td class="num">' + rate + "</td>" +
        '<td class="num">' + count + "</td>" +
        (tcp ? "" : '<td class="num' + (b.errors ? " err" : "") + '">' + b.errors + "</td>") +
        "<td>" + check + "</td>" +
        '<td><button data-pool="' + esc(p.name) + '" data-address="' + esc(b.address) +
        '" data-action="' + action + '">' + action + "</button>" + demoButton + "</td></tr>";
    }).join("");
    return '<section class="pool"><h2>' + esc(p.name) + '<span class="sub">' + up + " of " +
      p.backends.length + " up" + (standby ? " · " + standby + " standby" : "") +
      (tcp ? " · tcp" : "") + (p.health_check ? " · active checks" : "") +
      (p.fail_open_active ? ' · <span class="err">FAIL-OPEN</span>' : "") + "</span></h2>" + dnsNames(p) +
      "<table><thead><tr><th>Backend</th><th>State</th><th>Region</th><th class=num>Weight</th>" +
      (tcp ? "<th class=num>Open</th><th class=num>Conn/s</th><th class=num>Connections</th>"
           : "<th class=num>In flight</th><th class=num>Req/s</th><th class=num>Requests</th><th class=num>5xx</th>") +
      "<th>Last check</th><th></th></tr></thead><tbody>" + rows +
      "</tbody></table></section>";
  }).join("");
  previous = {at: now, data: s};
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
    render(await api("GET", "/api/v1/status"));
    document.getElementById("foot").textContent = "Updated " + new Date().toLocaleTimeString() +
      " · refreshes every 2 s";
  } catch (e) {
    document.getElementById("meta").innerHTML = '<span class="err">cannot reach Fulcrum: ' + esc(e.message) + "</span>";
  }
}
refresh();
setInterval(refresh, 2000);
