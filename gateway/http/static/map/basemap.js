// The map both pages draw on: Leaflet (vendored in /static/vendor, loaded as a classic script
// before the page's modules, so `L` is a global), a plain background, and street tiles when the
// gateway has a tile URL (TILE_URL). Without tiles (no internet, or TILE_URL empty) the
// background stays plain and everything else is drawn all the same.
/* global L */

const OSM_ATTRIBUTION =
  'Map data &copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors';

export function createMap(element, options = {}) {
  const map = L.map(element, {
    zoomControl: true,
    attributionControl: true,
    worldCopyJump: true,
    minZoom: 2,
    maxZoom: 19,
    zoomSnap: 0.25, // fitting a view uses the space it has, not the next whole zoom out
    zoomDelta: 1,
    ...options,
  });
  map.attributionControl.setPrefix(false);
  // The page's layout moves (a header that wraps, a panel below on a phone): the map follows.
  new ResizeObserver(() => map.invalidateSize({ pan: false })).observe(element);
  return map;
}

// Street tiles under everything else, once; a failed tile leaves the plain background.
export function showTiles(map, tileUrl) {
  if (!tileUrl || map.tileLayer) return;
  map.tileLayer = L.tileLayer(tileUrl, {
    maxZoom: 19,
    attribution: tileUrl.includes("openstreetmap") ? OSM_ATTRIBUTION : "",
    crossOrigin: true,
  }).addTo(map);
}

// Fit the view to points ({lat, lon}) with a margin of `padding` px (`left` px more on the
// left, where a legend covers the map), at most maxZoom.
export function fitTo(map, points, maxZoom = 16, padding = 40, left = 0) {
  const pts = points.filter(p => p && Number.isFinite(p.lat) && Number.isFinite(p.lon));
  if (!pts.length) return;
  const bounds = L.latLngBounds(pts.map(p => [p.lat, p.lon]));
  map.fitBounds(bounds, {
    paddingTopLeft: [padding + left, padding], paddingBottomRight: [padding, padding], maxZoom, animate: false,
  });
}

// The user moved the map (drag, wheel, pinch, keys): the page stops fitting the view for them.
export function onUserMove(map, fn) {
  const el = map.getContainer();
  for (const ev of ["mousedown", "wheel", "touchstart", "keydown"]) {
    el.addEventListener(ev, e => {
      if (e.target.closest && e.target.closest(".leaflet-control")) return;
      fn();
    }, { passive: true });
  }
}

// An arrow pointing along `heading` (degrees clockwise from north) around a dot: SVG markup
// for a marker icon of `size` px. No heading: the dot alone.
export function arrowDot(color, heading, { size = 26, ring = "#fff", glyph = "" } = {}) {
  const arrow = heading == null || Number.isNaN(heading) ? "" :
    `<path d="M0,-13.5 L7.5,-2.5 L-7.5,-2.5 Z" fill="${color}" stroke="${ring}" stroke-width="1.2" ` +
    `transform="rotate(${Math.round(heading)})"/>`;
  const mark = glyph ? `<text y="3.6" text-anchor="middle" font-size="10.5" font-weight="700" fill="#fff">${glyph}</text>` : "";
  return `<svg class="arrowdot" viewBox="-13 -13 26 26" width="${size}" height="${size}" aria-hidden="true">` +
    `${arrow}<circle r="7" fill="${color}" stroke="${ring}" stroke-width="2"/>${mark}</svg>`;
}
