// Started routes on the ops map: each route its own colour (its planned path, or straight
// lines between its stops when it has none), its stops numbered in planned order and filled
// by their state (pending, arriving, delivered, failed) with a glyph beside the number.
/* global L */
import { STOP, routeColor, stopState } from "./colors.js";

const STOPS_FROM_ZOOM = 12; // below this, stops are shown only when there are few
const FEW_STOPS = 400;
const NUMBERS_FROM_ZOOM = 15; // below this, a stop is a small dot (numbers would pile up)
const FEW_NUMBERED = 40; // ... unless there are this few stops

const escapeHtml = s => String(s).replace(/[&<>"']/g, c => `&#${c.charCodeAt(0)};`);

export class RouteLayer {
  constructor(map) {
    this.map = map;
    this.routes = new Map(); // id -> {id, name, vehicle, color, path, stops}
    this.colors = new Map(); // route id -> colour, kept while the page is open
    this.lines = L.layerGroup().addTo(map);
    this.stops = L.layerGroup().addTo(map);
    this.onChange = () => {};
    this.highlighted = null; // a vehicle: its route drawn strong, the others faint
    map.on("zoomend", () => this.showStops());
  }

  colorOf(id) {
    if (!this.colors.has(id)) this.colors.set(id, routeColor(this.colors.size));
    return this.colors.get(id);
  }

  async refresh(api) {
    const list = (await api("/v1/routes?status=started&limit=500")).routes;
    const seen = new Set();
    for (const summary of list) {
      seen.add(summary.id);
      const [route, dl] = await Promise.all([
        api(`/v1/routes/${summary.id}`), api(`/v1/deliveries?route=${summary.id}&limit=1000`)]);
      const byStop = {};
      for (const d of dl.deliveries) (byStop[d.stop] ||= []).push(d.status);
      this.routes.set(summary.id, {
        id: summary.id,
        name: route.external_id || summary.id,
        vehicle: route.vehicle,
        driver: route.driver ? route.driver.name : null,
        color: this.colorOf(summary.id),
        path: route.path,
        stops: route.stops.map((s, i) => ({
          id: s.id, n: i + 1, lat: s.location.lat, lon: s.location.lon, address: s.address, window: s.window,
          state: stopState(byStop[s.id] || []),
        })),
      });
    }
    for (const id of [...this.routes.keys()]) if (!seen.has(id)) this.routes.delete(id);
    this.render();
    this.onChange();
  }

  ofVehicle(vehicle) {
    return [...this.routes.values()].find(r => r.vehicle === vehicle) || null;
  }

  highlight(vehicle) {
    this.highlighted = vehicle;
    this.render();
  }

  allStops() {
    return [...this.routes.values()].flatMap(r => r.stops);
  }

  render() {
    this.lines.clearLayers();
    this.stops.clearLayers();
    const mine = this.highlighted && this.ofVehicle(this.highlighted);
    for (const r of this.routes.values()) {
      const faint = mine && r !== mine;
      const line = r.path && r.path.length > 1 ? r.path : r.stops.map(s => [s.lat, s.lon]);
      if (line.length > 1) {
        const l = L.polyline(line, {
          color: r.color, weight: r === mine ? 7 : 4, opacity: faint ? 0.15 : 0.75,
          dashArray: r.path ? null : "6 6", className: "routeline", interactive: false,
        }).addTo(this.lines);
        if (r === mine) l.bringToFront();
      }
      for (const s of r.stops) {
        const st = STOP[s.state];
        const html = `<div class="stopmark st-${s.state}" data-route="${escapeHtml(r.id)}" data-n="${s.n}" ` +
          `data-state="${s.state}" style="border-color:${r.color};background:${st.color};color:${st.text}">` +
          `${s.n}${st.glyph ? `<i>${st.glyph}</i>` : ""}</div>`;
        L.marker([s.lat, s.lon], {
          icon: L.divIcon({ html, className: faint ? "stop faint" : "stop", iconSize: [22, 22], iconAnchor: [11, 11] }),
          keyboard: false, zIndexOffset: r === mine ? 500 : 0,
        }).bindTooltip(`${escapeHtml(r.name)} stop ${s.n}: ${escapeHtml(s.address || "")} (${st.label})`, { direction: "top" })
          .addTo(this.stops);
      }
    }
    this.showStops();
  }

  showStops() {
    const zoom = this.map.getZoom();
    const n = this.allStops().length;
    this.map.getContainer().classList.toggle("stops-small", zoom < NUMBERS_FROM_ZOOM && n > FEW_NUMBERED);
    const want = zoom >= STOPS_FROM_ZOOM || n <= FEW_STOPS;
    if (want && !this.map.hasLayer(this.stops)) this.stops.addTo(this.map);
    if (!want && this.map.hasLayer(this.stops)) this.stops.remove();
  }
}
