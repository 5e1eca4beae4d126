// The customer's map: their address, the van while it drives to them, and the way the van
// has come since this page first showed it (the gateway sends the van's position only while
// it heads to this stop, clear of every other stop, so that is all the page can draw).
/* global L */
import { arrowDot, createMap, fitTo, onUserMove, showTiles } from "../map/basemap.js";

const VAN = "#1f6fd1";
const HOME = "#2e8b57";
const TRAIL_MAX = 2000; // points kept of the van's way here
const TRAIL_MIN_STEP_M = 5; // a smaller move adds no point

export class TrackMap {
  constructor(element) {
    this.map = createMap(element, { zoomControl: true });
    showTiles(this.map, document.querySelector('meta[name="tile-url"]')?.content || "");
    this.trail = L.polyline([], { color: VAN, weight: 4, opacity: 0.55, dashArray: "1 7", lineCap: "round" })
      .addTo(this.map);
    this.home = null;
    this.van = null;
    this.userMoved = false;
    onUserMove(this.map, () => { this.userMoved = true; });
  }

  show(view) {
    const dest = view.destination;
    if (!this.home) {
      this.home = L.marker([dest.lat, dest.lon], {
        icon: L.divIcon({ className: "home", html: homeIcon(), iconSize: [34, 42], iconAnchor: [17, 40] }),
        title: "Delivery address", keyboard: false,
      }).bindTooltip("Your address", { permanent: true, direction: "bottom", offset: [0, 2], className: "maplabel" })
        .addTo(this.map);
      this.map.setView([dest.lat, dest.lon], 15);
    }
    const v = view.vehicle;
    if (v) {
      const icon = L.divIcon({ className: "van", html: `<div class="vanmark">${arrowDot(VAN, v.heading, { size: 34 })}</div>`,
        iconSize: [34, 34], iconAnchor: [17, 17] });
      if (!this.van) {
        this.van = L.marker([v.lat, v.lon], { icon, title: "Delivery van", keyboard: false, zIndexOffset: 1000 })
          .bindTooltip(view.driver ? `${view.driver}'s van` : "Delivery van",
            { permanent: true, direction: "top", offset: [0, -14], className: "maplabel" })
          .addTo(this.map);
      } else {
        this.van.setLatLng([v.lat, v.lon]).setIcon(icon);
        if (!this.map.hasLayer(this.van)) this.van.addTo(this.map);
      }
      this.extendTrail(v);
    } else if (this.van) {
      this.van.remove();
    }
    if (!["out_for_delivery", "arriving"].includes(view.status)) this.trail.setLatLngs([]);
    if (!this.userMoved) {
      const trail = this.trail.getLatLngs().map(p => ({ lat: p.lat, lon: p.lng }));
      fitTo(this.map, [dest, ...trail].concat(v ? [v] : []), 16, 50);
    }
    document.body.dataset.trail = String(this.trail.getLatLngs().length);
  }

  extendTrail(v) {
    const pts = this.trail.getLatLngs();
    const here = L.latLng(v.lat, v.lon);
    if (pts.length && pts[pts.length - 1].distanceTo(here) < TRAIL_MIN_STEP_M) return;
    pts.push(here);
    if (pts.length > TRAIL_MAX) pts.shift();
    this.trail.setLatLngs(pts);
  }

  hide() {
    this.trail.setLatLngs([]);
    if (this.van) this.van.remove();
  }
}

function homeIcon() {
  return `<svg viewBox="0 0 34 42" width="34" height="42" aria-hidden="true">` +
    `<path d="M17 41 C17 41 3 25 3 15 A14 14 0 0 1 31 15 C31 25 17 41 17 41 Z" fill="${HOME}" stroke="#fff" stroke-width="2"/>` +
    `<path d="M10 17 L17 10.5 L24 17 V24 H19.5 V19.5 H14.5 V24 H10 Z" fill="#fff"/></svg>`;
}
