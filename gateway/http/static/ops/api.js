// The agent's API key (from #key=... once, then the browser's storage) and calls with it.

export function apiKey() {
  const m = location.hash.match(/key=([^&]+)/);
  if (m) {
    localStorage.setItem("apiKey", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname);
  }
  return localStorage.getItem("apiKey");
}

export async function api(path, options = {}) {
  const r = await fetch(path, { ...options, headers: { ...(options.headers || {}), "X-API-Key": apiKey() } });
  if (!r.ok) throw new Error(`${path}: ${r.status}`);
  return r.json();
}

export function liveUrl() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  return `${proto}://${location.host}/v1/ops/live?key=${encodeURIComponent(apiKey())}`;
}
