"""The pages' browser libraries (``./dev.sh vendor``): the vendored copies are the versions
pinned in web/package-lock.json, unchanged, and the pages load nothing from elsewhere."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from gateway.http.common import STATIC_DIR

ROOT = Path(__file__).resolve().parents[3]
VENDOR = STATIC_DIR / "vendor"


def lock() -> dict[str, Any]:
    packages: dict[str, Any] = json.loads((ROOT / "web" / "package-lock.json").read_text())[
        "packages"
    ]
    return packages


def manifest() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((VENDOR / "MANIFEST.json").read_text())
    return loaded


def test_package_json_pins_exact_versions_that_the_lockfile_holds() -> None:
    wanted = json.loads((ROOT / "web" / "package.json").read_text())["dependencies"]
    assert set(wanted) == {"leaflet", "leaflet.markercluster"}
    for name, version in wanted.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} {version} is not exact"
        assert lock()[f"node_modules/{name}"]["version"] == version


def test_vendored_files_are_the_locked_versions_unchanged() -> None:
    locked, copied = lock(), manifest()
    assert set(copied) == {"leaflet", "leaflet.markercluster"}
    for name, entry in copied.items():
        assert entry["version"] == locked[f"node_modules/{name}"]["version"], name
        assert entry["integrity"] == locked[f"node_modules/{name}"]["integrity"], name
        for rel, sha in entry["files"].items():
            assert hashlib.sha256((VENDOR / rel).read_bytes()).hexdigest() == sha, rel
    listed = {rel for e in copied.values() for rel in e["files"]} | {"MANIFEST.json"}
    on_disk = {p.relative_to(VENDOR).as_posix() for p in VENDOR.rglob("*") if p.is_file()}
    assert on_disk == listed
    # The library says its own version in its header.
    header = (VENDOR / "leaflet" / "leaflet.js").read_text()[:200]
    assert f"Leaflet {copied['leaflet']['version']}," in header


def test_pages_load_scripts_and_styles_only_from_the_gateway() -> None:
    for page in ("ops.html", "track.html"):
        html = (STATIC_DIR / page).read_text()
        refs = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert refs and all(r.startswith("/static/") or r == "#" for r in refs), (page, refs)
    for js in STATIC_DIR.rglob("*.js"):
        if VENDOR in js.parents:
            continue
        assert not re.search(r"""(?:import|from)\s*\(?\s*["']https?:""", js.read_text()), js
