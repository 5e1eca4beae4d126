// The map's legend: van statuses, stop states, and each started route's colour. Folds away
// (a <details>), folded from the start on a narrow screen.
/* global L */
import { arrowDot } from "../map/basemap.js";
import { STATUS, STOP } from "./colors.js";

const ROUTES_LISTED = 12;

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

  render(routes) {
    const vans = Object.entries(STATUS).map(([st, s]) =>
      `<li data-status="${st}">${arrowDot(s.color, st === "moving" ? 45 : null, { size: 18, glyph: s.glyph || "" })} ${s.label}</li>`);
    const stops = Object.entries(STOP).map(([st, s]) =>
      `<li data-state="${st}"><span class="stopmark" style="background:${s.color};color:${s.text};border-color:#1d2733">` +
      `${s.glyph || "1"}</span> ${s.label}</li>`);
    const shown = routes.slice(0, ROUTES_LISTED).map(r =>
      `<li data-route="${escapeHtml(r.id)}"><span class="swatch" style="background:${r.color}"></span>` +
      `${escapeHtml(r.name)} <small>${escapeHtml(r.vehicle || "")}</small></li>`);
    if (routes.length > ROUTES_LISTED) shown.push(`<li><small>and ${routes.length - ROUTES_LISTED} more</small></li>`);
    this.el.innerHTML = "<summary>Legend</summary>" +
      `<h3>Vans</h3><ul>${vans.join("")}</ul>` +
      "<p class=\"hint\">Arrow: heading. Numbered ring: vans close together.</p>" +
      `<h3>Stops (in order)</h3><ul>${stops.join("")}</ul>` +
      (shown.length ? `<h3>Routes</h3><ul>${shown.join("")}</ul>` : "");
    this.el.querySelector("summary").setAttribute("aria-label", "map legend");
  }
}
