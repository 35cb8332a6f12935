"""The committed dashboard build (torc_graph/web/dist) without Node.js or a browser: it is
current with its sources, refers only to its own assets (no CDN), ships the license text of
every bundled npm package, and is installed as package data."""

from __future__ import annotations

import configparser
import hashlib
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "torc_graph" / "web"  # the source tree (build inputs are not package data)
DIST = WEB / "dist"
#: The build's inputs, in build.mjs's order (its INPUTS).
INPUTS = ("build.mjs", "package.json", "package-lock.json", "src")


def _files(path: Path) -> list[Path]:
    # Node's readdirSync().sort() orders by UTF-16 code units: the same as Python's str order
    # for these ASCII names.
    if not path.is_dir():
        return [path]
    return [f for child in sorted(path.iterdir(), key=lambda p: p.name) for f in _files(child)]


def _inputs_digest() -> str:
    h = hashlib.sha256()
    for name in INPUTS:
        for f in _files(WEB / name):
            h.update(f"{f.relative_to(WEB).as_posix()}\n".encode())
            h.update(f.read_bytes())
            h.update(b"\n")
    return h.hexdigest()


def _info() -> dict:
    return json.loads((DIST / "build-info.json").read_text())


def test_dist_is_built_from_the_current_sources():
    assert "INPUTS = ['build.mjs', 'package.json', 'package-lock.json', 'src']" in \
        (WEB / "build.mjs").read_text()
    assert _info()["inputs_sha256"] == _inputs_digest(), \
        "torc_graph/web/dist is stale: cd torc_graph/web && npm ci && npm run build"


def test_page_loads_only_its_own_hashed_assets():
    page = (DIST / "index.html").read_text()
    refs = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert refs and all(r.startswith("/dashboard/assets/") for r in refs), refs
    for ref in refs:
        name = ref.removeprefix("/dashboard/assets/")
        assert (DIST / "assets" / name).is_file(), name
        assert re.fullmatch(r"[a-z]+-[A-Z0-9]{8}\.(js|css)", name), name  # immutable-cacheable
    assert sorted(r.removeprefix("/dashboard/assets/") for r in refs) == _info()["assets"]
    assert "<script>" not in page and "http" not in page  # no inline script (CSP), no CDN


def test_no_remote_urls_are_loaded_by_the_bundle():
    for asset in (DIST / "assets").glob("*.js"):
        code = asset.read_text()
        for pattern in (r"import\s*\(\s*['\"]https?:", r"from\s*['\"]https?:",
                        r"fetch\(\s*['\"]https?:", r"EventSource\(\s*['\"]https?:"):
            assert not re.search(pattern, code), (asset.name, pattern)


def test_every_bundled_package_has_its_license_text_and_a_pinned_version():
    info = _info()
    licenses = (DIST / "assets" / "third-party-licenses.txt").read_text()
    lock = json.loads((WEB / "package-lock.json").read_text())["packages"]
    declared = json.loads((WEB / "package.json").read_text())["dependencies"]
    names = {p["name"] for p in info["packages"]}
    assert set(declared) <= names and "@dagrejs/graphlib" in names  # inlined by dagre
    for pkg in info["packages"]:
        assert f"{pkg['name']} {pkg['version']} ({pkg['license']})" in licenses
        assert lock[f"node_modules/{pkg['name']}"]["version"] == pkg["version"]
    for name, version in declared.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), (name, version)  # pinned
    assert licenses.count("Permission is hereby granted") >= len(info["packages"])


def test_dist_is_package_data():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    data = cfg["options.package_data"]["torc_graph"]
    assert "web/dist/*" in data and "web/dist/**/*" in data
