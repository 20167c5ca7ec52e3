"""Page weight and time to interactive of the chat page's first load.

Weight: the page's HTML and every script, stylesheet and icon it references, fetched over HTTP
like a browser would (Accept-Encoding: gzip, br), as served (`wire_bytes`, with the encoding
the server chose) and uncompressed (`raw_bytes`); `gzip_bytes` is each file gzip-compressed
at level 6, what any front proxy would send. The target (under 150 KB compressed) is read on
`gzip_bytes`. Any asset from another host counts as a CDN reference (target: none).

Time to interactive: Debian's Chromium (headless, via Playwright's executable_path, never
`playwright install`), a fresh context per load (cold cache), logged in by cookie. TTI is the
later of DOMContentLoaded (deferred scripts ran: htmx and app.js are wired) and the htmx
WebSocket being open (the page can show streamed replies), from navigation start.
"""

from __future__ import annotations

import gzip
import re
import statistics
import time
from urllib.parse import urljoin, urlparse

import httpx

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
INIT_SCRIPT = """
(() => {
  window.__wsOpenAt = null;
  document.addEventListener("htmx:wsOpen", () => { if (window.__wsOpenAt === null) window.__wsOpenAt = performance.now(); });
})();
"""
ASSET_RE = re.compile(r'<(?:script[^>]*\ssrc|link[^>]*\shref)="([^"]+)"[^>]*>', re.I)


def _kind(url: str) -> str:
    path = urlparse(url).path
    for ext, kind in ((".js", "js"), (".css", "css"), (".svg", "icon"), (".ico", "icon"), (".png", "icon")):
        if path.endswith(ext):
            return kind
    return "other"


def weigh(base_url: str, page_path: str, cookies: dict) -> dict:
    headers = {"Accept-Encoding": "gzip, br", "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}
    host = urlparse(base_url).netloc
    files = []
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
        resp = client.get(page_path)
        resp.raise_for_status()
        html = resp.text
        files.append(("html", page_path, resp))
        external = []
        for ref in dict.fromkeys(ASSET_RE.findall(html)):
            url = urljoin(base_url + page_path, ref)
            if urlparse(url).netloc != host:
                external.append(url)
                continue
            if ref.startswith(("#", "data:")) or _kind(url) == "other":
                continue
            r = client.get(url)
            files.append((_kind(url), ref, r))
    rows = []
    for kind, ref, r in files:
        rows.append({
            "kind": kind,
            "url": ref,
            "status": r.status_code,
            "encoding": r.headers.get("content-encoding", "identity"),
            "wire_bytes": r.num_bytes_downloaded,
            "raw_bytes": len(r.content),
            "gzip_bytes": len(gzip.compress(r.content, 6)),
        })
    totals = {k: sum(row[k] for row in rows) for k in ("wire_bytes", "raw_bytes", "gzip_bytes")}
    by_kind: dict = {}
    for row in rows:
        entry = by_kind.setdefault(row["kind"], {"files": 0, "raw_bytes": 0, "gzip_bytes": 0, "wire_bytes": 0})
        entry["files"] += 1
        for k in ("raw_bytes", "gzip_bytes", "wire_bytes"):
            entry[k] += row[k]
    return {
        "files": rows,
        "totals": totals,
        "by_kind": by_kind,
        "external_urls": external,
        "served_uncompressed": [row["url"] for row in rows if row["encoding"] == "identity" and row["raw_bytes"] > 1024],
    }


def time_to_interactive(base_url: str, page_path: str, cookies: dict, loads: int) -> dict:
    from playwright.sync_api import sync_playwright

    host = urlparse(base_url).hostname
    runs = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            for _ in range(loads):
                context = browser.new_context()
                context.add_cookies([{"name": k, "value": v, "domain": host, "path": "/"} for k, v in cookies.items()])
                context.add_init_script(INIT_SCRIPT)
                page = context.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                t = time.perf_counter()
                page.goto(base_url + page_path, wait_until="load", timeout=30000)
                try:
                    page.wait_for_function("window.__wsOpenAt !== null", timeout=15000)
                except Exception:  # noqa: BLE001 - reported as ws_open null
                    pass
                wall_ms = (time.perf_counter() - t) * 1000
                nav = page.evaluate(
                    """() => { const n = performance.getEntriesByType('navigation')[0];
                    const res = performance.getEntriesByType('resource').map(r => ({name: r.name, type: r.initiatorType,
                      transfer: r.transferSize, encoded: r.encodedBodySize, decoded: r.decodedBodySize}));
                    return {responseEnd: n.responseEnd, domInteractive: n.domInteractive,
                      dcl: n.domContentLoadedEventEnd, load: n.loadEventEnd, transfer: n.transferSize,
                      encoded: n.encodedBodySize, decoded: n.decodedBodySize, wsOpen: window.__wsOpenAt, resources: res}; }"""
                )
                context.close()
                tti = max(nav["dcl"], nav["wsOpen"] or 0) if nav["wsOpen"] else None
                runs.append({
                    "response_end_ms": round(nav["responseEnd"], 1),
                    "dom_interactive_ms": round(nav["domInteractive"], 1),
                    "dom_content_loaded_ms": round(nav["dcl"], 1),
                    "load_ms": round(nav["load"], 1),
                    "ws_open_ms": round(nav["wsOpen"], 1) if nav["wsOpen"] else None,
                    "tti_ms": round(tti, 1) if tti else None,
                    "goto_wall_ms": round(wall_ms, 1),
                    "encoded_bytes": nav["encoded"] + sum(r["encoded"] for r in nav["resources"]),
                    "decoded_bytes": nav["decoded"] + sum(r["decoded"] for r in nav["resources"]),
                    "resources": len(nav["resources"]),
                    "external_resources": [r["name"] for r in nav["resources"] if urlparse(r["name"]).hostname not in (host, None)],
                    "page_errors": errors,
                })
        finally:
            browser.close()
    med = lambda key: round(statistics.median([r[key] for r in runs if r[key] is not None]), 1) if any(r[key] is not None for r in runs) else None  # noqa: E731
    return {
        "loads": loads,
        "tti_ms_median": med("tti_ms"),
        "dom_content_loaded_ms_median": med("dom_content_loaded_ms"),
        "ws_open_ms_median": med("ws_open_ms"),
        "load_ms_median": med("load_ms"),
        "browser_encoded_bytes": runs[-1]["encoded_bytes"] if runs else None,
        "browser_decoded_bytes": runs[-1]["decoded_bytes"] if runs else None,
        "runs": runs,
    }
