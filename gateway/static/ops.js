"use strict";
// Ops page: a snapshot of every vehicle, then live updates over one WebSocket.

const COLORS = { moving: "#2e7dd7", stopped: "#e0a100", offline: "#8a949e" };
const vehicles = new Map();
let selected = null;
// The view follows the fleet (re-fitted now and then) until the user pans or zooms.
let userMoved = false;
let lastFit = 0;
function autoFit() {
  if (userMoved || !vehicles.size || performance.now() - lastFit < 10000) return;
  map.fit([...vehicles.values()].filter(v => v.lat != null && v.status !== "offline"), 16);
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

const map = new SlippyMap(document.getElementById("map"), ctx => {
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
  const counts = { moving: 0, stopped: 0, offline: 0 };
  const rows = [];
  for (const v of [...vehicles.values()].sort((a, b) => a.id.localeCompare(b.id))) {
    counts[v.status] = (counts[v.status] || 0) + 1;
    if (f && !v.id.toLowerCase().includes(f)) continue;
    const speed = v.speed != null ? `${(v.speed * 3.6).toFixed(0)} km/h` : "";
    rows.push(`<li data-id="${v.id}"><span class="dot ${v.status}"></span>${v.id} <small>${v.status} ${speed}</small></li>`);
  }
  document.getElementById("vehicles").innerHTML = rows.join("");
  document.getElementById("counts").textContent =
    `${vehicles.size} vehicles: ${counts.moving} moving, ${counts.stopped} stopped, ${counts.offline} offline`;
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
    }
    window.opsState = { vehicles: vehicles.size, messages: (window.opsState?.messages || 0) + 1 };
  };
}
document.getElementById("loginform").addEventListener("submit", e => {
  e.preventDefault();
  localStorage.setItem("apiKey", document.getElementById("keyinput").value);
  document.getElementById("login").hidden = true;
  connect();
});
connect();
