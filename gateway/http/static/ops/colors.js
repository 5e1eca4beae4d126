// The ops page's colours: a van's status, a stop's state, a route's own colour. Every colour
// comes with words or a glyph as well (legend, list, labels): never colour alone.

export const STATUS = {
  moving: { color: "#1f6fd1", label: "moving" },
  idling: { color: "#8a4fbf", label: "idling (engine on)" },
  stopped: { color: "#e09b00", label: "stopped" },
  offline: { color: "#8a949e", label: "offline" },
  late: { color: "#d62828", label: "late risk", glyph: "!" },
};

// A van's look: offline first (nothing it shows is current), then late risk, then movement.
export function vanStatus(v, late) {
  if (v.status === "offline") return "offline";
  if (late) return "late";
  return STATUS[v.status] ? v.status : "stopped";
}

export const STOP = {
  pending: { color: "#ffffff", text: "#1d2733", label: "pending" },
  arriving: { color: "#9fd0ff", text: "#1d2733", label: "arriving", glyph: "\u2192" },
  delivered: { color: "#2e8b57", text: "#ffffff", label: "delivered", glyph: "\u2713" },
  failed: { color: "#b3261e", text: "#ffffff", label: "failed", glyph: "\u2715" },
};

// A stop's state from its deliveries' statuses: any arriving; else all done (failed if any
// failed); else pending.
export function stopState(statuses) {
  if (!statuses.length) return "pending";
  if (statuses.includes("arriving")) return "arriving";
  const done = s => ["delivered", "failed", "returned", "cancelled"].includes(s);
  if (!statuses.every(done)) return "pending";
  return statuses.some(s => s === "failed" || s === "returned") ? "failed" : "delivered";
}

// Route colours: distinct from each other and from the status colours' meaning, in turn.
const ROUTE_PALETTE = [
  "#0b84a5", "#f6511d", "#6a4c93", "#00a878", "#c2185b", "#7f6000", "#1565c0", "#ef6c00",
  "#2e7d32", "#ad1457", "#4e342e", "#00838f", "#5e35b1", "#9e9d24", "#d84315", "#37474f",
];

export function routeColor(index) {
  return ROUTE_PALETTE[index % ROUTE_PALETTE.length];
}
