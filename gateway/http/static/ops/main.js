// Ops page: a snapshot of every vehicle, then live updates over one WebSocket; started routes,
// exceptions, KPIs and captured messages polled from the API.
import { createMap, fitTo, onUserMove, showTiles } from "../map/basemap.js";
import { apiKey, api, liveUrl } from "./api.js";
import { VanCard } from "./card.js";
import { Legend } from "./legend.js";
import {
  Alerts, VehicleList, addEvent, csvLink, deliverySearch, refreshKpis, refreshMessages, showFleet,
} from "./panels.js";
import { RouteLayer } from "./routes.js";
import { VanLayer } from "./vans.js";

const FIT_EVERY_MS = 10_000;
const ROUTES_AFTER_MS = 2_000; // a stop's state changed: the routes are read again this soon
const ROUTE_CHANGES = new Set([
  "route.started", "route.finished", "delivery.arriving", "delivery.delivered", "delivery.failed",
  "delivery.cancelled", "delivery.rescheduled",
]);
const LATE_EVENTS = new Set(["delivery.late_risk"]);
const LATE_OVER = new Set([
  "delivery.late_risk_cleared", "delivery.delivered", "delivery.failed", "delivery.cancelled",
  "delivery.returned", "delivery.rescheduled",
]);

const map = createMap(document.getElementById("map"));
map.setView([20, 0], 2);
const routes = new RouteLayer(map);
const legend = new Legend(map);
const vans = new VanLayer(map, select);
const list = new VehicleList(vans, select);
const card = new VanCard(map, vans, routes, () => select(null));
const lateByDelivery = new Map(); // delivery -> vehicle, from this page's events
const alerts = new Alerts(() => updateLate());

// A van picked on the map or in the list (null: none): its card, its route strong, the
// other routes faint.
function select(id) {
  vans.select(id);
  routes.highlight(id);
  if (id) card.show(id); else card.hide();
  list.dirty = true;
  list.render();
}
map.on("click", () => { if (vans.selected) select(null); });

function updateLate() {
  const late = new Set(lateByDelivery.values());
  for (const a of alerts.open()) if (a.kind === "delivery.late_risk" && a.vehicle) late.add(a.vehicle);
  vans.setLate(late);
  list.dirty = true;
}

// The view follows the fleet (re-fitted now and then) until the user pans or zooms.
let userMoved = false;
let lastFit = -Infinity;
onUserMove(map, () => { userMoved = true; });
function autoFit() {
  if (userMoved || !vans.vans.size || performance.now() - lastFit < FIT_EVERY_MS) return;
  const live = [...vans.vans.values()].filter(v => v.lat != null && v.status !== "offline");
  fitTo(map, live.concat(routes.allStops()), 16, 40, legend.width());
  lastFit = performance.now();
}
routes.onChange = () => {
  legend.render([...routes.routes.values()]);
  lastFit = -Infinity;
  autoFit();
};

function update(v) {
  vans.update(v);
  list.dirty = true;
}

function onEvent(ev) {
  addEvent(ev);
  if (LATE_EVENTS.has(ev.type) && ev.delivery && ev.vehicle) lateByDelivery.set(ev.delivery, ev.vehicle);
  if (LATE_OVER.has(ev.type) && ev.delivery) lateByDelivery.delete(ev.delivery);
  if (LATE_EVENTS.has(ev.type) || LATE_OVER.has(ev.type)) updateLate();
  if (ROUTE_CHANGES.has(ev.type)) soonRefreshRoutes();
}

let routeTimer = null;
function soonRefreshRoutes() {
  if (routeTimer == null) routeTimer = setTimeout(() => { routeTimer = null; refreshRoutes(); }, ROUTES_AFTER_MS);
}

function connect() {
  if (!apiKey()) { document.getElementById("login").hidden = false; return; }
  const ws = new WebSocket(liveUrl());
  const conn = document.getElementById("conn");
  ws.onopen = () => { conn.textContent = "live"; conn.className = "pill on"; };
  ws.onclose = () => { conn.textContent = "reconnecting"; conn.className = "pill off"; setTimeout(connect, 2000); };
  ws.onmessage = msg => {
    const m = JSON.parse(msg.data);
    if (m.type === "snapshot") {
      vans.clear();
      m.vehicles.forEach(update);
      document.getElementById("events").replaceChildren();
      (m.config.events || []).forEach(onEvent);
      showFleet(m.config.fleet);
      showTiles(map, m.config.tile_url);
      vans.flush();
      autoFit();
    } else if (m.type === "positions") {
      m.vehicles.forEach(update);
      autoFit();
    } else if (m.type === "event") {
      onEvent(m.event);
      if (m.event.type.startsWith("delivery.") || m.event.type.startsWith("route.")) list.dirty = true;
    } else if (m.type === "fleet") {
      showFleet(m.fleet);
    } else if (m.type === "alert") {
      alerts.set(m.alert);
    }
    window.opsState = { vehicles: vans.vans.size, messages: (window.opsState?.messages || 0) + 1 };
  };
}

const quietly = fn => () => fn().catch(() => { /* tried again on the next round */ });
const refreshRoutes = quietly(() => routes.refresh(api));
const polls = [
  [refreshRoutes, 20_000], [quietly(refreshKpis), 30_000], [quietly(refreshMessages), 5_000],
];
function startPolling() {
  quietly(() => alerts.refresh())();
  for (const [fn, every] of polls) { fn(); setInterval(fn, every); }
}

document.getElementById("loginform").addEventListener("submit", e => {
  e.preventDefault();
  localStorage.setItem("apiKey", document.getElementById("keyinput").value);
  document.getElementById("login").hidden = true;
  connect();
  startPolling();
});
deliverySearch();
csvLink();
connect();
if (apiKey()) startPolling();
window.opsMap = { map, vans, routes };
