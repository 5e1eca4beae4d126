// The map's legend: van statuses, stop states, and each started route's colour. Folds away
// (a <details>), folded from the start on a narrow screen.
/* global L */
import { arrowDot } from "../map/basemap.js";
import { STATUS, STOP } from "./colors.js";

const ROUTES_LISTED = 30; // more routes than this: the first ones and a count
const ROUTES_OPEN = 6; // more than this: the list starts folded

const escapeHtml = s => String(s).replace(/[&<>"']/g, c => `&#${c.charCodeAt(0)};`);

export class Legend {
  constructor(map) {
    const control = L.control({ position: "bottomleft" });
    control.onAdd = () => {
      const el = L.DomUtil.create("details", "legend");
      el.id = "legend";
      const wide = window.matchMedia("(min-width: 760px)");
      el.open = wide.matches;
      wide.addEventListener("change", () => { el.open = wide.matches; });
      L.DomEvent.disableClickPropagation(el);
      L.DomEvent.disableScrollPropagation(el);
      this.el = el;
      return el;
    };
    control.addTo(map);
    this.render([]);
  }

  // How much of the map's left side the legend covers (nothing while folded, or where the
  // map is narrow).
  width() {
    if (!this.el.open) return 0;
    const map = this.el.parentElement.closest(".leaflet-container");
    const w = this.el.getBoundingClientRect().width;
    return map && map.clientWidth > 3 * w ? w : 0;
  }

  render(routes) {
    const vans = Object.entries(STATUS).map(([st, s]) =>
      `<li data-status="${st}">${arrowDot(s.color, st === "moving" ? 45 : null, { size: 18, glyph: s.glyph || "" })} ${s.label}</li>`);
    const stops = Object.entries(STOP).map(([st, s]) =>
      `<li data-state="${st}"><span class="stopmark" style="background:${s.color};color:${s.text};border-color:#1d2733">` +
      `${s.glyph || "1"}</span> ${s.label}</li>`);
    const shown = routes.slice(0, ROUTES_LISTED).map(r =>
      `<li class="route" data-route="${escapeHtml(r.id)}" title="${escapeHtml(r.name)}">` +
      `<span class="swatch" style="background:${r.color}"></span>` +
      `<span class="name">${escapeHtml(r.vehicle || "")} <small>${escapeHtml(r.name)}</small></span></li>`);
    if (routes.length > ROUTES_LISTED) shown.push(`<li><small>and ${routes.length - ROUTES_LISTED} more</small></li>`);
    const wasOpen = this.el.querySelector("details.routes")?.open;
    const open = wasOpen ?? routes.length <= ROUTES_OPEN;
    this.el.innerHTML = "<summary>Legend</summary>" +
      `<h3>Vans</h3><ul>${vans.join("")}</ul>` +
      "<p class=\"hint\">Arrow: heading. Numbered ring: vans close together.</p>" +
      `<h3>Stops (in order)</h3><ul>${stops.join("")}</ul>` +
      (shown.length ? `<details class="routes"${open ? " open" : ""}><summary>Routes (${routes.length})</summary>` +
        `<ul>${shown.join("")}</ul></details>` : "");
    this.el.querySelector("summary").setAttribute("aria-label", "map legend");
  }
}
