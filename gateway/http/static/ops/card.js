// The selected van's card on the map: status, last fix, attributes, its route and driver,
// and its next stops with their ETAs against the promised windows.
/* global L */
import { api } from "./api.js";
import { STATUS } from "./colors.js";

const NEXT_STOPS = 3;
const COMPASS = ["N", "NE", "E", "SE", "S", "SW", "W", "NW"];

const hm = t => new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
const ago = ts => {
  const s = Math.max(0, Date.now() / 1000 - ts);
  return s < 90 ? `${Math.round(s)} s ago` : s < 5400 ? `${Math.round(s / 60)} min ago` : `${(s / 3600).toFixed(1)} h ago`;
};

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text != null) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

export class VanCard {
  constructor(map, vans, routes, onClose) {
    this.vans = vans;
    this.routes = routes;
    this.live = null; // /v1/live: this process's tracked routes with their ETAs
    const control = L.control({ position: "topright" });
    control.onAdd = () => {
      this.el = L.DomUtil.create("section", "vancard");
      this.el.id = "vancard";
      this.el.hidden = true;
      this.el.setAttribute("aria-live", "polite");
      L.DomEvent.disableClickPropagation(this.el);
      L.DomEvent.disableScrollPropagation(this.el);
      return this.el;
    };
    control.addTo(map);
    this.onClose = onClose;
    setInterval(() => this.render(), 1000);
  }

  async show(id) {
    this.id = id;
    this.render();
    try {
      this.live = await api("/v1/live");
    } catch (e) { /* the card shows what it has */ }
    this.render();
  }

  hide() {
    this.id = null;
    this.el.hidden = true;
  }

  render() {
    const v = this.id && this.vans.vans.get(this.id);
    if (!v) { this.el.hidden = true; return; }
    const st = this.vans.statusOf(v);
    const close = el("button", "\u00d7", "close");
    close.title = "close";
    close.onclick = () => this.onClose();
    const head = el("h3");
    const dot = el("span", null, "dot");
    dot.style.background = STATUS[st].color;
    head.append(dot, v.id);
    const facts = [st === "late" ? `${v.status}, late risk` : STATUS[st].label];
    if (v.speed != null && v.status !== "offline") facts.push(`${(v.speed * 3.6).toFixed(0)} km/h`);
    if (v.heading != null && v.status === "moving") facts.push(`heading ${COMPASS[Math.round(v.heading / 45) % 8]}`);
    const more = [`last fix ${ago(v.ts)}`];
    if (v.ignition != null) more.push(`ignition ${v.ignition ? "on" : "off"}`);
    if (typeof v.fuel === "number") more.push(`fuel ${v.fuel.toFixed(0)}%`);
    if (typeof v.temp_c === "number") more.push(`load ${v.temp_c.toFixed(1)} \u00b0C`);
    if (typeof v.battery === "number") more.push(`battery ${v.battery.toFixed(0)}%`);
    const parts = [close, head, el("p", facts.join(" \u00b7 ")), el("p", more.join(" \u00b7 "), "muted")];
    const r = this.routes.ofVehicle(v.id);
    if (r) {
      parts.push(el("p", `Route ${r.name}${r.driver ? `, driver ${r.driver}` : ""}`));
      parts.push(this.nextStops(r));
    } else {
      parts.push(el("p", "No started route", "muted"));
    }
    this.el.replaceChildren(...parts);
    this.el.hidden = false;
  }

  nextStops(r) {
    const tracked = this.live && this.live.routes[r.vehicle];
    const etas = tracked && tracked.route === r.id ? tracked.etas : {};
    const pending = r.stops.filter(s => s.state === "pending" || s.state === "arriving").slice(0, NEXT_STOPS);
    if (!pending.length) return el("p", "All stops done", "muted");
    const ol = el("ol", null, "nextstops");
    for (const s of pending) {
      const li = el("li");
      li.value = s.n;
      li.append(el("span", s.address || `stop ${s.n}`, "addr"));
      const eta = etas[s.id];
      const w = s.window;
      let when = w ? `window ${hm(w.start)}\u2013${hm(w.end)}` : "";
      if (eta != null) {
        const late = w && eta > w.end;
        when = `ETA ${hm(eta)}${when ? `, ${when}` : ""}`;
        if (late) li.classList.add("late");
        if (late) when += ` \u2014 ${Math.round((eta - w.end) / 60)} min late`;
      }
      if (s.state === "arriving") when = `arriving${when ? `, ${when}` : ""}`;
      li.append(el("small", when));
      ol.append(li);
    }
    const box = el("div");
    box.append(el("h4", "Next stops"), ol);
    return box;
  }
}
