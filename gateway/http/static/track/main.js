// Customer tracking page: the token in the URL opens one delivery's view, kept live.
import { TrackMap } from "./map.js";

const token = location.pathname.split("/").pop();
const LINK_INVALID = 4403; // the stream's close code: the link expired or was revoked
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
const $ = id => document.getElementById(id);
const fmt = t => new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });

const map = new TrackMap($("map"));
let view = null;
let linkInvalid = false;

function render(v) {
  view = v;
  $("status").textContent = (LABELS[v.status] || v.status) + (v.reason ? ` (${v.reason.replace(/_/g, " ")})` : "");
  $("eta").textContent = v.eta_window ? `Expected between ${fmt(v.eta_window.start)} and ${fmt(v.eta_window.end)}` : "";
  $("driver").textContent = v.driver && v.vehicle ? `${v.driver} is on the way` : "";
  $("window").textContent = v.window ? `Promised window: ${fmt(v.window.start)} - ${fmt(v.window.end)}` : "";
  $("address").textContent = v.address || "";
  document.body.dataset.status = v.status;
  renderReschedule(v);
  renderProof(v);
  document.body.dataset.vehicle = v.vehicle ? "shown" : "hidden";
  map.show(v);
  window.trackState = { status: v.status, eta: v.eta, vehicle: v.vehicle, updates: (window.trackState?.updates || 0) + 1 };
}

function renderReschedule(v) {
  const resched = $("resched");
  resched.hidden = !(v.reschedule && v.reschedule.length);
  if (resched.hidden) return;
  $("reschedopts").replaceChildren(...v.reschedule.map(w => {
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

function renderProof(v) {
  const proof = $("proof");
  proof.hidden = !v.proof;
  if (!v.proof) return;
  $("proofname").textContent = `Received by ${v.proof.recipient_name || "the recipient"} at ${fmt(v.proof.ts)}`;
  $("proofimgs").replaceChildren(...v.proof.files.map(f => {
    const img = document.createElement("img");
    img.src = `/v1/track/${token}/pod/${f.sha256}`;
    img.alt = f.kind;
    return img;
  }));
}

function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/v1/track/${token}/live`);
  ws.onopen = () => { $("conn").textContent = ""; };
  ws.onmessage = m => { const msg = JSON.parse(m.data); if (msg.type === "view") render(msg.view); };
  ws.onclose = e => {
    if (e.code === LINK_INVALID || linkInvalid) { invalid(); return; }
    $("conn").textContent = "Reconnecting...";
    setTimeout(connect, 3000);
  };
}

// The link expired or was revoked: nothing of the delivery stays on the page, its map included.
function invalid() {
  linkInvalid = true;
  view = null;
  map.hide();
  $("conn").textContent = "";
  for (const id of ["eta", "driver", "window", "address"]) $(id).textContent = "";
  $("proof").hidden = true;
  $("resched").hidden = true;
  $("mapwrap").style.display = "none";
  $("status").textContent = "This tracking link is invalid or has expired.";
  document.body.dataset.vehicle = "hidden";
  window.trackState = { status: "invalid", eta: null, vehicle: null, updates: (window.trackState?.updates || 0) + 1 };
}

fetch(`/v1/track/${token}`).then(r => r.ok ? r.json() : null).then(v => { if (v) render(v); else invalid(); });
connect();
