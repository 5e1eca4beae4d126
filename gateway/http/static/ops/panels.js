// The ops page's side panels and header: vehicle list, exceptions, delivery search, messages
// captured, events, KPIs, the CSV link and the simulated fleet's banner.
import { api, apiKey } from "./api.js";
import { STATUS } from "./colors.js";

const $ = id => document.getElementById(id);

export class VehicleList {
  constructor(vans, onSelect) {
    this.vans = vans;
    this.dirty = true;
    $("filter").addEventListener("input", () => { this.dirty = true; this.render(); });
    $("vehicles").addEventListener("click", e => {
      const li = e.target.closest("li");
      if (li) onSelect(li.dataset.id);
    });
    setInterval(() => this.render(), 500);
  }

  render() {
    if (!this.dirty) return;
    this.dirty = false;
    const f = $("filter").value.toLowerCase();
    const counts = { moving: 0, idling: 0, stopped: 0, offline: 0 };
    let late = 0;
    const rows = [];
    for (const v of [...this.vans.vans.values()].sort((a, b) => a.id.localeCompare(b.id))) {
      counts[v.status] = (counts[v.status] || 0) + 1;
      const st = this.vans.statusOf(v);
      if (st === "late") late += 1;
      if (f && !v.id.toLowerCase().includes(f)) continue;
      const li = document.createElement("li");
      li.dataset.id = v.id;
      li.dataset.status = st;
      if (v.id === this.vans.selected) li.className = "selected";
      const dot = document.createElement("span");
      dot.className = "dot";
      dot.style.background = STATUS[st].color;
      const small = document.createElement("small");
      const speed = v.speed != null ? `${(v.speed * 3.6).toFixed(0)} km/h` : "";
      const fuel = typeof v.fuel === "number" ? ` fuel ${v.fuel.toFixed(0)}%` : "";
      const ign = v.ignition === true ? " ignition on" : v.ignition === false ? " ignition off" : "";
      small.textContent = `${v.status}${st === "late" ? ", late risk" : ""} ${speed}${ign}${fuel}`;
      li.append(dot, `${v.id} `, small);
      rows.push(li);
    }
    $("vehicles").replaceChildren(...rows);
    $("counts").textContent =
      `${this.vans.vans.size} vehicles: ${counts.moving} moving, ${counts.idling} idling, ` +
      `${counts.stopped} stopped, ${counts.offline} offline` + (late ? `, ${late} late risk` : "");
  }
}

export function addEvent(ev) {
  const ul = $("events");
  const li = document.createElement("li");
  const t = document.createElement("span");
  t.className = "t";
  t.textContent = new Date(ev.ts * 1000).toLocaleTimeString();
  li.append(t, `${ev.type} ${ev.vehicle || ""} ${ev.delivery || ""}`);
  li.dataset.type = ev.type;
  ul.prepend(li);
  while (ul.children.length > 200) ul.lastChild.remove();
}

// The demo's simulated fleet (null outside the demo): a banner once it has stopped.
export function showFleet(f) {
  const banner = $("fleetbanner");
  banner.hidden = !(f && f.state === "stopped");
  if (banner.hidden) return;
  const code = f.exit_code == null ? "" : ` (exit code ${f.exit_code})`;
  const detail = f.detail ? `: ${f.detail.replace(/\.$/, "")}` : "";
  banner.textContent = `Simulated fleet stopped${code}${detail}. ` +
    "The gateway keeps running; run the demo again to bring the vans back.";
}

// Open exceptions, newest first, with acknowledge and resolve; onChange(alerts) after each change.
export class Alerts {
  constructor(onChange) {
    this.alerts = new Map();
    this.onChange = onChange;
  }

  set(alert) {
    this.alerts.set(alert.id, alert);
    this.render();
  }

  async refresh() {
    const list = await api("/v1/alerts");
    this.alerts.clear();
    for (const a of (list.alerts || [])) this.alerts.set(a.id, a);
    this.render();
  }

  open() {
    return [...this.alerts.values()].filter(a => a.status !== "resolved");
  }

  render() {
    const open = this.open().sort((a, b) => b.created - a.created);
    $("alertcount").textContent = open.length ? `(${open.length})` : "";
    $("alerts").replaceChildren(...open.map(a => {
      const li = document.createElement("li");
      li.className = `sev-${a.severity}`;
      li.dataset.id = a.id;
      li.dataset.status = a.status;
      li.append(`${a.title} `);
      for (const action of ["ack", "resolve"]) {
        if (action === "ack" && a.status !== "open") continue;
        const b = document.createElement("button");
        b.textContent = action;
        b.dataset.action = action;
        b.onclick = async () => {
          const updated = await api(`/v1/alerts/${a.id}/${action}`, { method: "POST",
            headers: { "Content-Type": "application/json" }, body: JSON.stringify({ by: "ops page" }) });
          this.set(updated.alert || updated);
        };
        li.append(b);
      }
      return li;
    }));
    this.onChange(this);
  }
}

export function deliverySearch() {
  let timer = null;
  $("dsearch").addEventListener("input", e => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const q = e.target.value.trim();
      const ul = $("deliveries");
      if (!q) { ul.replaceChildren(); return; }
      const found = (await api(`/v1/deliveries?q=${encodeURIComponent(q)}&limit=50`)).deliveries;
      ul.replaceChildren(...found.map(d => {
        const li = document.createElement("li");
        li.dataset.id = d.id;
        const st = document.createElement("span");
        st.className = `st-${d.status}`;
        st.textContent = d.status;
        li.append(`${d.external_id} ${d.recipient.name} `, st, ` ${d.address}`);
        return li;
      }));
    }, 250);
  });
}

const pct = x => x == null ? "-" : `${Math.round(x * 100)}%`;
const mins = s => s == null ? "-" : `${(s / 60).toFixed(1)} min`;

export async function refreshKpis() {
  const k = await api("/v1/kpis");
  const items = [["on time", pct(k.on_time_rate)], ["delivery", mins(k.avg_delivery_time_s)],
    ["ETA error", mins(k.eta_error_median_s)], ["failed", k.failed],
    ["open exceptions", k.open_exceptions ?? "-"], ["resolution", mins(k.avg_resolution_s)]];
  $("kpis").replaceChildren(...items.map(([label, value]) => {
    const span = document.createElement("span");
    const b = document.createElement("b");
    b.textContent = label;
    span.append(b, ` ${value}`);
    return span;
  }));
}

export async function refreshMessages() {
  const m = await api("/v1/capture/messages");
  $("msgsection").hidden = false;
  const items = m.sms.map(x => ({ ts: x.ts, text: `SMS to ${x.to}: ${x.body}` }))
    .concat(m.email.map(x => ({ ts: x.ts, text: `Email to ${x.to.join(", ")}: ${x.subject}` })))
    .sort((a, b) => b.ts - a.ts).slice(0, 100);
  $("messages").replaceChildren(...items.map(x => {
    const li = document.createElement("li");
    const t = document.createElement("span");
    t.className = "t";
    t.textContent = new Date(x.ts * 1000).toLocaleTimeString();
    li.append(t, x.text);
    return li;
  }));
}

export function csvLink() {
  $("csv").addEventListener("click", async e => {
    e.preventDefault();
    const r = await fetch("/v1/deliveries.csv", { headers: { "X-API-Key": apiKey() } });
    const url = URL.createObjectURL(await r.blob());
    const a = document.createElement("a");
    a.href = url;
    a.download = "deliveries.csv";
    a.click();
    URL.revokeObjectURL(url);
  });
}
