"use strict";
// Ops page: a snapshot of every vehicle, then live updates over one WebSocket.

const COLORS = { moving: "#2e7dd7", idling: "#d9534f", stopped: "#e0a100", offline: "#8a949e" };
const vehicles = new Map();
let selected = null;
// The view follows the fleet (re-fitted now and then) until the user pans or zooms.
let userMoved = false;
let lastFit = -Infinity;
function autoFit() {
  if (userMoved || !vehicles.size || performance.now() - lastFit < 10000) return;
  const stops = [...routes.values()].flatMap(r => r.stops);
  map.fit([...vehicles.values()].filter(v => v.lat != null && v.status !== "offline").concat(stops), 16);
  lastFit = performance.now();
}
for (const ev of ["mousedown", "wheel"]) {
  document.getElementById("map").addEventListener(ev, () => { userMoved = true; });
}

function apiKey() {
  const m = location.hash.match(/key=([^&]+)/);
  if (m) { localStorage.setItem("apiKey", decodeURIComponent(m[1])); history.replaceState(null, "", location.pathname); }
  return localStorage.getItem("apiKey");
}

const routes = new Map();  // started routes: id -> {path, stops: [{lat, lon, status}]}
const STOP_COLORS = { delivered: "#2e9d5b", failed: "#b3472f", arriving: "#2e7dd7" };

const map = new SlippyMap(document.getElementById("map"), ctx => {
  for (const r of routes.values()) {
    if (r.path && r.path.length > 1) {
      ctx.beginPath();
      r.path.forEach(([lat, lon], i) => { const p = map.toScreen(lat, lon); i ? ctx.lineTo(p.x, p.y) : ctx.moveTo(p.x, p.y); });
      ctx.strokeStyle = "rgba(46,125,215,.35)"; ctx.lineWidth = 3; ctx.stroke();
    }
    for (const s of r.stops) {
      const p = map.toScreen(s.lat, s.lon);
      ctx.beginPath(); ctx.rect(p.x - 3.5, p.y - 3.5, 7, 7);
      ctx.fillStyle = STOP_COLORS[s.status] || "#fff"; ctx.fill();
      ctx.strokeStyle = "#1d2733"; ctx.lineWidth = 1; ctx.stroke();
    }
  }
  for (const v of vehicles.values()) {
    if (v.lat == null || Number.isNaN(v.lat)) continue;
    const p = map.toScreen(v.lat, v.lon);
    if (p.x < -20 || p.y < -20 || p.x > map.w + 20 || p.y > map.h + 20) continue;
    ctx.beginPath();
    ctx.arc(p.x, p.y, v.id === selected ? 8 : 5.5, 0, 2 * Math.PI);
    ctx.fillStyle = COLORS[v.status] || "#444";
    ctx.fill();
    ctx.strokeStyle = "#fff"; ctx.lineWidth = 1.5; ctx.stroke();
    if (v.heading != null && v.status === "moving") {
      const a = (v.heading - 90) * Math.PI / 180;
      ctx.beginPath(); ctx.moveTo(p.x, p.y); ctx.lineTo(p.x + Math.cos(a) * 12, p.y + Math.sin(a) * 12);
      ctx.strokeStyle = COLORS.moving; ctx.lineWidth = 2; ctx.stroke();
    }
    if (map.zoom >= 14 || v.id === selected) {
      ctx.fillStyle = "#1d2733"; ctx.font = "11px system-ui"; ctx.fillText(v.id, p.x + 8, p.y - 6);
    }
  }
});

let listDirty = true;
function renderList() {
  if (!listDirty) return;
  listDirty = false;
  const f = document.getElementById("filter").value.toLowerCase();
  const counts = { moving: 0, idling: 0, stopped: 0, offline: 0 };
  const rows = [];
  for (const v of [...vehicles.values()].sort((a, b) => a.id.localeCompare(b.id))) {
    counts[v.status] = (counts[v.status] || 0) + 1;
    if (f && !v.id.toLowerCase().includes(f)) continue;
    const speed = v.speed != null ? `${(v.speed * 3.6).toFixed(0)} km/h` : "";
    const fuel = typeof v.fuel === "number" ? ` fuel ${v.fuel.toFixed(0)}%` : "";
    const ign = v.ignition === true ? " ignition on" : v.ignition === false ? " ignition off" : "";
    rows.push(`<li data-id="${v.id}"><span class="dot ${v.status}"></span>${v.id} <small>${v.status} ${speed}${ign}${fuel}</small></li>`);
  }
  document.getElementById("vehicles").innerHTML = rows.join("");
  document.getElementById("counts").textContent =
    `${vehicles.size} vehicles: ${counts.moving} moving, ${counts.idling} idling, ${counts.stopped} stopped, ${counts.offline} offline`;
}
setInterval(renderList, 500);
document.getElementById("filter").addEventListener("input", () => { listDirty = true; renderList(); });
document.getElementById("vehicles").addEventListener("click", e => {
  const li = e.target.closest("li"); if (!li) return;
  selected = li.dataset.id; const v = vehicles.get(selected);
  if (v) { map.center = { lat: v.lat, lon: v.lon }; map.zoom = Math.max(map.zoom, 15); map.dirty = true; }
});

function addEvent(ev) {
  const ul = document.getElementById("events");
  const li = document.createElement("li");
  const t = new Date(ev.ts * 1000).toLocaleTimeString();
  li.innerHTML = `<span class="t">${t}</span>`;
  li.append(`${ev.type} ${ev.vehicle || ""} ${ev.delivery || ""}`);
  li.dataset.type = ev.type;
  ul.prepend(li);
  while (ul.children.length > 200) ul.lastChild.remove();
}

function update(v) { vehicles.set(v.id, v); listDirty = true; map.dirty = true; }

// The demo's simulated fleet (null outside the demo): a banner once it has stopped.
function showFleet(f) {
  const banner = document.getElementById("fleetbanner");
  banner.hidden = !(f && f.state === "stopped");
  if (banner.hidden) return;
  const code = f.exit_code == null ? "" : ` (exit code ${f.exit_code})`;
  const detail = f.detail ? `: ${f.detail.replace(/\.$/, "")}` : "";
  banner.textContent = `Simulated fleet stopped${code}${detail}. ` +
    "The gateway keeps running; run the demo again to bring the vans back.";
}

function connect() {
  const key = apiKey();
  if (!key) { document.getElementById("login").hidden = false; return; }
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/v1/ops/live?key=${encodeURIComponent(key)}`);
  const conn = document.getElementById("conn");
  ws.onopen = () => { conn.textContent = "live"; conn.className = "pill on"; };
  ws.onclose = () => { conn.textContent = "reconnecting"; conn.className = "pill off"; setTimeout(connect, 2000); };
  ws.onmessage = msg => {
    const m = JSON.parse(msg.data);
    if (m.type === "snapshot") {
      vehicles.clear();
      m.vehicles.forEach(update);
      document.getElementById("events").innerHTML = "";
      (m.config.events || []).forEach(addEvent);
      showFleet(m.config.fleet);
      if (m.config && m.config.tile_url && !map.tileUrl) {
        map.tileUrl = m.config.tile_url;
        document.getElementById("attribution").textContent = "Map data \u00a9 OpenStreetMap contributors";
      }
      autoFit();
    } else if (m.type === "positions") {
      m.vehicles.forEach(update);
      autoFit();
    } else if (m.type === "event") {
      addEvent(m.event);
      if (m.event.type.startsWith("delivery.") || m.event.type.startsWith("route.")) listDirty = true;
    } else if (m.type === "fleet") {
      showFleet(m.fleet);
    } else if (m.type === "alert") {
      alerts.set(m.alert.id, m.alert);
      renderAlerts();
    }
    window.opsState = { vehicles: vehicles.size, messages: (window.opsState?.messages || 0) + 1 };
  };
}
async function api(path, options = {}) {
  const r = await fetch(path, { ...options, headers: { ...(options.headers || {}), "X-API-Key": apiKey() } });
  if (!r.ok) throw new Error(`${path}: ${r.status}`);
  return r.json();
}

async function refreshRoutes() {
  try {
    const list = (await api("/v1/routes?status=started&limit=500")).routes;
    const seen = new Set();
    for (const summary of list) {
      seen.add(summary.id);
      const [route, dl] = await Promise.all([
        api(`/v1/routes/${summary.id}`), api(`/v1/deliveries?route=${summary.id}&limit=1000`)]);
      const byStop = {};
      for (const d of dl.deliveries) byStop[d.stop] = d.status;
      routes.set(summary.id, {
        path: route.path,
        stops: route.stops.map(s => ({ lat: s.location.lat, lon: s.location.lon, status: byStop[s.id] })),
      });
    }
    for (const id of [...routes.keys()]) if (!seen.has(id)) routes.delete(id);
    map.dirty = true;
  } catch (e) { /* the next refresh tries again */ }
}

const pct = x => x == null ? "-" : `${Math.round(x * 100)}%`;
const mins = s => s == null ? "-" : `${(s / 60).toFixed(1)} min`;
async function refreshKpis() {
  try {
    const k = await api("/v1/kpis");
    document.getElementById("kpis").innerHTML =
      `<b>on time</b>${pct(k.on_time_rate)}<b>delivery</b>${mins(k.avg_delivery_time_s)}` +
      `<b>ETA error</b>${mins(k.eta_error_median_s)}<b>failed</b>${k.failed}` +
      `<b>open exceptions</b>${k.open_exceptions ?? "-"}<b>resolution</b>${mins(k.avg_resolution_s)}`;
  } catch (e) { /* shown again on the next refresh */ }
}

let searchTimer = null;
document.getElementById("dsearch").addEventListener("input", e => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(async () => {
    const q = e.target.value.trim();
    const ul = document.getElementById("deliveries");
    if (!q) { ul.replaceChildren(); return; }
    const found = (await api(`/v1/deliveries?q=${encodeURIComponent(q)}&limit=50`)).deliveries;
    ul.replaceChildren(...found.map(d => {
      const li = document.createElement("li");
      li.dataset.id = d.id;
      const st = document.createElement("span");
      st.className = `st-${d.status}`; st.textContent = d.status;
      li.append(`${d.external_id} ${d.recipient.name} `, st, ` ${d.address}`);
      return li;
    }));
  }, 250);
});

const alerts = new Map();
function renderAlerts() {
  const ul = document.getElementById("alerts");
  const open = [...alerts.values()].filter(a => a.status !== "resolved").sort((a, b) => b.created - a.created);
  document.getElementById("alertcount").textContent = open.length ? `(${open.length})` : "";
  ul.replaceChildren(...open.map(a => {
    const li = document.createElement("li");
    li.className = `sev-${a.severity}`;
    li.dataset.id = a.id;
    li.dataset.status = a.status;
    li.append(`${a.title} `);
    for (const [label, action] of [["ack", "ack"], ["resolve", "resolve"]]) {
      if (action === "ack" && a.status !== "open") continue;
      const b = document.createElement("button");
      b.textContent = label;
      b.dataset.action = action;
      b.onclick = async () => {
        const updated = await api(`/v1/alerts/${a.id}/${action}`, { method: "POST",
          headers: { "Content-Type": "application/json" }, body: JSON.stringify({ by: "ops page" }) });
        alerts.set(updated.id || a.id, updated.alert || updated);
        renderAlerts();
      };
      li.append(b);
    }
    return li;
  }));
}
async function refreshAlerts() {
  try {
    const list = await api("/v1/alerts");
    alerts.clear();
    for (const a of (list.alerts || [])) alerts.set(a.id, a);
    renderAlerts();
  } catch (e) { /* no alerts endpoint, or offline */ }
}

document.getElementById("csv").addEventListener("click", async e => {
  e.preventDefault();
  const r = await fetch("/v1/deliveries.csv", { headers: { "X-API-Key": apiKey() } });
  const url = URL.createObjectURL(await r.blob());
  const a = document.createElement("a"); a.href = url; a.download = "deliveries.csv"; a.click();
  URL.revokeObjectURL(url);
});

async function refreshMessages() {
  try {
    const m = await api("/v1/capture/messages");
    document.getElementById("msgsection").hidden = false;
    const items = m.sms.map(x => ({ ts: x.ts, text: `SMS to ${x.to}: ${x.body}` }))
      .concat(m.email.map(x => ({ ts: x.ts, text: `Email to ${x.to.join(", ")}: ${x.subject}` })))
      .sort((a, b) => b.ts - a.ts).slice(0, 100);
    document.getElementById("messages").replaceChildren(...items.map(x => {
      const li = document.createElement("li");
      const t = document.createElement("span");
      t.className = "t"; t.textContent = new Date(x.ts * 1000).toLocaleTimeString();
      li.append(t, x.text);
      return li;
    }));
  } catch (e) { /* real providers: nothing captured here */ }
}

function startPolling() {
  refreshRoutes(); refreshKpis(); refreshAlerts(); refreshMessages();
  setInterval(refreshRoutes, 20000);
  setInterval(refreshKpis, 30000);
  setInterval(refreshMessages, 5000);
}

document.getElementById("loginform").addEventListener("submit", e => {
  e.preventDefault();
  localStorage.setItem("apiKey", document.getElementById("keyinput").value);
  document.getElementById("login").hidden = true;
  connect();
  startPolling();
});
connect();
if (apiKey()) startPolling();
