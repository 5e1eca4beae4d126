"use strict";
// Customer tracking page: the token in the URL opens one delivery's view, kept live.

const token = location.pathname.split("/").pop();
const LABELS = {
  scheduled: "Scheduled",
  out_for_delivery: "Out for delivery",
  arriving: "Arriving soon",
  delivered: "Delivered",
  failed: "We could not deliver",
  rescheduled: "Rescheduled",
  returned: "Returned to sender",
  cancelled: "Cancelled",
};
let view = null;

const fmt = t => new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });

const map = new SlippyMap(document.getElementById("map"), ctx => {
  if (!view) return;
  const dest = view.destination;
  const d = map.toScreen(dest.lat, dest.lon);
  ctx.beginPath(); ctx.arc(d.x, d.y, 8, 0, 2 * Math.PI);
  ctx.fillStyle = "#2e9d5b"; ctx.fill(); ctx.strokeStyle = "#fff"; ctx.lineWidth = 2; ctx.stroke();
  if (view.vehicle) {
    const v = map.toScreen(view.vehicle.lat, view.vehicle.lon);
    ctx.beginPath(); ctx.arc(v.x, v.y, 8, 0, 2 * Math.PI);
    ctx.fillStyle = "#2e7dd7"; ctx.fill(); ctx.strokeStyle = "#fff"; ctx.stroke();
  }
});

function render(v) {
  const first = !view;
  view = v;
  document.getElementById("status").textContent =
    (LABELS[v.status] || v.status) + (v.reason ? ` (${v.reason.replace(/_/g, " ")})` : "");
  document.getElementById("eta").textContent =
    v.eta_window ? `Expected between ${fmt(v.eta_window.start)} and ${fmt(v.eta_window.end)}` : "";
  document.getElementById("driver").textContent = v.driver && v.vehicle ? `${v.driver} is on the way` : "";
  document.getElementById("window").textContent =
    v.window ? `Promised window: ${fmt(v.window.start)} - ${fmt(v.window.end)}` : "";
  document.getElementById("address").textContent = v.address || "";
  document.body.dataset.status = v.status;
  const resched = document.getElementById("resched");
  resched.hidden = !(v.reschedule && v.reschedule.length);
  if (!resched.hidden) {
    document.getElementById("reschedopts").replaceChildren(...v.reschedule.map(w => {
      const b = document.createElement("button");
      const day = new Date(w.start * 1000).toLocaleDateString([], { weekday: "long", day: "numeric", month: "short" });
      b.textContent = `${day}, ${fmt(w.start)} - ${fmt(w.end)}`;
      b.onclick = async () => {
        const r = await fetch(`/v1/track/${token}/reschedule`, { method: "POST",
          headers: { "Content-Type": "application/json" }, body: JSON.stringify({ window: w }) });
        if (r.ok) render(await r.json());
      };
      return b;
    }));
  }
  const proof = document.getElementById("proof");
  proof.hidden = !v.proof;
  if (v.proof) {
    document.getElementById("proofname").textContent =
      `Received by ${v.proof.recipient_name || "the recipient"} at ${fmt(v.proof.ts)}`;
    const imgs = document.getElementById("proofimgs");
    imgs.replaceChildren(...v.proof.files.map(f => {
      const img = document.createElement("img");
      img.src = `/v1/track/${token}/pod/${f.sha256}`;
      img.alt = f.kind;
      return img;
    }));
  }
  document.body.dataset.vehicle = v.vehicle ? "shown" : "hidden";
  const pts = [v.destination].concat(v.vehicle ? [v.vehicle] : []);
  if (first || v.vehicle) map.fit(pts, 16);
  map.dirty = true;
  window.trackState = { status: v.status, eta: v.eta, vehicle: v.vehicle, updates: (window.trackState?.updates || 0) + 1 };
}

function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/v1/track/${token}/live`);
  const conn = document.getElementById("conn");
  ws.onopen = () => { conn.textContent = ""; };
  ws.onmessage = m => { const msg = JSON.parse(m.data); if (msg.type === "view") render(msg.view); };
  ws.onclose = e => {
    if (e.code === LINK_INVALID || linkInvalid) { invalid(); return; }
    conn.textContent = "Reconnecting...";
    setTimeout(connect, 3000);
  };
}
// The link expired or was revoked: nothing of the delivery stays on the page.
const LINK_INVALID = 4403;
let linkInvalid = false;
function invalid() {
  linkInvalid = true;
  if (view) { view = { destination: view.destination, vehicle: null }; map.dirty = true; }
  document.getElementById("conn").textContent = "";
  for (const id of ["eta", "driver", "window", "address"]) document.getElementById(id).textContent = "";
  document.getElementById("proof").hidden = true;
  document.getElementById("resched").hidden = true;
  // Nothing of the delivery stays on a dead link's page, its map included.
  document.getElementById("mapwrap").style.display = "none";
  document.getElementById("status").textContent = "This tracking link is invalid or has expired.";
  document.body.dataset.vehicle = "hidden";
  window.trackState = { status: "invalid", eta: null, vehicle: null, updates: (window.trackState?.updates || 0) + 1 };
}
fetch(`/v1/track/${token}`).then(r => r.ok ? r.json() : null).then(v => {
  if (v) { render(v); } else { invalid(); }
});
connect();
