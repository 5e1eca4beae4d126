// Copies the pinned browser libraries from node_modules (after `npm ci`) into the package's
// static folder and records what was copied: each package's version and lockfile integrity,
// and each file's SHA-256, in gateway/http/static/vendor/MANIFEST.json. Run by ./dev.sh vendor;
// tests/gateway/http/test_vendor.py checks the copies against package-lock.json.
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "gateway", "http", "static", "vendor");

// package -> the files of it the pages load (paths inside the package)
const FILES = {
  leaflet: [
    "dist/leaflet.js",
    "dist/leaflet.css",
    "dist/images/layers.png",
    "dist/images/layers-2x.png",
    "dist/images/marker-icon.png",
    "dist/images/marker-icon-2x.png",
    "dist/images/marker-shadow.png",
    "LICENSE",
  ],
  "leaflet.markercluster": [
    "dist/leaflet.markercluster.js",
    "dist/MarkerCluster.css",
    "dist/MarkerCluster.Default.css",
    "MIT-LICENCE.txt",
  ],
};

const lock = JSON.parse(readFileSync(join(here, "package-lock.json"), "utf8"));
const manifest = {};
rmSync(out, { recursive: true, force: true });
for (const [pkg, files] of Object.entries(FILES)) {
  const locked = lock.packages[`node_modules/${pkg}`];
  const installed = JSON.parse(readFileSync(join(here, "node_modules", pkg, "package.json"), "utf8"));
  if (installed.version !== locked.version) {
    throw new Error(`${pkg}: node_modules has ${installed.version}, the lockfile ${locked.version}: run npm ci`);
  }
  const entry = { version: locked.version, integrity: locked.integrity, files: {} };
  for (const file of files) {
    const target = join(pkg, file.replace(/^dist\//, ""));
    mkdirSync(dirname(join(out, target)), { recursive: true });
    copyFileSync(join(here, "node_modules", pkg, file), join(out, target));
    entry.files[target] = createHash("sha256").update(readFileSync(join(out, target))).digest("hex");
  }
  manifest[pkg] = entry;
}
writeFileSync(join(out, "MANIFEST.json"), JSON.stringify(manifest, null, 2) + "\n");
console.log(`vendored into ${out}: ${Object.entries(manifest).map(([p, e]) => `${p} ${e.version}`).join(", ")}`);
