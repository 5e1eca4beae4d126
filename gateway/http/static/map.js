// A small slippy map on a canvas: Web Mercator, pan and zoom, optional raster tiles.
// Without tiles (no internet, or tile_url empty) it draws a graticule, so positions still show.
"use strict";

class SlippyMap {
  constructor(canvas, onDraw) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.onDraw = onDraw;
    this.zoom = 13;
    this.center = { lat: 0, lon: 0 };
    this.tileUrl = "";
    this.tiles = new Map();
    this.dirty = true;
    this._bind();
    new ResizeObserver(() => this._resize()).observe(canvas);
    this._resize();
    const loop = () => { if (this.dirty) { this.dirty = false; this._draw(); } requestAnimationFrame(loop); };
    requestAnimationFrame(loop);
  }
  static project(lat, lon, zoom) {
    const s = 256 * Math.pow(2, zoom);
    const sin = Math.sin(Math.max(-85.05, Math.min(85.05, lat)) * Math.PI / 180);
    return { x: (lon + 180) / 360 * s, y: (0.5 - Math.log((1 + sin) / (1 - sin)) / (4 * Math.PI)) * s };
  }
  static unproject(x, y, zoom) {
    const s = 256 * Math.pow(2, zoom);
    const lon = x / s * 360 - 180;
    const n = Math.PI - 2 * Math.PI * y / s;
    return { lat: 180 / Math.PI * Math.atan(0.5 * (Math.exp(n) - Math.exp(-n))), lon };
  }
  toScreen(lat, lon) {
    const c = SlippyMap.project(this.center.lat, this.center.lon, this.zoom);
    const p = SlippyMap.project(lat, lon, this.zoom);
    return { x: p.x - c.x + this.w / 2, y: p.y - c.y + this.h / 2 };
  }
  fit(points, maxZoom = 18) {
    if (!points.length) return;
    let [a, b, c, d] = [90, -90, 180, -180];
    for (const p of points) { a = Math.min(a, p.lat); b = Math.max(b, p.lat); c = Math.min(c, p.lon); d = Math.max(d, p.lon); }
    this.center = { lat: (a + b) / 2, lon: (c + d) / 2 };
    for (let z = maxZoom; z >= 2; z--) {
      const p1 = SlippyMap.project(b, c, z), p2 = SlippyMap.project(a, d, z);
      if (p2.x - p1.x < this.w * 0.85 && p2.y - p1.y < this.h * 0.85) { this.zoom = z; break; }
    }
    this.dirty = true;
  }
  _resize() {
    const r = this.canvas.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    this.w = r.width; this.h = r.height;
    this.canvas.width = r.width * dpr; this.canvas.height = r.height * dpr;
    this.ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    this.dirty = true;
  }
  _bind() {
    let drag = null;
    this.canvas.addEventListener("mousedown", e => { drag = { x: e.clientX, y: e.clientY }; });
    window.addEventListener("mouseup", () => { drag = null; });
    window.addEventListener("mousemove", e => {
      if (!drag) return;
      const c = SlippyMap.project(this.center.lat, this.center.lon, this.zoom);
      this.center = SlippyMap.unproject(c.x - (e.clientX - drag.x), c.y - (e.clientY - drag.y), this.zoom);
      drag = { x: e.clientX, y: e.clientY };
      this.dirty = true;
    });
    this.canvas.addEventListener("wheel", e => {
      e.preventDefault();
      this.zoom = Math.max(2, Math.min(19, this.zoom + (e.deltaY < 0 ? 1 : -1)));
      this.dirty = true;
    }, { passive: false });
  }
  _tile(z, x, y) {
    const key = `${z}/${x}/${y}`;
    let t = this.tiles.get(key);
    if (!t) {
      t = new Image();
      t.crossOrigin = "anonymous";
      t.onload = () => { this.dirty = true; };
      t.onerror = () => { t.failed = true; };
      t.src = this.tileUrl.replace("{z}", z).replace("{x}", x).replace("{y}", y);
      this.tiles.set(key, t);
      if (this.tiles.size > 600) this.tiles.delete(this.tiles.keys().next().value);
    }
    return t;
  }
  _draw() {
    const { ctx, w, h } = this;
    ctx.fillStyle = "#e8ecef";
    ctx.fillRect(0, 0, w, h);
    const z = Math.round(this.zoom);
    const c = SlippyMap.project(this.center.lat, this.center.lon, z);
    const ox = c.x - w / 2, oy = c.y - h / 2;
    if (this.tileUrl) {
      const n = Math.pow(2, z);
      for (let tx = Math.floor(ox / 256); tx <= Math.floor((ox + w) / 256); tx++) {
        for (let ty = Math.floor(oy / 256); ty <= Math.floor((oy + h) / 256); ty++) {
          if (ty < 0 || ty >= n) continue;
          const img = this._tile(z, ((tx % n) + n) % n, ty);
          if (img.complete && !img.failed && img.naturalWidth) ctx.drawImage(img, tx * 256 - ox, ty * 256 - oy);
        }
      }
    }
    // Graticule: visible where tiles are missing, faint over tiles.
    ctx.strokeStyle = "rgba(80,90,100,.15)";
    ctx.lineWidth = 1;
    for (let gx = Math.ceil(ox / 128) * 128; gx < ox + w; gx += 128) { ctx.beginPath(); ctx.moveTo(gx - ox, 0); ctx.lineTo(gx - ox, h); ctx.stroke(); }
    for (let gy = Math.ceil(oy / 128) * 128; gy < oy + h; gy += 128) { ctx.beginPath(); ctx.moveTo(0, gy - oy); ctx.lineTo(w, gy - oy); ctx.stroke(); }
    this.onDraw(ctx);
  }
}
window.SlippyMap = SlippyMap;
