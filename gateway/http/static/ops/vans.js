// Vans on the ops map: one marker each, coloured by status, an arrow along its heading, its
// name beside it. Nearby vans gather into clusters (a ring shows their statuses' shares); the
// names that would overlap another name, van or cluster are hidden, the selected van's last.
/* global L */
import { arrowDot } from "../map/basemap.js";
import { STATUS, vanStatus } from "./colors.js";

const FLUSH_MS = 250; // positions arrive in bursts; the map is redrawn at most this often
const MAX_LABELLED = 600; // more vans than this in view: only the selected one is named
const HEADING_STEP = 5; // degrees: a smaller turn does not redraw the icon

const escapeHtml = s => String(s).replace(/[&<>"']/g, c => `&#${c.charCodeAt(0)};`);

export class VanLayer {
  constructor(map, onSelect) {
    this.map = map;
    this.vans = new Map(); // id -> latest live record
    this.markers = new Map(); // id -> L.Marker
    this.late = new Set(); // vans with a delivery at late risk
    this.pending = new Set();
    this.selected = null;
    this.group = L.markerClusterGroup({
      maxClusterRadius: 36, // px: a little over a cluster's icon; closer vans' names are hidden instead
      disableClusteringAtZoom: 17,
      showCoverageOnHover: false,
      spiderfyOnMaxZoom: true,
      chunkedLoading: true,
      iconCreateFunction: cluster => clusterIcon(cluster),
    }).addTo(map);
    this.group.on("click", e => onSelect(e.layer.vanId));
    this.group.on("animationend", () => this.declutter());
    map.on("moveend zoomend", () => this.declutter());
    setInterval(() => this.flush(), FLUSH_MS);
  }

  update(v) {
    this.vans.set(v.id, v);
    this.pending.add(v.id);
  }

  clear() {
    this.group.clearLayers();
    this.markers.clear();
    this.vans.clear();
    this.pending.clear();
  }

  setLate(ids) {
    const changed = new Set([...ids].filter(id => !this.late.has(id)).concat([...this.late].filter(id => !ids.has(id))));
    this.late = ids;
    for (const id of changed) if (this.vans.has(id)) this.pending.add(id);
  }

  statusOf(v) {
    return vanStatus(v, this.late.has(v.id));
  }

  select(id) {
    const before = this.selected;
    this.selected = id;
    for (const x of [before, id]) if (x && this.vans.has(x)) this.pending.add(x);
    this.flush();
    const m = this.markers.get(id);
    if (m) this.group.zoomToShowLayer(m, () => this.map.panTo(m.getLatLng()));
  }

  flush() {
    if (!this.pending.size) return;
    const added = [];
    let restyled = false;
    for (const id of this.pending) {
      const v = this.vans.get(id);
      if (!v || v.lat == null || Number.isNaN(v.lat)) continue;
      const look = this.look(v);
      let m = this.markers.get(id);
      if (!m) {
        m = L.marker([v.lat, v.lon], { icon: this.icon(v, look), keyboard: false, zIndexOffset: 1000 });
        m.vanId = id;
        m.look = look;
        this.markers.set(id, m);
        added.push(m);
        continue;
      }
      const ll = m.getLatLng();
      if (ll.lat !== v.lat || ll.lng !== v.lon) m.setLatLng([v.lat, v.lon]);
      if (m.look !== look) {
        restyled ||= m.look.split("|")[0] !== look.split("|")[0];
        m.look = look;
        m.setIcon(this.icon(v, look));
        m.setZIndexOffset(id === this.selected ? 2000 : 1000);
      }
    }
    this.pending.clear();
    if (added.length) this.group.addLayers(added);
    if (restyled) this.group.refreshClusters();
    this.declutter();
  }

  look(v) {
    const h = v.heading == null || v.status === "offline" ? "-" : Math.round(v.heading / HEADING_STEP) * HEADING_STEP;
    return `${this.statusOf(v)}|${h}|${v.id === this.selected ? 1 : 0}`;
  }

  icon(v, look) {
    const [st, h, sel] = look.split("|");
    const s = STATUS[st];
    const heading = h === "-" ? null : Number(h);
    const id = escapeHtml(v.id);
    const html = `<div class="vanmark${sel === "1" ? " selected" : ""}" data-id="${id}" data-status="${st}">` +
      arrowDot(s.color, heading, { size: sel === "1" ? 32 : 26, glyph: s.glyph || "" }) +
      `<span class="vlabel">${id}</span></div>`;
    const size = sel === "1" ? 32 : 26;
    return L.divIcon({ html, className: "van", iconSize: [size, size], iconAnchor: [size / 2, size / 2] });
  }

  // Hide each name that overlaps a van, a cluster or a name placed before it.
  declutter() {
    const shown = [];
    for (const [id, m] of this.markers) {
      const el = m._icon; // set while the marker itself (not its cluster) is on the map
      if (el && el.isConnected) shown.push([id, el]);
    }
    const pane = this.map.getPane("markerPane");
    const obstacles = [...pane.querySelectorAll(".vancluster, .arrowdot")].map(e => e.getBoundingClientRect());
    const rank = ([id]) => (id === this.selected ? 0 : this.late.has(id) ? 1 : 2);
    shown.sort((a, b) => rank(a) - rank(b) || a[0].localeCompare(b[0]));
    const placed = [];
    const overlaps = (r, q) => r.left < q.right && q.left < r.right && r.top < q.bottom && q.top < r.bottom;
    for (const [id, el] of shown) {
      const label = el.querySelector(".vlabel");
      if (!label) continue;
      let ok = id === this.selected || shown.length <= MAX_LABELLED;
      if (ok && id !== this.selected) {
        const r = label.getBoundingClientRect();
        ok = !obstacles.some(q => overlaps(r, q)) && !placed.some(q => overlaps(r, q));
        if (ok) placed.push(r);
      } else if (ok) {
        placed.push(label.getBoundingClientRect());
      }
      label.classList.toggle("hide", !ok);
    }
  }
}

// A cluster: its count in a ring whose arcs are the shares of its vans' statuses.
function clusterIcon(cluster) {
  const counts = {};
  const children = cluster.getAllChildMarkers();
  for (const m of children) {
    const st = m.look.split("|")[0];
    counts[st] = (counts[st] || 0) + 1;
  }
  let at = 0;
  const arcs = [];
  for (const st of ["late", "moving", "idling", "stopped", "offline"]) {
    if (!counts[st]) continue;
    const end = at + (counts[st] / children.length) * 360;
    arcs.push(`${STATUS[st].color} ${at}deg ${end}deg`);
    at = end;
  }
  const n = children.length;
  const size = n < 10 ? 28 : n < 100 ? 32 : 36;
  const title = Object.entries(counts).map(([st, c]) => `${c} ${STATUS[st].label}`).join(", ");
  return L.divIcon({
    html: `<div class="vancluster" style="background:conic-gradient(${arcs.join(",")})" title="${title}">` +
      `<span>${n}</span></div>`,
    className: "vancluster-icon",
    iconSize: [size, size],
  });
}
